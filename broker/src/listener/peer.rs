//! Who is on the other end: the peer's address, the listener, and the facts
//! of its verified client certificate ([`CertInfo`]), taken once after the
//! handshake. The policy engine sees nothing of TLS but this.

use std::net::SocketAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use warden_policy::CertInfo;
use x509_parser::der_parser::Oid;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry as oids;
use x509_parser::x509::X509Name;

use crate::config::UsernameFrom;

/// The connection's identity as far as the transport knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub listener: Arc<str>,
    pub tls: bool,
    /// Only a certificate that the listener's CA bundle verified; the
    /// session's principal shares it.
    pub cert: Option<Arc<CertInfo>>,
    /// On a listener with OCSP checking: the certificate and its issuer,
    /// or why they could not be told apart from the chain.
    pub ocsp: Option<Arc<Result<crate::ocsp::Subject, String>>>,
}

impl PeerInfo {
    /// The username the listener's `username_from` gives this peer, if it
    /// presented a certificate (and, for `cn`, the subject has a CN).
    pub fn mapped_username(&self, from: UsernameFrom) -> Option<String> {
        let cert = self.cert.as_ref()?;
        match from {
            UsernameFrom::Cn => cert.cn.clone(),
            UsernameFrom::Subject => Some(cert.subject.clone()),
            UsernameFrom::SanDns => cert.san_dns.first().cloned(),
            UsernameFrom::SanEmail => cert.san_email.first().cloned(),
            UsernameFrom::SanUri => cert.san_uri.first().cloned(),
        }
    }
}

/// The facts of a DER certificate: subject, CN, O, OU, issuer, serial,
/// SANs (DNS, e-mail, URI), and the hex SHA-256 fingerprint of the DER.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    parse_leaf(der).map(|(info, _)| info)
}

/// A certificate's validity period in Unix seconds, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// The period in which both are valid (empty when they do not overlap).
    pub(super) fn intersect(self, other: Validity) -> Validity {
        Validity {
            not_before: self.not_before.max(other.not_before),
            not_after: self.not_after.min(other.not_after),
        }
    }

    fn of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Validity {
        let v = cert.validity();
        Validity {
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
        }
    }
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| format!("cannot parse: {e}"))
}

/// The validity period of a DER certificate.
pub(super) fn validity(der: &[u8]) -> Result<Validity, String> {
    parse(der).map(|cert| Validity::of(&cert))
}

/// [`cert_info`] and the validity period, from one parse.
pub(super) fn parse_leaf(der: &[u8]) -> Result<(CertInfo, Validity), String> {
    let cert = parse(der)?;
    let subject = cert.subject();
    let cn = first_attr(subject.iter_common_name());
    let o = first_attr(subject.iter_organization());
    let ou = first_attr(subject.iter_organizational_unit());
    let mut sans = Vec::new();
    let (mut san_dns, mut san_email, mut san_uri) = (Vec::new(), Vec::new(), Vec::new());
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    if let Some(ext) = ext {
        for name in &ext.value.general_names {
            let (value, list) = match name {
                GeneralName::DNSName(s) => (*s, &mut san_dns),
                GeneralName::RFC822Name(s) => (*s, &mut san_email),
                GeneralName::URI(s) => (*s, &mut san_uri),
                _ => continue,
            };
            sans.push(value.to_owned());
            list.push(value.to_owned());
        }
    }
    let info = CertInfo {
        subject: subject_string(subject),
        cn,
        sans,
        fingerprint: hex::encode(Sha256::digest(der)),
        o,
        ou,
        serial: serial_hex(cert.raw_serial()),
        issuer: subject_string(cert.issuer()),
        san_dns,
        san_email,
        san_uri,
    };
    Ok((info, Validity::of(&cert)))
}

/// The first value of an attribute that is a string.
fn first_attr<'a>(
    mut attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    attrs
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned)
}

/// A serial number as lower-case hex, without the sign-padding zero bytes
/// DER adds (so `openssl x509 -serial` and CRL entries give the same text).
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// The subject as RFC 4514 writes it: the last RDN first, `,` between RDNs,
/// `+` inside a multi-valued one, special characters escaped.
pub fn subject_string(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let value = match atv.as_str() {
                        Ok(s) => escape(s),
                        Err(_) => format!("#{}", hex::encode(atv.as_slice())),
                    };
                    format!("{}={value}", attr_name(atv.attr_type()))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attr_name(oid: &Oid<'_>) -> String {
    let known = [
        (oids::OID_X509_COMMON_NAME, "CN"),
        (oids::OID_X509_ORGANIZATION_NAME, "O"),
        (oids::OID_X509_ORGANIZATIONAL_UNIT, "OU"),
        (oids::OID_X509_COUNTRY_NAME, "C"),
        (oids::OID_X509_LOCALITY_NAME, "L"),
        (oids::OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
        (oids::OID_X509_STREET_ADDRESS, "STREET"),
        (oids::OID_DOMAIN_COMPONENT, "DC"),
        (oids::OID_USERID, "UID"),
        (oids::OID_PKCS9_EMAIL_ADDRESS, "emailAddress"),
        (oids::OID_X509_SERIALNUMBER, "serialNumber"),
    ];
    known
        .iter()
        .find(|(o, _)| o == oid)
        .map_or_else(|| oid.to_id_string(), |(_, n)| (*n).to_owned())
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_rfc4514_specials() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("trail "), "trail\\ ");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("plain"), "plain");
    }

    fn peer(cert: Option<CertInfo>) -> PeerInfo {
        PeerInfo {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            listener: Arc::from("tls"),
            tls: true,
            cert: cert.map(Arc::new),
            ocsp: None,
        }
    }

    #[test]
    fn mapped_username_follows_the_setting() {
        let info = CertInfo {
            subject: "CN=alice,O=Acme".to_owned(),
            cn: Some("alice".to_owned()),
            san_dns: vec!["a.example".to_owned(), "b.example".to_owned()],
            san_email: vec!["alice@example.com".to_owned()],
            ..CertInfo::default()
        };
        let p = peer(Some(info));
        assert_eq!(
            p.mapped_username(UsernameFrom::Cn).as_deref(),
            Some("alice")
        );
        assert_eq!(
            p.mapped_username(UsernameFrom::Subject).as_deref(),
            Some("CN=alice,O=Acme")
        );
        assert_eq!(
            p.mapped_username(UsernameFrom::SanDns).as_deref(),
            Some("a.example")
        );
        assert_eq!(
            p.mapped_username(UsernameFrom::SanEmail).as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(p.mapped_username(UsernameFrom::SanUri), None);
        assert_eq!(peer(None).mapped_username(UsernameFrom::Cn), None);
    }

    #[test]
    fn serials_lose_their_sign_padding() {
        assert_eq!(serial_hex(&[0x00, 0x9f, 0x01]), "9f01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x12]), "12");
    }
}
