//! `--history`: the tape of what every client of a rush saw (each `/order`
//! answer, each `/take`, each board event, per server), then the final
//! state of every acknowledged order, asked of the servers once the rush is
//! over, for [`verdict::judge`](super::verdict::judge).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Deserialize;

use super::verdict::{Answer, BoardEvent, Fate, History, Ordered, Took};
use crate::order::{Status, Ticket};

/// The recorder the customers and the board watchers write to.
pub struct Tape {
    start: Instant,
    history: Mutex<History>,
}

impl Tape {
    pub fn new(servers: Vec<String>, timeout: Duration) -> Tape {
        let started = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        Tape {
            start: Instant::now(),
            history: Mutex::new(History {
                servers,
                started,
                timeout_ms: timeout.as_millis() as u64,
                ..History::default()
            }),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_millis() as u64
    }

    /// A `POST /order` sent at `sent` to `server` ended with `answer` now.
    pub fn ordered(&self, server: usize, sent: Instant, answer: Answer) {
        let took_ms = sent.elapsed().as_millis() as u64;
        let sent_ms = self.ms(sent);
        self.history.lock().orders.push(Ordered {
            server,
            sent_ms,
            took_ms,
            answer,
        });
    }

    /// A `POST /take?order=ticket` answered `status` (`None`: no answer).
    pub fn took(&self, server: usize, ticket: Ticket, status: Option<u16>) {
        let at_ms = self.ms(Instant::now());
        self.history.lock().takes.push(Took {
            server,
            ticket,
            at_ms,
            status,
        });
    }

    /// A board event received at `at` on `server`'s `connection`.
    #[allow(clippy::too_many_arguments)]
    pub fn board(
        &self,
        server: usize,
        connection: u32,
        at: Instant,
        id: &str,
        version: u64,
        change: Option<(Ticket, Status)>,
        board: Option<Vec<(Ticket, Status)>>,
    ) {
        let at_ms = self.ms(at);
        self.history.lock().boards.push(BoardEvent {
            server,
            connection,
            at_ms,
            id: id.parse().ok(),
            version,
            change,
            board,
        });
    }

    /// What was recorded so far.
    pub fn history(&self) -> History {
        self.history.lock().clone()
    }

    /// Records the final state.
    pub fn set_fates(&self, fates: BTreeMap<Ticket, Fate>) {
        self.history.lock().fates = fates;
    }
}

/// `GET /orders/N` as far as the checker needs it.
#[derive(Deserialize)]
struct Shown {
    status: Status,
    #[serde(default)]
    content: Option<String>,
}

/// How many `GET /orders/N` are in flight at once while settling.
const ASKING: usize = 16;
/// How often the unsettled orders are asked about again.
const SETTLE_POLL: Duration = Duration::from_millis(500);

/// Waits up to `bound` for every acknowledged order of `tape` to settle
/// (READY, or COLLECTED where it was collected), asking each order's own
/// server first and the others when it does not answer; records the final
/// state in the tape. Returns whether everything settled.
pub async fn settle(tape: &Tape, client: &reqwest::Client, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let mut fates: BTreeMap<Ticket, Fate> = BTreeMap::new();
    loop {
        let history = tape.history();
        let collected = history.collected();
        let pending: Vec<(Ticket, usize)> = history
            .acknowledged()
            .filter(|(ticket, _, _)| {
                let status = fates.get(ticket).and_then(|f| f.status);
                !(status == Some(Status::Collected)
                    || (status == Some(Status::Ready) && !collected.contains(ticket)))
            })
            .map(|(ticket, server, _)| (ticket, server))
            .collect();
        let servers = &history.servers;
        let asked: Vec<(Ticket, Fate)> = futures_util::stream::iter(pending)
            .map(|(ticket, server)| async move {
                let order = (0..servers.len()).map(|i| (server + i) % servers.len());
                let mut fate = Fate {
                    status: None,
                    content: None,
                };
                for i in order {
                    if let Some(found) = ask(client, &servers[i], ticket).await {
                        fate = found;
                        if fate.status.is_some() {
                            break;
                        }
                    }
                }
                (ticket, fate)
            })
            .buffer_unordered(ASKING)
            .collect()
            .await;
        fates.extend(asked);
        tape.set_fates(fates.clone());
        if tape.history().settled() {
            return true;
        }
        if Instant::now() + SETTLE_POLL > deadline {
            return false;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// `GET {base}/orders/{ticket}`: the order's fate, a fate without a status
/// on `404`, `None` when the server gave no usable answer.
async fn ask(client: &reqwest::Client, base: &str, ticket: Ticket) -> Option<Fate> {
    let response = client
        .get(format!("{base}/orders/{ticket}"))
        .send()
        .await
        .ok()?;
    match response.status().as_u16() {
        200 => {
            let shown: Shown = response.json().await.ok()?;
            Some(Fate {
                status: Some(shown.status),
                content: shown.content,
            })
        }
        404 => Some(Fate {
            status: None,
            content: None,
        }),
        _ => None,
    }
}

/// Writes `history` to `path` as JSON.
pub fn write(path: &Path, history: &History) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot write the history to {}", path.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(file), history)
        .with_context(|| format!("cannot write the history to {}", path.display()))
}
