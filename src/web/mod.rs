//! The HTTP face of the restaurant: routes, handlers, JSON errors, the SSE
//! stream and the embedded pages. Handlers hold no state of their own: they
//! ask the front counter (store, tickets, queue) and the board in [`AppState`].

mod error;
mod guard;
mod kitchen;
pub mod metrics;
mod orders;
mod pages;
mod query;
pub mod server;
mod throttle;
mod updates;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

use error::ApiError;
pub use guard::{Hosts, foreign};
pub use orders::{CustomerQuery, parse_take_query, parse_ticket};
pub use throttle::Throttle;

use crate::board::Board;
use crate::front::Front;
use crate::kitchen::View;
use crate::wait::Wait;

/// Largest request body read. Orders are at most 1000 characters after
/// trimming; this leaves room for generous whitespace and multi-byte text.
const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub front: Front,
    pub board: Arc<Board>,
    /// How long each order should wait.
    pub wait: Arc<Wait>,
    /// The kitchen's workers and queue, for `/kitchen`.
    pub kitchen: Arc<View>,
    /// Wrong pickup codes, per order, in this process.
    pub throttle: Arc<Throttle>,
    /// Cancelled on shutdown: ends the SSE streams.
    pub shutdown: CancellationToken,
}

/// The whole API. `hosts`: the names this server answers to, for the
/// cross-origin guard.
pub fn router(state: AppState, hosts: Hosts) -> Router {
    Router::new()
        .route("/order", post(orders::place))
        .route("/take", post(orders::collect))
        .route("/cancel", post(orders::cancel))
        .route("/orders", get(orders::board))
        .route("/orders/{ticket}", get(orders::show))
        .route("/updates", get(updates::stream))
        .route("/kitchen/now", get(kitchen::now))
        .route("/kitchen/updates", get(kitchen::stream))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .merge(pages::router())
        .route_layer(middleware::from_fn(query::known_parameters))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(guard::framing))
        .layer(middleware::from_fn_with_state(
            BODY_LIMIT,
            guard::declared_length,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(hosts),
            guard::same_origin,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a handler panicked".into()).into_response()
        }))
        .layer(middleware::from_fn(guard::browser_headers))
        .layer(middleware::from_fn(metrics::timed))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store can be written and the queue can take orders.
async fn readyz(State(app): State<AppState>) -> Response {
    let store = app.front.store.is_writable();
    let queue = app.front.queue.health();
    let body = json!({
        "store": if store { "ok" } else { "failing" },
        "broker": queue.state,
    });
    let problem = match queue.unavailable {
        _ if !store => Some("The order store cannot be written.".to_owned()),
        Some(why) => Some(format!("The kitchen's queue cannot take orders: {why}.")),
        None => None,
    };
    match problem {
        None => (
            StatusCode::OK,
            Json(json!({ "status": "ready", "checks": body })),
        )
            .into_response(),
        Some(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "not_ready", "message": message, "checks": body })),
        )
            .into_response(),
    }
}

async fn no_route(request: Request) -> ApiError {
    ApiError::not_found(request.uri().path())
}

async fn wrong_method(request: Request) -> ApiError {
    ApiError::Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "{} does not answer {}",
            request.uri().path(),
            request.method()
        ),
    }
}
