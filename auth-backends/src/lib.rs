//! Warden's policy store: the `Store`/`AdminStore` traits, their records,
//! password hashing, and one module per backend behind its cargo feature.
//!
//! # Layout
//! - `store`: the traits, `UserRecord`, `PrincipalKey`, `PolicySnapshot`, `ChangeFeed`.
//! - `error`: `StoreError` and its `kind()`; callers branch on the kind.
//! - `config`: `StoreConfig` (`backend:` picks the variant), `validate`, `open`.
//! - `password`: argon2id hashing and verifying, with blocking-pool wrappers.
//! - `device_secret`: generated 256-bit device secrets under a fast keyed hash.
//! - `foreign_hash`: Mosquitto, go-auth and bcrypt hashes, verified as they
//!   are, and which stored hashes a login should replace (`needs_rehash`).
//! - `sql/` (features `sqlite`, `postgres`, `mysql`): what the three sqlx
//!   stores share, generic over a `Dialect`: the store type `SqlStore` with
//!   the trait impls, the write transactions, the listings and exports.
//! - `sqlite/`, `postgres/`, `mysql/`: each dialect's own part. `mod.rs`
//!   (opening, and the `Dialect` impl: the login lookup, the rules of a
//!   principal, error classification, the change feed), `queries.rs` (the
//!   SQL), `watch.rs` (the change feed), plus error and row helpers where
//!   the dialect needs them. Schemas: `migrations/<dialect>/`.
//! - `mongodb/`, `redis/`: the same skeleton without SQL.
//!
//! # Rules every backend follows
//! - Every write bumps the policy version in the same transaction, so a
//!   broker that sees the version unchanged knows nothing changed.
//! - Stores keep no caches: every call reads the store. Caching (the compiled
//!   per-client policy) is the broker's business.
//! - Every call is bounded by the configured timeout; expiry is
//!   `StoreErrorKind::Unavailable`, and the broker fails closed on it.
//! - Deleting a user deletes its memberships and its `user:NAME` rules;
//!   deleting a role with members is a `Conflict`; see [`AdminStore`].
//! - No error message, log line or `Debug` output contains a password hash.

#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "redis"
))]
mod common;
pub mod config;
pub mod device_secret;
pub mod error;
pub mod foreign_hash;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod password;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod store;

pub use config::{connect, open, ConfigError, StoreConfig, DEFAULT_TIMEOUT};
pub use error::{StoreError, StoreErrorKind};
pub use store::{
    normalize_fingerprint, validate_name, validate_snapshot, AdminChange, AdminStore, ChangeFeed,
    ChangeQuery, Membership, Migrated, NewAdminChange, NewUser, PolicySnapshot, PrincipalKey,
    RoleRecord, RuleFilter, SnapshotUser, Store, UserPatch, UserRecord,
};
