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
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::board::{Board, Frame};

/// How often an idle stream gets a comment, so proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_FRAME: &[u8] = b": keep-alive\n\n";
/// Sent first: how long a browser waits before reconnecting.
const RETRY_FRAME: &[u8] = b"retry: 1000\n\n";

struct Screen {
    board: Arc<Board>,
    first: Option<Frame>,
    frames: broadcast::Receiver<Frame>,
    /// The newest version this screen has been sent.
    sent: u64,
    keep_alive: Interval,
    shutdown: CancellationToken,
}

pub async fn stream(State(app): State<AppState>) -> Response {
    let (first, frames) = app.board.subscribe();
    let screen = Screen {
        board: app.board.clone(),
        sent: first.version,
        first: Some(first),
        frames,
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
            let frame = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = self.keep_alive.tick() => return Some((Ok(Bytes::from_static(KEEP_ALIVE_FRAME)), self)),
                frame = self.frames.recv() => frame,
            };
            match frame {
                Ok(frame) if frame.version <= self.sent => continue,
                Ok(frame) => {
                    self.sent = frame.version;
                    return Some((Ok(frame.bytes), self));
                }
                Err(RecvError::Lagged(_)) => {
                    // Fell behind: skip what it missed and send the board as it is now.
                    let (frame, frames) = self.board.subscribe();
                    self.frames = frames;
                    self.sent = frame.version;
                    return Some((Ok(frame.bytes), self));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
