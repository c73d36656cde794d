//! The pages, embedded in the binary at build time so it serves them from any
//! directory, offline; and the QR codes the kiosk shows, drawn here.
//!
//! `GET /my/{n}` is the same page for every `n`: the page reads the number
//! from its own path and the pickup code from the URL fragment (`#code=…`),
//! which browsers never send, so no server or proxy log ever holds a code.
//! For the same reason `POST /qr` takes the text to encode (a URL with a code
//! in its fragment) as its body, never in the request line.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use qrcode::QrCode;
use qrcode::render::svg;

use axum::http::{HeaderMap, HeaderValue};
use tokio::sync::Semaphore;

use super::AppState;
use super::error::{ApiError, body_refused};
use crate::order::{ContentError, parse_content};
use crate::pickup::PickupCode;

/// The longest text `POST /qr` takes, in bytes: a phone page's address
/// with its code is about a hundred.
pub const QR_MAX_BYTES: usize = 256;
/// QR codes drawn at once, in the whole process: each costs about 10 ms of
/// CPU. Past it, `503 busy` with `Retry-After`.
pub const QR_AT_ONCE: usize = 2;

static QR_DRAWING: Semaphore = Semaphore::const_new(QR_AT_ONCE);

macro_rules! page {
    ($file:literal, $type:literal) => {
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, $type),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                include_str!(concat!("../../static/", $file)),
            )
                .into_response()
        })
    };
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", page!("index.html", "text/html; charset=utf-8"))
        .route("/kiosk", page!("kiosk.html", "text/html; charset=utf-8"))
        .route(
            "/kitchen",
            page!("kitchen.html", "text/html; charset=utf-8"),
        )
        .route("/my/{n}", page!("my.html", "text/html; charset=utf-8"))
        .route("/style.css", page!("style.css", "text/css; charset=utf-8"))
        .route(
            "/common.js",
            page!("common.js", "text/javascript; charset=utf-8"),
        )
        .route(
            "/board.js",
            page!("board.js", "text/javascript; charset=utf-8"),
        )
        .route(
            "/kiosk.js",
            page!("kiosk.js", "text/javascript; charset=utf-8"),
        )
        .route("/my.js", page!("my.js", "text/javascript; charset=utf-8"))
        .route(
            "/kitchen.js",
            page!("kitchen.js", "text/javascript; charset=utf-8"),
        )
        .route("/favicon.svg", page!("favicon.svg", "image/svg+xml"))
        .route("/qr", post(qr))
}

/// `POST /qr`: the QR code of a customer's own page on this restaurant,
/// `http(s)://HOST/my/N#code=C`, where `HOST` is the one the request was
/// sent to (the kiosk's own), `N` a ticket number and `C` a pickup code: the
/// address the kiosk shows, and nothing else. In SVG, dark on white with
/// the quiet zone scanners need; at most [`QR_AT_ONCE`] drawn at once.
pub async fn qr(
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_refused)?;
    if body.len() > QR_MAX_BYTES {
        return Err(ApiError::Rejected {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "text_too_long",
            message: format!(
                "the QR code here is a phone page's address, at most {QR_MAX_BYTES} bytes, not {}",
                body.len()
            ),
        });
    }
    // The charset rule of every body: UTF-8, or refused (415).
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    if let Err(e @ ContentError::Charset(_)) = parse_content(content_type, &body) {
        return Err(e.into());
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::Rejected {
        status: StatusCode::BAD_REQUEST,
        code: "not_text",
        message: "the text to encode must be UTF-8".into(),
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::Rejected {
            status: StatusCode::BAD_REQUEST,
            code: "empty_text",
            message: "there is no text to encode".into(),
        });
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !is_phone_page(text, host) {
        return Err(ApiError::Rejected {
            status: StatusCode::BAD_REQUEST,
            code: "not_a_phone_page",
            message: format!(
                "the QR code here is the address of a customer's own page on this restaurant: http://{}/my/42#code=482913",
                host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
                    .map_or("HOST".into(), |h| h.chars().take(80).collect::<String>())
            ),
        });
    }
    let Ok(permit) = QR_DRAWING.try_acquire() else {
        let mut busy = ApiError::Rejected {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "busy",
            message: format!(
                "{QR_AT_ONCE} QR codes are being drawn already; try again in a moment"
            ),
        }
        .into_response();
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(busy);
    };
    let text = text.to_owned();
    let image = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        draw(&text)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the QR code task failed: {e}")))??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        image,
    )
        .into_response())
}

fn draw(text: &str) -> Result<String, ApiError> {
    let code = QrCode::new(text.as_bytes())
        .map_err(|e| ApiError::Internal(format!("QR code of {} bytes: {e}", text.len())))?;
    Ok(code
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .quiet_zone(true)
        .build())
}

