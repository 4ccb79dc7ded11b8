//! Development certificates, so a first run has TLS without openssl: a
//! local CA, a server certificate for localhost, and client certificates on
//! request (`warden cert init|server|client`).
//!
//! These are for development and tests. Production certificates come from
//! the operator's own CA and are only read (by `listener::tls`), never made here.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// The common name of the CA `ensure_dev_certs` makes.
pub const DEV_CA_CN: &str = "Warden development CA";
const DAY: u64 = 86_400;
const CA_DAYS: u64 = 3650;
/// The most that browsers and Apple platforms accept for a leaf.
const LEAF_DAYS: u64 = 825;
/// Backdating absorbs clock differences between machines.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} already exists; remove it first to replace it", .0.display())]
    Exists(PathBuf),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: not a usable PEM certificate or key: {message}", path.display())]
    BadPem { path: PathBuf, message: String },
    #[error("invalid name {0:?}: use letters, digits, '.', '_', '-' or '@'")]
    InvalidName(String),
    #[error("{}: incomplete development certificates, missing {}; remove the directory's certificates to regenerate them", dir.display(), missing.join(", "))]
    Incomplete { dir: PathBuf, missing: Vec<String> },
}

/// The files of the development PKI in one directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCerts {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// True when this call wrote any of them.
    pub created: bool,
}

/// A new self-signed CA (ECDSA P-256, ten years): `(cert_pem, key_pem)`.
pub fn generate_ca(cn: &str) -> Result<(String, String), CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_DAYS);
    params.serial_number = Some(random_serial());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A leaf certificate signed by the given CA: `(cert_pem, key_pem)`.
///
/// `sans` entries are typed by their look: an IP address, an e-mail address
/// (contains `@`), a URI (contains `://`), otherwise a DNS name. `client`
/// chooses the clientAuth rather than the serverAuth extended key usage.
pub fn sign_leaf(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    cn: &str,
    sans: &[String],
    client: bool,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    // rcgen signs with a `Certificate`; re-signing the parsed CA params with
    // the CA key gives one with the same subject and key identifier.
    let ca = CertificateParams::from_ca_cert_pem(ca_cert_pem)?.self_signed(&ca_key)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<Vec<_>, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_DAYS);
    params.serial_number = Some(random_serial());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn san(s: &str) -> Result<SanType, rcgen::Error> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let ia5 = s.to_owned().try_into()?;
    Ok(if s.contains("://") {
        SanType::URI(ia5)
    } else if s.contains('@') {
        SanType::Rfc822Name(ia5)
    } else {
        SanType::DnsName(ia5)
    })
}

fn set_validity(params: &mut CertificateParams, days: u64) {
    let now = SystemTime::now();
    params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
    params.not_after = (now + Duration::from_secs(days * DAY)).into();
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    // A positive DER integer, and never zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from(bytes.to_vec())
}

