//! Who is asking: the identity the broker established at CONNECT. Read-only data.

use std::net::SocketAddr;

/// Facts from a verified client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub cn: Option<String>,
    pub sans: Vec<String>,
    pub fingerprint: String,
}

/// An authenticated client. `roles` come from the store (or JWT claims).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    pub username: Option<String>,
    pub client_id: String,
    pub peer: Option<SocketAddr>,
    pub listener: String,
    pub cert: Option<CertInfo>,
    pub roles: Vec<String>,
    pub superuser: bool,
}
