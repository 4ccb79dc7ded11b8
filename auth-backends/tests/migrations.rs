//! Keeps the per-dialect migration folders in step: `migrations/sqlite/`,
//! `postgres/` and `mysql/` must hold the same numbered file names. Folders
//! of backends not written yet are skipped until they exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const DIALECTS: [&str; 3] = ["sqlite", "postgres", "mysql"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect()
}

#[test]
fn dialect_folders_hold_the_same_file_names() {
    let reference = names(&root().join("sqlite"));
    assert!(!reference.is_empty(), "migrations/sqlite has no .sql files");
    for dialect in DIALECTS {
        let dir = root().join(dialect);
        if !dir.is_dir() {
            eprintln!("skipping migrations/{dialect}: not written yet");
            continue;
        }
        assert_eq!(
            names(&dir),
            reference,
            "migrations/{dialect} differs from migrations/sqlite"
        );
    }
}

#[test]
fn migrations_are_numbered_from_one_without_gaps() {
    let names = names(&root().join("sqlite"));
    for (index, name) in names.iter().enumerate() {
        let number: usize = name
            .split_once('_')
            .and_then(|(n, _)| (n.len() == 4).then(|| n.parse().ok()).flatten())
            .unwrap_or_else(|| panic!("{name}: expected NNNN_description.sql"));
        assert_eq!(
            number,
            index + 1,
            "{name}: numbers must run 0001, 0002, ..."
        );
    }
}
