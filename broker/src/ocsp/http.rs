//! One OCSP request over HTTP/1.1 (RFC 6960 appendix A): a POST of
//! `application/ocsp-request` to the responder URL, on a fresh connection
//! that is closed afterwards. No timeout here: the caller bounds the whole
//! exchange, connecting included, and dropping this future drops the
//! connection with it (it is driven here, not in a task of its own).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The largest response read; real ones are a few kilobytes.
pub const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad responder URL {0}")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("HTTP status {0}")]
    Status(StatusCode),
    #[error("response body: {0}")]
    Body(String),
}

/// POSTs `request` (DER) to `url` and returns the response body.
pub async fn post(url: &str, request: Vec<u8>) -> Result<Vec<u8>, HttpError> {
    let uri: Uri = url.parse().map_err(|_| HttpError::Url(url.to_owned()))?;
    let host = uri
        .host()
        .ok_or_else(|| HttpError::Url(url.to_owned()))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    // An IPv6 literal comes bracketed, as a Host header wants it.
    let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(HttpError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let authority = uri.authority().map_or(host, |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, authority)
        .header(CONTENT_TYPE, "application/ocsp-request")
        .header(ACCEPT, "application/ocsp-response")
        .header(CONTENT_LENGTH, request.len())
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::from(request)))
        .map_err(|e| HttpError::Url(e.to_string()))?;
    let exchange = async move {
        let response = sender.send_request(req).await?;
        if response.status() != StatusCode::OK {
            return Err(HttpError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| HttpError::Body(e.to_string()))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::pin!(exchange);
    tokio::select! {
        biased;
        done = &mut exchange => done,
        ended = conn => {
            // The connection is over; what it delivered is buffered for
            // the exchange, which now finishes or fails at once.
            ended?;
            exchange.await
        }
    }
}
