//! `GET /updates`: the board as Server-Sent Events.
//!
//! The whole board first, then each change alone: the frames come
//! pre-serialised from the [`Board`], shared by every screen. A whole board
//! (the first, after falling behind, or in every event for a screen that
//! asked with `?board=every`) is written a piece at a time as the socket
//! takes it, so a screen that stops reading holds one piece, not a copy of
//! the restaurant. This module adds the keep-alive comments and ends the
//! stream on shutdown. (axum's `Sse` would re-encode every event for every
//! client, which is the copy the board exists to avoid.)

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::ApiError;
use crate::board::{Board, Cursor, Next, Whole};

/// How often an idle stream gets a comment, so proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_FRAME: &[u8] = b": keep-alive\n\n";
/// Sent first: how long a browser waits before reconnecting.
const RETRY_FRAME: &[u8] = b"retry: 1000\n\n";

struct Screen {
    board: Arc<Board>,
    /// The whole board being written, if one is.
    whole: Option<Whole>,
    /// Whether this screen asked for the whole board in every event.
    every: bool,
    /// Its place in the board's changes.
    cursor: Cursor,
    /// The newest version this screen has been sent.
    sent: u64,
    keep_alive: Interval,
    shutdown: CancellationToken,
}

/// `?board=first` (the default: the whole board first, then changes) or
/// `?board=every` (the whole board in every event, as the original sent it).
fn every(query: Option<&str>) -> Result<bool, ApiError> {
    let mut every = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match (key.as_ref(), value.as_ref()) {
            ("board", "every") => every = true,
            ("board", "first") => every = false,
            (_, value) => {
                let shown: String = value
                    .chars()
                    .take(24)
                    .flat_map(char::escape_debug)
                    .collect();
                return Err(ApiError::Rejected {
                    status: StatusCode::BAD_REQUEST,
                    code: "bad_parameter",
                    message: format!(
                        "/updates?board= takes first (the whole board once, then each change) or every (the whole board in every event), not \"{shown}\""
                    ),
                });
            }
        }
    }
    Ok(every)
}

pub async fn stream(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let every = match every(query.as_deref()) {
        Ok(every) => every,
        Err(e) => return e.into_response(),
    };
    let (first, cursor) = app.board.subscribe();
    let screen = Screen {
        board: app.board.clone(),
        sent: first.version,
        whole: Some(first),
        every,
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
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if let Some(whole) = &mut self.whole {
                match whole.next_piece() {
                    Some(piece) => return Some((Ok(piece), self)),
                    None => self.whole = None,
                }
            }
            match self.board.next(&mut self.cursor) {
                Some(Next::Change(change)) if change.version <= self.sent => continue,
                Some(Next::Change(change)) => {
                    self.sent = change.version;
                    if self.every {
                        self.whole = Some(change.with_board());
                        continue;
                    }
                    return Some((Ok(change.frame()), self));
                }
                // It fell behind: the whole board now.
                Some(Next::Lagged(whole)) => {
                    self.sent = whole.version;
                    self.whole = Some(whole);
                    continue;
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
