//! Placeholder templates (`${username}`, `${clientid}`, `${cert.cn}`,
//! `${cert.san}`, `${cert.o}`, `${cert.ou}`, `${cert.serial}`,
//! `${cert.fingerprint}`): parsing, validation and substitution for one
//! principal.
//!
//! A value that is missing, empty, or would change the shape of a topic
//! filter (`+`, `#`, `/`, U+0000, or a `$` that would start the topic) is
//! never substituted; the caller decides what an unusable rule becomes.

use serde::Serialize;

use crate::error::PolicyError;
use crate::principal::Principal;
use crate::topic::validate_filter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placeholder {
    Username,
    ClientId,
    CertCn,
    CertSan,
    CertO,
    CertOu,
    CertSerial,
    CertFingerprint,
}

impl Placeholder {
    fn from_name(name: &str) -> Option<Placeholder> {
        match name {
            "username" => Some(Placeholder::Username),
            "clientid" => Some(Placeholder::ClientId),
            "cert.cn" => Some(Placeholder::CertCn),
            "cert.san" => Some(Placeholder::CertSan),
            "cert.o" => Some(Placeholder::CertO),
            "cert.ou" => Some(Placeholder::CertOu),
            "cert.serial" => Some(Placeholder::CertSerial),
            "cert.fingerprint" => Some(Placeholder::CertFingerprint),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Username => "${username}",
            Placeholder::ClientId => "${clientid}",
            Placeholder::CertCn => "${cert.cn}",
            Placeholder::CertSan => "${cert.san}",
            Placeholder::CertO => "${cert.o}",
            Placeholder::CertOu => "${cert.ou}",
            Placeholder::CertSerial => "${cert.serial}",
            Placeholder::CertFingerprint => "${cert.fingerprint}",
        }
    }

    /// Whether the value comes from the client certificate.
    pub fn is_cert(self) -> bool {
        !matches!(self, Placeholder::Username | Placeholder::ClientId)
    }
}

/// Why a placeholder value could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueProblem {
    /// The principal has no such value (no username, no certificate, no CN/SAN).
    Missing,
    Empty,
    /// The value contains `+`, `#`, `/` or U+0000 (topic rules) or U+0000 (connect rules).
    ForbiddenChar,
    /// The value starts with `$` and would start the topic, reaching `$SYS`-style topics.
    LeadingDollar,
    /// The substituted filter is not a valid topic filter (for example too long).
    InvalidResult,
}

impl std::fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueProblem::Missing => "no value for this client",
            ValueProblem::Empty => "the value is empty",
            ValueProblem::ForbiddenChar => "the value contains '+', '#', '/' or U+0000",
            ValueProblem::LeadingDollar => "the value starts with '$' at the start of the topic",
            ValueProblem::InvalidResult => "the substituted filter is not valid",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Lit(&'a str),
    Ph(Placeholder),
}

/// Splits a template into literal and placeholder segments. A `$` not
/// followed by `{` is literal, so `$SYS/#` needs no escaping.
pub(crate) fn parse(pattern: &str) -> Result<Vec<Segment<'_>>, PolicyError> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            out.push(Segment::Lit(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| PolicyError::UnterminatedPlaceholder(pattern.to_owned()))?;
        let name = &after[..end];
        let ph = Placeholder::from_name(name)
            .ok_or_else(|| PolicyError::UnknownPlaceholder(name.to_owned()))?;
        out.push(Segment::Ph(ph));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Segment::Lit(rest));
    }
    Ok(out)
}

pub(crate) fn has_placeholder(segments: &[Segment<'_>], ph: Placeholder) -> bool {
    segments.contains(&Segment::Ph(ph))
}

pub(crate) fn has_cert_placeholder(segments: &[Segment<'_>]) -> bool {
    segments
        .iter()
        .any(|s| matches!(s, Segment::Ph(ph) if ph.is_cert()))
}

pub(crate) fn validate_filter_template(pattern: &str) -> Result<(), PolicyError> {
    let segments = parse(pattern)?;
    let sample: String = segments
        .iter()
        .map(|s| match s {
            Segment::Lit(l) => *l,
            Segment::Ph(_) => "x",
        })
        .collect();
    validate_filter(&sample).map_err(|source| PolicyError::InvalidFilter {
        pattern: pattern.to_owned(),
        source,
    })
}

pub(crate) fn validate_client_id_pattern(pattern: &str) -> Result<(), PolicyError> {
    parse(pattern)?;
    if pattern.is_empty() || pattern.contains('\0') {
        return Err(PolicyError::InvalidClientIdPattern);
    }
    Ok(())
}

/// The value of a placeholder for this principal; `san` is the SAN chosen
/// for this expansion of a `${cert.san}` rule.
pub(crate) fn value<'p>(
    ph: Placeholder,
    p: &'p Principal,
    san: Option<&'p str>,
) -> Option<&'p str> {
    match ph {
        Placeholder::Username => p.username.as_deref(),
        Placeholder::ClientId => Some(&p.client_id),
        Placeholder::CertCn => p.cert.as_ref().and_then(|c| c.cn.as_deref()),
        Placeholder::CertSan => san,
        Placeholder::CertO => p.cert.as_ref().and_then(|c| c.o.as_deref()),
        Placeholder::CertOu => p.cert.as_ref().and_then(|c| c.ou.as_deref()),
        Placeholder::CertSerial => p.cert.as_ref().map(|c| c.serial.as_str()),
        Placeholder::CertFingerprint => p.cert.as_ref().map(|c| c.fingerprint.as_str()),
    }
}

/// A placeholder that could not be substituted, and the literal text built
/// before it (used to widen deny rules, never allow rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unusable {
    pub placeholder: Placeholder,
    pub problem: ValueProblem,
    pub prefix: String,
}

/// Substitutes a topic-filter template.
pub(crate) fn substitute_filter(
    segments: &[Segment<'_>],
    p: &Principal,
    san: Option<&str>,
) -> Result<String, Unusable> {
    let mut built = String::new();
    for seg in segments {
        match seg {
            Segment::Lit(l) => built.push_str(l),
            Segment::Ph(ph) => {
                let problem = match value(*ph, p, san) {
                    None => Some(ValueProblem::Missing),
                    Some("") => Some(ValueProblem::Empty),
                    Some(v) if v.contains(['+', '#', '/', '\0']) => {
                        Some(ValueProblem::ForbiddenChar)
                    }
                    Some(v) if v.starts_with('$') && built.is_empty() => {
                        Some(ValueProblem::LeadingDollar)
                    }
                    Some(v) => {
                        built.push_str(v);
                        None
                    }
                };
                if let Some(problem) = problem {
                    return Err(Unusable {
                        placeholder: *ph,
                        problem,
                        prefix: built,
                    });
                }
            }
        }
    }
    if validate_filter(&built).is_err() {
        let placeholder = first_placeholder(segments).unwrap_or(Placeholder::Username);
        return Err(Unusable {
            placeholder,
            problem: ValueProblem::InvalidResult,
            prefix: String::new(),
        });
    }
    Ok(built)
}

fn first_placeholder(segments: &[Segment<'_>]) -> Option<Placeholder> {
    segments.iter().find_map(|s| match s {
        Segment::Ph(ph) => Some(*ph),
        Segment::Lit(_) => None,
    })
}