struct Files {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Files {
    fn in_dir(dir: &Path) -> Files {
        Files {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// Makes the development CA and a localhost server certificate in `dir`
/// unless they are there. The CA key stays in `dir/ca.key` so more
/// certificates can be issued later.
pub fn ensure_dev_certs(dir: &Path) -> Result<DevCerts, CertError> {
    let f = Files::in_dir(dir);
    let exists = |p: &Path| p.exists();
    let done = |created| DevCerts {
        ca_cert: f.ca_cert.clone(),
        server_cert: f.server_cert.clone(),
        server_key: f.server_key.clone(),
        created,
    };
    let have_server = exists(&f.server_cert) && exists(&f.server_key);
    if exists(&f.ca_cert) && have_server {
        return Ok(done(false));
    }
    let nothing = [&f.ca_cert, &f.ca_key, &f.server_cert, &f.server_key]
        .iter()
        .all(|p| !exists(p));
    let ca_only = exists(&f.ca_cert)
        && exists(&f.ca_key)
        && !exists(&f.server_cert)
        && !exists(&f.server_key);
    if !nothing && !ca_only {
        let missing = [&f.ca_cert, &f.ca_key, &f.server_cert, &f.server_key]
            .iter()
            .filter(|p| !exists(p))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        return Err(CertError::Incomplete {
            dir: dir.to_path_buf(),
            missing,
        });
    }
    create_private_dir(dir)?;
    if nothing {
        let (cert, key) = generate_ca(DEV_CA_CN)?;
        write_new(&f.ca_key, &key, true)?;
        write_new(&f.ca_cert, &cert, false)?;
    }
    let sans = ["localhost", "127.0.0.1", "::1"].map(String::from);
    issue_server_cert(dir, "server", &sans)?;
    Ok(done(true))
}

/// Signs a client certificate with CN `name` using the CA in `dir`; writes
/// `<dir>/<name>.pem` and `<dir>/<name>.key`.
pub fn issue_client_cert(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), CertError> {
    issue(dir, name, &[], true)
}

/// Signs a server certificate with CN `name` and the given SANs using the CA
/// in `dir`; writes `<dir>/<name>.pem` and `<dir>/<name>.key`.
pub fn issue_server_cert(
    dir: &Path,
    name: &str,
    sans: &[String],
) -> Result<(PathBuf, PathBuf), CertError> {
    issue(dir, name, sans, false)
}

fn issue(
    dir: &Path,
    name: &str,
    sans: &[String],
    client: bool,
) -> Result<(PathBuf, PathBuf), CertError> {
    check_name(name)?;
    let f = Files::in_dir(dir);
    let ca_cert = read(&f.ca_cert)?;
    let ca_key = read(&f.ca_key)?;
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(CertError::Exists(p.clone()));
        }
    }
    let (cert, key) = sign_leaf(&ca_cert, &ca_key, name, sans, client).map_err(|e| match e {
        CertError::Generate(g) => CertError::BadPem {
            path: f.ca_cert.clone(),
            message: g.to_string(),
        },
        other => other,
    })?;
    write_new(&key_path, &key, true)?;
    write_new(&cert_path, &cert, false)?;
    Ok((cert_path, key_path))
}

/// Names become file names: no separators, no leading dot.
fn check_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(CertError::InvalidName(name.to_owned()))
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a file that must not exist yet; keys are created 0600 so they are
/// never readable by others, not even briefly.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let io_err = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut file = o.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            CertError::Exists(path.to_path_buf())
        } else {
            io_err(e)
        }
    })?;
    file.write_all(contents.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn dev_certs_are_made_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let first = ensure_dev_certs(&dir).unwrap();
        assert!(first.created);
        assert_eq!(first.ca_cert, dir.join("ca.pem"));
        let ca = fs::read_to_string(&first.ca_cert).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir.join("ca.key")), 0o600);
            assert_eq!(mode(&first.server_key), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        let again = ensure_dev_certs(&dir).unwrap();
        assert!(!again.created);
        assert_eq!(fs::read_to_string(&again.ca_cert).unwrap(), ca);
    }

    #[test]
    fn dev_ca_and_server_cert_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let dev = ensure_dev_certs(tmp.path()).unwrap();
        let pem = fs::read(&dev.server_cert).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = block.parse_x509().unwrap();
        assert_eq!(cert.issuer().to_string(), format!("CN={DEV_CA_CN}"));
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "DNSName(localhost)",
                "IPAddress(7f:00:00:01)",
                "IPAddress(00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01)"
            ]
        );
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 825);
    }

    #[test]
    fn server_cert_is_reissued_from_an_existing_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ensure_dev_certs(tmp.path()).unwrap();
        fs::remove_file(&first.server_cert).unwrap();
        fs::remove_file(&first.server_key).unwrap();
        assert!(ensure_dev_certs(tmp.path()).unwrap().created);
        fs::remove_file(tmp.path().join("ca.pem")).unwrap();
        fs::remove_file(&first.server_key).unwrap();
        let err = ensure_dev_certs(tmp.path()).unwrap_err();
        assert!(matches!(err, CertError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn issuing_checks_names_and_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_dev_certs(tmp.path()).unwrap();
        let (cert, key) = issue_client_cert(tmp.path(), "alice").unwrap();
        assert_eq!(cert, tmp.path().join("alice.pem"));
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o600);
        assert!(matches!(
            issue_client_cert(tmp.path(), "alice"),
            Err(CertError::Exists(_))
        ));
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(matches!(
                issue_client_cert(tmp.path(), bad),
                Err(CertError::InvalidName(_))
            ));
        }
        let sans = ["mqtt.example".to_owned()];
        assert!(issue_server_cert(tmp.path(), "edge", &sans).is_ok());
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            issue_client_cert(empty.path(), "x"),
            Err(CertError::Io { .. })
        ));
    }

    #[test]
    fn sign_leaf_rejects_garbage() {
        assert!(sign_leaf("nope", "nope", "x", &[], true).is_err());
    }
}
