//! Password hashes made by other brokers, verified as they are, so that a
//! fleet moved over from Mosquitto or mosquitto-go-auth keeps its passwords.
//!
//! Recognised formats:
//! - Mosquitto `$6$SALT$HASH`: SHA-512 of the password followed by the salt
//!   (base64 both; what `mosquitto_passwd` wrote before 1.6/2.0). This is not
//!   crypt(3)'s sha512crypt, which shares the prefix.
//! - Mosquitto `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 (base64 salt and
//!   64-byte key), `mosquitto_passwd`'s default since 2.0 and the
//!   dynamic-security plugin's hash.
//! - bcrypt `$2a$`, `$2b$`, `$2y$` (PHP, go-auth's bcrypt hasher).
//! - mosquitto-go-auth `PBKDF2$sha256|sha512$ITERATIONS$SALT$HASH` (salt in
//!   base64, go-auth's default, or as plain text with its `utf-8` salt
//!   encoding; both are tried).
//!
//! argon2id/argon2i PHC strings are not foreign: `password.rs` verifies them.
//! Every comparison of derived keys is constant-time. A stored hash asking
//! for more work than the caps below is refused, so that a hand-edited row
//! cannot make each login burn seconds of CPU.
//!
//! [`needs_rehash`] says which stored hashes a successful login should
//! replace with the current argon2id: every foreign one, and argon2 hashes
//! weaker than today's parameters.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::password::{PasswordError, PasswordParams};

/// PBKDF2 iteration cap at verify time (Mosquitto writes 101, go-auth 100,000).
pub const MAX_PBKDF2_ITERATIONS: u32 = 2_000_000;
/// bcrypt cost cap at verify time (2^15 rounds: about 2 s).
pub const MAX_BCRYPT_COST: u32 = 15;

/// Which kind of hash a stored string is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `$argon2id$` / `$argon2i$` / `$argon2d$` PHC: Warden's own.
    Argon2,
    /// Mosquitto `$6$`: salted SHA-512.
    MosquittoSha512,
    /// Mosquitto `$7$`: PBKDF2-SHA512.
    MosquittoPbkdf2,
    /// `$2a$`, `$2b$`, `$2y$`.
    Bcrypt,
    /// mosquitto-go-auth `PBKDF2$...`.
    GoAuthPbkdf2,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2 => "argon2",
            Scheme::MosquittoSha512 => "mosquitto-sha512",
            Scheme::MosquittoPbkdf2 => "mosquitto-pbkdf2-sha512",
            Scheme::Bcrypt => "bcrypt",
            Scheme::GoAuthPbkdf2 => "go-auth-pbkdf2",
        }
    }
}

/// The scheme of a stored hash by its prefix alone, or None for a format
/// this server cannot verify (plain text, crypt(3) `$5$`, ...).
pub fn scheme_of(hash: &str) -> Option<Scheme> {
    if hash.starts_with("$argon2") {
        Some(Scheme::Argon2)
    } else if hash.starts_with("$6$") {
        Some(Scheme::MosquittoSha512)
    } else if hash.starts_with("$7$") {
        Some(Scheme::MosquittoPbkdf2)
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        Some(Scheme::Bcrypt)
    } else if hash.starts_with("PBKDF2$") {
        Some(Scheme::GoAuthPbkdf2)
    } else {
        None
    }
}

/// Check that `hash` is a well-formed hash of a scheme this server verifies,
/// within the cost caps; for imports, so that a user whose password could
/// never verify is refused before anything is written.
pub fn check_format(hash: &str) -> Result<Scheme, PasswordError> {
    let scheme = scheme_of(hash).ok_or(PasswordError::InvalidHash)?;
    match scheme {
        Scheme::Argon2 => {
            // Parse only: the verifier of password.rs applies its own caps.
            argon2::password_hash::PasswordHash::new(hash)
                .map_err(|_| PasswordError::InvalidHash)?;
        }
        Scheme::MosquittoSha512 => {
            parse_mosquitto_sha512(hash)?;
        }
        Scheme::MosquittoPbkdf2 => {
            parse_mosquitto_pbkdf2(hash)?;
        }
        Scheme::Bcrypt => {
            bcrypt_cost(hash)?;
            hash.parse::<bcrypt::HashParts>()
                .map_err(|_| PasswordError::InvalidHash)?;
        }
        Scheme::GoAuthPbkdf2 => {
            parse_go_auth(hash)?;
        }
    }
    Ok(scheme)
}

