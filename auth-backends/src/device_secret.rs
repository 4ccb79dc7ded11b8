//! Device secrets: random 256-bit secrets made by the broker
//! (`warden user add NAME --generate-secret`), stored under a fast keyed
//! hash instead of argon2id.
//!
//! A slow hash exists to make guessing a human-chosen password expensive
//! after a database leak. A secret of 256 random bits cannot be guessed
//! whatever the hash costs, so paying ~20 MiB and tens of milliseconds per
//! login buys nothing, and a fleet of devices reconnecting after a restart
//! would queue behind argon2. The stored form is an HMAC-SHA256 of the
//! secret under a random per-user salt as the key, in a PHC-like string:
//!
//! `$warden-hmac$v=1$<salt>$<tag>` (salt 16 bytes, tag 32 bytes, both
//! base64 without padding, as PHC strings write them).
//!
//! The tag is compared in constant time. It is a plain user record field, so
//! every store keeps it like an argon2 string; `password::verify_password`
//! sends strings of this scheme here. Nothing here logs a secret or a hash.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::password::PasswordError;

/// The identifier of the scheme, between the first two `$`.
pub const SCHEME: &str = "warden-hmac";
const PREFIX: &str = "$warden-hmac$v=1$";
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// Random bytes in a generated secret.
pub const SECRET_BYTES: usize = 32;

/// Whether `phc` is a device-secret hash (of any version), not argon2.
pub fn is_device_secret(phc: &str) -> bool {
    phc.strip_prefix('$')
        .and_then(|rest| rest.strip_prefix(SCHEME))
        .is_some_and(|rest| rest.starts_with('$'))
}

/// A new secret: 256 random bits from the OS, base64url without padding
/// (43 characters, safe in a shell, a URL or a config file).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn tag(salt: &[u8], secret: &[u8]) -> [u8; TAG_LEN] {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(salt) else {
        return [0; TAG_LEN];
    };
    mac.update(secret);
    mac.finalize().into_bytes().into()
}

/// The stored form of `secret`, under a fresh random salt.
pub fn hash_secret(secret: &[u8]) -> String {
    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    format!(
        "{PREFIX}{}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(tag(&salt, secret))
    )
}

/// Check `secret` against a stored device-secret hash. A wrong secret is
/// `Ok(false)`; a string that is not of this scheme is `InvalidHash`.
pub fn verify_secret(secret: &[u8], phc: &str) -> Result<bool, PasswordError> {
    let rest = phc.strip_prefix(PREFIX).ok_or(PasswordError::InvalidHash)?;
    let (salt, stored) = rest.split_once('$').ok_or(PasswordError::InvalidHash)?;
    let salt = STANDARD_NO_PAD
        .decode(salt)
        .map_err(|_| PasswordError::InvalidHash)?;
    let stored = STANDARD_NO_PAD
        .decode(stored)
        .map_err(|_| PasswordError::InvalidHash)?;
    if salt.len() != SALT_LEN || stored.len() != TAG_LEN {
        return Err(PasswordError::InvalidHash);
    }
    Ok(bool::from(tag(&salt, secret).ct_eq(stored.as_slice())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_carry_256_bits() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let bytes = URL_SAFE_NO_PAD.decode(&a).expect("base64url");
        assert_eq!(bytes.len(), SECRET_BYTES);
    }

    #[test]
    fn hash_then_verify() {
        let secret = generate_secret();
        let phc = hash_secret(secret.as_bytes());
        assert!(phc.starts_with("$warden-hmac$v=1$"), "{phc}");
        assert!(is_device_secret(&phc));
        assert!(!is_device_secret("$argon2id$v=19$m=1,t=1,p=1$a$b"));
        assert!(!is_device_secret("$warden-hmacx$v=1$a$b"));
        assert_eq!(verify_secret(secret.as_bytes(), &phc), Ok(true));
        assert_eq!(verify_secret(b"wrong", &phc), Ok(false));
        let mut flipped = secret.clone().into_bytes();
        flipped[0] ^= 1;
        assert_eq!(verify_secret(&flipped, &phc), Ok(false));
    }

    #[test]
    fn salts_differ_per_hash() {
        let a = hash_secret(b"same");
        let b = hash_secret(b"same");
        assert_ne!(a, b);
        assert_eq!(verify_secret(b"same", &b), Ok(true));
    }

    #[test]
    fn damaged_strings_are_errors_not_false() {
        let good = hash_secret(b"s");
        for bad in [
            "$warden-hmac$v=1$",
            "$warden-hmac$v=1$AAAA",
            "$warden-hmac$v=2$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
            "$warden-hmac$v=1$!!$AAAA",
            &good[..good.len() - 2],
        ] {
            assert_eq!(
                verify_secret(b"s", bad),
                Err(PasswordError::InvalidHash),
                "{bad}"
            );
        }
    }

    #[test]
    fn password_verification_dispatches_here() {
        let phc = hash_secret(b"device-1");
        assert_eq!(
            crate::password::verify_password(b"device-1", &phc),
            Ok(true)
        );
        assert_eq!(
            crate::password::verify_password(b"device-2", &phc),
            Ok(false)
        );
    }
}
