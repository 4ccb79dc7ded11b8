//! Who is asking: the identity the broker established at CONNECT. Read-only data.

use std::net::SocketAddr;
use std::sync::Arc;

/// Facts from a verified client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CertInfo {
    pub subject: String,
    pub cn: Option<String>,
    /// Every DNS, e-mail and URI SAN, in certificate order (`${cert.san}`).
    pub sans: Vec<String>,
    /// Lower-case hex SHA-256 of the DER certificate.
    pub fingerprint: String,
    /// The subject's first organization (O) and organizational unit (OU).
    pub o: Option<String>,
    pub ou: Option<String>,
    /// The serial number, lower-case hex without leading zero bytes.
    pub serial: String,
    /// The issuer as RFC 4514 writes it (to match CRL entries).
    pub issuer: String,
    /// The SANs by kind, in certificate order (`username_from: san_*`).
    pub san_dns: Vec<String>,
    pub san_email: Vec<String>,
    pub san_uri: Vec<String>,
}

/// An authenticated client. `roles` come from the store (or JWT claims).
///
/// The strings are shared, not copied: a session holds its principal for as
/// long as it lives, and its client id, owner and listener name are the same
/// allocations (one per connection counts, `docs/benchmarks.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    pub username: Option<Arc<str>>,
    pub client_id: Arc<str>,
    pub peer: Option<SocketAddr>,
    pub listener: Arc<str>,
    /// Shared, not copied: the listener's peer record and the session hold
    /// the same one for as long as the connection lives, and a session
    /// without a certificate carries only a pointer.
    pub cert: Option<Arc<CertInfo>>,
    pub roles: Vec<String>,
    pub superuser: bool,
}
