//! Mosquitto's password file (`mosquitto_passwd`): `username:hash` lines,
//! read the way Mosquitto 2.0 reads them (`pwfile__parse`): lines starting
//! with `#` and lines without `:` are skipped, the name and the hash are
//! trimmed, the hash ends at the next `:`.

use super::ImportError;

/// One user line of the file.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub line: usize,
    pub username: String,
    /// As written; the caller checks the format.
    pub hash: String,
}

// The hash stays out of debug output.
impl std::fmt::Debug for PasswdEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswdEntry")
            .field("line", &self.line)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

pub fn parse(text: &str) -> Result<Vec<PasswdEntry>, ImportError> {
    let mut entries: Vec<PasswdEntry> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.starts_with('#') || !raw.contains(':') {
            continue;
        }
        let mut fields = raw.split(':').filter(|f| !f.is_empty());
        let Some(username) = fields.next().map(str::trim) else {
            continue;
        };
        // An empty hash is kept: the caller skips the user with a note, as
        // Mosquitto drops such a line ("Invalid line").
        let hash = fields.next().map(str::trim).unwrap_or_default();
        if let Some(first) = seen.insert(username.to_owned(), line) {
            return Err(ImportError::Parse {
                line,
                message: format!("user {username:?} already appears on line {first}"),
            });
        }
        entries.push(PasswdEntry {
            line,
            username: username.to_owned(),
            hash: hash.to_owned(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_mosquitto_reads_them() {
        let text = "# comment\nalice:$7$101$abc$def\n\nno colon here\n bob : $6$x$y \nalice2:$7$1$a$b:extra\n";
        let entries = parse(text).unwrap();
        let got: Vec<(usize, &str, &str)> = entries
            .iter()
            .map(|e| (e.line, e.username.as_str(), e.hash.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "alice", "$7$101$abc$def"),
                (5, "bob", "$6$x$y"),
                (6, "alice2", "$7$1$a$b"),
            ]
        );
    }

    #[test]
    fn duplicates_are_errors_and_missing_hashes_empty() {
        assert!(matches!(
            parse("a:$7$1$a$b\na:$7$1$a$b\n"),
            Err(ImportError::Parse { line: 2, .. })
        ));
        let entries = parse("a:\n").unwrap();
        assert_eq!(entries[0].hash, "");
    }
}
