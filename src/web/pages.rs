//! The pages, embedded in the binary at build time so it serves them from any
//! directory, offline.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;

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
        .route("/style.css", page!("style.css", "text/css; charset=utf-8"))
        .route(
            "/board.js",
            page!("board.js", "text/javascript; charset=utf-8"),
        )
        .route(
            "/kiosk.js",
            page!("kiosk.js", "text/javascript; charset=utf-8"),
        )
        .route("/favicon.svg", page!("favicon.svg", "image/svg+xml"))
}
