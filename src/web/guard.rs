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
//! # Other sites (CORS) and DNS rebinding
//!
//! The pages are served by this very server, so a browser never needs
//! cross-origin access, and the server sends no `Access-Control-Allow-*`
//! header at all. That alone does not protect the customers: a plain
//! `POST /order` with a text body, or `POST /take?order=N`, is a "simple"
//! request that a browser sends to another site *without* asking first (no
//! preflight); CORS only hides the answer from the foreign page. So a page of
//! `http://evil.example` could place or collect orders from a visitor's
//! browser. Every request that changes something (any method but GET and
//! HEAD, preflights included) sent by a browser (it carries `Origin` or
//! `Sec-Fetch-Site`) is therefore refused with `403` unless it comes from
//! here:
//!
//! - its `Host` must be a name this server answers to ([`Hosts`]): the
//!   loopback names and addresses (`localhost`, `127.0.0.0/8`, `[::1]`) when
//!   it listens on loopback or on every interface, the address it listens on,
//!   and the names given by `--allowed-hosts`. The `Host` header alone
//!   proves nothing: with DNS rebinding, `evil.example` first serves a page
//!   and then resolves to this server, and the browser, seeing one origin,
//!   sends `Host: evil.example` and `Origin: http://evil.example`, both
//!   agreeing. Only the list of names the server answers to tells them apart;
//! - `Sec-Fetch-Site`, when sent (every current browser): `same-origin` and
//!   `none` (typed by the user) pass; `same-site` (another port or
//!   subdomain) and `cross-site` are refused;
//! - `Origin`, when sent: its `host:port` must be the request's `Host` (so
//!   it works behind a proxy that keeps `Host`); `null` (a sandboxed frame,
//!   a `file:` page) is refused.
//!
//! Neither header: not a browser (curl, the rush, the examples), which no
//! page can make send anything: passes. The decision is one pure function,
//! [`foreign`], which the fuzz target calls too.

use std::pin::Pin;
use std::sync::Arc;
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

/// Refuses a request whose framing this server would otherwise read
/// wrongly, before any route: two `Host` headers (`400 duplicate_host`: the
/// origin guard would read only the first), a `Transfer-Encoding` other than
/// plain `chunked` (`501 unsupported_transfer_encoding`: HTTP/1.1 would
/// strip the chunking and hand over, say, gzip as if it were the body), a
/// request `Content-Encoding` (`415 unsupported_encoding`: a compressed
/// order would be stored as its bytes). The connection is closed after a
/// framing refusal: what follows on it cannot be trusted.
pub async fn framing(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let refusal = if headers.get_all(header::HOST).iter().count() > 1 {
        Some((
            StatusCode::BAD_REQUEST,
            "duplicate_host",
            "a request names its host once; this one has several Host headers",
        ))
    } else if !plain_chunked(headers) {
        Some((
            StatusCode::NOT_IMPLEMENTED,
            "unsupported_transfer_encoding",
            "this server reads a body sent as it is or in plain chunks (Transfer-Encoding: chunked), nothing else",
        ))
    } else if headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
    {
        Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            "send the body uncompressed: this server does not decode a request's Content-Encoding",
        ))
    } else {
        None
    };
    let Some((status, code, message)) = refusal else {
        return next.run(request).await;
    };
    let mut response = ApiError::Rejected {
        status,
        code,
        message: message.to_owned(),
    }
    .into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// No `Transfer-Encoding`, or exactly `chunked`.
fn plain_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(only), None) => only.eq_ignore_ascii_case(b"chunked"),
        _ => false,
    }
}

