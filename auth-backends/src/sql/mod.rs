//! What the three sqlx stores (SQLite, PostgreSQL, MySQL/MariaDB) share.
//!
//! The three differ in their driver, their SQL text and a handful of
//! behaviours; everything else (the write transactions, the listings, the
//! export, the timeouts) is written once here, generic over a [`Dialect`].
//!
//! - `dialect`: the [`Dialect`] trait, the one thing each backend implements.
//! - `queries`: the SQL that reads the same in every dialect, and [`Sql`],
//!   the statements each dialect spells its own way.
//! - `store`: [`SqlStore`], the store type, with the `Store` and `AdminStore`
//!   impls and the transaction plumbing.
//! - `reads`: the reads of listings and exports.
//! - `writes`: the bodies of the write transactions.
//! - `rows`: user and rule rows decoded into records.
//! - `reach`: the first connection of a network store, whose failure names
//!   the address and the cause.
//!
//! The generic code needs sqlx to encode and decode a few column types and
//! to run statements on a connection. Rust does not carry those requirements
//! from a trait to its users, so each generic impl repeats the same `where`
//! list; a concrete dialect satisfies it without saying anything.

mod dialect;
pub(crate) mod queries;
pub(crate) mod reach;
mod reads;
mod rows;
mod store;
mod writes;

pub use dialect::Dialect;
pub(crate) use queries::Sql;
pub(crate) use rows::{rule, user};
pub use store::SqlStore;
