-- Certificate pinning (issue 11): a user may be pinned to one client
-- certificate, named by the lower-case hex SHA-256 of its DER (64
-- characters). NULL: not pinned.

ALTER TABLE users ADD COLUMN cert_fingerprint VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL;