/// What a browser is told on every answer: never sniff a type, never show
/// this server's pages in another site's frame (`frame-ancestors 'none'`,
/// and `X-Frame-Options` for older browsers), load scripts, styles and
/// images from here alone; and nothing a `POST` answers (a `201` with its
/// pickup code, a collected or cancelled order) is kept in any cache.
pub async fn browser_headers(request: Request, next: Next) -> Response {
    use axum::http::HeaderValue;
    let post = request.method() == Method::POST;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if post {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The pages' policy: everything from this server, nothing inline, no frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The host names this server answers to; see the module.
#[derive(Clone, Debug, Default)]
pub struct Hosts {
    /// `localhost` and the loopback addresses: it listens on loopback (or on
    /// every interface, loopback included).
    loopback: bool,
    /// Lowercase names and addresses (IPv6 without brackets).
    names: Vec<String>,
}

impl Hosts {
    /// The names a server listening on `listen` answers to: loopback names
    /// when it listens there, its own address when it is a particular one,
    /// and `allowed` (from `--allowed-hosts`).
    pub fn new(listen: std::net::SocketAddr, allowed: &[String]) -> Hosts {
        let ip = listen.ip();
        let mut names: Vec<String> = allowed.iter().map(|h| bare_host(h)).collect();
        if !ip.is_loopback() && !ip.is_unspecified() {
            names.push(ip.to_string());
        }
        Hosts {
            loopback: ip.is_loopback() || ip.is_unspecified(),
            names,
        }
    }

    /// Whether `host` (a `Host` header or an origin's authority:
    /// `name[:port]`, `[v6][:port]`) is one of these names.
    pub fn answers_to(&self, host: &str) -> bool {
        let name = bare_host(host);
        if name.is_empty() {
            return false;
        }
        if self.loopback && is_loopback(&name) {
            return true;
        }
        self.names.contains(&name)
    }
}

/// `Example.COM.:8080` → `example.com`, `[::1]:7777` → `::1`.
fn bare_host(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(inside, _)| inside),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn is_loopback(name: &str) -> bool {
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a change requested by a page of another site; see the module.
pub async fn same_origin(
    State(hosts): State<Arc<Hosts>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method();
    if *method != Method::GET && *method != Method::HEAD {
        let authority = request.uri().authority().map(|a| a.as_str());
        if let Some(why) = foreign(request.headers(), authority, &hosts) {
            return ApiError::Rejected {
                status: StatusCode::FORBIDDEN,
                code: "cross_origin",
                message: why,
            }
            .into_response();
        }
    }
    next.run(request).await
}

/// Why a change is refused when a browser sent it from elsewhere (a
/// sentence), or `None` when it may go on: the whole decision of the
/// module's rules, pure, for the middleware and the fuzz target.
pub fn foreign(headers: &HeaderMap, authority: Option<&str>, hosts: &Hosts) -> Option<String> {
    let origin = headers.get(header::ORIGIN);
    let site = headers.get("sec-fetch-site");
    if origin.is_none() && site.is_none() {
        return None;
    }
    let from_elsewhere = || {
        Some(format!(
            "orders are placed and collected from this restaurant's own pages, not from {}",
            describe(origin, "a page of another site")
        ))
    };
    let host = match headers.get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => authority,
    };
    let Some(host) = host.filter(|h| hosts.answers_to(h)) else {
        let shown: String = host
            .unwrap_or("")
            .chars()
            .take(80)
            .flat_map(char::escape_debug)
            .collect();
        return Some(format!(
            "orders are placed and collected from this restaurant's own pages, and \"{shown}\" is not a name it answers to (its operator lists them with --allowed-hosts)"
        ));
    };
    if let Some(site) = site
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return from_elsewhere();
    }
    if let Some(origin) = origin {
        let from = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        if !from.is_some_and(|from| from.eq_ignore_ascii_case(host)) {
            return from_elsewhere();
        }
    }
    None
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

    fn loopback() -> Hosts {
        Hosts::new("127.0.0.1:7777".parse().unwrap(), &[])
    }

    #[test]
    fn only_this_origin_passes() {
        let here = [("host", "127.0.0.1:7777")];
        let hosts = loopback();
        assert!(
            foreign(&headers(&here), None, &hosts).is_none(),
            "no browser"
        );
        for ok in [
            vec![("origin", "http://127.0.0.1:7777")],
            vec![("origin", "https://127.0.0.1:7777")],
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
        ] {
            let mut h = headers(&here);
            h.extend(headers(&ok));
            assert!(foreign(&h, None, &hosts).is_none(), "{ok:?}");
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
            vec![
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://evil.example"),
            ],
        ] {
            let mut h = headers(&here);
            h.extend(headers(&bad));
            assert!(foreign(&h, None, &hosts).is_some(), "{bad:?}");
        }
        assert!(
            foreign(
                &headers(&[("origin", "http://localhost:1")]),
                Some("localhost:1"),
                &hosts
            )
            .is_none(),
            "no Host header: the request's authority"
        );
    }

    #[test]
    fn a_rebound_name_is_refused_even_when_origin_and_host_agree() {
        let hosts = loopback();
        for (host, origin) in [
            ("evil.example", "http://evil.example"),
            ("evil.example:7777", "http://evil.example:7777"),
            (
                "127.0.0.1.evil.example:7777",
                "http://127.0.0.1.evil.example:7777",
            ),
            ("localhost.evil.example", "http://localhost.evil.example"),
            ("", "http://"),
        ] {
            let h = headers(&[("host", host), ("origin", origin)]);
            let why = foreign(&h, None, &hosts).expect(host);
            assert!(why.contains("not a name it answers to"), "{why}");
            let h = headers(&[("host", host), ("sec-fetch-site", "same-origin")]);
            assert!(foreign(&h, None, &hosts).is_some(), "{host}");
        }
        // Without a browser's headers, nothing changes: curl may say any Host.
        assert!(foreign(&headers(&[("host", "evil.example")]), None, &hosts).is_none());
    }

    #[test]
    fn the_names_a_server_answers_to() {
        let on_loopback = loopback();
        for name in [
            "localhost",
            "LOCALHOST:7777",
            "localhost.",
            "127.0.0.1",
            "127.8.9.1:80",
            "[::1]:7777",
            "[::1]",
        ] {
            assert!(on_loopback.answers_to(name), "{name}");
        }
        for name in [
            "evil.example",
            "10.0.0.1:7777",
            "[::2]",
            "",
            ":7777",
            "[::1",
            "localhost:x",
        ] {
            assert!(!on_loopback.answers_to(name), "{name}");
        }
        let public = Hosts::new(
            "10.1.2.3:7777".parse().unwrap(),
            &["Restaurant.Example".to_owned()],
        );
        for name in [
            "restaurant.example:7777",
            "RESTAURANT.example",
            "10.1.2.3:7777",
        ] {
            assert!(public.answers_to(name), "{name}");
        }
        for name in ["localhost:7777", "127.0.0.1:7777", "evil.example"] {
            assert!(!public.answers_to(name), "{name}");
        }
        let everywhere = Hosts::new("0.0.0.0:7777".parse().unwrap(), &["a.example".to_owned()]);
        assert!(everywhere.answers_to("localhost:7777") && everywhere.answers_to("a.example"));
        assert!(!everywhere.answers_to("0.0.0.0:7777") && !everywhere.answers_to("b.example"));
    }
}
