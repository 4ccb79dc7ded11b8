//! Checking one X.509-style signature (an OCSP response's, or a delegated
//! responder certificate's) with the algorithms rustls verifies TLS
//! certificates with, so OCSP accepts exactly what the handshake accepts:
//! ECDSA P-256/P-384, Ed25519, RSA PKCS#1 and PSS with SHA-2. SHA-1
//! signatures are refused, as webpki refuses them in certificates.

use std::sync::OnceLock;

use der::Encode;
use rustls::pki_types::SignatureVerificationAlgorithm;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

type Algorithms = &'static [&'static dyn SignatureVerificationAlgorithm];

fn algorithms() -> Algorithms {
    static ALL: OnceLock<Algorithms> = OnceLock::new();
    ALL.get_or_init(|| {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all
    })
}

/// The DER of an AlgorithmIdentifier without its SEQUENCE header: the
/// form `SignatureVerificationAlgorithm` names its identifiers in.
fn contents(alg: &AlgorithmIdentifierOwned) -> Result<Vec<u8>, der::Error> {
    let mut out = alg.oid.to_der()?;
    if let Some(params) = &alg.parameters {
        out.extend(params.to_der()?);
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("unsupported signature algorithm {0}")]
    Unsupported(String),
    #[error("signature does not verify")]
    Invalid,
    #[error("malformed key or signature")]
    Malformed,
}

/// Whether `signature` over `message`, made with `alg`, verifies under
/// `signer`'s public key.
pub fn verify(
    signer: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let sig_id = contents(alg).map_err(|_| SignatureError::Malformed)?;
    let key_id = contents(&signer.algorithm).map_err(|_| SignatureError::Malformed)?;
    let key = signer
        .subject_public_key
        .as_bytes()
        .ok_or(SignatureError::Malformed)?;
    let mut known = false;
    for candidate in algorithms() {
        if candidate.signature_alg_id().as_ref() != sig_id.as_slice() {
            continue;
        }
        known = true;
        // The key's algorithm (and, for EC, its curve) picks among the
        // candidates that share a signature identifier.
        if candidate.public_key_alg_id().as_ref() != key_id.as_slice() {
            continue;
        }
        return candidate
            .verify_signature(key, message, signature)
            .map_err(|_| SignatureError::Invalid);
    }
    Err(if known {
        SignatureError::Invalid
    } else {
        SignatureError::Unsupported(alg.oid.to_string())
    })
}
