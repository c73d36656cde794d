//! RabbitMQ for the broker tests: a private virtual host per test (so tests
//! running side by side never take each other's orders), `rabbitmqctl`, and
//! turns: a test that stops, kills or alarms the broker itself runs while no
//! other test uses it ([`Rabbit::vhost_alone`]).

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{DEADLINE, wait_until};

/// Where the tests expect RabbitMQ (guest/guest).
pub const HOST: &str = "127.0.0.1:5672";

/// Whose turn it is on the broker: the tests that use it share it; one that
/// breaks it for everyone waits for them and keeps them out. Every test runs
/// in this one process, so a lock in it is enough.
static TURNS: RwLock<()> = RwLock::const_new(());

/// A test's turn on the broker: shared, or alone (one of the two).
type Turn = (
    Option<RwLockReadGuard<'static, ()>>,
    Option<RwLockWriteGuard<'static, ()>>,
);

/// A virtual host of its own on the local RabbitMQ, deleted on drop.
pub struct Rabbit {
    pub vhost: String,
    /// `amqp://guest:guest@127.0.0.1:5672/<vhost>`.
    pub url: String,
    /// The test's turn on the broker (one of the two), released after the
    /// vhost is deleted.
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

impl Rabbit {
    /// A fresh vhost for `test`, sharing the broker with the other tests;
    /// `None` (after a loud `SKIPPED` line) when no broker runs here, unless
    /// `FASTFOOD_REQUIRE_BROKER=1` makes that a failure.
    pub async fn vhost(test: &str) -> Option<Rabbit> {
        Rabbit::create(test, async { (Some(TURNS.read().await), None) }).await
    }

    /// Like [`Rabbit::vhost`], for a test that stops, kills or alarms the
    /// broker: it waits until no other test uses the broker, and no other
    /// starts to until this is dropped.
    pub async fn vhost_alone(test: &str) -> Option<Rabbit> {
        Rabbit::create(test, async { (None, Some(TURNS.write().await)) }).await
    }

    /// Waits for `turn`, then makes the vhost.
    async fn create(test: &str, turn: impl Future<Output = Turn>) -> Option<Rabbit> {
        if !reachable(test).await {
            return None;
        }
        let (shared, alone) = turn.await;
        let vhost = format!("fastfood-{test}-{}", std::process::id());
        let _ = rabbitmqctl(&["delete_vhost", &vhost]).await;
        rabbitmqctl(&["add_vhost", &vhost])
            .await
            .expect("add_vhost");
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"])
            .await
            .expect("set_permissions");
        let url = format!("amqp://guest:guest@{HOST}/{vhost}");
        Some(Rabbit {
            vhost,
            url,
            _shared: shared,
            _alone: alone,
        })
    }

    /// Messages in `queue` that are (ready, unacknowledged).
    pub async fn depth(&self, queue: &str) -> (u64, u64) {
        let out = rabbitmqctl(&[
            "list_queues",
            "-p",
            &self.vhost,
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .await
        .expect("list_queues");
        out.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&queue))
            .map(|fields| (fields[1].parse().unwrap(), fields[2].parse().unwrap()))
            .unwrap_or_else(|| panic!("no queue {queue} in {}:\n{out}", self.vhost))
    }

    /// Waits until `queue` holds no message, delivered or not.
    pub async fn wait_drained(&self, queue: &str) {
        wait_until(DEADLINE, &format!("the {queue} queue to drain"), || async {
            self.depth(queue).await == (0, 0)
        })
        .await;
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.vhost])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether RabbitMQ answers on [`HOST`]; if not, says `test` is skipped, or
/// fails when `FASTFOOD_REQUIRE_BROKER=1`.
async fn reachable(test: &str) -> bool {
    let reachable =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(HOST)).await;
    if matches!(reachable, Ok(Ok(_))) {
        return true;
    }
    assert!(
        std::env::var("FASTFOOD_REQUIRE_BROKER").as_deref() != Ok("1"),
        "FASTFOOD_REQUIRE_BROKER=1 but no RabbitMQ answers on {HOST}"
    );
    eprintln!(
        "SKIPPED {test}: no RabbitMQ on {HOST} (start one, e.g. `rabbitmq-server -detached`)"
    );
    false
}

/// Runs `rabbitmqctl -q ARGS`; its stdout, or its stderr as the error.
pub async fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
