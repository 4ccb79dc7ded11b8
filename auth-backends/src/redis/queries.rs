//! The Redis store's commands, written out as Lua scripts (run with EVALSHA,
//! falling back to EVAL, by `redis::Script`). Key layout: `keys.rs`.
//!
//! `ARGV[1]` is always the key prefix; the remaining arguments are listed
//! above each script. Keys are built inside the scripts because most of
//! them depend on data read in the same script (a user's roles, a rule's
//! subject), so the store needs a single Redis server, not a cluster.
//!
//! Write scripts check every precondition before their first write and
//! answer `{status, detail}`: `ok` with the new version or rule id, or
//! `exists` / `not_found` / `has_members` with what it was about. A script
//! that answers anything but `ok` has written nothing. On `ok` it has also
//! INCRed `P version` and PUBLISHed the new version on `P changes`; Redis
//! runs a script alone, so all of it is one atomic step.

use std::sync::LazyLock;

use redis::Script;

/// Shared by every script: key builders (mirroring `keys.rs`) and helpers.
/// Ids and versions are read back with GET so they stay exact decimal
/// strings (Lua numbers are doubles).
macro_rules! prelude {
    () => {
        r#"
local P = ARGV[1]
local USERS = P .. 'users'
local ROLES = P .. 'roles'
local RULES = P .. 'rules'
local EVERYONE_RULES = P .. 'everyone:rules'
local function named(kind, name) return P .. kind .. ':' .. string.len(name) .. ':' .. name end
local function user_key(n) return named('user', n) end
local function user_roles(n) return named('user', n) .. ':roles' end
local function user_rules(n) return named('user', n) .. ':rules' end
local function role_members(n) return named('role', n) .. ':members' end
local function role_rules(n) return named('role', n) .. ':rules' end
local function rule_key(id) return P .. 'rule:' .. id end
local function subject_index(kind, name)
  if kind == 'user' then return user_rules(name) end
  if kind == 'role' then return role_rules(name) end
  return EVERYONE_RULES
end
local function bump()
  redis.call('INCR', P .. 'version')
  local v = redis.call('GET', P .. 'version')
  redis.call('PUBLISH', P .. 'changes', v)
  return v
end
local function fetch_rule(id)
  return redis.call('HMGET', rule_key(id),
    'id', 'effect', 'kind', 'name', 'actions', 'pattern', 'max_qos', 'retain')
end
local function drop_rule(id)
  local s = redis.call('HMGET', rule_key(id), 'kind', 'name')
  if s[1] then redis.call('SREM', subject_index(s[1], s[2] or ''), id) end
  redis.call('DEL', rule_key(id))
  redis.call('ZREM', RULES, id)
end
local function drop_rules_of(index)
  for _, id in ipairs(redis.call('SMEMBERS', index)) do drop_rule(id) end
  redis.call('DEL', index)
end
local function write_rule(id, kind, name, effect, actions, pattern, max_qos, retain)
  local key = rule_key(id)
  redis.call('HSET', key, 'id', id, 'effect', effect, 'kind', kind, 'name', name,
    'actions', actions, 'pattern', pattern)
  if max_qos ~= '' then redis.call('HSET', key, 'max_qos', max_qos) end
  if retain ~= '' then redis.call('HSET', key, 'retain', retain) end
  redis.call('ZADD', RULES, id, id)
  redis.call('SADD', subject_index(kind, name), id)
end
local function add_member(role, user)
  redis.call('SADD', ROLES, role)
  redis.call('SADD', role_members(role), user)
  redis.call('SADD', user_roles(user), role)
end
"#
    };
}

macro_rules! script {
    ($name:ident, $body:expr) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(concat!(prelude!(), $body)));
    };
}

// ARGV[2] = schema version this build writes. Answers the stored version.
script!(
    MIGRATE,
    r#"
local v = redis.call('GET', P .. 'schema')
if not v then
  redis.call('SET', P .. 'schema', ARGV[2])
  return ARGV[2]
end
return v
"#
);

// ARGV[2] = the change as JSON (at_ms, user, host, what). Adds it to
// `P audit` under the next id and bumps the version. Answers {'ok', version}.
script!(
    RECORD_CHANGE,
    r#"
local id = redis.call('INCR', P .. 'audit_id')
redis.call('ZADD', P .. 'audit', id, id .. ':' .. ARGV[2])
return {'ok', bump()}
"#
);

// ARGV[2] = name. Answers {} or
// {password_hash|nil, enabled, superuser, {roles}, cert_fingerprint|nil}.
script!(
    USER,
    r#"
local name = ARGV[2]
if redis.call('SISMEMBER', USERS, name) == 0 then return {} end
local h = redis.call('HMGET', user_key(name), 'password_hash', 'enabled', 'superuser',
  'cert_fingerprint')
return {h[1], h[2], h[3], redis.call('SMEMBERS', user_roles(name)), h[4]}
"#
);