/// Verify `password` against a foreign hash. `None` when `hash` is not one
/// of the foreign formats (argon2 or unknown): the caller decides.
pub fn verify(password: &[u8], hash: &str) -> Option<Result<bool, PasswordError>> {
    let result = match scheme_of(hash)? {
        Scheme::Argon2 => return None,
        Scheme::MosquittoSha512 => verify_mosquitto_sha512(password, hash),
        Scheme::MosquittoPbkdf2 => verify_mosquitto_pbkdf2(password, hash),
        Scheme::Bcrypt => verify_bcrypt(password, hash),
        Scheme::GoAuthPbkdf2 => verify_go_auth(password, hash),
    };
    Some(result)
}

/// True when a login that just verified against `hash` should replace it
/// with a fresh argon2id hash: every foreign scheme, argon2i/argon2d, and
/// argon2id with less memory or fewer passes than [`PasswordParams::default`].
/// An unparseable hash is not rehashed (it cannot have verified).
pub fn needs_rehash(hash: &str) -> bool {
    match scheme_of(hash) {
        None => false,
        Some(Scheme::Argon2) => {
            let Ok(parsed) = argon2::password_hash::PasswordHash::new(hash) else {
                return false;
            };
            if parsed.algorithm.as_str() != "argon2id" {
                return true;
            }
            let Ok(params) = argon2::Params::try_from(&parsed) else {
                return false;
            };
            let want = PasswordParams::default();
            params.m_cost() < want.m_cost_kib || params.t_cost() < want.t_cost
        }
        Some(_) => true,
    }
}

struct Salted {
    salt: Vec<u8>,
    key: Vec<u8>,
}

fn b64(text: &str) -> Result<Vec<u8>, PasswordError> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .map_err(|_| PasswordError::InvalidHash)
}

/// Mosquitto's decoder wants a 64-byte key; the salt is 12 bytes when
/// `mosquitto_passwd` made it, but any non-empty salt verifies the same way.
fn salted(salt: &str, key: &str) -> Result<Salted, PasswordError> {
    let salt = b64(salt)?;
    let key = b64(key)?;
    if salt.is_empty() || key.len() != 64 {
        return Err(PasswordError::InvalidHash);
    }
    Ok(Salted { salt, key })
}

fn parse_mosquitto_sha512(hash: &str) -> Result<Salted, PasswordError> {
    let mut parts = hash
        .strip_prefix("$6$")
        .ok_or(PasswordError::InvalidHash)?
        .split('$');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(salt), Some(key), None) => salted(salt, key),
        _ => Err(PasswordError::InvalidHash),
    }
}

fn parse_mosquitto_pbkdf2(hash: &str) -> Result<(u32, Salted), PasswordError> {
    let mut parts = hash
        .strip_prefix("$7$")
        .ok_or(PasswordError::InvalidHash)?
        .split('$');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(iterations), Some(salt), Some(key), None) => {
            Ok((iterations_of(iterations)?, salted(salt, key)?))
        }
        _ => Err(PasswordError::InvalidHash),
    }
}

fn iterations_of(text: &str) -> Result<u32, PasswordError> {
    let n: u32 = text.parse().map_err(|_| PasswordError::InvalidHash)?;
    if n == 0 {
        return Err(PasswordError::InvalidHash);
    }
    if n > MAX_PBKDF2_ITERATIONS {
        return Err(PasswordError::CostTooHigh);
    }
    Ok(n)
}

fn verify_mosquitto_sha512(password: &[u8], hash: &str) -> Result<bool, PasswordError> {
    let stored = parse_mosquitto_sha512(hash)?;
    let mut digest = Sha512::new();
    digest.update(password);
    digest.update(&stored.salt);
    Ok(bool::from(digest.finalize().as_slice().ct_eq(&stored.key)))
}

fn verify_mosquitto_pbkdf2(password: &[u8], hash: &str) -> Result<bool, PasswordError> {
    let (iterations, stored) = parse_mosquitto_pbkdf2(hash)?;
    let mut key = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, &stored.salt, iterations, &mut key);
    Ok(bool::from(key.as_slice().ct_eq(&stored.key)))
}

/// The cost field of `$2x$NN$...`.
fn bcrypt_cost(hash: &str) -> Result<u32, PasswordError> {
    let cost: u32 = hash
        .get(4..6)
        .and_then(|c| c.parse().ok())
        .ok_or(PasswordError::InvalidHash)?;
    if cost > MAX_BCRYPT_COST {
        return Err(PasswordError::CostTooHigh);
    }
    Ok(cost)
}

