//! The order store in PostgreSQL (`--database URL`): the same rules
//! (`store::state`), the same [`Store`] handle, another place to keep what
//! they decide. This module is the only code that speaks to the database.
//!
//! - `link`: one connection, made again with backoff when it is lost, every
//!   session bounded by timeouts; the URL's password never shown.
//! - `schema`: the tables, created and checked at start under a lock.
//! - `committer`: the task that consumes the store's jobs, one transaction
//!   per batch under an advisory lock, so that versions commit in order,
//!   the batches pipelined on one connection; it prunes the change log.
//! - `tickets`: ticket numbers from a sequence.
//! - `import`: a restaurant's files copied into an empty database.
//!
//! See docs/design.md, "PostgreSQL: the same rules, kept in a database".

mod committer;
mod import;
mod link;
mod pruner;
mod schema;
mod tickets;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use tokio::sync::mpsc;

pub use import::{Imported, import};
pub use link::redact;
use link::{Line, Link};

use super::{INBOX, Observer, Shared, Store, StoreError};
use crate::restaurant::RestaurantId;
use crate::ticket::Tickets;

/// Who else may use the database alongside this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// This process queues orders in itself: nobody else may use the
    /// database, or its line would be invisible to them.
    Alone,
    /// Orders wait in RabbitMQ: any number of such processes share it.
    WithBroker,
}

impl Store {
    /// Opens the store in the PostgreSQL database at `url`: connects
    /// (refusing a database that is not ours, a newer schema, or a process
    /// that may not share it), creates or checks the schema, loads the
    /// orders, and starts the committer and the ticket numbering. The log
    /// of changes keeps the last `keep_changes` versions (at least 1): a
    /// process that falls further behind loads the orders again.
    pub async fn open_database(
        url: &str,
        observers: Vec<Arc<dyn Observer>>,
        sharing: Sharing,
        keep_changes: u64,
    ) -> Result<(Store, Tickets), StoreError> {
        let line = match sharing {
            Sharing::Alone => Line::Alone,
            Sharing::WithBroker => Line::Shared,
        };
        let mut link = Link::new(url, Some(line))?;
        let shown = link.shown().to_owned();
        let (client, _) = link.connect_now().await?;
        schema::migrate(client, &shown).await?;
        let restaurant = schema::restaurant_id(client, &shown).await?;
        let state = committer::load(client, &shown).await?;
        tracing::info!(
            "restaurant {restaurant} in PostgreSQL: {} live orders, change {}",
            state.live.len(),
            state.version
        );
        for observer in &observers {
            observer.reloaded(state.version, &state.live);
        }
        let restaurant = RestaurantId::parse(&restaurant).map_err(|e| {
            database(
                &shown,
                format!("its restaurant identity does not parse: {e}"),
            )
        })?;
        let shared = Arc::new(Shared {
            dir: PathBuf::from(link.shown()),
            in_database: true,
            restaurant: OnceLock::from(restaurant),
            state: RwLock::new(state),
            writable: AtomicBool::new(true),
            max_orders: AtomicUsize::new(usize::MAX),
        });
        let (jobs, inbox) = mpsc::channel(INBOX);
        link.wake_on_changes(jobs.downgrade());
        let pruner = pruner::start(Link::new(url, None)?);
        let committer = committer::Committer::new(
            link,
            shared.clone(),
            observers,
            keep_changes,
            pruner,
            sharing == Sharing::Alone,
        );
        tokio::spawn(committer.run(inbox));
        tokio::spawn(super::committer::follow(jobs.downgrade()));
        let tickets = tickets::start(Link::new(url, None)?);
        Ok((Store { jobs, shared }, tickets))
    }
}

/// The error for a database that does not answer as it should.
fn database(shown: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("PostgreSQL at {shown}: {what}"))
}
