//! OCSP (RFC 6960) checking of client certificates at login, on listeners
//! with `ocsp: soft_fail | hard_fail`.
//!
//! The handshake (`listener`) finds the verified certificate's issuer and
//! makes a [`Subject`]; CONNECT handling (`session::connect`) asks
//! [`OcspChecker::check`] before authenticating. The checker answers from
//! its cache, or POSTs a request with a fresh nonce to the responder (the
//! listener's `ocsp_responder`, else the certificate's AIA URL) under the
//! listener's `ocsp_timeout`, verifies the response (`response.rs`) and
//! keeps a definitive answer until its nextUpdate.
//!
//! `good` admits. `revoked` refuses in both modes. Anything else (no
//! responder to ask, no issuer, unreachable, timeout, an invalid or
//! unsuccessful response, `unknown`) admits under soft_fail, with one
//! WARN per responder and cause until that responder answers again, and
//! refuses under hard_fail. The check runs only at login: a connection
//! already up is not asked about again (CRLs do that).

mod http;
mod response;
mod signature;
mod subject;

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use der::asn1::OctetString;
use der::Encode;
use moka::sync::Cache;
use moka::Expiry;
use parking_lot::Mutex;
use rand::RngCore;
use x509_cert::ext::Extension;
use x509_ocsp::{OcspRequest, Request, TbsRequest, Version};

use crate::config::{OcspMode, OcspSettings};
use crate::observe::stats::Counts;

pub use response::{ResponseError, Status};
pub use subject::{parse_roots, Subject};

/// Answers kept at most (a CertID and a status, ~100 bytes each).
const CAPACITY: u64 = 10_000;

/// An answer is kept until its nextUpdate, but no longer than this: a
/// responder announcing next week's update has not promised that nothing
/// will be revoked before then.
const MAX_KEEP: Duration = Duration::from_secs(24 * 3600);

/// Why a certificate's status could not be established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Neither `ocsp_responder` nor an AIA URL.
    NoResponder,
    /// The issuer could not be told from the chain.
    NoIssuer,
    Unreachable,
    Timeout,
    /// Not a response we can believe (bad signature, wrong nonce, stale…).
    Invalid,
    /// The responder answered, but with an error status (tryLater…).
    ResponderError,
    /// The responder does not know the certificate.
    Unknown,
}

impl Cause {
    /// The metrics' and audit log's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::NoResponder => "no_responder",
            Cause::NoIssuer => "no_issuer",
            Cause::Unreachable => "unreachable",
            Cause::Timeout => "timeout",
            Cause::Invalid => "invalid",
            Cause::ResponderError => "responder_error",
            Cause::Unknown => "unknown",
        }
    }
}

/// Why a login is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Revoked,
    /// hard_fail without a usable answer.
    Unverified {
        cause: Cause,
        detail: String,
    },
}

impl Refusal {
    /// Whether trying again later may succeed (the responder was down or
    /// gave no usable answer), rather than the answer being no.
    pub fn may_pass(&self) -> bool {
        match self {
            Refusal::Revoked => false,
            Refusal::Unverified { cause, .. } => *cause != Cause::Unknown,
        }
    }

