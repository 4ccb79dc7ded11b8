-- Certificate pinning (issue 11): a user may be pinned to one client
-- certificate, named by the lower-case hex SHA-256 of its DER. NULL: not pinned.

ALTER TABLE users ADD COLUMN cert_fingerprint TEXT NULL;
