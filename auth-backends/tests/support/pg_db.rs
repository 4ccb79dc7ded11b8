//! PostgreSQL test databases: the server is the one `WARDEN_TEST_POSTGRES_URL`
//! names (default: the local `postgres` database); each test gets a database
//! of its own, dropped again by [`PgDb`]'s `Drop`, also when the test fails.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use warden_auth::StoreConfig;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn admin_url() -> String {
    std::env::var("WARDEN_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database path replaced by `db` and, if given, its
/// host:port replaced by `addr`. Expects scheme://[user@]host:port/db[?query].
pub fn url_for(db: &str, addr: Option<&str>) -> String {
    let url = admin_url();
    let (scheme, rest) = url.split_once("://").expect("admin url has a scheme");
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail.split_once('?').map(|(_, q)| q);
    let authority = match (addr, authority.rsplit_once('@')) {
        (Some(addr), Some((user, _))) => format!("{user}@{addr}"),
        (Some(addr), None) => addr.to_owned(),
        (None, _) => authority.to_owned(),
    };
    match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    }
}

pub fn config(url: String, timeout: Duration) -> StoreConfig {
    StoreConfig::Postgres {
        url,
        pool: Some(4),
        timeout: Some(timeout),
    }
}

pub async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url())
        .await
        .expect("connect to the test PostgreSQL server (WARDEN_TEST_POSTGRES_URL)")
}

/// The server's address from the admin URL (host:port, default port 5432).
pub fn admin_server_addr() -> SocketAddr {
    let url = admin_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    host_port
        .to_socket_addrs()
        .expect("resolve the test server")
        .next()
        .expect("the test server has an address")
}

/// A database of its own for one test, dropped (WITH FORCE, so open pools
/// do not hold it) when the guard goes.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub async fn create(prefix: &str) -> PgDb {
        let name = super::unique_name(prefix);
        let mut conn = admin().await;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .expect("create test database");
        conn.close().await.ok();
        PgDb { name }
    }

    pub fn config(&self, timeout: Duration) -> StoreConfig {
        config(url_for(&self.name, None), timeout)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        super::block_on_aside(async move {
            let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            match PgConnection::connect(&admin_url()).await {
                Ok(mut conn) => {
                    if let Err(e) = conn.execute(drop.as_str()).await {
                        eprintln!("could not drop {name}: {e}");
                    }
                }
                Err(e) => eprintln!("could not connect to drop {name}: {e}"),
            }
        });
    }
}