/// Whether `text` is exactly `http(s)://HOST/my/N#code=C` with `HOST` the
/// request's (`host`), `N` a ticket number and `C` a pickup code.
pub fn is_phone_page(text: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return false;
    };
    let Some((authority, rest)) = rest.split_once('/') else {
        return false;
    };
    let Some((ticket, code)) = rest
        .strip_prefix("my/")
        .and_then(|rest| rest.split_once("#code="))
    else {
        return false;
    };
    authority.eq_ignore_ascii_case(host)
        && super::parse_ticket(ticket).is_ok()
        && code.len() == 6
        && PickupCode::parse(code).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "127.0.0.1:8080";

    /// The draws at once are the process's: one test at a time uses them.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn answer(body: &[u8]) -> (StatusCode, String, String) {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(HOST));
        let response = qr(headers, Ok(Bytes::copy_from_slice(body)))
            .await
            .into_response();
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            kind,
            String::from_utf8(bytes.to_vec()).expect("UTF-8"),
        )
    }

    #[tokio::test]
    async fn qr_draws_each_phone_page_as_its_own_svg() {
        let _turn = ONE_AT_A_TIME.lock().await;
        let (status, kind, first) = answer(b"http://127.0.0.1:8080/my/1#code=482913").await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(kind, "image/svg+xml");
        assert!(
            first.contains("<svg") && first.ends_with("</svg>"),
            "{first}"
        );
        let (_, _, again) = answer(b"http://127.0.0.1:8080/my/1#code=482913").await;
        assert_eq!(first, again, "the same text gives the same picture");
        let (status, _, second) = answer(b"https://127.0.0.1:8080/my/2#code=482913").await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(first, second, "two texts gave the same QR code");
    }

    #[test]
    fn only_a_phone_page_of_this_restaurant_is_drawn() {
        let host = Some(HOST);
        assert!(is_phone_page(
            "http://127.0.0.1:8080/my/42#code=482913",
            host
        ));
        assert!(is_phone_page(
            "https://127.0.0.1:8080/my/1#code=000000",
            host
        ));
        for bad in [
            "http://evil.example/my/42#code=482913",
            "http://127.0.0.1:8081/my/42#code=482913",
            "ftp://127.0.0.1:8080/my/42#code=482913",
            "http://127.0.0.1:8080/my/42",
            "http://127.0.0.1:8080/my/42#code=",
            "http://127.0.0.1:8080/my/42#code=48291",
            "http://127.0.0.1:8080/my/42#code=482 913",
            "http://127.0.0.1:8080/my/42#code=4829130",
            "http://127.0.0.1:8080/my/0#code=482913",
            "http://127.0.0.1:8080/my/x#code=482913",
            "http://127.0.0.1:8080/my/42?x=1#code=482913",
            "http://127.0.0.1:8080/kiosk#code=482913",
            "http://127.0.0.1:8080/my/42#code=482913\0",
            "http://127.0.0.1:8080/my/42#code=482913&x",
            "hello",
        ] {
            assert!(!is_phone_page(bad, host), "{bad:?}");
        }
        assert!(!is_phone_page(
            "http://127.0.0.1:8080/my/42#code=482913",
            None
        ));
    }

    #[tokio::test]
    async fn qr_past_its_draws_at_once_is_busy() {
        let _turn = ONE_AT_A_TIME.lock().await;
        let held = QR_DRAWING.acquire_many(QR_AT_ONCE as u32).await.unwrap();
        let (status, _, body) = answer(b"http://127.0.0.1:8080/my/1#code=482913").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"busy\""), "{body}");
        drop(held);
        let (status, _, _) = answer(b"http://127.0.0.1:8080/my/1#code=482913").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn qr_refuses_anything_else_in_json() {
        let _turn = ONE_AT_A_TIME.lock().await;
        for (body, status, code) in [
            (&b""[..], StatusCode::BAD_REQUEST, "empty_text"),
            (&b"  \n"[..], StatusCode::BAD_REQUEST, "empty_text"),
            (&b"\xff\xfe"[..], StatusCode::BAD_REQUEST, "not_text"),
            (
                &b"hello\x1b[2J"[..],
                StatusCode::BAD_REQUEST,
                "not_a_phone_page",
            ),
            (
                &[b'x'; QR_MAX_BYTES + 1][..],
                StatusCode::PAYLOAD_TOO_LARGE,
                "text_too_long",
            ),
        ] {
            let (got, _, text) = answer(body).await;
            assert_eq!(got, status, "{text}");
            let error: serde_json::Value = serde_json::from_str(&text).expect("JSON error");
            assert_eq!(error["error"], code);
            assert!(error["message"].as_str().is_some_and(|m| m.ends_with('.')));
        }
    }
}
