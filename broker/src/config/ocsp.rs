//! A listener's `ocsp`, `ocsp_responder` and `ocsp_timeout` as written to
//! [`OcspSettings`]: only where there are client certificates to ask about,
//! a responder that is a plain `http://` URL (what AIA extensions name and
//! what responders serve; the answer is signed, so TLS adds nothing), and a
//! timeout that ends before the listener's connect timeout would.

use std::time::Duration;

use super::locate::Seg;
use super::raw::RawListener;
use super::types::{ClientAuthMode, OcspMode};
use super::validate::Ctx;
use super::{ConfigError, OcspSettings};

/// Default for [`OcspSettings::timeout`], when the connect timeout leaves
/// room for it (else half the connect timeout).
pub const DEFAULT_OCSP_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) fn build(
    i: usize,
    raw: &RawListener,
    client_auth: ClientAuthMode,
    connect_timeout: Duration,
    ctx: &Ctx<'_>,
) -> Result<Option<OcspSettings>, ConfigError> {
    let err = |key: &'static str, message: String| {
        ctx.err(
            &[Seg::Key("listeners"), Seg::Index(i), Seg::Key(key)],
            &format!("listeners[{i}].{key}"),
            message,
        )
    };
    let mode = raw.ocsp.unwrap_or_default();
    if mode == OcspMode::Off {
        let stray = [
            ("ocsp_responder", raw.ocsp_responder.is_some()),
            ("ocsp_timeout", raw.ocsp_timeout.is_some()),
        ];
        if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
            return Err(err(
                key,
                "set, but ocsp is off: set ocsp to soft_fail or hard_fail".to_owned(),
            ));
        }
        return Ok(None);
    }
    if client_auth == ClientAuthMode::None {
        return Err(err(
            "ocsp",
            "needs client_auth optional or required (there are no client certificates to check)"
                .to_owned(),
        ));
    }
    let responder = match &raw.ocsp_responder {
        Some(url) => Some(responder_url(url).map_err(|why| err("ocsp_responder", why))?),
        None => None,
    };
    let timeout = match raw.ocsp_timeout {
        Some(t) if t.0.is_zero() => {
            return Err(err("ocsp_timeout", "must be greater than zero".to_owned()))
        }
        Some(t) if t.0 >= connect_timeout => {
            return Err(err(
                "ocsp_timeout",
                format!(
                    "must be shorter than the listener's connect_timeout ({})",
                    humantime::format_duration(connect_timeout)
                ),
            ))
        }
        Some(t) => t.0,
        None => DEFAULT_OCSP_TIMEOUT.min(connect_timeout / 2),
    };
    Ok(Some(OcspSettings {
        mode,
        responder,
        timeout,
    }))
}

/// An `http://host[:port][/path]` URL, or why not.
pub fn responder_url(url: &str) -> Result<String, String> {
    let bad = |why: &str| format!("invalid responder URL \"{url}\": {why}");
    let uri: hyper::Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("only http:// is supported (OCSP answers are signed)")),
        _ => return Err(bad("expected http://host[:port][/path]")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::responder_url;

    #[test]
    fn responder_urls_are_plain_http() {
        assert_eq!(
            responder_url("http://ocsp.example.com:8080/ocsp").as_deref(),
            Ok("http://ocsp.example.com:8080/ocsp")
        );
        assert!(responder_url("http://127.0.0.1:2560").is_ok());
        assert!(responder_url("https://ocsp.example.com").is_err());
        assert!(responder_url("ftp://ocsp.example.com").is_err());
        assert!(responder_url("ocsp.example.com").is_err());
        assert!(responder_url("not a url").is_err());
    }
}
