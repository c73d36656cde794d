//! The task that keeps the change log bounded: it deletes the changes older
//! than what the log keeps, on a connection of its own, in a transaction of
//! its own. Not in a batch's: a batch that also deleted a step of the log
//! (a thousand rows) took tens of milliseconds, and every batch behind it
//! on the one session waited (`/order` after 100,000 orders collected: a
//! quarter fewer, p99 from 8 to 45 ms). The rows it deletes are below every
//! version a batch writes or a follower that keeps up reads; a follower
//! further behind finds its next change gone and reloads, as before.

use std::time::Duration;

use tokio::sync::watch;

use super::link::{Link, STATEMENT_TIMEOUT, said};

/// Starts the task; send it the version up to which the log may go. It
/// ends when the sender is dropped.
pub(super) fn start(mut link: Link) -> watch::Sender<u64> {
    let (bound, mut asked) = watch::channel(0u64);
    tokio::spawn(async move {
        while asked.changed().await.is_ok() {
            let to = *asked.borrow_and_update();
            let pruned = tokio::time::timeout(
                STATEMENT_TIMEOUT + Duration::from_secs(1),
                prune(&mut link, to),
            )
            .await
            .unwrap_or_else(|_| Err("the delete took too long".to_owned()));
            if let Err(e) = pruned {
                // The next step deletes what this one left.
                link.lost();
                tracing::debug!("change log: pruning up to {to}: {e}");
            }
        }
    });
    bound
}

async fn prune(link: &mut Link, to: u64) -> Result<(), String> {
    let (client, _) = link.client().await.map_err(|e| e.to_string())?;
    // The bound written out, not a parameter: planned on the index, never
    // as a scan of the whole log.
    client
        .batch_execute(&format!(
            "delete from fastfood_changes where version <= {to}"
        ))
        .await
        .map_err(|e| said(&e))
}
