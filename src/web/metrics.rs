//! `GET /metrics` over HTTP: on a scrape, reads what the restaurant looks like
//! now (orders by status from the store, the queue's depth, the boards
//! connected), sets those gauges, and answers [`crate::metrics`]'s text. Also
//! the middleware that times every request by its route template, and the
//! tiny server a worker process runs with `--metrics ADDR`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::board::Board;
use crate::metrics::{self, Now};
use crate::queue::Queue;
use crate::store::Store;

/// The label of a request that matched no route (a `404 not_found`), so a
/// raw path never becomes a label.
const NO_ROUTE: &str = "unmatched";

/// What a scrape reads.
#[derive(Clone)]
pub struct Scrape {
    pub store: Store,
    pub queue: Queue,
    /// The board of a server; `None` in a worker process.
    pub board: Option<Arc<Board>>,
}

impl Scrape {
    /// What a worker process's scrape reads: it has no board.
    pub fn worker(store: &Store, queue: &Queue) -> Scrape {
        Scrape {
            store: store.clone(),
            queue: queue.clone(),
            board: None,
        }
    }

    /// Sets the gauges from the restaurant as it is now, and renders.
    pub async fn answer(&self) -> Response {
        let counts = self.store.live_counts();
        let now = Now {
            orders: metrics::LIVE.map(|s| counts.get(&s).copied().unwrap_or(0)),
            queue_depth: self.queue.count_waiting().await,
            boards: self.board.as_ref().map(|b| b.screens()),
        };
        now.set();
        (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            metrics::render(),
        )
            .into_response()
    }
}

/// `GET /metrics` of a server.
pub async fn scrape(State(app): State<AppState>) -> Response {
    Scrape {
        store: app.front.store.clone(),
        queue: app.front.queue.clone(),
        board: Some(app.board.clone()),
    }
    .answer()
    .await
}

/// The whole HTTP face of a worker process: `GET /metrics`, and the same
/// JSON errors as a server for anything else.
pub fn router(scrape: Scrape) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(scrape): State<Scrape>| async move { scrape.answer().await }),
        )
        .fallback(super::no_route)
        .method_not_allowed_fallback(super::wrong_method)
        .layer(axum::middleware::from_fn(timed))
        .with_state(scrape)
}

/// Times a request from its arrival to its response's head (an SSE stream's
/// life is not its duration), labelled by the route's template.
pub async fn timed(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    metrics::http_request(
        route.as_ref().map_or(NO_ROUTE, MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
