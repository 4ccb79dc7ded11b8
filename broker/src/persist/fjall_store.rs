//! [`SessionStore`] on fjall, a pure-Rust LSM tree. Three partitions:
//! `sessions` (client id → session record), `deliveries` (the key layout in
//! [`super::keys`]) and `retained` (topic → message). A batch goes to the
//! journal in one atomic write and is flushed to the OS before `apply`
//! returns (`PersistMode::Buffer`: survives kill -9); `sync` fsyncs the
//! journal (`PersistMode::SyncAll`: survives power loss).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use super::keys::{self, KIND_DELIVERY, KIND_INFLIGHT};
use super::record::{self, Phase, StoredDelivery, StoredMessage, StoredSession};
use super::{Loaded, LoadedSession, Op, PersistError, SessionStore};
use crate::config::PersistenceMode;

/// Journal size at which fjall flushes memtables and drops old journals.
/// Small, so the data dir stays small under a steady put/remove workload.
const MAX_JOURNAL_BYTES: u64 = 32 * 1024 * 1024;
/// Memtable budget across partitions.
const MAX_WRITE_BUFFER_BYTES: u64 = 32 * 1024 * 1024;
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// The fjall engine behind [`SessionStore`].
pub struct FjallStore {
    dir: PathBuf,
    keyspace: Keyspace,
    sessions: PartitionHandle,
    deliveries: PartitionHandle,
    retained: PartitionHandle,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Sessions,
    Deliveries,
    Retained,
}

/// A batch's net effect: last write per key wins. fjall gives every item of
/// a batch the same sequence number, so one key must appear at most once.
#[derive(Default)]
struct Net {
    writes: HashMap<(Part, Vec<u8>), Option<Vec<u8>>>,
    /// Delivery keys written in this batch, per client, for RemoveSession.
    by_client: HashMap<String, Vec<Vec<u8>>>,
}

impl Net {
    fn put(&mut self, part: Part, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert((part, key), Some(value));
    }
    fn remove(&mut self, part: Part, key: Vec<u8>) {
        self.writes.insert((part, key), None);
    }
    fn put_delivery(&mut self, client_id: &str, key: Vec<u8>, value: Vec<u8>) {
        self.by_client
            .entry(client_id.to_owned())
            .or_default()
            .push(key.clone());
        self.put(Part::Deliveries, key, value);
    }
}

impl FjallStore {
    /// Opens (or creates) the store in `dir`. The mode does not change how
    /// fjall writes: the writer decides when to call [`SessionStore::sync`].
    pub fn open(dir: &Path, _mode: PersistenceMode) -> Result<FjallStore, PersistError> {
        std::fs::create_dir_all(dir)?;
        let keyspace = Config::new(dir)
            .manual_journal_persist(true)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
            .cache_size(CACHE_BYTES)
            .flush_workers(1)
            .compaction_workers(1)
            .open()?;
        let open = |name: &str| keyspace.open_partition(name, PartitionCreateOptions::default());
        Ok(FjallStore {
            sessions: open("sessions")?,
            deliveries: open("deliveries")?,
            retained: open("retained")?,
            keyspace,
            dir: dir.to_path_buf(),
        })
    }

    fn partition(&self, part: Part) -> &PartitionHandle {
        match part {
            Part::Sessions => &self.sessions,
            Part::Deliveries => &self.deliveries,
            Part::Retained => &self.retained,
        }
    }

