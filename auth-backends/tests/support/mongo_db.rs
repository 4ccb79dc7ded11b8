//! MongoDB test databases on the server `WARDEN_TEST_MONGODB_URL` names, by
//! default the wire-compatible test server that `scripts/mongo-test-server`
//! starts on port 27018. Each test works in a database of its own.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use warden_auth::mongodb::MongoStore;

const DEFAULT_URL: &str = "mongodb://127.0.0.1:27018/?directConnection=true";

pub fn base_url() -> String {
    std::env::var("WARDEN_TEST_MONGODB_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// (scheme://, hosts, the rest from '?' on) of a MongoDB URL.
fn split_url(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, tail) = rest.split_at(end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    (format!("{scheme}://"), hosts.to_owned(), query.to_owned())
}

/// The base URL with `database` as its path.
pub fn url_for(database: &str) -> String {
    let (scheme, hosts, query) = split_url(&base_url());
    format!("{scheme}{hosts}/{database}{query}")
}

/// The same, with the hosts replaced (for the proxy).
pub fn url_via(addr: SocketAddr, database: &str) -> String {
    let (scheme, _, query) = split_url(&base_url());
    format!("{scheme}{addr}/{database}{query}")
}

pub fn server_addr() -> SocketAddr {
    let (_, hosts, _) = split_url(&base_url());
    let first = hosts.split(',').next().unwrap_or_default();
    let first = first.rsplit('@').next().unwrap_or_default();
    let with_port = if first.contains(':') {
        first.to_owned()
    } else {
        format!("{first}:27017")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve {with_port}"))
}

/// Fails the test with the way to start the server when nothing answers.
pub async fn require_server() {
    let addr = server_addr();
    let connect = tokio::net::TcpStream::connect(addr);
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(_)) => {}
        _ => panic!(
            "no MongoDB server answers at {addr} ({}); start the test server with \
             `scripts/mongo-test-server` or set WARDEN_TEST_MONGODB_URL",
            base_url()
        ),
    }
}

pub async fn open_store(database: &str, timeout: Duration) -> MongoStore {
    require_server().await;
    MongoStore::open(&url_for(database), timeout)
        .await
        .unwrap_or_else(|e| panic!("open {database}: {e}"))
}

/// Drops `database` and checks that it is gone.
pub async fn drop_database(database: &str) {
    let client = mongodb::Client::with_uri_str(base_url())
        .await
        .expect("client");
    client
        .database(database)
        .drop()
        .await
        .expect("drop database");
    let left = client.list_database_names().await.expect("list databases");
    assert!(
        !left.iter().any(|d| d == database),
        "{database} left behind"
    );
}

/// A database name for one test, dropped when the guard goes (also when the
/// test fails).
pub struct MongoDb {
    pub name: String,
}

impl MongoDb {
    pub fn new(prefix: &str) -> MongoDb {
        MongoDb {
            name: super::unique_name(prefix),
        }
    }
}

impl Drop for MongoDb {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        super::block_on_aside(async move {
            let dropped = async {
                let client = mongodb::Client::with_uri_str(base_url()).await?;
                client.database(&name).drop().await
            };
            if let Err(e) = dropped.await {
                eprintln!("could not drop {name}: {e}");
            }
        });
    }
}
