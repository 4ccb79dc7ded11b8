//! Verified client-certificate chains, remembered per listener.
//!
//! A device that reconnects presents the same chain each time. Building and
//! checking its path (the CA's ECDSA signature over the leaf is most of it,
//! ~70 µs) and parsing the leaf for [`CertInfo`] then give the same answer
//! again, so a chain that verified is remembered, keyed by the SHA-256 of its
//! leaf plus a digest of its intermediates, until the earliest `notAfter` in
//! the chain or [`TTL_SECS`], whichever comes first. Every other check still runs
//! on every handshake: the TLS CertificateVerify signature (the proof that the
//! client holds the key) always goes to the webpki verifier. A chain that is
//! not remembered, or differs in any byte, is verified in full.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};
use warden_policy::CertInfo;

use super::peer;

/// How long a verified chain is trusted without a new path check. Without
/// CRLs, re-verifying a chain inside its validity gives the same answer;
/// the bound keeps a long-lived entry from outliving a changed CA bundle
/// or, once CRLs are checked, a new revocation by more than this.
pub(super) const TTL_SECS: u64 = 300;

/// At most this many chains are remembered (~300 bytes each); a fleet
/// larger than this still gets hits for the chains that stay.
pub(super) const CAPACITY: usize = 10_000;

type Digest32 = [u8; 32];

struct Entry {
    /// Digest of the intermediates the chain was verified with: the same
    /// leaf behind other intermediates is a different chain.
    intermediates: Digest32,
    /// Unix seconds: the latest `notBefore` and the earliest of the
    /// chain's `notAfter`s and the verification time plus the TTL.
    valid_from: i64,
    valid_until: i64,
    info: CertInfo,
}

/// How often, at most, a full cache is swept for lapsed entries: a sweep
/// walks every entry, and a fleet larger than the cache would otherwise
/// pay for one on every new verification.
const SWEEP_EVERY_SECS: i64 = 10;

struct Entries {
    map: HashMap<Digest32, Entry>,
    /// Unix seconds before which a full cache is not swept again.
    next_sweep: i64,
}

/// The remembered chains of one listener.
pub(super) struct VerifiedChains {
    entries: Mutex<Entries>,
    ttl_secs: u64,
    capacity: usize,
}

impl fmt::Debug for VerifiedChains {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedChains")
            .field("len", &self.entries.lock().map.len())
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

fn leaf_digest(leaf: &[u8]) -> Digest32 {
    Sha256::digest(leaf).into()
}

fn intermediates_digest(intermediates: &[CertificateDer<'_>]) -> Digest32 {
    let mut h = Sha256::new();
    for cert in intermediates {
        // Length-prefixed, so that no two lists hash the same bytes.
        h.update((cert.len() as u64).to_be_bytes());
        h.update(cert.as_ref());
    }
    h.finalize().into()
}

impl VerifiedChains {
    pub(super) fn new(ttl_secs: u64, capacity: usize) -> VerifiedChains {
        VerifiedChains {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                next_sweep: i64::MIN,
            }),
            ttl_secs,
            capacity: capacity.max(1),
        }
    }

    fn is_verified(&self, leaf: &Digest32, intermediates: &Digest32, now: i64) -> bool {
        self.entries.lock().map.get(leaf).is_some_and(|e| {
            e.intermediates == *intermediates && e.valid_from <= now && now < e.valid_until
        })
    }

    /// Records a chain that the full verifier accepted at `now`. A chain
    /// whose certificates cannot be parsed for their validity is not
    /// remembered (and so verified in full every time).
    fn remember(
        &self,
        leaf_key: Digest32,
        intermediates_key: Digest32,
        leaf: &[u8],
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) {
        let Ok((info, leaf_validity)) = peer::parse_leaf(leaf) else {
            return;
        };
        let mut validity = leaf_validity;
        for cert in intermediates {
            match peer::validity(cert.as_ref()) {
                Ok(v) => validity = validity.intersect(v),
                Err(_) => return,
            }
        }
        let ttl_end = now.saturating_add(i64::try_from(self.ttl_secs).unwrap_or(i64::MAX));
        let entry = Entry {
            intermediates: intermediates_key,
            valid_from: validity.not_before,
            valid_until: validity.not_after.min(ttl_end),
            info,
        };
        let mut entries = self.entries.lock();
        let Entries { map, next_sweep } = &mut *entries;
        if map.len() >= self.capacity && !map.contains_key(&leaf_key) {
            if now >= *next_sweep {
                map.retain(|_, e| now < e.valid_until);
                *next_sweep = now.saturating_add(SWEEP_EVERY_SECS);
            }
            if map.len() >= self.capacity {
                // Full of live chains: drop any one of them.
                if let Some(victim) = map.keys().next().copied() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(leaf_key, entry);
    }

    /// The facts of a verified leaf: from the entry its verification left,
    /// or parsed anew when it is gone (evicted, or never remembered).
    pub(super) fn cert_info(&self, leaf: &[u8]) -> Result<CertInfo, String> {
        if let Some(e) = self.entries.lock().map.get(&leaf_digest(leaf)) {
            return Ok(e.info.clone());
        }
        peer::cert_info(leaf)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().map.len()
    }
}

/// A [`ClientCertVerifier`] that answers from [`VerifiedChains`] for a
/// chain it already verified, and asks `inner` (webpki) for everything else.
#[derive(Debug)]
pub(super) struct CachingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    chains: Arc<VerifiedChains>,
}

impl CachingVerifier {
    pub(super) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        chains: Arc<VerifiedChains>,
    ) -> CachingVerifier {
        CachingVerifier { inner, chains }
    }
}

fn unix_secs(t: UnixTime) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

impl ClientCertVerifier for CachingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let leaf_key = leaf_digest(end_entity.as_ref());
        let intermediates_key = intermediates_digest(intermediates);
        let secs = unix_secs(now);
        if self.chains.is_verified(&leaf_key, &intermediates_key, secs) {
            return Ok(ClientCertVerified::assertion());
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.chains.remember(
            leaf_key,
            intermediates_key,
            end_entity.as_ref(),
            intermediates,
            secs,
        );
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}
