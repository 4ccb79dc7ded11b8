//! The rustls server side: certificates and keys from PEM files, client
//! certificate verification per `client_auth`, and the handshake.
//!
//! ALPN: the first of the listener's `alpn` protocols (default "mqtt") that
//! the client offers is answered, and a client that offers nothing, or only
//! other protocols, is served anyway: rustls alone would refuse the latter,
//! so the config is picked after the ClientHello. The server certificate is
//! picked by SNI (`sni.rs`).
//!
//! The acceptors are rebuilt from the files on a config reload; chains
//! remembered under an unchanged client CA bundle are carried over.
//!
//! A listener that verifies client certificates remembers the chains it
//! verified ([`VerifiedChains`]) and offers no session resumption: a resumed
//! session would restore the client's identity for up to a day without the
//! certificate's expiry being checked again, and every full handshake would
//! pay for two tickets that the cache of 256 sessions mostly forgets.

use std::fs::File;
use std::io::{self, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, NoServerSessionStorage, WebPkiClientVerifier};
use rustls::time_provider::{DefaultTimeProvider, TimeProvider};
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use warden_policy::CertInfo;

use super::chains::{self, CachingVerifier, VerifiedChains};
use super::crl::{self, RevokedSet};
use super::sni::SniResolver;
use super::ListenerError;
use crate::config::{ClientAuth, TlsSettings};

