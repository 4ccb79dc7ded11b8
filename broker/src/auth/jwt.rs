//! JSON Web Tokens (`auth.jwt`): a token arrives as the MQTT password (or,
//! in MQTT 5, as the authentication data of method `jwt`), is verified with
//! the configured HMAC secret, PEM public key or JWKS file, and its claims
//! give the user's name, roles and optionally rules.
//!
//! `exp` is required; `iss` and `aud` are checked when configured; `nbf` is
//! honoured; the configured leeway applies to the times. Only the
//! configured algorithms are accepted, and the header's `alg` must belong to
//! the key (so an RSA public key can never be used as an HMAC secret).
//!
//! A JWKS file is read again when its modification time or size changes
//! (looked at on each token login; a bad new file keeps the previous keys).
//! Rules from the token (`acl_claim`) use the store's rule schema; a rule
//! without `subject` is the token user's. They join the store's rules for
//! that principal under the same deny-overrides semantics; their ids count
//! down from `u64::MAX` so that audit lines tell them apart.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value};
use warden_policy::{ActionSet, Effect, QoS, Rule, RuleId, Subject};

use crate::config::{JwtConfig, JwtKey};

/// The MQTT 5 authentication method name.
pub const METHOD: &str = "jwt";

/// Why the verifier could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum JwtSetupError {
    #[error("auth.jwt.public_key: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("auth.jwt.public_key: {} is not an RSA, EC or Ed25519 public key in PEM", path.display())]
    Key { path: PathBuf },
    #[error("auth.jwt.jwks_file: {0}")]
    Jwks(String),
    #[error("auth.jwt.algorithms: {0}")]
    Algorithm(String),
}

/// What a verified token grants, kept with the session: the token's own
/// roles and rules (store roles and rules are added at compile time) and
/// when it stops being valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    pub username: String,
    pub roles: Vec<String>,
    pub rules: Vec<Rule>,
    /// `exp`, Unix seconds (the leeway not added: the session ends then).
    pub expires_at: u64,
    /// Whether the client used the v5 authentication method `jwt` (and may
    /// then re-authenticate with AUTH).
    pub via_method: bool,
    /// Whether the store must hold the user (`require_store_user`).
    pub require_store_user: bool,
    /// Set when the HTTP service vouched for this login (alone, or with a
    /// token under `all_must_allow`): its rules are the tail of `rules`.
    pub http: Option<Arc<super::http::HttpGrant>>,
}

impl TokenGrant {
    /// Seconds from now until `exp`; zero when it has passed.
    pub fn remaining(&self) -> std::time::Duration {
        let now = unix_now();
        std::time::Duration::from_secs(self.expires_at.saturating_sub(now))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Build the verifier `config` asks for and make logins use it (none when
/// `auth.jwt` is absent). On error the previous verifier stays.
pub fn install(
    broker: &crate::broker::Broker,
    config: &crate::config::Config,
) -> Result<(), JwtSetupError> {
    let next = match &config.auth.jwt {
        Some(jwt) => Some(Arc::new(JwtVerifier::build(jwt)?)),
        None => None,
    };
    broker.jwt.store(next);
    Ok(())
}

/// A rule as a token carries it: the store's schema, subject optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimRule {
    effect: Effect,
    #[serde(default)]
    subject: Option<Subject>,
    actions: ActionSet,
    pattern: String,
    #[serde(default)]
    max_qos: Option<QoS>,
    #[serde(default)]
    retain: Option<bool>,
}

/// A file's modification time and size, to notice a change.
type Stamp = Option<(SystemTime, u64)>;

/// The keys of a JWKS file and the stamp of the file they were read from.
type LoadedJwks = Mutex<(Stamp, Arc<JwkSet>)>;

enum Keys {
    Single(DecodingKey),
    Jwks { path: PathBuf, loaded: LoadedJwks },
}

/// Verifies tokens for one `auth.jwt` config.
pub struct JwtVerifier {
    config: JwtConfig,
    algorithms: Vec<Algorithm>,
    keys: Keys,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_jwks(path: &std::path::Path) -> Result<JwkSet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a JWKS: {e}", path.display()))
}

impl JwtVerifier {
    /// Reads the key (or the JWKS file). Blocking file reads: at start or
    /// reload only.
    pub fn build(config: &JwtConfig) -> Result<JwtVerifier, JwtSetupError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| JwtSetupError::Algorithm(format!("unknown algorithm {a:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys = match &config.key {
            JwtKey::Secret(secret) => Keys::Single(DecodingKey::from_secret(secret)),
            JwtKey::PublicKey(path) => {
                let pem = std::fs::read(path).map_err(|source| JwtSetupError::Read {
                    path: path.clone(),
                    source,
                })?;
                let key = DecodingKey::from_rsa_pem(&pem)
                    .or_else(|_| DecodingKey::from_ec_pem(&pem))
                    .or_else(|_| DecodingKey::from_ed_pem(&pem))
                    .map_err(|_| JwtSetupError::Key { path: path.clone() })?;
                Keys::Single(key)
            }
            JwtKey::Jwks(path) => {
                let set = read_jwks(path).map_err(JwtSetupError::Jwks)?;
                Keys::Jwks {
                    path: path.clone(),
                    loaded: Mutex::new((stamp(path), Arc::new(set))),
                }
            }
        };
        Ok(JwtVerifier {
            config: config.clone(),
            algorithms,
            keys,
        })
    }

    /// The JWKS as on disk now (re-read when the file changed).
    fn jwks(&self, path: &std::path::Path, loaded: &LoadedJwks) -> Arc<JwkSet> {
        let now = stamp(path);
        let mut guard = loaded.lock();
        if now != guard.0 {
            match read_jwks(path) {
                Ok(set) => {
                    tracing::info!(path = %path.display(), keys = set.keys.len(), "JWKS file changed; reloaded");
                    *guard = (now, Arc::new(set));
                }
                Err(err) => {
                    tracing::warn!(
                        "JWKS file changed but cannot be used; the previous keys stay: {err}"
                    );
                    guard.0 = now;
                }
            }
        }
        Arc::clone(&guard.1)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.config.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        if self.config.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.config.audience);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Verify `token` and read its claims. `username`, when the client sent
    /// one, must be the token's. Err is the reason, for the log.
    pub fn verify(
        &self,
        token: &str,
        username: Option<&str>,
        via_method: bool,
    ) -> Result<TokenGrant, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if !self.algorithms.contains(&header.alg) {
            return Err("token algorithm not allowed");
        }
        let jwks;
        let key = match &self.keys {
            Keys::Single(key) => key,
            Keys::Jwks { path, loaded } => {
                jwks = self.jwks(path, loaded);
                let jwk = match &header.kid {
                    Some(kid) => jwks.find(kid),
                    // Without a kid, only a one-key set is unambiguous.
                    None if jwks.keys.len() == 1 => jwks.keys.first(),
                    None => None,
                }
                .ok_or("no JWKS key for the token's kid")?;
                &DecodingKey::from_jwk(jwk).map_err(|_| "unusable JWKS key")?
            }
        };
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation(header.alg))
                .map_err(|e| reason(e.kind()))?;
        self.grant(&data.claims, username, via_method)
    }