fn verify_bcrypt(password: &[u8], hash: &str) -> Result<bool, PasswordError> {
    bcrypt_cost(hash)?;
    // The crate compares the derived hash in constant time.
    bcrypt::verify(password, hash).map_err(|_| PasswordError::InvalidHash)
}

#[derive(Clone, Copy)]
enum GoDigest {
    Sha256,
    Sha512,
}

struct GoAuth<'a> {
    digest: GoDigest,
    iterations: u32,
    salt: &'a str,
    key: Vec<u8>,
}

fn parse_go_auth(hash: &str) -> Result<GoAuth<'_>, PasswordError> {
    let mut parts = hash.split('$');
    let fields = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    );
    let (Some("PBKDF2"), Some(digest), Some(iterations), Some(salt), Some(key), None) = fields
    else {
        return Err(PasswordError::InvalidHash);
    };
    let digest = match digest {
        "sha256" => GoDigest::Sha256,
        "sha512" => GoDigest::Sha512,
        _ => return Err(PasswordError::InvalidHash),
    };
    let key = b64(key)?;
    // go-auth derives as many bytes as the stored key has.
    if salt.is_empty() || key.is_empty() || key.len() > 128 {
        return Err(PasswordError::InvalidHash);
    }
    Ok(GoAuth {
        digest,
        iterations: iterations_of(iterations)?,
        salt,
        key,
    })
}

fn go_auth_derive(password: &[u8], stored: &GoAuth<'_>, salt: &[u8]) -> bool {
    let mut out = vec![0u8; stored.key.len()];
    match stored.digest {
        GoDigest::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, stored.iterations, &mut out)
        }
        GoDigest::Sha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, stored.iterations, &mut out)
        }
    }
    bool::from(out.as_slice().ct_eq(&stored.key))
}

