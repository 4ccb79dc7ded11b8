//! The Redis key schema (the Redis store's stand-in for migrations).
//!
//! Every key starts with the configured prefix `P` (default `warden:`).
//! A user or role name is written as `{byte length}:{name}`, so a name may
//! hold any character, `:` included, and no name can produce another
//! name's key: the length says where the name ends.
//!
//! | key                         | type       | holds                                           |
//! |-----------------------------|------------|-------------------------------------------------|
//! | `P schema`                  | string     | schema version of this layout ([`SCHEMA`])      |
//! | `P version`                 | string     | the policy version (INCR on every write)        |
//! | `P rule_id`                 | string     | last rule id handed out (INCR; never lowered)   |
//! | `P users`                   | set        | user names                                      |
//! | `P user:{n}:{name}`         | hash       | `enabled`, `superuser` ("0"/"1"), `password_hash` (absent: certificate-only), `cert_fingerprint` (absent: not pinned) |
//! | `P user:{n}:{name}:roles`   | set        | the user's role names                           |
//! | `P user:{n}:{name}:rules`   | set        | ids of the rules whose subject is the user      |
//! | `P roles`                   | set        | role names                                      |
//! | `P role:{n}:{name}:members` | set        | the role's user names                           |
//! | `P role:{n}:{name}:rules`   | set        | ids of the rules whose subject is the role      |
//! | `P everyone:rules`          | set        | ids of the rules for everyone                   |
//! | `P rules`                   | sorted set | every rule id, scored by id                     |
//! | `P rule:{id}`               | hash       | `id`, `effect`, `kind`, `name`, `actions`, `pattern`, optional `max_qos`, `retain` |
//! | `P changes`                 | channel    | pub/sub: each new policy version, as decimal    |
//! | `P audit_id`                | string     | last admin change id handed out (INCR)          |
//! | `P audit`                   | sorted set | admin changes scored by id; each member is `{id}:{JSON of at_ms, user, host, what}` |
//!
//! Rule fields use the SQL backends' column encodings (`crate::common`):
//! `kind` is user/role/everyone (everyone's `name` is empty), `actions` is
//! comma-separated, `max_qos` 0..2, `retain` "0"/"1".
//!
//! The Lua scripts in `queries.rs` build the same keys (`named()` in their
//! prelude); the functions here are for the Rust side and the tests, which
//! check that both agree.

/// The layout version written to `P schema`; bump it when the layout changes.
pub const SCHEMA: u32 = 1;

fn named(prefix: &str, kind: &str, name: &str) -> String {
    format!("{prefix}{kind}:{}:{name}", name.len())
}

pub fn version(prefix: &str) -> String {
    format!("{prefix}version")
}

pub fn schema(prefix: &str) -> String {
    format!("{prefix}schema")
}

pub fn rule_counter(prefix: &str) -> String {
    format!("{prefix}rule_id")
}

pub fn users(prefix: &str) -> String {
    format!("{prefix}users")
}

pub fn roles(prefix: &str) -> String {
    format!("{prefix}roles")
}

pub fn rules(prefix: &str) -> String {
    format!("{prefix}rules")
}

pub fn user(prefix: &str, name: &str) -> String {
    named(prefix, "user", name)
}

pub fn user_roles(prefix: &str, name: &str) -> String {
    named(prefix, "user", name) + ":roles"
}

pub fn user_rules(prefix: &str, name: &str) -> String {
    named(prefix, "user", name) + ":rules"
}

pub fn role_members(prefix: &str, name: &str) -> String {
    named(prefix, "role", name) + ":members"
}

pub fn role_rules(prefix: &str, name: &str) -> String {
    named(prefix, "role", name) + ":rules"
}

pub fn everyone_rules(prefix: &str) -> String {
    format!("{prefix}everyone:rules")
}

pub fn rule(prefix: &str, id: u64) -> String {
    format!("{prefix}rule:{id}")
}

pub fn changes(prefix: &str) -> String {
    format!("{prefix}changes")
}

pub fn audit(prefix: &str) -> String {
    format!("{prefix}audit")
}

pub fn audit_counter(prefix: &str) -> String {
    format!("{prefix}audit_id")
}

/// A SCAN/KEYS pattern matching every key under `prefix` (glob characters
/// in the prefix are escaped).
pub fn all_pattern(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Names chosen to collide under a naive `user:{name}:roles` layout.
    const TRICKY: [&str; 8] = [
        "a",
        "a:roles",
        "a:rules",
        "1:a",
        "1:a:roles",
        "7:a:roles",
        "a:1:a",
        "ä:x",
    ];

    #[test]
    fn keys_of_different_names_never_collide() {
        let mut seen = BTreeSet::new();
        for name in TRICKY {
            for key in [
                user("p:", name),
                user_roles("p:", name),
                user_rules("p:", name),
                role_members("p:", name),
                role_rules("p:", name),
            ] {
                assert!(seen.insert(key.clone()), "{key:?} built twice");
            }
        }
        for fixed in [
            users("p:"),
            roles("p:"),
            rules("p:"),
            everyone_rules("p:"),
            version("p:"),
            schema("p:"),
            rule_counter("p:"),
            changes("p:"),
            audit("p:"),
            audit_counter("p:"),
            rule("p:", 1),
        ] {
            assert!(seen.insert(fixed.clone()), "{fixed:?} collides");
        }
    }

    #[test]
    fn length_is_in_bytes() {
        assert_eq!(user("w:", "ä"), "w:user:2:ä");
        assert_eq!(role_members("w:", "ops"), "w:role:3:ops:members");
    }

    #[test]
    fn pattern_escapes_glob_characters() {
        assert_eq!(all_pattern("w:"), "w:*");
        assert_eq!(all_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }
}
