//! The request and the checks on responses, with certificates from rcgen
//! and responses signed here, so that each way a response can be wrong is
//! tried (the e2e tests ask a real `openssl ocsp`).

use std::time::Duration;

use const_oid::db::rfc5912::ECDSA_WITH_SHA_256;
use const_oid::db::rfc6960::{ID_PKIX_OCSP_BASIC, ID_PKIX_OCSP_NONCE};
use der::asn1::{BitString, GeneralizedTime, OctetString};
use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::SignatureScheme;
use x509_cert::ext::Extension;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    OcspResponseStatus, ResponderId, ResponseBytes, ResponseData, SingleResponse, Version,
};

use super::response::{verify, Answer, ResponseError, Status};
use super::{request_der, Subject};

const NOW: u64 = 1_800_000_000;
const NONCE: &[u8] = b"0123456789abcdef";

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca(cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = dn(cn);
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn aia(url: &str) -> rcgen::CustomExtension {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: const_oid::db::rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(
            der::asn1::Ia5String::new(url).unwrap(),
        ),
    }]);
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], aia.to_der().unwrap())
}

/// A certificate for `cn` issued by `by`; an intermediate CA when `ca`.
fn issue(
    by: &Ca,
    cn: &str,
    ca: bool,
    eku: Vec<ExtendedKeyUsagePurpose>,
    ext: Vec<rcgen::CustomExtension>,
) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = dn(cn);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params.extended_key_usages = eku;
    params.custom_extensions = ext;
    let cert = params.signed_by(&key, &by.cert, &by.key).unwrap();
    Ca { cert, key }
}

fn parsed(c: &Ca) -> Certificate {
    Certificate::from_der(c.cert.der()).unwrap()
}

fn subject_of(leaf: &Ca, issuer: &Ca) -> Subject {
    Subject::from_chain(&[leaf.cert.der().as_ref()], &[parsed(issuer)]).unwrap()
}

fn time(unix: u64) -> OcspGeneralizedTime {
    OcspGeneralizedTime(GeneralizedTime::from_unix_duration(Duration::from_secs(unix)).unwrap())
}

fn sign(key: &KeyPair, message: &[u8]) -> Vec<u8> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&der).unwrap();
    let signer = signing
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .unwrap();
    signer.sign(message).unwrap()
}

/// What a response says, and who signs it.
struct Reply<'a> {
    cert_id: CertId,
    status: CertStatus,
    this_update: u64,
    next_update: Option<u64>,
    nonce: Option<&'a [u8]>,
    signer: &'a Ca,
    certs: Vec<Certificate>,
}

impl<'a> Reply<'a> {
    fn good(subject: &Subject, signer: &'a Ca) -> Reply<'a> {
        Reply {
            cert_id: subject.cert_id.clone(),
            status: CertStatus::good(),
            this_update: NOW - 60,
            next_update: Some(NOW + 3600),
            nonce: Some(NONCE),
            signer,
            certs: Vec::new(),
        }
    }

    fn der(&self) -> Vec<u8> {
        let extensions = self.nonce.map(|n| {
            let nonce = x509_ocsp::ext::Nonce::new(n.to_vec()).unwrap();
            vec![Extension {
                extn_id: ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: OctetString::new(nonce.to_der().unwrap()).unwrap(),
            }]
        });
        let data = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(vec![0u8; 20]).unwrap()),
            produced_at: time(NOW),
            responses: vec![SingleResponse {
                cert_id: self.cert_id.clone(),
                cert_status: self.status,
                this_update: time(self.this_update),
                next_update: self.next_update.map(time),
                single_extensions: None,
            }],
            response_extensions: extensions,
        };
        let signature = sign(&self.signer.key, &data.to_der().unwrap());
        let basic = BasicOcspResponse {
            tbs_response_data: data,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(&signature).unwrap(),
            certs: (!self.certs.is_empty()).then(|| self.certs.clone()),
        };
        OcspResponse {
            response_status: OcspResponseStatus::Successful,
            response_bytes: Some(ResponseBytes {
                response_type: ID_PKIX_OCSP_BASIC,
                response: OctetString::new(basic.to_der().unwrap()).unwrap(),
            }),
        }
        .to_der()
        .unwrap()
    }
}

#[test]
fn the_issuer_comes_from_the_chain_and_the_responder_from_aia() {
    let root = ca("Root");
    let inter = issue(&root, "Intermediate", true, vec![], vec![]);
    let leaf = issue(
        &inter,
        "alice",
        false,
        vec![],
        vec![aia("http://ocsp.example:8080/q")],
    );
    let chain = [leaf.cert.der().as_ref(), inter.cert.der().as_ref()];
    let subject = Subject::from_chain(&chain, &[parsed(&root)]).unwrap();
    assert_eq!(subject.issuer, parsed(&inter));
    assert_eq!(subject.aia, vec!["http://ocsp.example:8080/q".to_owned()]);
    assert_eq!(subject.responder(None), Some("http://ocsp.example:8080/q"));
    assert_eq!(
        subject.responder(Some("http://override/")),
        Some("http://override/")
    );

    // Two CAs by one name (a key rollover): the one that signed is picked.
    let (old, new) = (ca("Same"), ca("Same"));
    let leaf = issue(&new, "bob", false, vec![], vec![]);
    let subject =
        Subject::from_chain(&[leaf.cert.der().as_ref()], &[parsed(&old), parsed(&new)]).unwrap();
    assert_eq!(subject.issuer, parsed(&new));
    assert!(subject.aia.is_empty());
    assert_eq!(subject.responder(None), None);

    let stranger = issue(&ca("Elsewhere"), "eve", false, vec![], vec![]);
    assert!(Subject::from_chain(&[stranger.cert.der().as_ref()], &[parsed(&root)]).is_err());
}

