//! `GET /updates`: the board as Server-Sent Events.
//!
//! The frames come pre-serialised from the [`Board`], shared by every screen;
//! this module only adds the keep-alive comments and ends the stream on
//! shutdown. (axum's `Sse` would re-encode every event for every client,
//! which is the copy the board exists to avoid.)

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::board::{Board, Cursor, Frame, Next};

/// How often an idle stream gets a comment, so proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_FRAME: &[u8] = b": keep-alive\n\n";
/// Sent first: how long a browser waits before reconnecting.
const RETRY_FRAME: &[u8] = b"retry: 1000\n\n";

struct Screen {
    board: Arc<Board>,
    first: Option<Frame>,
    /// Its place in the board's frames.
    cursor: Cursor,
    /// The newest version this screen has been sent.
    sent: u64,
    keep_alive: Interval,
    shutdown: CancellationToken,
}

pub async fn stream(State(app): State<AppState>) -> Response {
    let (first, cursor) = app.board.subscribe();
    let screen = Screen {
        board: app.board.clone(),
        sent: first.version,
        first: Some(first),
        cursor,
        keep_alive: tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE),
        shutdown: app.shutdown.clone(),
    };
    let retry = stream::iter([Ok::<_, Infallible>(Bytes::from_static(RETRY_FRAME))]);
    let body = Body::from_stream(futures_util::StreamExt::chain(
        retry,
        stream::unfold(screen, Screen::next),
    ));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

impl Screen {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first.bytes), self));
        }
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            match self.board.next(&mut self.cursor) {
                Some(Next::Frame(frame)) if frame.version <= self.sent => continue,
                // A frame, or the whole board when it fell behind.
                Some(Next::Frame(frame) | Next::Lagged(frame)) => {
                    self.sent = frame.version;
                    return Some((Ok(frame.bytes), self));
                }
                None => {}
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = self.keep_alive.tick() => return Some((Ok(Bytes::from_static(KEEP_ALIVE_FRAME)), self)),
                _ = self.cursor.changed() => {}
            }
        }
    }
}