/// Two server configs that differ only in ALPN.
#[derive(Debug)]
pub(super) struct TlsAcceptors {
    with_alpn: Arc<ServerConfig>,
    without_alpn: Arc<ServerConfig>,
    /// The protocols `with_alpn` answers.
    alpn: Vec<Vec<u8>>,
    /// Shared with the configs' client certificate verifier; `None` when
    /// the listener does not ask for client certificates.
    chains: Option<Arc<VerifiedChains>>,
    /// SHA-256 over the client CA bundle's certificates and the
    /// revocation lists, to tell on a reload whether the remembered chains
    /// still hold.
    ca_digest: Option<[u8; 32]>,
    /// The certificates the listener's CRLs revoke (empty without CRLs).
    revoked: Arc<RevokedSet>,
    /// The client CA bundle, parsed for finding a client certificate's
    /// issuer; only on a listener that checks certificates with OCSP.
    ocsp_roots: Option<Arc<[x509_cert::Certificate]>>,
    clock: Arc<dyn TimeProvider>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsAcceptors {
    pub(super) fn build(name: &Arc<str>, s: &TlsSettings) -> Result<TlsAcceptors, ListenerError> {
        Self::build_with_clock(name, s, Arc::new(DefaultTimeProvider))
    }

    /// [`Self::build`] with the clock that certificate validity is judged
    /// by (tests move it).
    pub(super) fn build_with_clock(
        name: &Arc<str>,
        s: &TlsSettings,
        clock: Arc<dyn TimeProvider>,
    ) -> Result<TlsAcceptors, ListenerError> {
        Self::build_from(name, s, clock, None)
    }

    /// New acceptors from the files as they are now (a config reload, or a
    /// certificate rotated in place), on the same clock. The chains these
    /// remembered are kept when the client CA bundle is the same, and
    /// dropped when it changed. The flag says whether it changed.
    pub(super) fn rebuild(
        &self,
        name: &Arc<str>,
        s: &TlsSettings,
    ) -> Result<(TlsAcceptors, bool), ListenerError> {
        let next = Self::build_from(name, s, self.clock.clone(), Some(self))?;
        let ca_changed = next.ca_digest != self.ca_digest;
        Ok((next, ca_changed))
    }

    fn build_from(
        name: &Arc<str>,
        s: &TlsSettings,
        clock: Arc<dyn TimeProvider>,
        previous: Option<&TlsAcceptors>,
    ) -> Result<TlsAcceptors, ListenerError> {
        let setup = |message: String| ListenerError::TlsSetup {
            listener: name.clone(),
            message,
        };
        let provider = provider();
        let resolver = Arc::new(SniResolver::load(name, s, &provider)?);
        let builder = ServerConfig::builder_with_details(provider.clone(), clock.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| setup(e.to_string()))?;
        let mut revoked = RevokedSet::default();
        let mut ocsp_roots = None;
        let (builder, chains, ca_digest) = match &s.client_auth {
            ClientAuth::None => (builder.with_no_client_auth(), None, None),
            ClientAuth::Optional { ca } | ClientAuth::Required { ca } => {
                let (roots, ca_digest, ca_certs) = load_roots(ca)?;
                if s.ocsp.is_some() {
                    let parsed = crate::ocsp::parse_roots(ca_certs.iter().map(|c| c.as_ref()))
                        .map_err(|message| ListenerError::Pem {
                            path: ca.clone(),
                            message,
                        })?;
                    ocsp_roots = Some(Arc::from(parsed));
                }
                let crls = crl::load(&s.crls)?;
                let digest: [u8; 32] = Sha256::new()
                    .chain_update(ca_digest)
                    .chain_update(crls.digest)
                    .finalize()
                    .into();
                revoked = crls.revoked;
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if !crls.ders.is_empty() {
                    // Only the client's own certificate is looked up: a list
                    // per intermediate is not required. Its status must be
                    // known, so every client CA needs a list here.
                    verifier = verifier
                        .with_crls(crls.ders)
                        .only_check_end_entity_revocation();
                }
                let verifier = match s.client_auth {
                    ClientAuth::Optional { .. } => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let webpki = verifier.build().map_err(|e| setup(e.to_string()))?;
                // Chains verified against the same CAs are still verified.
                let kept = previous
                    .filter(|p| p.ca_digest == Some(digest))
                    .and_then(|p| p.chains.clone());
                let chains = kept.unwrap_or_else(|| {
                    Arc::new(VerifiedChains::new(chains::TTL_SECS, chains::CAPACITY))
                });
                let verifier = CachingVerifier::new(webpki, chains.clone());
                (
                    builder.with_client_cert_verifier(Arc::new(verifier)),
                    Some(chains),
                    Some(digest),
                )
            }
        };
        let mut without_alpn = builder.with_cert_resolver(resolver);
        if chains.is_some() {
            without_alpn.send_tls13_tickets = 0;
            without_alpn.session_storage = Arc::new(NoServerSessionStorage {});
        }
        let alpn: Vec<Vec<u8>> = s.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let mut with_alpn = without_alpn.clone();
        with_alpn.alpn_protocols.clone_from(&alpn);
        Ok(TlsAcceptors {
            with_alpn: Arc::new(with_alpn),
            without_alpn: Arc::new(without_alpn),
            alpn,
            chains,
            ca_digest,
            revoked: Arc::new(revoked),
            ocsp_roots,
            clock,
        })
    }

    /// The certificates this listener's CRLs revoke.
    pub(super) fn revoked(&self) -> &Arc<RevokedSet> {
        &self.revoked
    }

    /// What OCSP needs to know about a verified client chain (leaf
    /// first); `None` when the listener does not check with OCSP.
    pub(super) fn ocsp_subject(
        &self,
        chain: &[CertificateDer<'_>],
    ) -> Option<Result<crate::ocsp::Subject, String>> {
        let roots = self.ocsp_roots.as_ref()?;
        let ders: Vec<&[u8]> = chain.iter().map(|c| c.as_ref()).collect();
        Some(crate::ocsp::Subject::from_chain(&ders, roots))
    }

    #[cfg(test)]
    pub(super) fn chains(&self) -> Option<&VerifiedChains> {
        self.chains.as_deref()
    }

    /// The facts of the verified leaf certificate of a finished handshake.
    pub(super) fn cert_info(&self, leaf: &[u8]) -> Result<CertInfo, String> {
        match &self.chains {
            Some(chains) => chains.cert_info(leaf),
            None => super::cert_info(leaf),
        }
    }

    pub(super) async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<TlsStream<TcpStream>, ListenerError> {
        let err = |source| ListenerError::Handshake { peer, source };
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
            .await
            .map_err(err)?;
        let offers_ours = start.client_hello().alpn().is_some_and(|mut protocols| {
            protocols.any(|p| self.alpn.iter().any(|ours| ours.as_slice() == p))
        });
        let config = if offers_ours {
            self.with_alpn.clone()
        } else {
            self.without_alpn.clone()
        };
        start.into_stream(config).await.map_err(err)
    }
}

fn open(path: &Path) -> Result<BufReader<File>, ListenerError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| ListenerError::ReadFile {
            path: path.to_path_buf(),
            source,
        })
}

fn pem_err(path: &Path, e: &io::Error) -> ListenerError {
    ListenerError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(super) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ListenerError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, &e))?;
    if certs.is_empty() {
        return Err(ListenerError::Pem {
            path: path.to_path_buf(),
            message: "no CERTIFICATE block found".to_owned(),
        });
    }
    Ok(certs)
}

pub(super) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ListenerError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|e| pem_err(path, &e))?
        .ok_or_else(|| ListenerError::Pem {
            path: path.to_path_buf(),
            message: "no PRIVATE KEY block found".to_owned(),
        })
}

/// The CA bundle, a digest of its certificates, and the certificates.
type Roots = (RootCertStore, [u8; 32], Vec<CertificateDer<'static>>);

fn load_roots(path: &Path) -> Result<Roots, ListenerError> {
    let mut roots = RootCertStore::empty();
    let mut digest = Sha256::new();
    let certs = load_certs(path)?;
    for cert in certs.iter().cloned() {
        digest.update((cert.len() as u64).to_be_bytes());
        digest.update(cert.as_ref());
        roots.add(cert).map_err(|e| ListenerError::Pem {
            path: path.to_path_buf(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok((roots, digest.finalize().into(), certs))
}
