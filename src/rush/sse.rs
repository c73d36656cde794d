//! The one Server-Sent Events reader of the crate: the rush, the examples
//! and the tests read `/updates` with it.
//!
//! Parsing is `eventsource-stream`'s (the field rules, `event`, `id`, BOM,
//! CRLF). In front of it sits a regrouping step that hands the parser one
//! whole event at a time: eventsource-stream re-parses an unfinished line
//! from its start on every chunk, so a board of a megabyte arriving in a
//! thousand small chunks would cost a thousand re-parses. Cut at event
//! boundaries, every byte is scanned once here and parsed once there. The
//! regrouping also bounds memory: an event larger than the limit is an error,
//! not an unbounded buffer.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use futures_util::StreamExt;
//! let response = reqwest::get("http://127.0.0.1:7777/updates").await?;
//! let mut events = std::pin::pin!(fastfood::rush::sse::events(response.bytes_stream(), 64 << 20));
//! while let Some(event) = events.next().await {
//!     let event = event?;
//!     println!("{} {}", event.id, event.data);
//! }
//! # Ok(()) }
//! ```

use bytes::{Bytes, BytesMut};
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};

/// One event: `data` (its `data:` lines joined by `\n`), `id` (the last
/// `id:` seen on the stream), `event` (`"message"` when none was given).
pub use eventsource_stream::Event;

/// Why a stream of events stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection broke (or the body could not be read).
    #[error("the event stream broke: {0}")]
    Transport(Box<dyn std::error::Error + Send + Sync>),
    /// One event was larger than the limit given to [`events`].
    #[error("an event of more than {0} bytes")]
    TooLarge(usize),
    /// Not an event stream: bytes that are not UTF-8, or a malformed line.
    #[error("not a Server-Sent Events stream: {0}")]
    Malformed(String),
}

/// The events of `body` (e.g. `reqwest::Response::bytes_stream()`), each at
/// most `limit` bytes. The stream ends (`None`) when the server closes it
/// cleanly; a broken connection, an event past the limit or malformed bytes
/// come out as one `Err`, and nothing after it.
pub fn events<S, E>(body: S, limit: usize) -> impl Stream<Item = Result<Event, Error>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut failed = false;
    whole_events(body, limit)
        .eventsource()
        .map(|item| {
            item.map_err(|e| match e {
                EventStreamError::Transport(e) => e,
                EventStreamError::Utf8(e) => Error::Malformed(e.to_string()),
                EventStreamError::Parser(e) => Error::Malformed(e.to_string()),
            })
        })
        .take_while(move |item| {
            let go_on = !failed;
            failed |= item.is_err();
            std::future::ready(go_on)
        })
}

/// Regroups `body` into chunks that each end at an event boundary (a blank
/// line), one event per chunk, so the parser never sees a partial line.
fn whole_events<S, E>(body: S, limit: usize) -> impl Stream<Item = Result<Bytes, Error>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    struct State<S> {
        body: std::pin::Pin<Box<S>>,
        buffer: BytesMut,
        /// Where to go on looking for a boundary in `buffer`.
        scanned: usize,
        done: bool,
    }
    let state = State {
        body: Box::pin(body),
        buffer: BytesMut::new(),
        scanned: 0,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            if let Some(end) = event_end(&s.buffer, s.scanned) {
                s.scanned = 0;
                let event = s.buffer.split_to(end).freeze();
                return Some((Ok(event), s));
            }
            // The longest boundary ("\n\r\n") may straddle two chunks.
            s.scanned = s.buffer.len().saturating_sub(2);
            if s.buffer.len() > limit {
                s.done = true;
                return Some((Err(Error::TooLarge(limit)), s));
            }
            match s.body.next().await {
                Some(Ok(chunk)) => s.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(Error::Transport(Box::new(e))), s));
                }
                // An unfinished event at the end is dropped, as the standard says.
                None => return None,
            }
        }
    })
}

/// The end of the first event in `buffer` (just past its blank line),
/// looking from `from` on. Lines end in `\n` or `\r\n`.
fn event_end(buffer: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(i) = buffer[at..].iter().position(|b| *b == b'\n') {
        let line_end = at + i;
        match buffer.get(line_end + 1..line_end + 3) {
            Some([b'\n', _]) => return Some(line_end + 2),
            Some(b"\r\n") => return Some(line_end + 3),
            Some(_) => {}
            None if buffer.get(line_end + 1) == Some(&b'\n') => return Some(line_end + 2),
            None => return None,
        }
        at = line_end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(chunks: Vec<&'static [u8]>, limit: usize) -> Vec<Result<Event, Error>> {
        let body = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        events(body, limit).collect().await
    }

    #[tokio::test]
    async fn events_split_across_chunks_come_out_whole() {
        let stream: &'static [u8] = b"retry: 1000\n\nid: 1\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 2\nevent: board\ndata: x\ndata: y\r\n\r\n";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            let got = all(vec![a, b], 1 << 20).await;
            let got: Vec<_> = got
                .into_iter()
                .map(|e| {
                    let e = e.unwrap();
                    (e.id, e.event, e.data)
                })
                .collect();
            assert_eq!(
                got,
                [
                    ("1".into(), "message".into(), "{\"a\":1}".into()),
                    ("2".into(), "board".into(), "x\ny".into())
                ],
                "cut at {cut}"
            );
        }
    }

    #[tokio::test]
    async fn an_event_past_the_limit_is_an_error_and_the_last_item() {
        let got = all(vec![b"data: 0123", b"456789", b"\n\ndata: next\n\n"], 8).await;
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Err(Error::TooLarge(8))), "{got:?}");
    }

    #[tokio::test]
    async fn a_broken_connection_is_an_error_a_clean_end_is_not() {
        let body = futures_util::stream::iter([
            Ok(Bytes::from_static(b"data: a\n\n")),
            Err(std::io::Error::other("reset")),
        ]);
        let got: Vec<_> = events(body, 64).collect().await;
        assert_eq!(got[0].as_ref().unwrap().data, "a");
        assert!(matches!(got[1], Err(Error::Transport(_))), "{got:?}");
        let clean = all(vec![b"data: a\n\ndata: unfinished"], 64).await;
        assert_eq!(clean.len(), 1);
    }

    #[tokio::test]
    async fn a_megabyte_event_in_small_chunks_is_read_in_linear_time() {
        let mut event = b"id: 7\ndata: ".to_vec();
        event.extend(std::iter::repeat_n(b'x', 4 << 20));
        event.extend_from_slice(b"\n\n");
        let chunks: Vec<Result<Bytes, std::io::Error>> = event
            .chunks(1460)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let started = std::time::Instant::now();
        let got: Vec<_> = events(futures_util::stream::iter(chunks), 8 << 20)
            .collect()
            .await;
        let elapsed = started.elapsed();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().data.len(), 4 << 20);
        // Re-parsing the line per chunk takes tens of seconds here.
        assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
    }
}
