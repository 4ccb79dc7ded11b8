//! Password hashing and verification: argon2id PHC strings.
//!
//! The CLI hashes, the broker verifies; both link this module. Verification
//! is CPU-bound on purpose, so async callers use the `*_blocking` wrappers,
//! which run it on tokio's blocking pool instead of a worker thread.
//! Nothing here logs or formats a password or a hash into an error.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Hashes with more memory than this are refused at verify time, so that a
/// hand-edited row cannot make each login allocate gigabytes.
const MAX_VERIFY_M_COST_KIB: u32 = 1024 * 1024;
/// Same for the number of passes.
const MAX_VERIFY_T_COST: u32 = 64;

/// argon2id cost parameters used when hashing. Verification always uses the
/// parameters recorded in the PHC string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl Default for PasswordParams {
    /// 19 MiB, 2 passes, 1 lane: the OWASP password-storage minimum for
    /// argon2id.
    fn default() -> Self {
        PasswordParams {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl PasswordParams {
    fn hasher(&self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, None)
            .map_err(|_| PasswordError::BadParams)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Why a password could not be hashed or a hash could not be checked.
/// A wrong password is not an error: [`verify_password`] returns `Ok(false)`.
#[non_exhaustive]
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2 parameters out of range")]
    BadParams,
    #[error("stored password hash is not a PHC string this server can verify")]
    InvalidHash,
    #[error("stored password hash asks for more than the allowed cost")]
    CostTooHigh,
    #[error("password hashing failed")]
    Hashing,
    #[error("password hashing task did not finish")]
    TaskFailed,
}

/// Hash `password` with argon2id, the default parameters and a random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    hash_password_with(password.as_bytes(), &PasswordParams::default())
}

/// Hash with explicit parameters; the result is a PHC string
/// (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
pub fn hash_password_with(
    password: &[u8],
    params: &PasswordParams,
) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    params
        .hasher()?
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// Check `password` against a stored PHC string (argon2id, argon2i) or a
/// foreign hash (`foreign_hash.rs`). The comparison of the derived key is
/// constant-time.
pub fn verify_password(password: &[u8], phc: &str) -> Result<bool, PasswordError> {
    // Device secrets (random, 256 bits) are stored under a fast keyed hash.
    if crate::device_secret::is_device_secret(phc) {
        return crate::device_secret::verify_secret(password, phc);
    }
    // Hashes imported from other brokers (Mosquitto, go-auth, bcrypt).
    if let Some(verified) = crate::foreign_hash::verify(password, phc) {
        return verified;
    }
    let hash = PasswordHash::new(phc).map_err(|_| PasswordError::InvalidHash)?;
    check_cost(&hash)?;
    match Argon2::default().verify_password(password, &hash) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(_) => Err(PasswordError::InvalidHash),
    }
}

fn check_cost(hash: &PasswordHash<'_>) -> Result<(), PasswordError> {
    let params = Params::try_from(hash).map_err(|_| PasswordError::InvalidHash)?;
    if params.m_cost() > MAX_VERIFY_M_COST_KIB || params.t_cost() > MAX_VERIFY_T_COST {
        return Err(PasswordError::CostTooHigh);
    }
    Ok(())
}

/// Spend the time of one verification with the default parameters and
/// discard the result. Call it for an unknown user (or a user without a
/// password) so that the answer takes as long as for a wrong password.
pub fn dummy_verify(password: &[u8]) {
    // The hash is of 32 random bytes made at first use, so no password
    // can match it; its parameters are the defaults, as new users' are.
    let hash = DUMMY_HASH.get_or_init(|| {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        hash_password_with(&secret, &PasswordParams::default()).ok()
    });
    if let Some(hash) = hash {
        let _ = verify_password(password, hash);
    }
}

static DUMMY_HASH: OnceLock<Option<String>> = OnceLock::new();

/// [`hash_password`] on tokio's blocking pool.
pub async fn hash_password_blocking(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|_| PasswordError::TaskFailed)?
}

/// [`verify_password`] on tokio's blocking pool.
pub async fn verify_password_blocking(
    password: Vec<u8>,
    phc: String,
) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .map_err(|_| PasswordError::TaskFailed)?
}

/// [`dummy_verify`] on tokio's blocking pool.
pub async fn dummy_verify_blocking(password: Vec<u8>) {
    let _ = tokio::task::spawn_blocking(move || dummy_verify(&password)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Cheap parameters so that the unit tests stay fast in debug builds.
    const FAST: PasswordParams = PasswordParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn hash_then_verify() {
        let phc = hash_password_with(b"s3cret", &FAST).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(verify_password(b"s3cret", &phc), Ok(true));
        assert_eq!(verify_password(b"s3cret!", &phc), Ok(false));
        assert_eq!(verify_password(b"", &phc), Ok(false));
    }

    #[test]
    fn salts_differ() {
        let a = hash_password_with(b"same", &FAST).unwrap();
        let b = hash_password_with(b"same", &FAST).unwrap();
        assert_ne!(a, b);
        assert_eq!(verify_password(b"same", &b), Ok(true));
    }

    #[test]
    fn malformed_hash_is_an_error_not_false() {
        assert_eq!(
            verify_password(b"x", "not a hash"),
            Err(PasswordError::InvalidHash)
        );
        assert_eq!(verify_password(b"x", ""), Err(PasswordError::InvalidHash));
    }

    #[test]
    fn expensive_stored_hash_is_refused() {
        let phc = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$\
                   AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(verify_password(b"x", phc), Err(PasswordError::CostTooHigh));
    }

    #[test]
    fn bad_params_are_refused() {
        let params = PasswordParams {
            m_cost_kib: 1,
            t_cost: 0,
            p_cost: 0,
        };
        assert_eq!(
            hash_password_with(b"x", &params),
            Err(PasswordError::BadParams)
        );
    }

    #[test]
    fn default_hash_verifies_and_dummy_takes_similar_time() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        dummy_verify(b"warm up");
        let start = Instant::now();
        assert_eq!(verify_password(b"wrong", &phc), Ok(false));
        let real = start.elapsed();
        let start = Instant::now();
        dummy_verify(b"wrong");
        let dummy = start.elapsed();
        eprintln!("default params: verify {real:?}, dummy_verify {dummy:?}");
        // Loose bound: same work, but a shared CI machine is noisy.
        assert!(
            dummy * 3 >= real && real * 3 >= dummy,
            "{real:?} vs {dummy:?}"
        );
    }

    #[tokio::test]
    async fn blocking_wrappers() {
        let phc = hash_password_blocking("pw".to_owned()).await.unwrap();
        assert_eq!(
            verify_password_blocking(b"pw".to_vec(), phc.clone()).await,
            Ok(true)
        );
        assert_eq!(
            verify_password_blocking(b"pX".to_vec(), phc).await,
            Ok(false)
        );
        dummy_verify_blocking(b"pw".to_vec()).await;
    }
}