    fn grant(
        &self,
        claims: &Map<String, Value>,
        username: Option<&str>,
        via_method: bool,
    ) -> Result<TokenGrant, &'static str> {
        let name = claims
            .get(&self.config.username_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("token has no username claim")?;
        if username.is_some_and(|u| u != name) {
            return Err("username does not match the token");
        }
        let roles = match claims.get(&self.config.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("roles claim is not a list of strings")?,
            // OAuth-style "scope": names separated by spaces.
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(_) => return Err("roles claim is not a list of strings"),
        };
        let roles: Vec<String> = roles
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let rules = match &self.config.acl_claim {
            Some(claim) => match claims.get(claim) {
                None | Some(Value::Null) => Vec::new(),
                Some(value) => claim_rules(value, name, u64::MAX)?,
            },
            None => Vec::new(),
        };
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("token exp is not a number")?;
        Ok(TokenGrant {
            username: name.to_owned(),
            roles,
            rules,
            expires_at,
            via_method,
            require_store_user: self.config.require_store_user,
            http: None,
        })
    }
}

/// Rules in the store's schema, `subject` optional (the user's then), as a
/// token or the HTTP service carries them; ids count down from `first_id`.
pub(crate) fn claim_rules(
    value: &Value,
    username: &str,
    first_id: u64,
) -> Result<Vec<Rule>, &'static str> {
    let list: Vec<ClaimRule> =
        serde_json::from_value(value.clone()).map_err(|_| "acl claim is not a list of rules")?;
    let mut rules = Vec::with_capacity(list.len());
    for (i, r) in list.into_iter().enumerate() {
        let rule = Rule {
            id: RuleId(first_id.saturating_sub(i as u64)),
            effect: r.effect,
            subject: r
                .subject
                .unwrap_or_else(|| Subject::User(username.to_owned())),
            actions: r.actions,
            pattern: r.pattern,
            max_qos: r.max_qos,
            retain: r.retain,
        };
        rule.validate()
            .map_err(|_| "acl claim holds an invalid rule")?;
        rules.push(rule);
    }
    Ok(rules)
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::InvalidSignature => "bad token signature",
        ErrorKind::InvalidAudience => "wrong token audience",
        ErrorKind::InvalidIssuer => "wrong token issuer",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim (exp, iss or aud)",
        ErrorKind::InvalidAlgorithm => "token algorithm does not fit the key",
        _ => "malformed token",
    }
}

