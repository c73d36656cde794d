//! The accept loop: the only code that holds the listening socket and the
//! connections. It keeps the limits a public server needs, so that one
//! careless or hostile client cannot hold every socket:
//!
//! - **open connections** are capped in all ([`Limits::max_connections`],
//!   kept below the process's descriptor limit, whose soft value is raised
//!   to the hard one at start) and per client address
//!   ([`Limits::max_per_client`]); a connection past either cap is closed at
//!   once, before anything is read, so the others keep being served;
//! - **the headers** of a request must arrive within
//!   [`Limits::header_timeout`] of its first byte, however slowly they trickle;
//! - **the body** of a request must arrive within [`Limits::body_timeout`] of
//!   its headers: past it the handler reads an error (answered `408`) and the
//!   connection is closed;
//! - **an idle keep-alive connection** (no request begun) is closed after
//!   [`Limits::idle_timeout`].
//!
//! An answer that is still being written (an `/updates` or
//! `/kitchen/updates` stream, whose keep-alives are writes) is none of
//! these: it lasts as long as the stream, and counts toward the caps.
//!
//! Each connection is served by hyper's HTTP/1.1 connection, as
//! `axum::serve` does, with a watchdog beside it that knows the connection's
//! phase (idle, reading a head, busy) from its socket and its requests, and
//! drops the connection when the phase's deadline passes. On shutdown the
//! loop stops accepting, each connection finishes the request in hand and
//! closes, and [`serve`] returns once all are closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// What a connection may take; see the module.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// From the end of a request's headers to the end of its body.
    pub body_timeout: Duration,
    /// A kept-alive connection waiting for its next request.
    pub idle_timeout: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_client: usize,
}

/// Descriptors kept for everything but connections: the store's and the
/// counter's files, the broker, the listener, the log.
const RESERVED_DESCRIPTORS: u64 = 64;
/// After a timed-out body, how long the `408` has to be written before the
/// connection is closed.
const ANSWER_GRACE: Duration = Duration::from_secs(1);
/// After `accept` fails (out of descriptors, say), the pause before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The most often a refused connection is logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The error a request body gives when it did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request's body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimedOut(pub Duration);

/// Raises the soft limit on open descriptors to the hard one, and returns
/// `max` or, when that is more, the most connections that limit leaves room
/// for (saying so in the log).
pub fn connection_cap(max: usize) -> usize {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => soft,
        Err(e) => {
            tracing::debug!("cannot raise the limit on open files: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft)
        }
    };
    let room = soft.saturating_sub(RESERVED_DESCRIPTORS).max(1);
    if max as u64 > room {
        tracing::warn!(
            "--max-connections {max} is more than this process may open (its limit on open files is {soft}): \
             at most {room} connections are kept open; raise the limit (ulimit -n) to allow more"
        );
        return room as usize;
    }
    max
}

/// Serves `router` on `listener` within `limits` until `shutdown`, then
/// waits until every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let open = Arc::new(Open::default());
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("cannot accept a connection: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                }
            }
        };
        match open.admit(peer.ip(), &limits) {
            Ok(slot) => {
                connections.spawn(connection(
                    stream,
                    peer,
                    slot,
                    router.clone(),
                    limits,
                    shutdown.clone(),
                ));
            }
            Err(why) => {
                open.refused(peer, why);
                drop(stream);
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The connections open now, in all and by client address.
#[derive(Default)]
struct Open {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
    /// Refusals since the last log line, and when that was.
    refused: u64,
    logged: Option<Instant>,
}

/// Which cap a refused connection met.
#[derive(Clone, Copy, Debug)]
enum Full {
    Total,
    Client,
}

impl Open {
    fn admit(self: &Arc<Open>, client: IpAddr, limits: &Limits) -> Result<Slot, Full> {
        let mut counts = self.counts.lock();
        if counts.total >= limits.max_connections {
            return Err(Full::Total);
        }
        let mine = counts.by_client.entry(client).or_insert(0);
        if *mine >= limits.max_per_client {
            return Err(Full::Client);
        }
        *mine += 1;
        counts.total += 1;
        Ok(Slot {
            open: self.clone(),
            client,
        })
    }

    fn refused(&self, peer: SocketAddr, why: Full) {
        let mut counts = self.counts.lock();
        counts.refused += 1;
        let now = Instant::now();
        if counts
            .logged
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        let what = match why {
            Full::Total => {
                "the server holds as many connections as --max-connections allows".to_owned()
            }
            Full::Client => format!(
                "{} holds as many connections as --max-connections-per-client allows",
                peer.ip()
            ),
        };
        tracing::warn!(
            "closed {} new connection(s) at once since the last such line; the last because {what}",
            counts.refused
        );
        counts.refused = 0;
        counts.logged = Some(now);
    }
}

/// A connection's place under the caps, given back when it closes.
struct Slot {
    open: Arc<Open>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.counts.lock();
        counts.total -= 1;
        if let Some(mine) = counts.by_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                counts.by_client.remove(&self.client);
            }
        }
    }
}

