//! `warden audit list [--since DURATION|TIME]`: the admin changes recorded
//! in the store (who, from which host, when, what), oldest first.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use warden_auth::{AdminStore, ChangeQuery};

use super::audited::now_ms;
use super::output::{print_json, Table};
use super::Outcome;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List the recorded admin changes (every CLI write), oldest first.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only changes since this long ago (`90m`, `2h`, `7d`) or this time
    /// (`2026-12-03T10:00:00Z`, `2026-12-03 10:00:00`, UTC).
    #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
    pub since: Option<i64>,
}

/// `--since` as Unix milliseconds.
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(now_ms().saturating_sub(ago));
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!(
            "expected a duration (90m, 2h, 7d) or a UTC time (2026-12-03T10:00:00Z), not {text:?}"
        )
    })?;
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?
        .as_millis();
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Unix milliseconds as `2026-12-03T10:00:00Z`.
pub fn format_ms(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        // Only a clock set before 1970 writes these.
        Err(_) => format!("{ms} ms"),
    }
}

pub async fn run(cmd: AuditCommand, store: &dyn AdminStore, json: bool) -> anyhow::Result<Outcome> {
    let AuditCommand::List(args) = cmd;
    let query = ChangeQuery {
        since_ms: args.since.unwrap_or(i64::MIN),
        ..ChangeQuery::ALL
    };
    // A server database gets the admin change table from `warden migrate`.
    let changes = store
        .admin_changes(query)
        .await
        .context("cannot read the admin changes (is the schema current? `warden migrate`)")?;
    if json {
        print_json(&changes)?;
        return Ok(Outcome::Success);
    }
    let mut table = Table::new(&["id", "time", "user", "host", "change"]);
    for change in &changes {
        table.row(vec![
            change.id.to_string(),
            format_ms(change.at_ms),
            change.user.clone(),
            change.host.clone(),
            change.what.clone(),
        ]);
    }
    table.print()?;
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = now_ms();
        let two_hours = parse_since("2h").unwrap();
        assert!((now - 7_200_000 - 1000..=now - 7_200_000 + 1000).contains(&two_hours));
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_since("2026-12-03 10:00:00").unwrap(),
            1_796_292_000_000
        );
        assert!(parse_since("yesterday").unwrap_err().contains("duration"));
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(format_ms(1_796_292_000_000), "2026-12-03T10:00:00Z");
    }
}
