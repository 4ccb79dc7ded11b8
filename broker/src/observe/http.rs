//! The metrics listener (`metrics.bind`): plain HTTP/1.1 through hyper.
//!
//! | path | who | what |
//! |---|---|---|
//! | `GET /metrics` | anyone who reaches it | Prometheus text |
//! | `GET /health` | anyone | 200 while the process serves |
//! | `GET /ready` | anyone | 200 when the MQTT listeners are bound and the store answers, else 503 |
//! | `GET /` | anyone | the status page (its data comes from the API) |
//! | `/api/...` | bearer token | the admin API (`docs/admin-api.yaml`), bans and `POST /api/policy/invalidate` included |
//!
//! The API answers 401 to a request without the token, and to every
//! request when no token is configured: it is never open by default.
//! `/metrics` carries no client identities, only counts; bind the listener
//! to a private address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::api;
use crate::broker::Broker;
use crate::shutdown::Shutdown;

/// The status page: plain HTML and a little JS, no build step.
const PAGE: &str = include_str!("page.html");

/// How long `/ready` waits for the store.
const READY_WAIT: Duration = Duration::from_secs(2);

/// Bind the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve until shutdown; one task per HTTP connection.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut shutdown: Shutdown) {
    loop {
        let (tcp, _) = tokio::select! {
            res = listener.accept() => match res {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => return,
        };
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let broker = Arc::clone(&broker);
                async move { Ok::<_, Infallible>(handle(&broker, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "metrics listener: connection error");
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    reply(status, "text/plain; charset=utf-8", body)
}

fn json(status: StatusCode, value: &impl Serialize) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => reply(status, "application/json", body),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode\n"),
    }
}

#[derive(Serialize)]
struct ApiError<'a> {
    error: &'a str,
}

fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &ApiError { error: message })
}

async fn handle(broker: &Arc<Broker>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (method.as_str(), path.as_str()) {
        ("GET", "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            super::metrics::render(broker),
        ),
        ("GET", "/health") => text(StatusCode::OK, "ok\n"),
        ("GET", "/ready") => ready(broker).await,
        ("GET", "/") => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (_, p) if p.starts_with("/api/") => {
            if !authorized(broker, &req).await {
                let mut r = error(StatusCode::UNAUTHORIZED, "a bearer token is required");
                r.headers_mut()
                    .insert("www-authenticate", HeaderValue::from_static("Bearer"));
                return r;
            }
            if p == "/api/policy/invalidate" {
                return invalidate(broker, &method, req).await;
            }
            api_route(broker, &method, p, req.uri().query())
        }
        _ => error(StatusCode::NOT_FOUND, "no such path"),
    }
}

/// The listeners are bound before this server starts, so readiness is the
/// store's answer.
async fn ready(broker: &Broker) -> Reply {
    match tokio::time::timeout(READY_WAIT, broker.store.ping()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
        Ok(Err(err)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unreachable: {err}\n"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "store did not answer\n"),
    }
}

/// The request carries the configured token (compared in constant time).
/// No token configured, or an unreadable token file: nobody is.
async fn authorized(broker: &Broker, req: &Request<Incoming>) -> bool {
    let Some(path) = broker.config().metrics.token_file.clone() else {
        return false;
    };
    let Ok(Ok(token)) = tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await
    else {
        tracing::warn!("admin API: the token file cannot be read; refusing");
        return false;
    };
    let token = token.trim();
    if token.is_empty() {
        return false;
    }
    let Some(given) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Percent-decoding for a client id in the path.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn api_route(broker: &Broker, method: &Method, path: &str, query: Option<&str>) -> Reply {
    let rest = &path["/api".len()..];
    match (method.as_str(), rest) {
        ("GET", "/status") => json(StatusCode::OK, &api::status(broker)),
        ("GET", "/clients") => json(StatusCode::OK, &api::clients(broker)),
        ("GET", "/bans") => json(StatusCode::OK, &api::bans(broker)),
        (m, p) if p.starts_with("/bans/") => lift_ban(broker, m, &p["/bans/".len()..]),
        ("GET", "/decisions") => {
            let limit = match query_param(query, "limit").map(str::parse::<usize>) {
                None => 50,
                Some(Ok(n)) => n.min(super::audit::RECENT_DENIES),
                Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "limit must be a number"),
            };
            json(StatusCode::OK, &api::decisions(broker, limit))
        }
        (m, p) if p.starts_with("/clients/") => {
            let Some(id) = decode(&p["/clients/".len()..]).filter(|id| !id.is_empty()) else {
                return error(StatusCode::BAD_REQUEST, "bad client id in the path");
            };
            match m {
                "GET" => match api::client(broker, &id) {
                    Some(c) => json(StatusCode::OK, &c),
                    None => error(StatusCode::NOT_FOUND, "no such client"),
                },
                "DELETE" => match api::kick(broker, &id, "admin api") {
                    api::KickResult::Kicked => reply(StatusCode::NO_CONTENT, "text/plain", ""),
                    api::KickResult::Offline => {
                        error(StatusCode::CONFLICT, "the client is not connected")
                    }
                    api::KickResult::NoSuchClient => error(StatusCode::NOT_FOUND, "no such client"),
                },
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "GET or DELETE"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such path"),
    }
}

/// `POST /api/policy/invalidate`: body `{"username": NAME}` or
/// `{"all": true}` (at most 64 KiB).
async fn invalidate(broker: &Broker, method: &Method, req: Request<Incoming>) -> Reply {
    use http_body_util::BodyExt;
    if *method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "POST");
    }
    let body = http_body_util::Limited::new(req.into_body(), 64 << 10);
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "cannot read the body (at most 64 KiB)",
        );
    };
    match api::invalidate_policy(broker, &body, "admin api") {
        Ok(done) => json(StatusCode::OK, &done),
        Err(api::InvalidateError::BadRequest(why)) => error(StatusCode::BAD_REQUEST, why),
        Err(api::InvalidateError::NoSource) => error(
            StatusCode::CONFLICT,
            "no external policy source (auth.http) is configured",
        ),
    }
}

/// `DELETE /api/bans/{kind}/{subject}`: kind `ip` or `username`; an IPv6
/// subject's `/` of `/64` may be written `%2F`.
fn lift_ban(broker: &Broker, method: &str, rest: &str) -> Reply {
    if method != "DELETE" {
        return error(StatusCode::METHOD_NOT_ALLOWED, "DELETE");
    }
    let Some((kind, subject)) = rest.split_once('/') else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected /api/bans/{kind}/{subject}",
        );
    };
    let Some(kind) = crate::defence::BanKind::parse(kind) else {
        return error(StatusCode::BAD_REQUEST, "kind is ip or username");
    };
    let Some(subject) = decode(subject).filter(|s| !s.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "bad subject in the path");
    };
    if api::lift_ban(broker, kind, &subject, "admin api") {
        reply(StatusCode::NO_CONTENT, "text/plain", "")
    } else {
        error(StatusCode::NOT_FOUND, "no such ban")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_in_paths_are_percent_decoded() {
        assert_eq!(decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(decode("plain").as_deref(), Some("plain"));
        assert_eq!(decode("bad%zz"), None);
        assert_eq!(decode("cut%2"), None);
    }

    #[test]
    fn query_params_are_found() {
        assert_eq!(query_param(Some("a=1&limit=5"), "limit"), Some("5"));
        assert_eq!(query_param(Some("a=1"), "limit"), None);
        assert_eq!(query_param(None, "limit"), None);
    }
}
