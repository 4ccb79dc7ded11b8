//! The MongoDB store's collection names, filters and update documents,
//! written out in one place. Values are always bound as BSON values, never
//! spliced into operator names, so a name like `$x` or `a.b` is just data.

use mongodb::bson::{doc, Bson, Document};
use warden_policy::Subject;

pub const USERS: &str = "users";
pub const ROLES: &str = "roles";
pub const MEMBERSHIPS: &str = "memberships";
pub const RULES: &str = "rules";
/// Admin changes recorded by the CLI: `{id, at_ms, user, host, what}`.
pub const ADMIN_CHANGES: &str = "admin_changes";
/// Counters: the policy version and the last rule id handed out, keyed by
/// `name` (not `_id`: some wire-compatible servers accept only ObjectIds
/// there).
pub const META: &str = "meta";

pub const ALL_COLLECTIONS: [&str; 6] = [USERS, ROLES, MEMBERSHIPS, RULES, META, ADMIN_CHANGES];

/// Import clears children first, as the SQL stores do.
pub const CLEAR_ORDER: [&str; 4] = [RULES, MEMBERSHIPS, ROLES, USERS];

pub const VERSION_ID: &str = "policy_version";
pub const RULE_COUNTER_ID: &str = "rule_id";
pub const AUDIT_COUNTER_ID: &str = "audit_id";

/// The admin changes with an id above `after`. The caller filters by time:
/// with the time bound in the filter too, the MongoDB-wire test server
/// answered nothing, and admin changes are few.
pub fn admin_changes(after: i64) -> Document {
    doc! { "id": { "$gt": after } }
}

pub fn ping() -> Document {
    doc! { "ping": 1 }
}

pub fn hello() -> Document {
    doc! { "hello": 1 }
}

pub fn counter(name: &str) -> Document {
    doc! { "name": name }
}

pub fn all() -> Document {
    Document::new()
}

/// Creates a counter at 0 if it is missing; never changes an existing one.
pub fn init_counter() -> Document {
    doc! { "$setOnInsert": { "value": 0_i64 } }
}

pub fn increment() -> Document {
    doc! { "$inc": { "value": 1_i64 } }
}

/// Import raises the rule counter to the largest imported id, so new ids
/// continue above it and a removed id is never handed out again.
pub fn raise_to(value: i64) -> Document {
    doc! { "$max": { "value": value } }
}

pub fn user(username: &str) -> Document {
    doc! { "username": username }
}

/// The user only while its hash is still `expected`: the login rehash's
/// compare-and-set filter (a string compare; a null hash never matches).
pub fn user_with_hash(username: &str, expected: &str) -> Document {
    doc! { "username": username, "password_hash": expected }
}

pub fn set_password_hash(hash: &str) -> Document {
    doc! { "$set": { "password_hash": hash } }
}

pub fn role(name: &str) -> Document {
    doc! { "name": name }
}

pub fn membership(role: &str, username: &str) -> Document {
    doc! { "role": role, "username": username }
}

pub fn memberships_of_user(username: &str) -> Document {
    doc! { "username": username }
}

pub fn members_of_role(role: &str) -> Document {
    doc! { "role": role }
}

pub fn rule(id: i64) -> Document {
    doc! { "id": id }
}

/// Rules are stored with their subject in its text form (`user:NAME`,
/// `role:NAME`, `everyone`), so one equality or `$in` finds them.
pub fn rules_of(subject: &Subject) -> Document {
    doc! { "subject": subject.to_string() }
}

/// The rules for a user (None: anonymous), its roles, and everyone.
pub fn rules_for(username: Option<&str>, roles: &[String]) -> Document {
    let mut subjects: Vec<Bson> = Vec::with_capacity(roles.len() + 2);
    subjects.push(Bson::String(Subject::Everyone.to_string()));
    if let Some(name) = username {
        subjects.push(Bson::String(format!("user:{name}")));
    }
    subjects.extend(roles.iter().map(|r| Bson::String(format!("role:{r}"))));
    doc! { "subject": { "$in": subjects } }
}

/// Insert `fields` only when nothing matches the key: the upsert reports
/// whether it inserted, which is how a duplicate is detected on servers that
/// do not enforce unique indexes (the unique index still guards real MongoDB
/// against two concurrent upserts).
pub fn insert_if_missing(fields: Document) -> Document {
    doc! { "$setOnInsert": fields }
}

pub fn set(fields: Document) -> Document {
    doc! { "$set": fields }
}

/// The unique indexes: (collection, index name, keys).
pub fn unique_indexes() -> [(&'static str, &'static str, Document); 6] {
    [
        (USERS, "username_unique", doc! { "username": 1 }),
        (ROLES, "name_unique", doc! { "name": 1 }),
        (
            MEMBERSHIPS,
            "role_username_unique",
            doc! { "role": 1, "username": 1 },
        ),
        (RULES, "id_unique", doc! { "id": 1 }),
        (META, "name_unique", doc! { "name": 1 }),
        (ADMIN_CHANGES, "id_unique", doc! { "id": 1 }),
    ]
}

/// Lookup indexes: a user's memberships, and rules by subject.
pub fn lookup_indexes() -> [(&'static str, &'static str, Document); 2] {
    [
        (MEMBERSHIPS, "username", doc! { "username": 1 }),
        (RULES, "subject_id", doc! { "subject": 1, "id": 1 }),
    ]
}

/// The change-stream filter: writes to the counters (the follower keeps
/// the version document's and ignores the rule counter's).
pub fn counter_changes() -> Vec<Document> {
    vec![doc! { "$match": { "operationType": { "$in": ["insert", "update", "replace"] } } }]
}
