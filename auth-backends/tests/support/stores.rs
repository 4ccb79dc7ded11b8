//! One fresh, isolated store of any backend on the machine's real servers,
//! with a guard that removes it again: a temporary directory for SQLite, a
//! database of its own for PostgreSQL, MariaDB and MongoDB, a key prefix of
//! its own for Redis.

use std::sync::Arc;
use std::time::Duration;

use warden_auth::AdminStore;

/// Store call timeout for the isolated stores: generous, the servers are local.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "mysql")]
    Mysql,
    #[cfg(feature = "mongodb")]
    Mongodb,
    #[cfg(feature = "redis")]
    Redis,
}

/// Removes the store's data when dropped, also when the test fails. Drop
/// the store before this guard so that no pool is still busy with it.
pub enum Cleanup {
    #[cfg(feature = "sqlite")]
    Sqlite(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres(super::pg_db::PgDb),
    #[cfg(feature = "mysql")]
    Mysql(super::mysql_db::TestDb),
    #[cfg(feature = "mongodb")]
    Mongodb(super::mongo_db::MongoDb),
    #[cfg(feature = "redis")]
    Redis(super::redis_keys::Keys),
}

/// Opens an empty store of `backend` with its schema applied.
pub async fn open_isolated(backend: Backend) -> (Arc<dyn AdminStore>, Cleanup) {
    let (store, cleanup): (Arc<dyn AdminStore>, Cleanup) = match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let config = warden_auth::StoreConfig::Sqlite {
                path: dir.path().join("warden.db"),
                timeout: Some(TIMEOUT),
            };
            (open(&config).await, Cleanup::Sqlite(dir))
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let db = super::pg_db::PgDb::create("warden_pg_iso").await;
            (open(&db.config(TIMEOUT)).await, Cleanup::Postgres(db))
        }
        #[cfg(feature = "mysql")]
        Backend::Mysql => {
            let db = super::mysql_db::TestDb::create().await;
            (open(&db.config(Some(TIMEOUT))).await, Cleanup::Mysql(db))
        }
        #[cfg(feature = "mongodb")]
        Backend::Mongodb => {
            let db = super::mongo_db::MongoDb::new("warden_iso");
            let store = super::mongo_db::open_store(&db.name, TIMEOUT).await;
            (Arc::new(store), Cleanup::Mongodb(db))
        }
        #[cfg(feature = "redis")]
        Backend::Redis => {
            let keys = super::redis_keys::Keys::new("iso");
            let url = super::redis_keys::server_url();
            let config = super::redis_keys::config(&url, &keys.prefix, TIMEOUT);
            (open(&config).await, Cleanup::Redis(keys))
        }
    };
    store.migrate().await.expect("apply the schema");
    (store, cleanup)
}

async fn open(config: &warden_auth::StoreConfig) -> Arc<dyn AdminStore> {
    warden_auth::open(config)
        .await
        .unwrap_or_else(|e| panic!("open {config:?}: {e}"))
}
