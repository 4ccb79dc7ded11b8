//! MariaDB/MySQL test databases on the server `WARDEN_TEST_MYSQL_URL` names
//! (default `mysql://root@127.0.0.1:3306/test`): one per test, dropped again
//! by [`TestDb`]'s `Drop`, also when the test fails.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use sqlx::Connection;
use warden_auth::StoreConfig;

pub fn base_url() -> String {
    std::env::var("WARDEN_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// `mysql://user@host:port/db?query` -> (`mysql://user@host:port`, `?query` or "").
pub fn split_url(url: &str) -> (String, String) {
    let (main, query) = match url.split_once('?') {
        Some((main, query)) => (main, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = main.find("://").map_or(0, |i| i + 3);
    let server = match main[scheme_end..].find('/') {
        Some(slash) => &main[..scheme_end + slash],
        None => main,
    };
    (server.to_owned(), query)
}

/// The server's address, for the proxy.
pub fn server_addr() -> SocketAddr {
    let (server, _) = split_url(&base_url());
    let host_port = server
        .split_once("://")
        .map_or(server.as_str(), |(_, rest)| rest);
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, hp)| hp);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:3306")
    };
    with_port
        .to_socket_addrs()
        .expect("resolve the MySQL server")
        .next()
        .expect("an address for the MySQL server")
}

/// A database of its own for one test, dropped when the guard goes.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = super::unique_name("warden_mysql");
        let mut admin = sqlx::MySqlConnection::connect(&base_url())
            .await
            .expect("connect to the MySQL test server (is mariadbd running?)");
        sqlx::query(&format!("CREATE DATABASE `{name}`"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.ok();
        TestDb { name }
    }

    /// The test database's URL on `server` (`mysql://user@host:port`).
    pub fn url_on(&self, server: &str) -> String {
        let (_, query) = split_url(&base_url());
        format!("{server}/{}{query}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_on(&split_url(&base_url()).0)
    }

    pub fn config(&self, timeout: Option<Duration>) -> StoreConfig {
        StoreConfig::Mysql {
            url: self.url(),
            pool: Some(4),
            timeout,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        super::block_on_aside(async move {
            if let Ok(mut admin) = sqlx::MySqlConnection::connect(&base_url()).await {
                drop_database(&mut admin, &name).await;
            }
        });
    }
}

/// The test's pools live in the blocked test runtime and cannot close their
/// connections; kill them so that no lock they hold delays the drop.
async fn drop_database(admin: &mut sqlx::MySqlConnection, name: &str) {
    let ids: Vec<u64> =
        sqlx::query_scalar("SELECT id FROM information_schema.processlist WHERE db = ?")
            .bind(name)
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for id in ids {
        let _ = sqlx::query(&format!("KILL {id}"))
            .execute(&mut *admin)
            .await;
    }
    let _ = sqlx::query("SET SESSION lock_wait_timeout = 10")
        .execute(&mut *admin)
        .await;
    let drop = format!("DROP DATABASE IF EXISTS `{name}`");
    if let Err(e) = sqlx::query(&drop).execute(&mut *admin).await {
        eprintln!("could not drop {name}: {e}");
    }
}