fn verify_go_auth(password: &[u8], hash: &str) -> Result<bool, PasswordError> {
    let stored = parse_go_auth(hash)?;
    // The hash does not say which salt encoding go-auth was configured
    // with: base64 (its default) first, then the salt text itself.
    if let Ok(salt) = STANDARD.decode(stored.salt) {
        if go_auth_derive(password, &stored, &salt) {
            return Ok(true);
        }
    }
    Ok(go_auth_derive(password, &stored, stored.salt.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::{hash_password_with, verify_password};

    /// Made with `mosquitto_passwd -c -b` (Mosquitto 2.0.11): password "secret".
    const MOSQ_7: &str = "$7$101$MtvRmjAwWVjauHux$VLPZcLLOTCWKnqT0624OmOsrVFul32Bf0cGcYjmUagT8KVEC8BNYk/1zrp7zDH0VdtzGVVOpOjv4XFHWCLCr+w==";

    /// Made with `mosquitto_passwd -H sha512 -c -b` (2.0.11): "pa55 word".
    const MOSQ_6: &str = "$6$4je7gTfV/AutoPRo$ZhtMwokmnKGaY1TbUHhqxCeMVl7IsP0Qse/kIAVYU2rutIkGGpzg3Wc/adcjtfe1YDWInNa2naf3cryxU+goHQ==";

    #[test]
    fn real_mosquitto_passwd_sha512_hash() {
        assert_eq!(check_format(MOSQ_6), Ok(Scheme::MosquittoSha512));
        assert_eq!(verify_password(b"pa55 word", MOSQ_6), Ok(true));
        assert_eq!(verify_password(b"pa55 word ", MOSQ_6), Ok(false));
    }

    fn mosq6(password: &[u8], salt: &[u8]) -> String {
        let mut d = Sha512::new();
        d.update(password);
        d.update(salt);
        format!(
            "$6${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(d.finalize())
        )
    }

    fn mosq7(password: &[u8], salt: &[u8], iterations: u32) -> String {
        let mut key = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut key);
        format!(
            "$7${iterations}${}${}",
            STANDARD.encode(salt),
            STANDARD.encode(key)
        )
    }

    #[test]
    fn mosquitto_sha512() {
        let hash = mosq6(b"pw one", b"0123456789ab");
        assert_eq!(scheme_of(&hash), Some(Scheme::MosquittoSha512));
        assert_eq!(verify_password(b"pw one", &hash), Ok(true));
        assert_eq!(verify_password(b"pw two", &hash), Ok(false));
        assert_eq!(verify_password(b"", &hash), Ok(false));
        assert!(needs_rehash(&hash));
    }

    #[test]
    fn mosquitto_pbkdf2() {
        let hash = mosq7(b"pw", b"saltsaltsalt", 101);
        assert_eq!(verify_password(b"pw", &hash), Ok(true));
        assert_eq!(verify_password(b"pW", &hash), Ok(false));
        assert_eq!(check_format(&hash), Ok(Scheme::MosquittoPbkdf2));
    }

    #[test]
    fn real_mosquitto_passwd_hash() {
        assert_eq!(check_format(MOSQ_7), Ok(Scheme::MosquittoPbkdf2));
        assert_eq!(verify_password(b"secret", MOSQ_7), Ok(true));
        assert_eq!(verify_password(b"Secret", MOSQ_7), Ok(false));
    }

    #[test]
    fn bcrypt_variants() {
        let hash = bcrypt::hash_with_result("hunter2", 4).unwrap();
        for version in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoY,
        ] {
            let h = hash.format_for_version(version);
            assert_eq!(scheme_of(&h), Some(Scheme::Bcrypt), "{h}");
            assert_eq!(verify_password(b"hunter2", &h), Ok(true));
            assert_eq!(verify_password(b"hunter3", &h), Ok(false));
            assert!(needs_rehash(&h));
        }
    }

    #[test]
    fn bcrypt_cost_capped() {
        let hash = bcrypt::hash_with_result("x", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        let expensive = format!("$2b$31{}", &hash[6..]);
        assert_eq!(
            verify_password(b"x", &expensive),
            Err(PasswordError::CostTooHigh)
        );
    }

    #[test]
    fn go_auth_pbkdf2_both_digests_and_salt_encodings() {
        for (name, len) in [("sha256", 32), ("sha512", 64)] {
            let salt = b"0123456789abcdef";
            let mut key = vec![0u8; len];
            match name {
                "sha256" => pbkdf2::pbkdf2_hmac::<Sha256>(b"pw", salt, 1000, &mut key),
                _ => pbkdf2::pbkdf2_hmac::<Sha512>(b"pw", salt, 1000, &mut key),
            }
            let b64_salt = format!(
                "PBKDF2${name}$1000${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(&key)
            );
            assert_eq!(verify_password(b"pw", &b64_salt), Ok(true), "{name}");
            assert_eq!(verify_password(b"px", &b64_salt), Ok(false), "{name}");
            let text_salt = format!(
                "PBKDF2${name}$1000${}${}",
                std::str::from_utf8(salt).unwrap(),
                STANDARD.encode(&key)
            );
            assert_eq!(verify_password(b"pw", &text_salt), Ok(true), "{name}");
            assert!(needs_rehash(&text_salt));
        }
    }

    #[test]
    fn argon2i_and_weak_argon2id_verify_and_want_rehash() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let argon2i =
            argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string();
        assert!(argon2i.starts_with("$argon2i$"));
        assert_eq!(verify_password(b"pw", &argon2i), Ok(true));
        assert_eq!(verify_password(b"pX", &argon2i), Ok(false));
        assert!(needs_rehash(&argon2i));

        let weak = hash_password_with(
            b"pw",
            &PasswordParams {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: 1,
            },
        )
        .unwrap();
        assert!(needs_rehash(&weak));
        let current = hash_password_with(b"pw", &PasswordParams::default()).unwrap();
        assert!(!needs_rehash(&current));
    }

    #[test]
    fn unknown_and_malformed_formats_are_refused_not_panics() {
        for hash in [
            "plaintext",
            "",
            "$5$rounds=5000$abc$def",
            "$1$abc$def",
            "$6$",
            "$6$$",
            "$6$!!!$???",
            "$6$c2FsdA==$c2hvcnQ=",
            "$7$",
            "$7$abc$c2FsdA==$AAAA",
            "$7$0$c2FsdA==$AAAA",
            "$7$101$c2FsdA==",
            "$2b$",
            "$2b$xx$abc",
            "PBKDF2$",
            "PBKDF2$md5$1000$c2FsdA==$AAAA",
            "PBKDF2$sha256$-1$c2FsdA==$AAAA",
            "PBKDF2$sha256$1000$$AAAA",
        ] {
            assert!(
                matches!(verify_password(b"x", hash), Err(PasswordError::InvalidHash)),
                "{hash:?}: {:?}",
                verify_password(b"x", hash)
            );
            assert!(check_format(hash).is_err(), "{hash:?}");
            assert!(!needs_rehash(hash) || scheme_of(hash).is_some());
        }
        let expensive = "$7$4000000000$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
        assert_eq!(
            verify_password(b"x", expensive),
            Err(PasswordError::CostTooHigh)
        );
    }
}
