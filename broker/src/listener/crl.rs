//! Certificate revocation lists of one listener: read from the configured
//! files (PEM, or one DER list per file), handed to the webpki verifier for
//! every new handshake, and kept as a set of revoked (issuer, serial) pairs
//! so that connections already up can be checked against a new list.
//!
//! The files are read again whenever the listener's TLS settings are
//! rebuilt (a config reload, or `crate::revocation` noticing that a file
//! changed); the verified-chain cache is dropped with them, since a chain
//! verified before a revocation must not be trusted after it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls::pki_types::CertificateRevocationListDer;
use sha2::{Digest, Sha256};
use warden_policy::CertInfo;

use super::peer::{serial_hex, subject_string};
use super::ListenerError;

/// The revoked certificates of a listener's lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RevokedSet {
    /// (issuer as RFC 4514 text, serial as lower-case hex).
    entries: HashSet<(String, String)>,
}

impl RevokedSet {
    /// Whether the certificate is on one of the lists.
    pub fn contains(&self, cert: &CertInfo) -> bool {
        // The borrowed lookup would need a tuple of references; a revoked
        // check runs once per login and per connection at a list change.
        self.entries
            .contains(&(cert.issuer.clone(), cert.serial.clone()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The lists as read now.
pub(super) struct Loaded {
    pub ders: Vec<CertificateRevocationListDer<'static>>,
    pub revoked: RevokedSet,
    /// SHA-256 over every list, to tell whether they changed.
    pub digest: [u8; 32],
}

fn read(path: &Path) -> Result<Vec<u8>, ListenerError> {
    std::fs::read(path).map_err(|source| ListenerError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, message: String) -> ListenerError {
    ListenerError::Pem {
        path: path.to_path_buf(),
        message,
    }
}

/// Reads and parses every list; an unreadable or unparsable file is an
/// error (the caller keeps the previous settings).
pub(super) fn load(paths: &[PathBuf]) -> Result<Loaded, ListenerError> {
    let mut ders = Vec::new();
    let mut revoked = RevokedSet::default();
    let mut digest = Sha256::new();
    for path in paths {
        let bytes = read(path)?;
        let mut found: Vec<CertificateRevocationListDer<'static>> =
            rustls_pemfile::crls(&mut bytes.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(path, e.to_string()))?;
        if found.is_empty() {
            // Not PEM: one DER-encoded list.
            found.push(CertificateRevocationListDer::from(bytes));
        }
        for der in found {
            let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
                .map_err(|e| bad(path, format!("not a usable CRL: {e}")))?;
            let issuer = subject_string(crl.issuer());
            for entry in crl.iter_revoked_certificates() {
                revoked
                    .entries
                    .insert((issuer.clone(), serial_hex(entry.raw_serial())));
            }
            digest.update((der.len() as u64).to_be_bytes());
            digest.update(der.as_ref());
            ders.push(der);
        }
    }
    Ok(Loaded {
        ders,
        revoked,
        digest: digest.finalize().into(),
    })
}

/// What the files look like on disk (modification time and size), to
/// notice a change without reading them.
pub fn stamp(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, IsCa,
        KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    };

    #[test]
    fn lists_revoked_serials_by_issuer() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Test CA");
        params.distinguished_name = dn;
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = params.self_signed(&key).unwrap();
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[0x00, 0x9f, 0x01]),
                revocation_time: rcgen::date_time_ymd(2024, 1, 2),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca, &key)
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crl");
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        let loaded = load(std::slice::from_ref(&path)).unwrap();
        assert_eq!(loaded.ders.len(), 1);
        let revoked = CertInfo {
            issuer: "CN=Test CA".into(),
            serial: "9f01".into(),
            ..CertInfo::default()
        };
        assert!(loaded.revoked.contains(&revoked));
        let other = CertInfo {
            serial: "9f02".into(),
            ..revoked.clone()
        };
        assert!(!loaded.revoked.contains(&other));
        // DER works too, and gives the same digest.
        std::fs::write(&path, crl.der()).unwrap();
        let der = load(std::slice::from_ref(&path)).unwrap();
        assert_eq!(der.digest, loaded.digest);
        std::fs::write(&path, "garbage").unwrap();
        assert!(load(std::slice::from_ref(&path)).is_err());
    }
}
