//! Helpers shared by the backend test files (not the suite itself): unique
//! names, the cuttable proxy, and per backend the way to make (and remove)
//! an isolated store on the machine's real servers.
#![allow(dead_code)]

// Not every test binary cuts a connection.
#[allow(unused_imports)]
pub use warden_e2e::proxy;

#[cfg(feature = "mongodb")]
pub mod mongo_db;
#[cfg(feature = "mysql")]
pub mod mysql_db;
#[cfg(feature = "postgres")]
pub mod pg_db;
#[cfg(feature = "redis")]
pub mod redis_keys;
pub mod stores;

/// A name unique to this test run, for databases, key prefixes and the like:
/// tests run in parallel against the same servers and must not collide.
pub fn unique_name(prefix: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos:x}_{seq}", std::process::id())
}

/// Runs `cleanup` to completion from a `Drop`: the test's own runtime cannot
/// block on I/O there, so the future runs on a thread with a runtime of its
/// own. Never panics (a panic in a `Drop` during unwinding would abort).
pub fn block_on_aside<F>(cleanup: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let worker = std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(cleanup),
            Err(e) => eprintln!("no runtime for cleanup: {e}"),
        }
    });
    let _ = worker.join();
}
