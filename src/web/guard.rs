//! Checks made before any route: a request whose body is too large by its
//! own `Content-Length`, and a request sent by a page of another site; and
//! the discarding of a body nobody read.
//!
//! # A body that is refused
//!
//! When a handler answers without reading the whole body (a `413` after
//! 64 KiB of an endless upload, a `413` from `Content-Length` alone, a `405`),
//! closing the connection at once would make the kernel reset it, and a
//! client still sending gets "broken pipe" instead of the answer. So, like
//! nginx's lingering close, the rest of the body is read and thrown away for
//! a bounded time and number of bytes ([`LINGER`], [`LINGER_BYTES`]) after the
//! answer has gone; then the connection is closed. Nothing is kept.
//!
//! # Other sites (CORS)
//!
//! The pages are served by this very server, so a browser never needs
//! cross-origin access, and the server sends no `Access-Control-Allow-*`
//! header at all. That alone does not protect the customers: a plain
//! `POST /order` with a text body, or `POST /take?order=N`, is a "simple"
//! request that a browser sends to another site *without* asking first (no
//! preflight); CORS only hides the answer from the foreign page. So a page of
//! `http://evil.example` could place or collect orders from a visitor's
//! browser. Every request that changes something (any method but GET and
//! HEAD, preflights included) is therefore refused with `403` when the
//! browser says where it comes from and that is not here:
//!
//! - `Sec-Fetch-Site` (sent by every current browser): `same-origin` and
//!   `none` (typed by the user) pass; `same-site` (another port or
//!   subdomain) and `cross-site` are refused.
//! - Otherwise `Origin`: it passes only if its `host:port` is this request's
//!   `Host` (so it works behind a proxy that keeps `Host`); `null` (a
//!   sandboxed frame, a `file:` page) is refused.
//! - Neither header: not a browser (curl, the rush, the examples): passes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

use super::error::{ApiError, rejected};

/// How long the rest of a refused body is read and discarded.
pub const LINGER: Duration = Duration::from_secs(2);
/// The most bytes of a refused body read and discarded.
pub const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Answers `413` at once when `Content-Length` already says the body is over
/// `limit`, without reading any of it (a body with no length, chunked, is cut
/// off by the body limit after `limit` bytes instead). Either way, what is
/// left of a body nobody read is discarded for a while (see the module).
pub async fn declared_length(State(limit): State<usize>, request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    let body = Lingering {
        rest: Some(body.into_data_stream()),
        ended: false,
    };
    if declared.is_some_and(|n| n > limit as u64) {
        drop(body); // discarded in the background, after the answer
        return rejected(StatusCode::PAYLOAD_TOO_LARGE, String::new()).into_response();
    }
    next.run(Request::from_parts(parts, Body::from_stream(body)))
        .await
}

/// A request body that, dropped before its end, has its rest discarded in
/// the background for at most [`LINGER`] and [`LINGER_BYTES`].
struct Lingering {
    rest: Option<BodyDataStream>,
    ended: bool,
}

impl Stream for Lingering {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let next = rest.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None)) {
            self.ended = true;
        }
        next
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let (Some(mut rest), false) = (self.rest.take(), self.ended) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let discard = async {
                let mut read = 0;
                while let Some(Ok(chunk)) = rest.next().await {
                    read += chunk.len();
                    if read > LINGER_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, discard).await;
        });
    }
}

/// Refuses a change requested by a page of another site; see the module.
pub async fn same_origin(request: Request, next: Next) -> Response {
    let method = request.method();
    if *method != Method::GET && *method != Method::HEAD {
        let authority = request.uri().authority().map(|a| a.as_str());
        if let Some(from) = foreign(request.headers(), authority) {
            return ApiError::Rejected {
                status: StatusCode::FORBIDDEN,
                code: "cross_origin",
                message: format!(
                    "orders are placed and collected from this restaurant's own pages, not from {from}"
                ),
            }
            .into_response();
        }
    }
    next.run(request).await
}

/// Where a browser says the request comes from, when that is another site.
fn foreign(headers: &HeaderMap, authority: Option<&str>) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            _ => Some(describe(
                headers.get(header::ORIGIN),
                "a page of another site",
            )),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority);
    let from = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (from, host) {
        (Some(from), Some(host)) if from.eq_ignore_ascii_case(host) => None,
        _ => Some(describe(Some(origin), "a page of another site")),
    }
}

/// "a page of http://evil.example", kept short and printable.
fn describe(origin: Option<&axum::http::HeaderValue>, otherwise: &str) -> String {
    match origin.and_then(|o| o.to_str().ok()) {
        Some(o) if o != "null" => {
            let shown: String = o.chars().take(80).flat_map(char::escape_debug).collect();
            format!("a page of {shown}")
        }
        _ => otherwise.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn only_this_origin_passes() {
        let here = [("host", "127.0.0.1:7777")];
        assert!(foreign(&headers(&here), None).is_none(), "no browser");
        for ok in [
            vec![("origin", "http://127.0.0.1:7777")],
            vec![("origin", "https://127.0.0.1:7777")],
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
        ] {
            let mut h = headers(&here);
            h.extend(headers(&ok));
            assert!(foreign(&h, None).is_none(), "{ok:?}");
        }
        for bad in [
            vec![("origin", "http://evil.example")],
            vec![("origin", "http://127.0.0.1:8080")],
            vec![("origin", "null")],
            vec![("origin", "garbage")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://127.0.0.1:7777"),
            ],
        ] {
            let mut h = headers(&here);
            h.extend(headers(&bad));
            assert!(foreign(&h, None).is_some(), "{bad:?}");
        }
        assert!(
            foreign(&headers(&[("origin", "http://a:1")]), Some("a:1")).is_none(),
            "no Host header: the request's authority"
        );
    }
}
