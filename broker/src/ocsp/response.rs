//! An OCSP response, checked before it is believed (RFC 6960 §3.2): a
//! successful basic response, signed by the certificate's issuer or by a
//! responder certificate the issuer signed for `id-kp-OCSPSigning`, echoing
//! our nonce if it echoes one, naming our CertID, and current (thisUpdate
//! not in the future, nextUpdate not past, both give or take [`SKEW_SECS`]).

use const_oid::db::rfc5280::ID_KP_OCSP_SIGNING;
use const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC;
use der::{Decode, Encode};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus};

use super::signature::{self, SignatureError};
use super::subject::Subject;

/// Clock difference tolerated between the responder and us (OpenSSL's
/// `OCSP_check_validity` allows the same by default).
pub const SKEW_SECS: u64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Good,
    Revoked,
    Unknown,
}

/// What a verified response says about our certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: Status,
    /// Unix seconds; `None` when the responder gave no nextUpdate (then the
    /// answer is not kept: newer information is always available).
    pub next_update: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("not an OCSP response: {0}")]
    Malformed(String),
    #[error("the responder answered {0:?}")]
    Unsuccessful(OcspResponseStatus),
    #[error("response signature: {0}")]
    Signature(SignatureError),
    #[error("response signed by neither the issuer nor a responder it authorized")]
    Unauthorized,
    #[error("the response's nonce is not the request's")]
    Nonce,
    #[error("the response says nothing about this certificate")]
    NotAnswered,
    #[error("the response is not current (thisUpdate {this_update}, nextUpdate {next_update:?}, now {now})")]
    Stale {
        this_update: u64,
        next_update: Option<u64>,
        now: u64,
    },
}

fn malformed(e: impl std::fmt::Display) -> ResponseError {
    ResponseError::Malformed(e.to_string())
}

/// Checks `body`, the responder's answer to a request about `subject` that
/// carried `nonce`, at `now` (Unix seconds).
pub fn verify(
    body: &[u8],
    subject: &Subject,
    nonce: &[u8],
    now: u64,
) -> Result<Answer, ResponseError> {
    let response = OcspResponse::from_der(body).map_err(malformed)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(ResponseError::Unsuccessful(response.response_status));
    }
    let bytes = response
        .response_bytes
        .ok_or_else(|| malformed("successful, but no response bytes"))?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(malformed(format!(
            "response type {} is not basic",
            bytes.response_type
        )));
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(malformed)?;
    check_signer(&basic, &subject.issuer, now)?;
    if let Some(echoed) = basic.nonce() {
        // A responder may leave the nonce out (pre-signed answers), but one
        // it puts in must be ours: anything else is a replay.
        if echoed.0.as_bytes() != nonce {
            return Err(ResponseError::Nonce);
        }
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|r| r.cert_id == subject.cert_id)
        .ok_or(ResponseError::NotAnswered)?;
    let this_update = single.this_update.0.to_unix_duration().as_secs();
    let next_update = single.next_update.map(|t| t.0.to_unix_duration().as_secs());
    let future = this_update > now.saturating_add(SKEW_SECS);
    let expired = next_update.is_some_and(|n| n.saturating_add(SKEW_SECS) < now);
    if future || expired {
        return Err(ResponseError::Stale {
            this_update,
            next_update,
            now,
        });
    }
    let status = match single.cert_status {
        CertStatus::Good(_) => Status::Good,
        CertStatus::Revoked(_) => Status::Revoked,
        CertStatus::Unknown(_) => Status::Unknown,
    };
    Ok(Answer {
        status,
        next_update,
    })
}

/// The response is signed by `issuer` itself, or by a certificate in it
/// that `issuer` signed for OCSP signing and that is valid now.
fn check_signer(
    basic: &BasicOcspResponse,
    issuer: &Certificate,
    now: u64,
) -> Result<(), ResponseError> {
    let tbs = basic.tbs_response_data.to_der().map_err(malformed)?;
    let sig = basic
        .signature
        .as_bytes()
        .ok_or_else(|| malformed("signature is not whole bytes"))?;
    let by = |cert: &Certificate| {
        signature::verify(
            &cert.tbs_certificate.subject_public_key_info,
            &basic.signature_algorithm,
            &tbs,
            sig,
        )
    };
    let mut first_error = match by(issuer) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    for delegate in basic.certs.iter().flatten() {
        if !authorized(delegate, issuer, now) {
            continue;
        }
        match by(delegate) {
            Ok(()) => return Ok(()),
            Err(e) => first_error = e,
        }
    }
    Err(match first_error {
        SignatureError::Invalid => ResponseError::Unauthorized,
        other => ResponseError::Signature(other),
    })
}

/// Whether `issuer` made `delegate` an OCSP responder (RFC 6960 §4.2.2.2).
fn authorized(delegate: &Certificate, issuer: &Certificate, now: u64) -> bool {
    let tbs = &delegate.tbs_certificate;
    if tbs.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let validity = &tbs.validity;
    let from = validity.not_before.to_unix_duration().as_secs();
    let until = validity.not_after.to_unix_duration().as_secs();
    if now < from || now > until {
        return false;
    }
    let ocsp_signing = matches!(
        tbs.get::<ExtendedKeyUsage>(),
        Ok(Some((_, eku))) if eku.0.contains(&ID_KP_OCSP_SIGNING)
    );
    if !ocsp_signing {
        return false;
    }
    let (Ok(signed), Some(sig)) = (tbs.to_der(), delegate.signature.as_bytes()) else {
        return false;
    };
    signature::verify(
        &issuer.tbs_certificate.subject_public_key_info,
        &delegate.signature_algorithm,
        &signed,
        sig,
    )
    .is_ok()
}