/// Serves one connection until it closes, a deadline passes, or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let clock = Arc::new(Clock::new(limits));
    let io = TokioIo::new(Watched {
        stream,
        clock: clock.clone(),
    });
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let clock = clock.clone();
            let mut router = router.clone();
            async move {
                let pending = !request.body().is_end_stream();
                clock.request(pending);
                let deadline = Instant::now() + limits.body_timeout;
                let mut request = request.map(|body| {
                    Body::new(Timed {
                        body,
                        deadline: Box::pin(tokio::time::sleep_until(deadline)),
                        timeout: limits.body_timeout,
                        clock: clock.clone(),
                        ended: !pending,
                    })
                });
                request.extensions_mut().insert(ConnectInfo(peer));
                std::future::poll_fn(|cx| {
                    <Router as Service<axum::extract::Request>>::poll_ready(&mut router, cx)
                })
                .await?;
                let response = router.call(request).await?;
                Ok::<_, Infallible>(response.map(|body| Finishing { body, clock }))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // The watchdog below keeps the header timeout, so that it counts from a
    // request's first byte and an idle connection has its own.
    http.header_read_timeout(None);
    let conn = http.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::trace!("connection from {peer}: {e}");
                }
                return;
            }
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            why = clock.expired() => {
                tracing::debug!("closing the connection from {peer}: {why}");
                return;
            }
        }
    }
}

/// What a connection is doing, and until when it may.
struct Clock {
    limits: Limits,
    state: Mutex<Phase>,
    /// Told when the deadline changes.
    changed: Notify,
}

#[derive(Clone, Copy, Debug)]
struct Phase {
    /// Whether the socket gave bytes since the last answer was written.
    reading: bool,
    /// A request is being answered.
    busy: bool,
    /// A request's body has not been read to its end.
    body_pending: bool,
    /// When the connection is closed unless something happens; `None`
    /// while an answer is being written and no body is awaited.
    deadline: Option<Instant>,
    /// What the deadline is for, for the log.
    why: &'static str,
}

impl Clock {
    fn new(limits: Limits) -> Clock {
        Clock {
            limits,
            state: Mutex::new(Phase {
                reading: false,
                busy: false,
                body_pending: false,
                deadline: Some(Instant::now() + limits.idle_timeout),
                why: "idle past --idle-timeout",
            }),
            changed: Notify::new(),
        }
    }

    fn set(&self, change: impl FnOnce(&mut Phase, Instant)) {
        let mut phase = self.state.lock();
        let before = phase.deadline;
        change(&mut phase, Instant::now());
        if phase.deadline != before {
            self.changed.notify_one();
        }
    }

    /// Bytes came in.
    fn read(&self) {
        // The common case, a read while busy, leaves everything as it is.
        self.set(|p, now| {
            if !p.reading && !p.busy {
                p.reading = true;
                p.deadline = Some(now + self.limits.header_timeout);
                p.why = "its request's headers did not arrive within --header-timeout";
            }
        });
    }

    /// A request's head has been read; `pending`: it has a body to come.
    fn request(&self, pending: bool) {
        self.set(|p, now| {
            p.busy = true;
            p.body_pending = pending;
            if pending {
                p.deadline = Some(now + self.limits.body_timeout + ANSWER_GRACE);
                p.why = "its request's body did not arrive within --body-timeout";
            } else {
                p.deadline = None;
            }
        });
    }

    /// The request's body has been read to its end.
    fn body_ended(&self) {
        self.set(|p, now| {
            p.body_pending = false;
            p.deadline = if p.busy {
                None
            } else {
                Some(now + self.limits.idle_timeout)
            };
            if !p.busy {
                p.why = "idle past --idle-timeout";
            }
        });
    }

    /// The answer has been written (or abandoned).
    fn answered(&self) {
        self.set(|p, now| {
            p.busy = false;
            p.reading = false;
            // A body nobody read keeps its own deadline.
            if !p.body_pending {
                p.deadline = Some(now + self.limits.idle_timeout);
                p.why = "idle past --idle-timeout";
            }
        });
    }

    /// Completes when the deadline in force passes; why, for the log.
    async fn expired(&self) -> &'static str {
        loop {
            let changed = self.changed.notified();
            let (deadline, why) = {
                let phase = self.state.lock();
                (phase.deadline, phase.why)
            };
            match deadline {
                Some(at) if at <= Instant::now() => return why,
                Some(at) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// The socket, telling the clock when bytes come in.
struct Watched {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.clock.read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that must end by its deadline, or fail with
/// [`BodyTimedOut`].
struct Timed {
    body: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    clock: Arc<Clock>,
    ended: bool,
}

impl Timed {
    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.clock.body_ended();
        }
    }
}

impl HttpBody for Timed {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) => {
                self.end();
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if self.body.is_end_stream() {
                    self.end();
                }
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(self.deadline.as_mut().poll(cx));
                // The watchdog closes the connection once the answer is out.
                self.ended = true;
                Poll::Ready(Some(Err(BodyTimedOut(self.timeout).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An answer's body, telling the clock when it is done with.
struct Finishing {
    body: Body,
    clock: Arc<Clock>,
}

impl HttpBody for Finishing {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        self.clock.answered();
    }
}
