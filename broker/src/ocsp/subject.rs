//! What an OCSP request is about: the client's certificate and the CA
//! certificate that issued it, found in the chain the handshake verified
//! (the intermediates the client sent, then the listener's client CA
//! bundle). From them come the CertID (hashes of the issuer's name and key,
//! and the serial), which names the certificate to the responder and keys
//! the cache, and the responder URLs of the certificate's Authority
//! Information Access extension.

use std::fmt;

use const_oid::db::rfc5280::ID_AD_OCSP;
use const_oid::db::rfc5912::ID_SHA_1;
use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use sha1::{Digest, Sha1};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::CertId;

use super::signature;

/// A verified client certificate, ready to be asked about.
#[derive(Clone, PartialEq, Eq)]
pub struct Subject {
    pub(super) cert_id: CertId,
    /// The DER of `cert_id`: the cache key.
    pub(super) key: Vec<u8>,
    /// `http://` OCSP URLs from the certificate's AIA, in its order.
    pub(super) aia: Vec<String>,
    /// Signs the answers, or authorizes the responder that does.
    pub(super) issuer: Certificate,
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field(
                "serial",
                &hex::encode(self.cert_id.serial_number.as_bytes()),
            )
            .field("aia", &self.aia)
            .finish_non_exhaustive()
    }
}

/// Parses the listener's client CA bundle for [`Subject::from_chain`].
pub fn parse_roots<'a>(
    ders: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Certificate>, String> {
    ders.into_iter()
        .map(|d| Certificate::from_der(d).map_err(|e| format!("CA certificate: {e}")))
        .collect()
}

impl Subject {
    /// `chain` is what the client sent, leaf first, and already verified
    /// against `roots`; the issuer is whichever of the other certificates
    /// names the leaf's issuer and, when several do, signed the leaf.
    pub fn from_chain(chain: &[&[u8]], roots: &[Certificate]) -> Result<Subject, String> {
        let (leaf, presented) = chain.split_first().ok_or("no certificate")?;
        let leaf = Certificate::from_der(leaf).map_err(|e| format!("cannot parse: {e}"))?;
        let presented: Vec<Certificate> = presented
            .iter()
            .filter_map(|d| Certificate::from_der(d).ok())
            .collect();
        let named: Vec<&Certificate> = presented
            .iter()
            .chain(roots)
            .filter(|c| c.tbs_certificate.subject == leaf.tbs_certificate.issuer)
            .collect();
        let issuer = match named.as_slice() {
            [] => return Err("issuer not in the verified chain".to_owned()),
            // The only certificate with that name is the one the verifier
            // built the path with: no signature to check again.
            [one] => (*one).clone(),
            several => (*several
                .iter()
                .find(|c| signed(&leaf, c))
                .ok_or("no issuer in the chain signed the certificate")?)
            .clone(),
        };
        let cert_id = cert_id(&leaf, &issuer).map_err(|e| format!("CertID: {e}"))?;
        let key = cert_id.to_der().map_err(|e| format!("CertID: {e}"))?;
        Ok(Subject {
            cert_id,
            key,
            aia: aia_urls(&leaf),
            issuer,
        })
    }

    /// The responder to ask: the configured one, else the first from AIA.
    pub(super) fn responder<'a>(&'a self, configured: Option<&'a str>) -> Option<&'a str> {
        configured.or_else(|| self.aia.first().map(String::as_str))
    }

    /// The serial as lower-case hex, for log lines.
    pub(super) fn serial(&self) -> String {
        crate::listener::serial_hex(self.cert_id.serial_number.as_bytes())
    }
}

fn signed(cert: &Certificate, by: &Certificate) -> bool {
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    let Some(sig) = cert.signature.as_bytes() else {
        return false;
    };
    signature::verify(
        &by.tbs_certificate.subject_public_key_info,
        &cert.signature_algorithm,
        &tbs,
        sig,
    )
    .is_ok()
}

/// The CertID with SHA-1, which every responder understands (RFC 5019
/// requires it; the hashes only identify, they protect nothing).
fn cert_id(leaf: &Certificate, issuer: &Certificate) -> Result<CertId, der::Error> {
    let name = leaf.tbs_certificate.issuer.to_der()?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ID_SHA_1,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(Sha1::digest(name).to_vec())?,
        issuer_key_hash: OctetString::new(Sha1::digest(key).to_vec())?,
        serial_number: leaf.tbs_certificate.serial_number.clone(),
    })
}

/// The `http://` OCSP responder URLs of the AIA extension; an extension
/// that does not parse names none.
fn aia_urls(cert: &Certificate) -> Vec<String> {
    let Ok(Some((_, aia))) = cert.tbs_certificate.get::<AuthorityInfoAccessSyntax>() else {
        return Vec::new();
    };
    aia.0
        .iter()
        .filter(|d| d.access_method == ID_AD_OCSP)
        .filter_map(|d| match &d.access_location {
            GeneralName::UniformResourceIdentifier(uri) => {
                crate::config::ocsp_responder_url(uri.as_str()).ok()
            }
            _ => None,
        })
        .collect()
}
