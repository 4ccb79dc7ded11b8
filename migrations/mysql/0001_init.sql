-- Warden policy store, MySQL/MariaDB dialect (InnoDB): the same tables as
-- migrations/sqlite/0001_init.sql. Never edit a migration once it has been
-- applied, add a new number. MySQL DDL is not transactional: a migration that
-- fails half way leaves the tables it created, and sqlx marks it dirty.
--
-- Names (usernames, role names) are VARBINARY, compared byte for byte like
-- SQLite's TEXT: the text collations are case-insensitive or ignore trailing
-- spaces, which would let "alice " read alice's rules. InnoDB keys are at most
-- 3072 bytes, so a name is at most 1020 bytes (255 four-byte UTF-8
-- characters); the store refuses longer names as Invalid before writing.
-- The store writes UTF-8 only and decodes names as UTF-8.

CREATE TABLE users (
    username      VARBINARY(1020) NOT NULL PRIMARY KEY,
    -- PHC string (argon2id); NULL means the user can only log in with a
    -- client certificate.
    password_hash TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    superuser     BOOLEAN NOT NULL DEFAULT FALSE,
    -- Unix seconds.
    created_at    BIGINT  NOT NULL
) ENGINE = InnoDB ROW_FORMAT = DYNAMIC DEFAULT CHARSET = utf8mb4;

CREATE TABLE roles (
    name VARBINARY(1020) NOT NULL PRIMARY KEY
) ENGINE = InnoDB ROW_FORMAT = DYNAMIC DEFAULT CHARSET = utf8mb4;

CREATE TABLE memberships (
    role     VARBINARY(1020) NOT NULL,
    username VARBINARY(1020) NOT NULL,
    PRIMARY KEY (role, username),
    -- user() reads a user's roles by username.
    INDEX memberships_by_username (username),
    CONSTRAINT memberships_role FOREIGN KEY (role)
        REFERENCES roles (name) ON DELETE CASCADE,
    CONSTRAINT memberships_user FOREIGN KEY (username)
        REFERENCES users (username) ON DELETE CASCADE
) ENGINE = InnoDB ROW_FORMAT = DYNAMIC DEFAULT CHARSET = utf8mb4;

CREATE TABLE rules (
    -- InnoDB keeps the AUTO_INCREMENT counter across deletes and (MySQL 8,
    -- MariaDB 10.2.4+) restarts, so an id is never reused: audit lines name
    -- rules by id.
    id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    effect       VARCHAR(8) CHARACTER SET ascii NOT NULL,
    subject_kind VARCHAR(8) CHARACTER SET ascii NOT NULL,
    -- '' for everyone, so one index serves all three lookups.
    subject_name VARBINARY(1020) NOT NULL DEFAULT '',
    -- Comma-separated action names: connect,publish,subscribe,receive.
    actions      VARCHAR(64) CHARACTER SET ascii NOT NULL,
    -- Up to 65535 bytes, the MQTT string limit.
    pattern      TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    max_qos      TINYINT NULL,
    retain       BOOLEAN NULL,
    INDEX rules_by_subject (subject_kind, subject_name),
    CONSTRAINT rules_effect CHECK (effect IN ('allow', 'deny')),
    CONSTRAINT rules_subject_kind CHECK (subject_kind IN ('user', 'role', 'everyone')),
    CONSTRAINT rules_subject_name CHECK ((subject_kind = 'everyone') = (subject_name = '')),
    CONSTRAINT rules_max_qos CHECK (max_qos IN (0, 1, 2)),
    CONSTRAINT rules_retain CHECK (retain IN (0, 1))
) ENGINE = InnoDB ROW_FORMAT = DYNAMIC DEFAULT CHARSET = utf8mb4;

-- One row. Every write to the tables above bumps it in the same transaction
-- (as the transaction's first statement, which also serialises writers);
-- brokers poll it to notice a change.
CREATE TABLE policy_version (
    id      TINYINT NOT NULL PRIMARY KEY,
    version BIGINT  NOT NULL,
    CONSTRAINT policy_version_one_row CHECK (id = 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

INSERT INTO policy_version (id, version) VALUES (1, 0);
