-- Warden policy store, SQLite dialect: users, roles, memberships, rules and
-- the policy version. The postgres/ and mysql/ folders carry the same file
-- names; never edit a migration once it has been applied, add a new number.

CREATE TABLE users (
    username      TEXT    NOT NULL PRIMARY KEY,
    -- PHC string (argon2id); NULL means the user can only log in with a
    -- client certificate.
    password_hash TEXT    NULL,
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    superuser     INTEGER NOT NULL DEFAULT 0 CHECK (superuser IN (0, 1)),
    -- Unix seconds.
    created_at    INTEGER NOT NULL
);

CREATE TABLE roles (
    name TEXT NOT NULL PRIMARY KEY
);

CREATE TABLE memberships (
    role     TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    PRIMARY KEY (role, username)
);

-- user() reads a user's roles by username.
CREATE INDEX memberships_by_username ON memberships (username);

CREATE TABLE rules (
    -- AUTOINCREMENT so that an id is never reused after a delete: audit
    -- lines name rules by id.
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    effect       TEXT    NOT NULL CHECK (effect IN ('allow', 'deny')),
    subject_kind TEXT    NOT NULL CHECK (subject_kind IN ('user', 'role', 'everyone')),
    -- '' for everyone, so one index serves all three lookups.
    subject_name TEXT    NOT NULL DEFAULT '',
    -- Comma-separated action names: connect,publish,subscribe,receive.
    actions      TEXT    NOT NULL,
    pattern      TEXT    NOT NULL,
    max_qos      INTEGER NULL CHECK (max_qos IN (0, 1, 2)),
    retain       INTEGER NULL CHECK (retain IN (0, 1)),
    CHECK ((subject_kind = 'everyone') = (subject_name = ''))
);

CREATE INDEX rules_by_subject ON rules (subject_kind, subject_name);

-- One row. Every write to the tables above bumps it in the same transaction;
-- brokers poll it to notice a change.
CREATE TABLE policy_version (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

INSERT INTO policy_version (id, version) VALUES (1, 0);