/// Whether a password looks like a JWT (three base64url parts, a JSON
/// header): only such passwords go to the verifier.
pub fn looks_like_jwt(password: &[u8]) -> bool {
    password.starts_with(b"eyJ")
        && password.iter().filter(|b| **b == b'.').count() == 2
        && password
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use std::time::Duration;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn config() -> JwtConfig {
        JwtConfig {
            key: JwtKey::Secret(SECRET.to_vec()),
            algorithms: vec!["HS256".into()],
            issuer: Some("idp".into()),
            audience: vec!["warden".into()],
            leeway: Duration::from_secs(0),
            username_claim: "sub".into(),
            roles_claim: "roles".into(),
            acl_claim: Some("acl".into()),
            require_store_user: false,
        }
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn good(exp: u64) -> serde_json::Value {
        serde_json::json!({
            "sub": "dev1", "iss": "idp", "aud": "warden", "exp": exp,
            "roles": ["b", "a"],
            "acl": [{"effect": "allow", "actions": ["publish"], "pattern": "d/${username}/#"}],
        })
    }

    #[test]
    fn claims_become_a_grant() {
        let v = JwtVerifier::build(&config()).unwrap();
        let exp = unix_now() + 600;
        let t = token(good(exp));
        assert!(looks_like_jwt(t.as_bytes()));
        let g = v.verify(&t, None, false).unwrap();
        assert_eq!(g.username, "dev1");
        assert_eq!(g.roles, ["a", "b"]);
        assert_eq!(g.expires_at, exp);
        assert_eq!(g.rules.len(), 1);
        assert_eq!(g.rules[0].id, RuleId(u64::MAX));
        assert_eq!(g.rules[0].subject, Subject::User("dev1".into()));
        assert_eq!(
            v.verify(&t, Some("other"), false),
            Err("username does not match the token")
        );
    }

    fn b64url(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    /// An ES256 key: the PEM public key, the JWKS entry with `kid`, and a
    /// signer.
    fn es256(kid: &str) -> (String, serde_json::Value, EncodingKey) {
        let pair = rcgen::KeyPair::generate().unwrap();
        let raw = pair.public_key_raw();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
            "x": b64url(&raw[1..33]), "y": b64url(&raw[33..65]),
        });
        let signer = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        (pair.public_key_pem(), jwk, signer)
    }

    fn es_token(kid: &str, signer: &EncodingKey) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        encode(&header, &good(unix_now() + 600), signer).unwrap()
    }

    #[test]
    fn public_keys_and_jwks_files_verify_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (pem, jwk1, signer1) = es256("k1");
        let pem_path = dir.path().join("idp.pem");
        std::fs::write(&pem_path, pem).unwrap();
        let mut cfg = JwtConfig {
            key: JwtKey::PublicKey(pem_path),
            algorithms: vec!["ES256".into()],
            ..config()
        };
        let v = JwtVerifier::build(&cfg).unwrap();
        assert!(v.verify(&es_token("k1", &signer1), None, false).is_ok());
        // An HMAC token "signed" with the public key is refused.
        assert!(v
            .verify(&token(good(unix_now() + 600)), None, false)
            .is_err());

        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, serde_json::json!({ "keys": [jwk1] }).to_string()).unwrap();
        cfg.key = JwtKey::Jwks(jwks.clone());
        let v = JwtVerifier::build(&cfg).unwrap();
        assert!(v.verify(&es_token("k1", &signer1), None, false).is_ok());
        let (_, jwk2, signer2) = es256("k2");
        assert_eq!(
            v.verify(&es_token("k2", &signer2), None, false),
            Err("no JWKS key for the token's kid")
        );
        // A rotated JWKS file is picked up without a restart.
        let rotated = serde_json::json!({ "keys": [jwk2] }).to_string();
        std::fs::write(&jwks, format!("{rotated}\n")).unwrap();
        assert!(v.verify(&es_token("k2", &signer2), None, false).is_ok());
        assert!(v.verify(&es_token("k1", &signer1), None, false).is_err());
    }

    #[test]
    fn bad_tokens_say_why() {
        let v = JwtVerifier::build(&config()).unwrap();
        let now = unix_now();
        assert_eq!(
            v.verify(&token(good(now - 10)), None, false),
            Err("token expired")
        );
        let mut aud = good(now + 600);
        aud["aud"] = "other".into();
        assert_eq!(
            v.verify(&token(aud), None, false),
            Err("wrong token audience")
        );
        let mut no_exp = good(now + 600);
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(v.verify(&token(no_exp), None, false).is_err());
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &good(now + 600),
            &EncodingKey::from_secret(b"another secret of thirty-two by!"),
        )
        .unwrap();
        assert_eq!(v.verify(&forged, None, false), Err("bad token signature"));
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &good(now + 600),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            v.verify(&hs512, None, false),
            Err("token algorithm not allowed")
        );
        let mut bad_rule = good(now + 600);
        bad_rule["acl"] = serde_json::json!([{"effect": "allow", "actions": [], "pattern": "x"}]);
        assert_eq!(
            v.verify(&token(bad_rule), None, false),
            Err("acl claim holds an invalid rule")
        );
        assert!(!looks_like_jwt(b"hunter2"));
    }
}
