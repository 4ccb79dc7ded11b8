//! One write: the operations a write body runs, in a transaction when the
//! server has them (replica set or sharded cluster) and one by one when not.
//!
//! `finish` bumps the version and commits. Without transactions the data
//! goes first and the version last, so a poller that sees a new version
//! reads the new data; if a body fails after changing something, `fail`
//! still bumps the version so that pollers reload what was written.

use mongodb::bson::{Bson, Document};
use mongodb::error::Error as DriverError;
use mongodb::options::ReturnDocument;
use mongodb::{ClientSession, Collection, Database};

use crate::error::StoreError;

use super::docs::{db, int, is_transient};
use super::queries as q;

/// Runs a built action with the writer's session, if it has one.
macro_rules! run {
    ($w:ident, $action:expr) => {{
        let result = match $w.session.as_mut() {
            Some(session) => $action.session(session).await,
            None => $action.await,
        };
        $w.check(result)
    }};
}

pub(super) struct Writer<'a> {
    database: &'a Database,
    session: Option<ClientSession>,
    /// Something was written (matters only without a transaction).
    dirty: bool,
    /// The server asked for the whole transaction to be retried.
    pub(super) transient: bool,
}

impl<'a> Writer<'a> {
    pub(super) async fn begin(
        database: &'a Database,
        transactions: bool,
    ) -> Result<Writer<'a>, StoreError> {
        let session = if transactions {
            let mut session = database.client().start_session().await.map_err(db)?;
            session.start_transaction().await.map_err(db)?;
            Some(session)
        } else {
            None
        };
        Ok(Writer {
            database,
            session,
            dirty: false,
            transient: false,
        })
    }

    fn check<T>(&mut self, result: Result<T, DriverError>) -> Result<T, StoreError> {
        result.map_err(|err| {
            self.transient |= is_transient(&err);
            db(err)
        })
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.database.collection(name)
    }

    pub(super) async fn find_one(
        &mut self,
        collection: &str,
        filter: Document,
    ) -> Result<Option<Document>, StoreError> {
        let coll = self.coll(collection);
        run!(self, coll.find_one(filter))
    }

    pub(super) async fn exists(
        &mut self,
        collection: &str,
        filter: Document,
    ) -> Result<bool, StoreError> {
        Ok(self.find_one(collection, filter).await?.is_some())
    }

    pub(super) async fn count(
        &mut self,
        collection: &str,
        filter: Document,
    ) -> Result<u64, StoreError> {
        let coll = self.coll(collection);
        run!(self, coll.count_documents(filter))
    }

    /// Inserts `fields` unless a document matches `key`; true if inserted.
    pub(super) async fn insert_if_missing(
        &mut self,
        collection: &str,
        key: Document,
        fields: Document,
    ) -> Result<bool, StoreError> {
        let coll = self.coll(collection);
        let update = q::insert_if_missing(fields);
        let result = run!(self, coll.update_one(key, update).upsert(true))?;
        let inserted = result.upserted_id.is_some();
        self.dirty |= inserted;
        Ok(inserted)
    }

    /// Returns how many documents matched.
    pub(super) async fn update_one(
        &mut self,
        collection: &str,
        filter: Document,
        update: Document,
    ) -> Result<u64, StoreError> {
        let coll = self.coll(collection);
        let result = run!(self, coll.update_one(filter, update))?;
        self.dirty |= result.matched_count > 0;
        Ok(result.matched_count)
    }

    pub(super) async fn insert_one(
        &mut self,
        collection: &str,
        document: Document,
    ) -> Result<(), StoreError> {
        let coll = self.coll(collection);
        run!(self, coll.insert_one(document))?;
        self.dirty = true;
        Ok(())
    }

    pub(super) async fn insert_many(
        &mut self,
        collection: &str,
        documents: Vec<Document>,
    ) -> Result<(), StoreError> {
        // The driver refuses an empty batch.
        if documents.is_empty() {
            return Ok(());
        }
        let coll = self.coll(collection);
        self.dirty = true;
        run!(self, coll.insert_many(documents))?;
        Ok(())
    }

    pub(super) async fn delete_one(
        &mut self,
        collection: &str,
        filter: Document,
    ) -> Result<u64, StoreError> {
        let coll = self.coll(collection);
        let result = run!(self, coll.delete_one(filter))?;
        self.dirty |= result.deleted_count > 0;
        Ok(result.deleted_count)
    }

    pub(super) async fn delete_many(
        &mut self,
        collection: &str,
        filter: Document,
    ) -> Result<u64, StoreError> {
        let coll = self.coll(collection);
        let result = run!(self, coll.delete_many(filter))?;
        self.dirty |= result.deleted_count > 0;
        Ok(result.deleted_count)
    }

    /// `$inc` on a counter document, returning the new value.
    pub(super) async fn increment(&mut self, counter: &str) -> Result<i64, StoreError> {
        let coll = self.coll(q::META);
        let action = coll
            .find_one_and_update(q::counter(counter), q::increment())
            .upsert(true)
            .return_document(ReturnDocument::After);
        let after = run!(self, action)?;
        let after = after.ok_or_else(|| StoreError::corrupt("counter", counter.to_owned()))?;
        int(&after, "counter", "value")
    }

    pub(super) async fn raise_counter(&mut self, counter: &str, to: i64) -> Result<(), StoreError> {
        let coll = self.coll(q::META);
        run!(
            self,
            coll.update_one(q::counter(counter), q::raise_to(to))
                .upsert(true)
        )?;
        Ok(())
    }

    /// Bump the version and commit: the last step of every write.
    pub(super) async fn finish(mut self) -> Result<(), StoreError> {
        self.increment(q::VERSION_ID).await?;
        if let Some(mut session) = self.session.take() {
            let result = session.commit_transaction().await;
            self.check(result)?;
        }
        Ok(())
    }

    /// The body failed: abort the transaction, or, without one, bump the
    /// version if anything was already written. Errors here are logged and
    /// dropped: the body's error is the one the caller needs.
    pub(super) async fn fail(mut self) {
        if let Some(mut session) = self.session.take() {
            if let Err(err) = session.abort_transaction().await {
                tracing::debug!(error = %err, "mongodb: abort_transaction failed");
            }
        } else if self.dirty {
            if let Err(err) = self.increment(q::VERSION_ID).await {
                tracing::warn!(error = %err, "mongodb: a failed write left changes and the version bump failed");
            }
        }
    }
}

/// A BSON value for an optional string.
pub(super) fn opt_string(value: Option<&str>) -> Bson {
    value.map_or(Bson::Null, |v| Bson::String(v.to_owned()))
}