    fn net_of(&self, batch: &[Op]) -> Result<Net, PersistError> {
        let mut net = Net::default();
        for op in batch {
            match op {
                Op::PutSession(s) => net.put(
                    Part::Sessions,
                    s.client_id.as_bytes().to_vec(),
                    record::encode(s)?,
                ),
                Op::RemoveSession { client_id } => {
                    net.remove(Part::Sessions, client_id.as_bytes().to_vec());
                    for kv in self.deliveries.prefix(keys::session_prefix(client_id)) {
                        let (k, _) = kv?;
                        net.remove(Part::Deliveries, k.to_vec());
                    }
                    for k in net.by_client.remove(&**client_id).unwrap_or_default() {
                        net.remove(Part::Deliveries, k);
                    }
                }
                Op::PutDelivery {
                    client_id,
                    seq,
                    delivery,
                    ..
                } => {
                    let key = keys::delivery_key(client_id, *seq, KIND_DELIVERY);
                    // No tombstone for an older inflight key: a seq is never
                    // reused while the session lives.
                    net.put_delivery(client_id, key, record::encode(delivery)?);
                }
                Op::SetInflight {
                    client_id,
                    seq,
                    packet_id,
                    phase,
                } => {
                    let key = keys::delivery_key(client_id, *seq, KIND_INFLIGHT);
                    net.put_delivery(client_id, key, record::encode(&(*packet_id, *phase))?);
                }
                Op::RemoveDelivery { client_id, seq } => {
                    for kind in [KIND_DELIVERY, KIND_INFLIGHT] {
                        net.remove(Part::Deliveries, keys::delivery_key(client_id, *seq, kind));
                    }
                }
                Op::PutRetained(m) => net.put(
                    Part::Retained,
                    m.topic.as_bytes().to_vec(),
                    record::encode(m)?,
                ),
                Op::RemoveRetained { topic } => {
                    net.remove(Part::Retained, topic.as_bytes().to_vec())
                }
            }
        }
        Ok(net)
    }

    fn load_deliveries(&self) -> Result<HashMap<String, Vec<(u64, StoredDelivery)>>, PersistError> {
        let mut out: HashMap<String, Vec<(u64, StoredDelivery)>> = HashMap::new();
        for kv in self.deliveries.iter() {
            let (k, v) = kv?;
            let Some((client_id, seq, kind)) = keys::parse_delivery_key(&k) else {
                return Err(PersistError::Corrupt("malformed delivery key".into()));
            };
            let list = match out.get_mut(client_id) {
                Some(list) => list,
                None => out.entry(client_id.to_owned()).or_default(),
            };
            if kind == KIND_DELIVERY {
                list.push((seq, record::decode(&v)?));
                continue;
            }
            // The inflight key sorts right after its delivery; one without a
            // delivery (removed in an earlier batch) is ignored.
            let state: (u16, Phase) = record::decode(&v)?;
            if let Some((s, d)) = list.last_mut() {
                if *s == seq {
                    d.inflight = Some(state);
                }
            }
        }
        Ok(out)
    }
}

impl SessionStore for FjallStore {
    fn apply(&self, batch: &[Op]) -> Result<(), PersistError> {
        let net = self.net_of(batch)?;
        let mut b = self.keyspace.batch().durability(Some(PersistMode::Buffer));
        for ((part, key), value) in net.writes {
            match value {
                Some(v) => b.insert(self.partition(part), key, v),
                None => b.remove(self.partition(part), key),
            }
        }
        b.commit()?;
        Ok(())
    }

    fn sync(&self) -> Result<(), PersistError> {
        self.keyspace.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn load(&self) -> Result<Loaded, PersistError> {
        let mut deliveries = self.load_deliveries()?;
        let mut sessions = Vec::new();
        for kv in self.sessions.iter() {
            let (_, v) = kv?;
            let session: StoredSession = record::decode(&v)?;
            let deliveries = deliveries.remove(&session.client_id).unwrap_or_default();
            sessions.push(LoadedSession {
                session,
                deliveries,
            });
        }
        let mut retained = Vec::new();
        for kv in self.retained.iter() {
            let (_, v) = kv?;
            let m: StoredMessage = record::decode(&v)?;
            retained.push(m);
        }
        Ok(Loaded {
            sessions,
            retained,
            expired: Vec::new(),
        })
    }

    fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }
}

/// Bytes of every file under `dir` (fjall's own count leaves out parts of
/// the journal).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
