//! `warden export`: the whole policy of the configured store (users with
//! their password hashes, roles, memberships, rules with their ids) as YAML
//! on stdout, in the format `warden import` reads. Moving between stores is
//! `warden -c old.yaml export > policy.yaml` then
//! `warden -c new.yaml import policy.yaml`.
//!
//! With `-o FILE` the export goes to a file that only its owner can read
//! (0600): it is created with that mode, in the target's directory, and then
//! renamed over the target, so no other user can open it at any moment,
//! whatever the umask or the mode of a file it replaces.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use warden_auth::{AdminStore, PolicySnapshot};

use super::output::print_text;
use super::Outcome;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to FILE (mode 0600, replaced atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub async fn run(args: ExportArgs, store: &dyn AdminStore, json: bool) -> anyhow::Result<Outcome> {
    let snapshot = store.export().await.context("cannot export the policy")?;
    let text = if json {
        let mut text =
            serde_json::to_string(&snapshot).context("cannot encode the policy as JSON")?;
        text.push('\n');
        text
    } else {
        to_yaml(&snapshot, store.backend())?
    };
    match &args.output {
        Some(path) => {
            write_private(path, text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            // Stdout is free for the summary; the policy is in the file.
            eprintln!(
                "exported {} users, {} roles, {} rules to {} (mode 0600)",
                snapshot.users.len(),
                snapshot.roles.len(),
                snapshot.rules.len(),
                path.display()
            );
        }
        None => print_text(&text)?,
    }
    Ok(Outcome::Success)
}

/// Writes `bytes` to `path` through a new file created with mode 0600 next
/// to it, synced and renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if result.is_err() {
        // Best effort: the error to report is the write's.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The snapshot as YAML, after a comment naming where it came from and
/// warning that it holds password hashes.
pub fn to_yaml(snapshot: &PolicySnapshot, backend: &str) -> anyhow::Result<String> {
    let body = serde_yaml::to_string(snapshot).context("cannot encode the policy as YAML")?;
    Ok(format!(
        "# Warden policy exported from the {backend} store: {} users, {} roles, {} rules.\n\
         # It contains password hashes: keep this file secret.\n{body}",
        snapshot.users.len(),
        snapshot.roles.len(),
        snapshot.rules.len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_even_when_it_replaces_a_readable_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
