//! `GET /kitchen/now` (the kitchen as JSON) and `GET /kitchen/updates` (the
//! same, as Server-Sent Events, each time it changes) for the `/kitchen`
//! page: the queue, a lane per worker, and the log of notable moments.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::updates::KEEP_ALIVE;
use crate::kitchen::{Now, View};

/// The most often one page is sent the kitchen: changes in between are
/// gathered into the next event.
const AT_MOST_EVERY: Duration = Duration::from_millis(250);
/// Sent first: how long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(1);

pub async fn now(State(app): State<AppState>) -> Json<Now> {
    Json(app.kitchen.now())
}

/// One watching page.
struct Watcher {
    view: Arc<View>,
    changes: watch::Receiver<u64>,
    first: bool,
    shutdown: CancellationToken,
}

pub async fn stream(
    State(app): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let watcher = Watcher {
        changes: app.kitchen.subscribe(),
        view: app.kitchen.clone(),
        first: true,
        shutdown: app.shutdown.clone(),
    };
    let events = futures_util::stream::unfold(watcher, |mut w| async move {
        if !w.first {
            tokio::select! {
                changed = w.changes.changed() => changed.ok()?,
                _ = w.shutdown.cancelled() => return None,
            }
            tokio::select! {
                _ = tokio::time::sleep(AT_MOST_EVERY) => {}
                _ = w.shutdown.cancelled() => return None,
            }
        }
        w.changes.borrow_and_update();
        let mut event = Event::default()
            .json_data(w.view.now())
            .expect("the kitchen serialises");
        if w.first {
            event = event.retry(RETRY);
            w.first = false;
        }
        Some((Ok(event), w))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