// ARGV[2] = name, ARGV[3] = the hash expected, ARGV[4] = the new hash.
// The login rehash's compare-and-set: answers 1 if replaced, else 0. Not a
// policy write: no version bump, nothing published (see
// `Store::replace_password_hash`).
script!(
    REPLACE_PASSWORD_HASH,
    r#"
local name = ARGV[2]
if redis.call('SISMEMBER', USERS, name) == 0 then return 0 end
local key = user_key(name)
if redis.call('HGET', key, 'password_hash') ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'password_hash', ARGV[4])
return 1
"#
);

// ARGV[2] = "1" if ARGV[3] is a username, ARGV[4..] = role names.
// Answers the rules (fetch_rule rows), unordered.
script!(
    RULES_FOR,
    r#"
local seen, out = {}, {}
local function collect(index)
  for _, id in ipairs(redis.call('SMEMBERS', index)) do
    if not seen[id] then
      seen[id] = true
      table.insert(out, fetch_rule(id))
    end
  end
end
collect(EVERYONE_RULES)
if ARGV[2] == '1' then collect(user_rules(ARGV[3])) end
for i = 4, #ARGV do collect(role_rules(ARGV[i])) end
return out
"#
);

// ARGV[2] = "all" | "user" | "role" | "everyone", ARGV[3] = subject name.
script!(
    LIST_RULES,
    r#"
local ids
if ARGV[2] == 'all' then
  ids = redis.call('ZRANGE', RULES, 0, -1)
else
  ids = redis.call('SMEMBERS', subject_index(ARGV[2], ARGV[3]))
end
local out = {}
for _, id in ipairs(ids) do table.insert(out, fetch_rule(id)) end
return out
"#
);

// Answers {users, roles, memberships, rules}: users as
// {name, password_hash|nil, enabled, superuser, cert_fingerprint|nil},
// memberships as {role, user}.
script!(
    EXPORT,
    r#"
local users, memberships, rules = {}, {}, {}
for _, u in ipairs(redis.call('SMEMBERS', USERS)) do
  local h = redis.call('HMGET', user_key(u), 'password_hash', 'enabled', 'superuser',
    'cert_fingerprint')
  table.insert(users, {u, h[1], h[2], h[3], h[4]})
end
local roles = redis.call('SMEMBERS', ROLES)
for _, r in ipairs(roles) do
  for _, m in ipairs(redis.call('SMEMBERS', role_members(r))) do
    table.insert(memberships, {r, m})
  end
end
for _, id in ipairs(redis.call('ZRANGE', RULES, 0, -1)) do
  table.insert(rules, fetch_rule(id))
end
return {users, roles, memberships, rules}
"#
);

// ARGV[2] = name, [3] = "1" if [4] is a password hash, [5] enabled,
// [6] superuser ("0"/"1"), [7] = certificate fingerprint ("" = not pinned),
// [8..] = roles (created if missing).
script!(
    CREATE_USER,
    r#"
local name = ARGV[2]
if redis.call('SISMEMBER', USERS, name) == 1 then return {'exists', 'user'} end
local key = user_key(name)
redis.call('HSET', key, 'enabled', ARGV[5], 'superuser', ARGV[6])
if ARGV[3] == '1' then redis.call('HSET', key, 'password_hash', ARGV[4]) end
if ARGV[7] ~= '' then redis.call('HSET', key, 'cert_fingerprint', ARGV[7]) end
redis.call('SADD', USERS, name)
for i = 8, #ARGV do add_member(ARGV[i], name) end
return {'ok', bump()}
"#
);

