//! `auth.jwt` from the file as written to [`JwtConfig`]: exactly one key
//! source, algorithms of that key's family, files that exist. The key
//! itself is parsed when the broker builds its verifier (`auth::jwt`).

use std::time::Duration;

use super::locate::Seg;
use super::raw::RawJwt;
use super::validate::Ctx;
use super::{ConfigError, JwtConfig, JwtKey};

/// Default clock skew on `exp`/`nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

const HMAC: [&str; 3] = ["HS256", "HS384", "HS512"];
const ASYMMETRIC: [&str; 10] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "ES512",
];

pub(super) fn build(raw: RawJwt, ctx: &Ctx<'_>) -> Result<JwtConfig, ConfigError> {
    let at = |key| [Seg::Key("auth"), Seg::Key("jwt"), Seg::Key(key)];
    let err =
        |key: &'static str, message: String| ctx.err(&at(key), &format!("auth.jwt.{key}"), message);
    let file = |key: &'static str, p: &std::path::Path| {
        ctx.existing_file(&at(key), &format!("auth.jwt.{key}"), p)
    };
    let sources = [
        ("secret", raw.secret.is_some()),
        ("secret_file", raw.secret_file.is_some()),
        ("public_key", raw.public_key.is_some()),
        ("jwks_file", raw.jwks_file.is_some()),
    ];
    let given: Vec<&str> = sources
        .iter()
        .filter(|(_, s)| *s)
        .map(|(k, _)| *k)
        .collect();
    if given.len() != 1 {
        let first = given.get(1).copied().unwrap_or("secret");
        return Err(ctx.err(
            &at(first),
            "auth.jwt",
            "set exactly one of secret, secret_file, public_key, jwks_file",
        ));
    }
    let key = if let Some(secret) = raw.secret {
        JwtKey::Secret(secret.into_bytes())
    } else if let Some(p) = &raw.secret_file {
        let path = file("secret_file", p)?;
        let text = std::fs::read(&path).map_err(|e| {
            err(
                "secret_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        // A trailing newline from `echo > file` is not part of the secret.
        let mut bytes = text;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        JwtKey::Secret(bytes)
    } else if let Some(p) = &raw.public_key {
        JwtKey::PublicKey(file("public_key", p)?)
    } else if let Some(p) = &raw.jwks_file {
        JwtKey::Jwks(file("jwks_file", p)?)
    } else {
        unreachable_source()
    };
    if let JwtKey::Secret(s) = &key {
        if s.len() < 32 {
            let field = if raw.secret_file.is_some() {
                "secret_file"
            } else {
                "secret"
            };
            return Err(err(
                field,
                "an HMAC secret shorter than 32 bytes is guessable".to_owned(),
            ));
        }
    }
    let family: &[&str] = match key {
        JwtKey::Secret(_) => &HMAC,
        _ => &ASYMMETRIC,
    };
    let algorithms = match raw.algorithms {
        None => family.iter().map(|a| (*a).to_owned()).collect(),
        Some(list) => {
            if list.is_empty() {
                return Err(err("algorithms", "must not be empty".to_owned()));
            }
            for alg in &list {
                if !family.contains(&alg.as_str()) {
                    return Err(err(
                        "algorithms",
                        format!(
                            "{alg:?} does not fit this key (expected one of {})",
                            family.join(", ")
                        ),
                    ));
                }
            }
            list
        }
    };
    let claim = |value: Option<String>, key: &'static str, default: &str| match value {
        Some(v) if v.trim().is_empty() => Err(err(key, "must not be empty".to_owned())),
        Some(v) => Ok(v),
        None => Ok(default.to_owned()),
    };
    Ok(JwtConfig {
        key,
        algorithms,
        issuer: raw.issuer,
        audience: raw.audience.map(|a| a.into_vec()).unwrap_or_default(),
        leeway: raw.leeway.map_or(DEFAULT_LEEWAY, |h| h.0),
        username_claim: claim(raw.username_claim, "username_claim", "sub")?,
        roles_claim: claim(raw.roles_claim, "roles_claim", "roles")?,
        acl_claim: raw
            .acl_claim
            .map(|c| claim(Some(c), "acl_claim", ""))
            .transpose()?,
        require_store_user: raw.require_store_user.unwrap_or(false),
    })
}

/// The count check above leaves exactly one source.
fn unreachable_source() -> JwtKey {
    JwtKey::Secret(Vec::new())
}
