//! The schema, MongoDB style: the collections, their indexes and the two
//! counter documents (and the admin change counter), created on start (and by `migrate`) when missing.
//! Every step is idempotent, so two brokers starting at once are harmless.
//!
//! Collections are created up front because real MongoDB refuses to create
//! one inside a multi-document transaction before 4.4 and on sharded
//! clusters.

use mongodb::bson::Document;
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};

use crate::error::{StoreError, StoreErrorKind};

use super::docs::db;
use super::queries as q;

/// MongoDB's NamespaceExists: another process created it first.
const NAMESPACE_EXISTS: i32 = 48;

/// Returns the collections it created.
pub(super) async fn ensure(database: &Database) -> Result<Vec<&'static str>, StoreError> {
    let existing = database.list_collection_names().await.map_err(db)?;
    let mut created = Vec::new();
    for name in q::ALL_COLLECTIONS {
        if existing.iter().any(|e| e == name) {
            continue;
        }
        match database.create_collection(name).await {
            Ok(()) => created.push(name),
            Err(err) => {
                let raced = matches!(err.kind.as_ref(),
                    mongodb::error::ErrorKind::Command(c) if c.code == NAMESPACE_EXISTS);
                if !raced {
                    return Err(db(err));
                }
            }
        }
    }
    for (collection, name, keys) in q::unique_indexes() {
        create_index(database, collection, name, keys, true).await?;
    }
    for (collection, name, keys) in q::lookup_indexes() {
        create_index(database, collection, name, keys, false).await?;
    }
    let meta = database.collection::<Document>(q::META);
    for name in [q::VERSION_ID, q::RULE_COUNTER_ID, q::AUDIT_COUNTER_ID] {
        let upserted = meta
            .update_one(q::counter(name), q::init_counter())
            .upsert(true)
            .await
            .map_err(db);
        match upserted {
            // Another process created it between our upsert's match and insert.
            Err(e) if e.kind() == StoreErrorKind::Conflict => {}
            other => {
                other?;
            }
        }
    }
    Ok(created)
}

async fn create_index(
    database: &Database,
    collection: &str,
    name: &str,
    keys: Document,
    unique: bool,
) -> Result<(), StoreError> {
    let options = IndexOptions::builder()
        .name(name.to_owned())
        .unique(unique)
        .build();
    let model = IndexModel::builder().keys(keys).options(options).build();
    database
        .collection::<Document>(collection)
        .create_index(model)
        .await
        .map_err(db)?;
    Ok(())
}