// ARGV[2] = name, [3] = "keep" | "set" | "clear" the hash, [4] = new hash,
// [5] enabled, [6] superuser: "0"/"1", or "" to keep, [7] = "keep" | "set" |
// "clear" the certificate fingerprint, [8] = the new one.
script!(
    UPDATE_USER,
    r#"
local name = ARGV[2]
if redis.call('SISMEMBER', USERS, name) == 0 then return {'not_found', 'user'} end
local key = user_key(name)
if ARGV[3] == 'set' then redis.call('HSET', key, 'password_hash', ARGV[4]) end
if ARGV[3] == 'clear' then redis.call('HDEL', key, 'password_hash') end
if ARGV[5] ~= '' then redis.call('HSET', key, 'enabled', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', key, 'superuser', ARGV[6]) end
if ARGV[7] == 'set' then redis.call('HSET', key, 'cert_fingerprint', ARGV[8]) end
if ARGV[7] == 'clear' then redis.call('HDEL', key, 'cert_fingerprint') end
return {'ok', bump()}
"#
);

// ARGV[2] = name. Takes the user's memberships and `user:NAME` rules along.
script!(
    DELETE_USER,
    r#"
local name = ARGV[2]
if redis.call('SISMEMBER', USERS, name) == 0 then return {'not_found', 'user'} end
for _, role in ipairs(redis.call('SMEMBERS', user_roles(name))) do
  redis.call('SREM', role_members(role), name)
end
redis.call('DEL', user_roles(name))
drop_rules_of(user_rules(name))
redis.call('DEL', user_key(name))
redis.call('SREM', USERS, name)
return {'ok', bump()}
"#
);

// ARGV[2] = name.
script!(
    CREATE_ROLE,
    r#"
if redis.call('SISMEMBER', ROLES, ARGV[2]) == 1 then return {'exists', 'role'} end
redis.call('SADD', ROLES, ARGV[2])
return {'ok', bump()}
"#
);

// ARGV[2] = name. Refused while the role has members.
script!(
    DELETE_ROLE,
    r#"
local name = ARGV[2]
if redis.call('SISMEMBER', ROLES, name) == 0 then return {'not_found', 'role'} end
if redis.call('SCARD', role_members(name)) > 0 then return {'has_members', 'role'} end
drop_rules_of(role_rules(name))
redis.call('DEL', role_members(name))
redis.call('SREM', ROLES, name)
return {'ok', bump()}
"#
);

// ARGV[2] = role (created if missing), ARGV[3] = user.
script!(
    GRANT,
    r#"
local role, user = ARGV[2], ARGV[3]
if redis.call('SISMEMBER', USERS, user) == 0 then return {'not_found', 'user'} end
if redis.call('SISMEMBER', role_members(role), user) == 1 then
  return {'exists', 'membership'}
end
add_member(role, user)
return {'ok', bump()}
"#
);

// ARGV[2] = role, ARGV[3] = user.
script!(
    REVOKE,
    r#"
local role, user = ARGV[2], ARGV[3]
if redis.call('SREM', role_members(role), user) == 0 then
  return {'not_found', 'membership'}
end
redis.call('SREM', user_roles(user), role)
return {'ok', bump()}
"#
);

// ARGV[2..9] = kind, name, effect, actions, pattern, max_qos, retain ("" = none).
// Answers {'ok', new id}.
script!(
    ADD_RULE,
    r#"
local kind, name = ARGV[2], ARGV[3]
if kind == 'user' and redis.call('SISMEMBER', USERS, name) == 0 then
  return {'not_found', 'user'}
end
if kind == 'role' and redis.call('SISMEMBER', ROLES, name) == 0 then
  return {'not_found', 'role'}
end
redis.call('INCR', P .. 'rule_id')
local id = redis.call('GET', P .. 'rule_id')
write_rule(id, kind, name, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
bump()
return {'ok', id}
"#
);

// ARGV[2] = id.
script!(
    REMOVE_RULE,
    r#"
if redis.call('EXISTS', rule_key(ARGV[2])) == 0 then return {'not_found', 'rule'} end
drop_rule(ARGV[2])
return {'ok', bump()}
"#
);

// ARGV[2] = largest imported rule id ("0" if none); then counted groups:
// n users × {name, has_hash, hash, enabled, superuser}; n roles × {name};
// n memberships × {role, user}; n rules × {id, kind, name, effect,
// actions, pattern, max_qos, retain}. The snapshot is validated in Rust
// first. Everything reachable from the indexes is deleted; `version` and
// `rule_id` stay, and `rule_id` only moves up, so ids are never reused.
script!(
    IMPORT,
    r#"
for _, u in ipairs(redis.call('SMEMBERS', USERS)) do
  redis.call('DEL', user_key(u), user_roles(u), user_rules(u))
end
for _, r in ipairs(redis.call('SMEMBERS', ROLES)) do
  redis.call('DEL', role_members(r), role_rules(r))
end
for _, id in ipairs(redis.call('ZRANGE', RULES, 0, -1)) do
  redis.call('DEL', rule_key(id))
end
redis.call('DEL', USERS, ROLES, RULES, EVERYONE_RULES)
local i = 3
local function count()
  local n = tonumber(ARGV[i])
  i = i + 1
  return n
end
for _ = 1, count() do
  local name = ARGV[i]
  redis.call('HSET', user_key(name), 'enabled', ARGV[i + 3], 'superuser', ARGV[i + 4])
  if ARGV[i + 1] == '1' then redis.call('HSET', user_key(name), 'password_hash', ARGV[i + 2]) end
  if ARGV[i + 5] ~= '' then
    redis.call('HSET', user_key(name), 'cert_fingerprint', ARGV[i + 5])
  end
  redis.call('SADD', USERS, name)
  i = i + 6
end
for _ = 1, count() do
  redis.call('SADD', ROLES, ARGV[i])
  i = i + 1
end
for _ = 1, count() do
  add_member(ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, count() do
  write_rule(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5],
    ARGV[i + 6], ARGV[i + 7])
  i = i + 8
end
local cur = redis.call('GET', P .. 'rule_id') or '0'
local top = ARGV[2]
if string.len(cur) < string.len(top) or (string.len(cur) == string.len(top) and cur < top) then
  redis.call('SET', P .. 'rule_id', top)
end
return {'ok', bump()}
"#
);
