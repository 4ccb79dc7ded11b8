//! Server certificates chosen by the name the client asks for (SNI): one
//! listener can serve several host names, each with its own certificate.
//! A client whose name matches no entry, or that sends no name (an IP
//! address), gets the listener's `cert`/`key`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use super::tls::{load_certs, load_key};
use super::ListenerError;
use crate::config::TlsSettings;

#[derive(Debug)]
pub(super) struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by what follows `*.`: one label of wildcard, as in RFC 6125.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Reads every certificate and key of the settings; a key that does not
    /// belong to its certificate is an error, not a failed handshake later.
    pub(super) fn load(
        name: &Arc<str>,
        s: &TlsSettings,
        provider: &CryptoProvider,
    ) -> Result<SniResolver, ListenerError> {
        let default = certified(name, &s.cert, &s.key, provider)?;
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for entry in &s.certificates {
            let key = certified(name, &entry.cert, &entry.key, provider)?;
            let names = if entry.hostnames.is_empty() {
                dns_names(&key, &entry.cert)?
            } else {
                entry.hostnames.clone()
            };
            // The first entry naming a host serves it.
            for host in names {
                match host.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()),
                    None => exact.entry(host),
                }
                .or_insert_with(|| key.clone());
            }
        }
        Ok(SniResolver {
            default,
            exact,
            wildcard,
        })
    }

    fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()).clone())
    }
}

fn certified(
    listener: &Arc<str>,
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, ListenerError> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    CertifiedKey::from_der(chain, key_der, provider)
        .map(Arc::new)
        .map_err(|e| ListenerError::TlsSetup {
            listener: listener.clone(),
            message: format!("{} with {}: {e}", cert.display(), key.display()),
        })
}

/// The DNS names of the leaf's subjectAltName, lower-case.
fn dns_names(key: &CertifiedKey, path: &Path) -> Result<Vec<String>, ListenerError> {
    let pem = |message: String| ListenerError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let leaf = key
        .cert
        .first()
        .ok_or_else(|| pem("no certificate".to_owned()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| pem(format!("cannot parse: {e}")))?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .map_err(|e| pem(format!("bad subjectAltName: {e}")))?
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(pem(
            "no DNS names in subjectAltName: give the entry hostnames".to_owned(),
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientAuth, SniCertificate};

    fn write_leaf(dir: &Path, ca: &(String, String), name: &str, sans: &[&str]) -> SniCertificate {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let (cert, key) = crate::certs::sign_leaf(&ca.0, &ca.1, name, &sans, false).unwrap();
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        SniCertificate {
            cert: cert_path,
            key: key_path,
            hostnames: vec![],
        }
    }

    #[test]
    fn names_pick_their_certificate_and_others_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::certs::generate_ca("sni test CA").unwrap();
        let default = write_leaf(dir.path(), &ca, "default", &["localhost"]);
        let a = write_leaf(dir.path(), &ca, "a", &["a.example.com"]);
        let mut b = write_leaf(dir.path(), &ca, "b", &["ignored.example"]);
        b.hostnames = vec!["*.b.example.com".to_owned()];
        let settings = TlsSettings {
            cert: default.cert,
            key: default.key,
            client_auth: ClientAuth::None,
            username_from: None,
            crls: Vec::new(),
            ocsp: None,
            dev_certs: false,
            certificates: vec![a, b],
            alpn: vec![],
            cert_poll_interval: std::time::Duration::from_secs(5),
        };
        let provider = rustls::crypto::ring::default_provider();
        let r = SniResolver::load(&Arc::from("t"), &settings, &provider).unwrap();
        let leaf = |name: Option<&str>| r.pick(name).cert[0].clone();
        let d = leaf(None);
        assert_ne!(leaf(Some("a.example.com")), d);
        assert_eq!(leaf(Some("A.Example.com.")), leaf(Some("a.example.com")));
        assert_ne!(leaf(Some("x.b.example.com")), d);
        assert_ne!(leaf(Some("x.b.example.com")), leaf(Some("a.example.com")));
        assert_eq!(leaf(Some("b.example.com")), d);
        assert_eq!(leaf(Some("y.x.b.example.com")), d);
        assert_eq!(leaf(Some("ignored.example")), d);
        assert_eq!(leaf(Some("other")), d);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::certs::generate_ca("sni test CA").unwrap();
        let one = write_leaf(dir.path(), &ca, "one", &["one.example"]);
        let two = write_leaf(dir.path(), &ca, "two", &["two.example"]);
        let provider = rustls::crypto::ring::default_provider();
        let err = certified(&Arc::from("t"), &one.cert, &two.key, &provider).unwrap_err();
        assert!(err.to_string().contains("one.pem"), "{err}");
    }
}
