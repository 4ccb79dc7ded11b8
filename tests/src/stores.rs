//! A fresh, isolated store of each backend for one end-to-end test: its own
//! PostgreSQL or MariaDB database, MongoDB database or Redis key prefix on
//! the machine's real servers, removed again when the test ends.
//!
//! The servers: PostgreSQL 127.0.0.1:5432 (user postgres, trust), MariaDB
//! 127.0.0.1:3306 (root, no password), Redis 127.0.0.1:6379, and the
//! MongoDB-wire test server that `scripts/mongo-test-server` starts on
//! 127.0.0.1:27018.

use std::net::SocketAddr;
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
    Mongodb,
    Redis,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Mongodb => "mongodb",
            Backend::Redis => "redis",
        }
    }

    /// Where the real server listens (None for SQLite, a file).
    pub fn server(self) -> Option<SocketAddr> {
        let port = match self {
            Backend::Sqlite => return None,
            Backend::Postgres => 5432,
            Backend::Mysql => 3306,
            Backend::Mongodb => 27018,
            Backend::Redis => 6379,
        };
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

/// One provisioned store; dropping it removes the database or keys.
pub struct TestStore {
    pub backend: Backend,
    /// The `store:` block for the broker config (a YAML flow mapping).
    pub yaml: String,
    name: String,
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos:x}", std::process::id())
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestStore {
    /// Provision a store of `backend`. With `port`, the broker reaches the
    /// server through that port (a test proxy) instead of the server's own.
    /// `timeout` is the store call timeout, e.g. "1s".
    pub fn new(backend: Backend, port: Option<u16>, timeout: &str) -> TestStore {
        let name = unique("wdn_e2e");
        let port = port.or(backend.server().map(|a| a.port())).unwrap_or(0);
        let yaml = match backend {
            // The harness puts a relative SQLite path in the test's data dir.
            Backend::Sqlite => format!("{{ backend: sqlite, path: warden.db, timeout: {timeout} }}"),
            Backend::Postgres => {
                run("psql", &["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", &format!("CREATE DATABASE {name}")]);
                format!("{{ backend: postgres, url: \"postgres://postgres@127.0.0.1:{port}/{name}\", timeout: {timeout} }}")
            }
            Backend::Mysql => {
                run("mariadb", &["-h", "127.0.0.1", "-u", "root", "-e", &format!("CREATE DATABASE {name}")]);
                format!("{{ backend: mysql, url: \"mysql://root@127.0.0.1:{port}/{name}\", timeout: {timeout} }}")
            }
            Backend::Mongodb => format!(
                "{{ backend: mongodb, url: \"mongodb://127.0.0.1:{port}/{name}?directConnection=true\", timeout: {timeout} }}"
            ),
            Backend::Redis => format!(
                "{{ backend: redis, url: \"redis://127.0.0.1:{port}/0\", prefix: \"{name}:\", timeout: {timeout} }}"
            ),
        };
        TestStore {
            backend,
            yaml,
            name,
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        // Best effort: a failed cleanup must not hide the test's own result.
        let name = &self.name;
        let _ = match self.backend {
            Backend::Postgres => Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .output(),
            Backend::Mysql => Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-u", "root", "-e"])
                .arg(format!("DROP DATABASE IF EXISTS {name}"))
                .output(),
            Backend::Redis => Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "redis-cli -h 127.0.0.1 --scan --pattern '{name}:*' | xargs -r redis-cli -h 127.0.0.1 DEL"
                ))
                .output(),
            // The MongoDB-wire test server keeps data in memory only; the
            // database name is unique, so nothing collides.
            Backend::Sqlite | Backend::Mongodb => return,
        };
    }
}
