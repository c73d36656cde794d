//! The changes fan-out: every process publishes the changes it commits to
//! the store on the `fastfood.changes` exchange, and every server listens on
//! its own exclusive queue, so it refreshes its board from the store as soon
//! as anyone changes anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Broker, CHANGES_EXCHANGE};
use crate::order::{Order, Ticket};
use crate::store::{Observer, Origin, Record};

impl Broker {
    /// An observer that publishes every change this process commits to the
    /// `fastfood.changes` exchange. A dropped notice only delays a board:
    /// the servers also poll the store.
    pub fn change_publisher(&self) -> Arc<dyn Observer> {
        let notices = self.outbox(CHANGES_EXCHANGE, "application/x-ndjson");
        Arc::new(ChangePublisher { notices })
    }

    /// Calls `heard` whenever any process announces a change, and once after
    /// every (re)connection (whatever happened meanwhile is in the store),
    /// until `shutdown`.
    pub fn on_changes(
        &self,
        heard: impl Fn() + Send + Sync + 'static,
        shutdown: CancellationToken,
    ) {
        let heard = Arc::new(heard);
        let again = heard.clone();
        self.listen(
            CHANGES_EXCHANGE,
            move || heard(),
            move |_| again(),
            shutdown,
        );
    }
}

/// Publishes committed changes as JSON lines, one message per commit.
struct ChangePublisher {
    notices: mpsc::Sender<Vec<u8>>,
}

impl Observer for ChangePublisher {
    fn committed(&self, records: &[Record], origin: Origin) {
        if origin == Origin::Elsewhere {
            return; // their own process announces them
        }
        let mut body = Vec::with_capacity(records.len() * 192);
        for record in records {
            serde_json::to_writer(&mut body, record).expect("a record serialises");
            body.push(b'\n');
        }
        let _ = self.notices.try_send(body);
    }

    fn reloaded(&self, _version: u64, _live: &BTreeMap<Ticket, Order>) {}
}