#[test]
fn the_request_names_the_certificate_and_carries_the_nonce() {
    let root = ca("Root");
    let leaf = issue(&root, "alice", false, vec![], vec![]);
    let subject = subject_of(&leaf, &root);
    let der = request_der(&subject, NONCE).unwrap();
    let request = OcspRequest::from_der(&der).unwrap();
    assert_eq!(request.tbs_request.request_list.len(), 1);
    assert_eq!(
        request.tbs_request.request_list[0].req_cert,
        subject.cert_id
    );
    assert_eq!(request.nonce().unwrap().0.as_bytes(), NONCE);
    assert!(request.optional_signature.is_none());
}

#[test]
fn a_response_signed_by_the_issuer_is_believed() {
    let root = ca("Root");
    let leaf = issue(&root, "alice", false, vec![], vec![]);
    let subject = subject_of(&leaf, &root);
    let mut reply = Reply::good(&subject, &root);
    assert_eq!(
        verify(&reply.der(), &subject, NONCE, NOW),
        Ok(Answer {
            status: Status::Good,
            next_update: Some(NOW + 3600),
        })
    );
    reply.status = CertStatus::Revoked(x509_ocsp::RevokedInfo {
        revocation_time: time(NOW - 3600),
        revocation_reason: None,
    });
    reply.next_update = None;
    reply.nonce = None;
    assert_eq!(
        verify(&reply.der(), &subject, NONCE, NOW),
        Ok(Answer {
            status: Status::Revoked,
            next_update: None,
        })
    );
    reply.status = CertStatus::unknown();
    assert_eq!(
        verify(&reply.der(), &subject, NONCE, NOW).map(|a| a.status),
        Ok(Status::Unknown)
    );
}

#[test]
fn a_wrong_response_is_not_believed() {
    let root = ca("Root");
    let leaf = issue(&root, "alice", false, vec![], vec![]);
    let subject = subject_of(&leaf, &root);
    let check = |reply: &Reply<'_>| verify(&reply.der(), &subject, NONCE, NOW);

    let mut reply = Reply::good(&subject, &root);
    reply.nonce = Some(b"someone else's");
    assert_eq!(check(&reply), Err(ResponseError::Nonce));

    let other = issue(&root, "bob", false, vec![], vec![]);
    let mut reply = Reply::good(&subject, &root);
    reply.cert_id = subject_of(&other, &root).cert_id;
    assert_eq!(check(&reply), Err(ResponseError::NotAnswered));

    let mut reply = Reply::good(&subject, &root);
    reply.next_update = Some(NOW - 3600);
    assert!(matches!(check(&reply), Err(ResponseError::Stale { .. })));
    let mut reply = Reply::good(&subject, &root);
    reply.this_update = NOW + 3600;
    assert!(matches!(check(&reply), Err(ResponseError::Stale { .. })));

    // Signed by a key the issuer never vouched for.
    let rogue = ca("Root");
    let reply = Reply::good(&subject, &rogue);
    assert_eq!(check(&reply), Err(ResponseError::Unauthorized));

    assert!(matches!(
        verify(b"not DER", &subject, NONCE, NOW),
        Err(ResponseError::Malformed(_))
    ));
    let later = OcspResponse::try_later().to_der().unwrap();
    assert_eq!(
        verify(&later, &subject, NONCE, NOW),
        Err(ResponseError::Unsuccessful(OcspResponseStatus::TryLater))
    );
}

#[test]
fn only_a_responder_the_issuer_made_for_ocsp_signing_may_answer() {
    let root = ca("Root");
    let leaf = issue(&root, "alice", false, vec![], vec![]);
    let subject = subject_of(&leaf, &root);
    let responder =
        |by: &Ca, eku: Vec<ExtendedKeyUsagePurpose>| issue(by, "responder", false, eku, vec![]);

    let delegate = responder(&root, vec![ExtendedKeyUsagePurpose::OcspSigning]);
    let mut reply = Reply::good(&subject, &delegate);
    reply.certs = vec![parsed(&delegate)];
    assert_eq!(
        verify(&reply.der(), &subject, NONCE, NOW).map(|a| a.status),
        Ok(Status::Good)
    );

    // Not for OCSP signing.
    let client = responder(&root, vec![ExtendedKeyUsagePurpose::ClientAuth]);
    let mut reply = Reply::good(&subject, &client);
    reply.certs = vec![parsed(&client)];
    assert_eq!(
        verify(&reply.der(), &subject, NONCE, NOW),
        Err(ResponseError::Unauthorized)
    );

    // For OCSP signing, but made by another CA of the same name.
    let foreign = responder(&ca("Root"), vec![ExtendedKeyUsagePurpose::OcspSigning]);
    let mut reply = Reply::good(&subject, &foreign);
    reply.certs = vec![parsed(&foreign)];
    assert_eq!(
        verify(&reply.der(), &subject, NONCE, NOW),
        Err(ResponseError::Unauthorized)
    );
}