    /// The auth failure reason counted and audited.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Revoked => "certificate_revoked",
            Refusal::Unverified { .. } => "certificate_status_unknown",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Revoked => f.write_str("certificate revoked (OCSP)"),
            Refusal::Unverified { cause, detail } => write!(
                f,
                "certificate status not established (OCSP {}: {detail}; ocsp: hard_fail)",
                cause.as_str()
            ),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Kept {
    status: Status,
    /// From the insertion to the answer's nextUpdate (capped).
    keep: Duration,
}

struct KeepUntilNextUpdate;

impl Expiry<Vec<u8>, Kept> for KeepUntilNextUpdate {
    fn expire_after_create(&self, _: &Vec<u8>, kept: &Kept, _: Instant) -> Option<Duration> {
        Some(kept.keep)
    }
}

/// The broker's OCSP client: the answer cache and the warnings given.
pub struct OcspChecker {
    /// By the DER of the CertID: an answer is the issuer's signed word
    /// about one certificate, whichever listener asked.
    cache: Cache<Vec<u8>, Kept>,
    /// (responder, cause) pairs warned about since the responder last
    /// gave a definitive answer.
    warned: Mutex<HashSet<(String, Cause)>>,
    /// Checks by (result, where the answer came from).
    pub counts: Counts<(&'static str, &'static str)>,
}

impl fmt::Debug for OcspChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OcspChecker")
            .field("cached", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Default for OcspChecker {
    fn default() -> Self {
        OcspChecker {
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(KeepUntilNextUpdate)
                .build(),
            warned: Mutex::default(),
            counts: Counts::default(),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn status_str(status: Status) -> &'static str {
    match status {
        Status::Good => "good",
        Status::Revoked => "revoked",
        Status::Unknown => "unknown",
    }
}

/// The outcome of asking, before the mode decides.
enum Asked {
    Answer(Status),
    Failed {
        cause: Cause,
        responder: String,
        detail: String,
    },
}

impl OcspChecker {
    /// Whether the client with this certificate may log in on `listener`.
    /// `subject` is `None` when the handshake could not make one (the
    /// reason is in `subject_error`).
    pub async fn check(
        &self,
        listener: &str,
        settings: &OcspSettings,
        subject: Result<&Subject, &str>,
    ) -> Result<(), Refusal> {
        let asked = match subject {
            Ok(subject) => self.ask(settings, subject).await,
            Err(why) => {
                self.counts.inc((Cause::NoIssuer.as_str(), "none"));
                Asked::Failed {
                    cause: Cause::NoIssuer,
                    responder: "-".to_owned(),
                    detail: why.to_owned(),
                }
            }
        };
        let (cause, responder, detail) = match asked {
            Asked::Answer(Status::Good) => return Ok(()),
            Asked::Answer(Status::Revoked) => return Err(Refusal::Revoked),
            Asked::Answer(Status::Unknown) => (
                Cause::Unknown,
                subject
                    .ok()
                    .and_then(|s| s.responder(settings.responder.as_deref()))
                    .unwrap_or("-")
                    .to_owned(),
                "the responder does not know the certificate".to_owned(),
            ),
            Asked::Failed {
                cause,
                responder,
                detail,
            } => (cause, responder, detail),
        };
        if settings.mode == OcspMode::HardFail {
            return Err(Refusal::Unverified { cause, detail });
        }
        let first = self.warned.lock().insert((responder.clone(), cause));
        if first {
            tracing::warn!(
                %listener,
                %responder,
                cause = %cause.as_str(),
                "OCSP: certificate status not established ({detail}); clients are let in (ocsp: soft_fail); \
                 further failures of this kind are logged at DEBUG until the responder answers"
            );
        } else {
            tracing::debug!(%listener, %responder, cause = %cause.as_str(), "OCSP: {detail}; let in (soft_fail)");
        }
        Ok(())
    }

    async fn ask(&self, settings: &OcspSettings, subject: &Subject) -> Asked {
        if let Some(kept) = self.cache.get(&subject.key) {
            self.counts.inc((status_str(kept.status), "cache"));
            return Asked::Answer(kept.status);
        }
        let Some(responder) = subject.responder(settings.responder.as_deref()) else {
            self.counts.inc((Cause::NoResponder.as_str(), "none"));
            return Asked::Failed {
                cause: Cause::NoResponder,
                responder: "-".to_owned(),
                detail: "no ocsp_responder set and no OCSP URL in the certificate".to_owned(),
            };
        };
        let failed = |cause: Cause, detail: String| {
            self.counts.inc((cause.as_str(), "responder"));
            Asked::Failed {
                cause,
                responder: responder.to_owned(),
                detail,
            }
        };
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let request = match request_der(subject, &nonce) {
            Ok(r) => r,
            Err(e) => return failed(Cause::Invalid, format!("cannot encode the request: {e}")),
        };
        let body =
            match tokio::time::timeout(settings.timeout, http::post(responder, request)).await {
                Err(_) => {
                    return failed(
                        Cause::Timeout,
                        format!(
                            "no answer within {}",
                            humantime::format_duration(settings.timeout)
                        ),
                    )
                }
                Ok(Err(http::HttpError::Connect(e))) => {
                    return failed(Cause::Unreachable, format!("cannot connect: {e}"))
                }
                Ok(Err(e)) => return failed(Cause::Unreachable, e.to_string()),
                Ok(Ok(body)) => body,
            };
        let now = unix_now();
        let answer = match response::verify(&body, subject, &nonce, now) {
            Ok(a) => a,
            Err(ResponseError::Unsuccessful(status)) => {
                return failed(
                    Cause::ResponderError,
                    format!("the responder answered {status:?}"),
                )
            }
            Err(e) => return failed(Cause::Invalid, e.to_string()),
        };
        self.counts.inc((status_str(answer.status), "responder"));
        tracing::debug!(%responder, serial = %subject.serial(), status = status_str(answer.status), next_update = ?answer.next_update, "OCSP answer");
        self.recovered(responder);
        if let Some(next) = answer.next_update {
            let keep = Duration::from_secs(next.saturating_sub(now)).min(MAX_KEEP);
            if !keep.is_zero() {
                self.cache.insert(
                    subject.key.clone(),
                    Kept {
                        status: answer.status,
                        keep,
                    },
                );
            }
        }
        Asked::Answer(answer.status)
    }

    /// A definitive answer from `responder`: its earlier failures may be
    /// warned about again.
    fn recovered(&self, responder: &str) {
        let mut warned = self.warned.lock();
        let before = warned.len();
        warned.retain(|(r, _)| r != responder);
        if warned.len() != before {
            tracing::info!(%responder, "OCSP responder answering again");
        }
    }
}

/// An unsigned request about `subject` carrying `nonce` (RFC 8954).
fn request_der(subject: &Subject, nonce: &[u8]) -> Result<Vec<u8>, der::Error> {
    let nonce = x509_ocsp::ext::Nonce::new(nonce.to_vec())?;
    let extension = Extension {
        extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE,
        critical: false,
        extn_value: OctetString::new(nonce.to_der()?)?,
    };
    OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: subject.cert_id.clone(),
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![extension]),
        },
        optional_signature: None,
    }
    .to_der()
}

#[cfg(test)]
mod tests;
