//! Certificates made fresh for each test: a CA, a server certificate for
//! 127.0.0.1/localhost, client certificates on demand, and a second "rogue" CA
//! whose client certificates the broker must refuse. Nothing here is committed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};

/// A certificate and its key, both written as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertFiles {
    /// The DER of the certificate.
    pub fn der(&self) -> Vec<u8> {
        let mut reader = self.cert_pem.as_bytes();
        let der = rustls_pemfile::certs(&mut reader)
            .next()
            .expect("a certificate")
            .expect("PEM")
            .to_vec();
        der
    }

    /// Lower-case hex SHA-256 of the DER, as the broker names it.
    pub fn fingerprint(&self) -> String {
        Sha256::digest(self.der())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What goes into a client certificate besides its CN.
#[derive(Clone, Debug, Default)]
pub struct ClientSpec {
    pub dns: Vec<String>,
    pub email: Vec<String>,
    pub uri: Vec<String>,
    pub ou: Option<String>,
    /// The serial number (big-endian bytes); random when None.
    pub serial: Option<Vec<u8>>,
    /// An OCSP responder URL put in the Authority Information Access
    /// extension.
    pub ocsp_url: Option<String>,
}

struct Authority {
    cert: Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name = dn(name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA self-sign");
        Self { cert, key }
    }

    fn issue(&self, params: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Warden e2e");
    dn
}

/// The test PKI, written into `dir`.
pub struct TestPki {
    dir: PathBuf,
    ca: Authority,
    rogue: Authority,
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub rogue_ca_file: PathBuf,
    pub server: CertFiles,
}

impl TestPki {
    pub fn new(dir: &Path) -> Self {
        let ca = Authority::new("Warden e2e CA");
        let rogue = Authority::new("Rogue CA");
        let ca_pem = ca.cert.pem();
        let ca_file = dir.join("ca.pem");
        write(&ca_file, &ca_pem);
        let rogue_ca_file = dir.join("rogue-ca.pem");
        write(&rogue_ca_file, &rogue.cert.pem());

        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("server params");
        params.distinguished_name = dn("localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let (cert_pem, key_pem) = ca.issue(params);
        let server = save(dir, "server", cert_pem, key_pem);
        Self {
            dir: dir.to_path_buf(),
            ca,
            rogue,
            ca_file,
            ca_pem,
            rogue_ca_file,
            server,
        }
    }

    /// A client certificate with subject CN=`cn`, signed by the test CA.
    pub fn client(&self, cn: &str) -> CertFiles {
        let (cert, key) = self.ca.issue(client_params(cn));
        save(&self.dir, &format!("client-{cn}"), cert, key)
    }

    /// A client certificate with subject CN=`cn` and what `spec` adds,
    /// signed by the test CA; written as `client-<stem>`.
    pub fn client_with(&self, stem: &str, cn: &str, spec: &ClientSpec) -> CertFiles {
        let mut params = client_params(cn);
        let ia5 = |s: &String| rcgen::Ia5String::try_from(s.as_str()).expect("ASCII SAN");
        params.subject_alt_names = spec
            .dns
            .iter()
            .map(|s| SanType::DnsName(ia5(s)))
            .chain(spec.email.iter().map(|s| SanType::Rfc822Name(ia5(s))))
            .chain(spec.uri.iter().map(|s| SanType::URI(ia5(s))))
            .collect();
        if let Some(ou) = &spec.ou {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, ou.as_str());
        }
        if let Some(serial) = &spec.serial {
            params.serial_number = Some(SerialNumber::from_slice(serial));
        }
        if let Some(url) = &spec.ocsp_url {
            params.custom_extensions.push(aia_ocsp(url));
        }
        let (cert, key) = self.ca.issue(params);
        save(&self.dir, &format!("client-{stem}"), cert, key)
    }

    /// An OCSP responder certificate (extended key usage OCSPSigning),
    /// signed by the test CA, or by the rogue CA when `rogue`; written as
    /// `<stem>.pem` and `<stem>.key`.
    pub fn ocsp_signer(&self, stem: &str, rogue: bool) -> CertFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("responder params");
        params.distinguished_name = dn(stem);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let issuer = if rogue { &self.rogue } else { &self.ca };
        let (cert, key) = issuer.issue(params);
        save(&self.dir, stem, cert, key)
    }

    /// A CRL from the test CA revoking these serials, as PEM.
    pub fn crl(&self, revoked: &[&[u8]]) -> String {
        CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(revoked.len() as u64 + 1),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: rcgen::date_time_ymd(2020, 1, 2),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.ca.cert, &self.ca.key)
        .expect("sign CRL")
        .pem()
        .expect("CRL PEM")
    }

    /// The test CA's certificate and key as PEM (for tools such as an
    /// `openssl ocsp` responder).
    pub fn ca_key_pem(&self) -> String {
        self.ca.key.serialize_pem()
    }

    /// Another server certificate, for the given DNS names and IP addresses,
    /// signed by the test CA; written to `<stem>.pem` and `<stem>.key`.
    pub fn server_cert(&self, stem: &str, sans: &[&str]) -> CertFiles {
        let names: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params.distinguished_name = dn(sans.first().copied().unwrap_or(stem));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (cert, key) = self.ca.issue(params);
        save(&self.dir, stem, cert, key)
    }

    /// A client certificate with subject CN=`cn`, signed by the rogue CA the
    /// broker does not trust.
    pub fn rogue_client(&self, cn: &str) -> CertFiles {
        let (cert, key) = self.rogue.issue(client_params(cn));
        save(&self.dir, &format!("rogue-{cn}"), cert, key)
    }
}

/// The Authority Information Access extension naming `url` as the OCSP
/// responder (encoded with the RustCrypto types, as the broker reads it).
fn aia_ocsp(url: &str) -> rcgen::CustomExtension {
    use der::Encode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: const_oid::db::rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(
            der::asn1::Ia5String::new(url).expect("ASCII URL"),
        ),
    }]);
    // id-pe-authorityInfoAccess 1.3.6.1.5.5.7.1.1
    rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        aia.to_der().expect("AIA DER"),
    )
}

fn client_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name = dn(cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
}

fn save(dir: &Path, stem: &str, cert_pem: String, key_pem: String) -> CertFiles {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    write(&cert, &cert_pem);
    write(&key, &key_pem);
    CertFiles {
        cert,
        key,
        cert_pem,
        key_pem,
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
