//! An example authenticator extension for Warden (docs/extending.md):
//! devices log in with a password that is HMAC-SHA256 of their username
//! under a key only the provisioning system and the broker hold, so no
//! per-device record is needed anywhere. Selected by
//!
//! ```yaml
//! auth:
//!   chain: [{extension: device-hmac, key_file: /etc/warden/device.key, role: devices}, store]
//! ```
//!
//! Logins whose username does not start with `prefix` (default `dev-`) are
//! not this extension's (`Skip`): the next authenticator decides.

use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use warden::auth::extension::{
    register_authenticator, Authenticator, ExtensionError, Login, Outcome,
};
use warden::auth::{AuthError, Authenticated, Refusal};

/// The name `auth.chain` selects it by.
pub const NAME: &str = "device-hmac";

pub struct DeviceHmac {
    key: Vec<u8>,
    prefix: String,
    role: String,
}

impl DeviceHmac {
    /// The password of `username`, lower-case hex (what provisioning hands
    /// the device).
    pub fn password_for(&self, username: &str) -> String {
        hex::encode(self.mac(username).finalize().into_bytes())
    }

    fn mac(&self, username: &str) -> Hmac<Sha256> {
        // Any key length is valid for HMAC; `new_from_slice` cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(username.as_bytes());
        mac
    }

    fn verifies(&self, username: &str, password: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(password) else {
            return false;
        };
        let Ok(tag) = hex::decode(text) else {
            return false;
        };
        // Constant time.
        self.mac(username).verify_slice(&tag).is_ok()
    }
}

#[async_trait]
impl Authenticator for DeviceHmac {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn authenticate(&self, login: &Login<'_>) -> Outcome {
        let Some(username) = login.creds.username.filter(|u| u.starts_with(&self.prefix)) else {
            return Outcome::Skip;
        };
        let password = login.creds.password.unwrap_or_default();
        if !self.verifies(username, password) {
            return Outcome::Refuse(Refusal {
                error: AuthError::BadCredentials,
                reason: "device secret does not match",
            });
        }
        Outcome::Allow(Authenticated {
            username: Some(username.to_owned()),
            roles: vec![self.role.clone()],
            superuser: false,
            token: None,
            rehash: None,
        })
    }
}

/// The factory: `key_file` (required, at least 32 bytes), `role`
/// (required), `prefix` (optional).
pub fn build(config: &serde_yaml::Value) -> Result<Arc<dyn Authenticator>, String> {
    let text = |key: &str| config.get(key).and_then(serde_yaml::Value::as_str);
    let path = text("key_file").ok_or("key_file is required")?;
    let key = std::fs::read(path).map_err(|e| format!("key_file {path}: {e}"))?;
    if key.len() < 32 {
        return Err(format!("key_file {path}: at least 32 bytes"));
    }
    let role = text("role").ok_or("role is required")?.to_owned();
    Ok(Arc::new(DeviceHmac {
        key,
        prefix: text("prefix").unwrap_or("dev-").to_owned(),
        role,
    }))
}

/// Make the extension available to `auth.chain`.
pub fn register() -> Result<(), ExtensionError> {
    register_authenticator(NAME, build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceHmac {
        DeviceHmac {
            key: b"0123456789abcdef0123456789abcdef".to_vec(),
            prefix: "dev-".into(),
            role: "devices".into(),
        }
    }

    #[test]
    fn only_the_usernames_own_secret_verifies() {
        let d = device();
        let pw = d.password_for("dev-17");
        assert!(d.verifies("dev-17", pw.as_bytes()));
        assert!(!d.verifies("dev-18", pw.as_bytes()));
        assert!(!d.verifies("dev-17", b"not hex"));
        assert!(!d.verifies("dev-17", &[0xff, 0xfe]));
    }

    #[test]
    fn registered_and_built_from_its_chain_entry() {
        register().expect("first registration");
        assert!(register().is_err(), "a name is registered once");
        let dir = std::env::temp_dir().join(format!("warden-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = dir.join("device.key");
        std::fs::write(&key, [7u8; 32]).expect("key");
        let entry: serde_yaml::Value = serde_yaml::from_str(&format!(
            "{{extension: device-hmac, key_file: {}, role: devices}}",
            key.display()
        ))
        .expect("yaml");
        let built = warden::auth::extension::build(NAME, &entry).expect("built");
        assert_eq!(built.name(), NAME);
        let no_role: serde_yaml::Value = serde_yaml::from_str(&format!(
            "{{extension: device-hmac, key_file: {}}}",
            key.display()
        ))
        .expect("yaml");
        assert_eq!(
            warden::auth::extension::build(NAME, &no_role).err(),
            Some(ExtensionError::Build {
                name: NAME.into(),
                message: "role is required".into()
            })
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
