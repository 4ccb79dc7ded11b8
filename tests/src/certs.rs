//! Certificates made fresh for each test: a CA, a server certificate for
//! 127.0.0.1/localhost, client certificates on demand, and a second "rogue" CA
//! whose client certificates the broker must refuse. Nothing here is committed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, both written as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
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
