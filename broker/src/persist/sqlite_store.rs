//! [`SessionStore`] on SQLite in WAL mode (rusqlite, bundled SQLite): the
//! engine measured against fjall (docs/architecture.md). A batch is one
//! transaction. With `synchronous=NORMAL` (mode `periodic`) a commit is in
//! the WAL file when `apply` returns (survives kill -9) and `sync` fsyncs
//! the WAL; with `synchronous=FULL` (mode `sync`) every commit is fsynced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{params, Connection};

use super::record::{self, Phase, StoredDelivery, StoredMessage, StoredSession};
use super::{Loaded, LoadedSession, Op, PersistError, SessionStore};
use crate::config::PersistenceMode;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    client_id TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,
    inflight BLOB, PRIMARY KEY (client_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
";

/// Size the WAL file is cut back to after a checkpoint.
const WAL_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// The SQLite engine behind [`SessionStore`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// `synchronous=FULL`: commits are already fsynced.
    full: bool,
}

impl From<rusqlite::Error> for PersistError {
    fn from(e: rusqlite::Error) -> Self {
        PersistError::Engine(e.to_string())
    }
}

/// SQLite integers are signed; a seq beyond `i64::MAX` is never assigned.
fn seq_sql(seq: u64) -> Result<i64, PersistError> {
    i64::try_from(seq).map_err(|_| PersistError::Encode(format!("seq {seq} out of range")))
}

impl SqliteStore {
    /// Opens (or creates) `dir/state.sqlite` in WAL mode.
    pub fn open(dir: &Path, mode: PersistenceMode) -> Result<SqliteStore, PersistError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("state.sqlite");
        let conn = Connection::open(&path)?;
        let full = mode == PersistenceMode::Sync;
        let sync = if full { "FULL" } else { "NORMAL" };
        // One writer, one process: an exclusive lock taken once (before WAL
        // mode, so the WAL index lives in heap memory, not shared memory)
        // saves the lock calls of every transaction, and a second broker on
        // the same data dir is refused instead of interleaving writes.
        conn.query_row("PRAGMA locking_mode=EXCLUSIVE", [], |_| Ok(()))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
        // The WAL is reused after each checkpoint, not shrunk; the limit
        // truncates it after a burst so the data dir does not keep the peak.
        conn.execute_batch(&format!(
            "PRAGMA synchronous={sync}; PRAGMA journal_size_limit={WAL_LIMIT_BYTES};{SCHEMA}"
        ))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path,
            full,
        })
    }

    fn apply_one(tx: &rusqlite::Transaction<'_>, op: &Op) -> Result<(), PersistError> {
        match op {
            Op::PutSession(s) => {
                tx.prepare_cached("INSERT OR REPLACE INTO sessions VALUES (?1, ?2)")?
                    .execute(params![s.client_id, record::encode(s)?])?;
            }
            Op::RemoveSession { client_id } => {
                tx.prepare_cached("DELETE FROM sessions WHERE client_id = ?1")?
                    .execute([client_id])?;
                tx.prepare_cached("DELETE FROM deliveries WHERE client_id = ?1")?
                    .execute([client_id])?;
            }
            Op::PutDelivery {
                client_id,
                seq,
                delivery,
                ..
            } => {
                tx.prepare_cached("INSERT OR REPLACE INTO deliveries VALUES (?1, ?2, ?3, NULL)")?
                    .execute(params![
                        client_id,
                        seq_sql(*seq)?,
                        record::encode(delivery)?
                    ])?;
            }
            Op::SetInflight {
                client_id,
                seq,
                packet_id,
                phase,
            } => {
                tx.prepare_cached(
                    "UPDATE deliveries SET inflight = ?3 WHERE client_id = ?1 AND seq = ?2",
                )?
                .execute(params![
                    client_id,
                    seq_sql(*seq)?,
                    record::encode(&(*packet_id, *phase))?
                ])?;
            }
            Op::RemoveDelivery { client_id, seq } => {
                tx.prepare_cached("DELETE FROM deliveries WHERE client_id = ?1 AND seq = ?2")?
                    .execute(params![client_id, seq_sql(*seq)?])?;
            }
            Op::PutRetained(m) => {
                tx.prepare_cached("INSERT OR REPLACE INTO retained VALUES (?1, ?2)")?
                    .execute(params![m.topic, record::encode(m)?])?;
            }
            Op::RemoveRetained { topic } => {
                tx.prepare_cached("DELETE FROM retained WHERE topic = ?1")?
                    .execute([topic])?;
            }
        }
        Ok(())
    }

    fn file(&self, suffix: &str) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    }
}

type Queues = HashMap<String, Vec<(u64, StoredDelivery)>>;

fn load_deliveries(conn: &Connection) -> Result<Queues, PersistError> {
    let mut out: Queues = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT client_id, seq, body, inflight FROM deliveries ORDER BY client_id, seq")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let client_id: String = row.get(0)?;
        let seq = u64::try_from(row.get::<_, i64>(1)?)
            .map_err(|_| PersistError::Corrupt("negative seq".into()))?;
        let mut d: StoredDelivery = record::decode(&row.get::<_, Vec<u8>>(2)?)?;
        if let Some(state) = row.get::<_, Option<Vec<u8>>>(3)? {
            d.inflight = Some(record::decode::<(u16, Phase)>(&state)?);
        }
        out.entry(client_id).or_default().push((seq, d));
    }
    Ok(out)
}

impl SessionStore for SqliteStore {
    fn apply(&self, batch: &[Op]) -> Result<(), PersistError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for op in batch {
            SqliteStore::apply_one(&tx, op)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn sync(&self) -> Result<(), PersistError> {
        if self.full {
            return Ok(());
        }
        // NORMAL syncs the WAL only at checkpoints; fsync it ourselves.
        let _held = self.conn.lock();
        match std::fs::File::open(self.file("-wal")) {
            Ok(f) => f.sync_data()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn close(&self) -> Result<(), PersistError> {
        // TRUNCATE: the WAL's pages go into the database file (synced) and
        // the WAL file is emptied, so the next start reads one file and the
        // data dir holds no log beside it.
        let conn = self.conn.lock();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    fn load(&self) -> Result<Loaded, PersistError> {
        let conn = self.conn.lock();
        let mut queues = load_deliveries(&conn)?;
        let mut sessions = Vec::new();
        let mut stmt = conn.prepare("SELECT body FROM sessions ORDER BY client_id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let session: StoredSession = record::decode(&row.get::<_, Vec<u8>>(0)?)?;
            let deliveries = queues.remove(&session.client_id).unwrap_or_default();
            sessions.push(LoadedSession {
                session,
                deliveries,
            });
        }
        let mut retained = Vec::new();
        let mut stmt = conn.prepare("SELECT body FROM retained ORDER BY topic")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let m: StoredMessage = record::decode(&row.get::<_, Vec<u8>>(0)?)?;
            retained.push(m);
        }
        Ok(Loaded {
            sessions,
            retained,
            expired: Vec::new(),
        })
    }

    fn disk_bytes(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(self.file(s)).ok())
            .map(|m| m.len())
            .sum()
    }
}
