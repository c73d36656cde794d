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

use super::AppState;
use super::error::{ApiError, body_refused};

/// The longest text `POST /qr` encodes, in bytes: a page address with a code
/// needs under a hundred; a QR code of a kilobyte is already hard to scan.
pub const QR_MAX_BYTES: usize = 1024;

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

/// `POST /qr`: the body (text, 1..=[`QR_MAX_BYTES`] bytes) as a QR code, in
/// SVG, dark on white with the quiet zone scanners need.
pub async fn qr(body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body.map_err(body_refused)?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::Rejected {
        status: StatusCode::BAD_REQUEST,
        code: "not_text",
        message: "the text to encode must be UTF-8".into(),
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::Rejected {
            status: StatusCode::BAD_REQUEST,
            code: "empty_text",
            message: "there is no text to encode".into(),
        });
    }
    if body.len() > QR_MAX_BYTES {
        return Err(ApiError::Rejected {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "text_too_long",
            message: format!(
                "a QR code here holds at most {QR_MAX_BYTES} bytes of text, not {}",
                body.len()
            ),
        });
    }
    let code = QrCode::new(body.as_ref())
        .map_err(|e| ApiError::Internal(format!("QR code of {} bytes: {e}", body.len())))?;
    let image = code
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .quiet_zone(true)
        .build();
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        image,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(body: &[u8]) -> (StatusCode, String, String) {
        let response = qr(Ok(Bytes::copy_from_slice(body))).await.into_response();
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
    async fn qr_draws_each_text_as_its_own_svg() {
        let (status, kind, first) = answer(b"http://127.0.0.1:8080/my/1#code=482913").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kind, "image/svg+xml");
        assert!(
            first.contains("<svg") && first.ends_with("</svg>"),
            "{first}"
        );
        let (_, _, again) = answer(b"http://127.0.0.1:8080/my/1#code=482913").await;
        assert_eq!(first, again, "the same text gives the same picture");
        let (status, _, second) = answer(b"http://127.0.0.1:8080/my/2#code=482913").await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(first, second, "two texts gave the same QR code");
    }

    #[tokio::test]
    async fn qr_refuses_empty_and_overlong_text_in_json() {
        for (body, status, code) in [
            (&b""[..], StatusCode::BAD_REQUEST, "empty_text"),
            (&b"  \n"[..], StatusCode::BAD_REQUEST, "empty_text"),
            (&b"\xff\xfe"[..], StatusCode::BAD_REQUEST, "not_text"),
            (
                &[b'x'; QR_MAX_BYTES + 1][..],
                StatusCode::PAYLOAD_TOO_LARGE,
                "text_too_long",
            ),
        ] {
            let response = qr(Ok(Bytes::copy_from_slice(body))).await.into_response();
            assert_eq!(response.status(), status);
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("body");
            let error: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON error");
            assert_eq!(error["error"], code);
            assert!(error["message"].as_str().is_some_and(|m| m.ends_with('.')));
        }
        let (status, _, _) = answer(&[b'x'; QR_MAX_BYTES]).await;
        assert_eq!(status, StatusCode::OK, "{QR_MAX_BYTES} bytes are allowed");
    }
}
