//! RabbitMQ for the broker tests: a private virtual host per test (so tests
//! running side by side never take each other's orders), `rabbitmqctl`, and
//! `fastfood worker` processes.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::{DEADLINE, INHERITED_CONFIG, wait_until};

/// Where the tests expect RabbitMQ (guest/guest).
pub const HOST: &str = "127.0.0.1:5672";

/// A virtual host of its own on the local RabbitMQ, deleted on drop.
pub struct Rabbit {
    pub vhost: String,
    /// `amqp://guest:guest@127.0.0.1:5672/<vhost>`.
    pub url: String,
}

impl Rabbit {
    /// A fresh vhost for `test`; `None` (after a loud `SKIPPED` line) when no
    /// broker runs here, unless `FASTFOOD_REQUIRE_BROKER=1` makes that a failure.
    pub async fn vhost(test: &str) -> Option<Rabbit> {
        let reachable =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(HOST))
                .await;
        if !matches!(reachable, Ok(Ok(_))) {
            assert!(
                std::env::var("FASTFOOD_REQUIRE_BROKER").as_deref() != Ok("1"),
                "FASTFOOD_REQUIRE_BROKER=1 but no RabbitMQ answers on {HOST}"
            );
            eprintln!(
                "SKIPPED {test}: no RabbitMQ on {HOST} (start one, e.g. `rabbitmq-server -detached`)"
            );
            return None;
        }
        let vhost = format!("fastfood-{test}-{}", std::process::id());
        let _ = rabbitmqctl(&["delete_vhost", &vhost]).await;
        rabbitmqctl(&["add_vhost", &vhost])
            .await
            .expect("add_vhost");
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"])
            .await
            .expect("set_permissions");
        let url = format!("amqp://guest:guest@{HOST}/{vhost}");
        Some(Rabbit { vhost, url })
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

/// `fastfood worker --broker URL --data-dir DIR ARGS`, killed on drop.
pub struct WorkerProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl WorkerProcess {
    /// Starts a worker and waits until it is connected to the broker.
    pub async fn spawn(
        data_dir: &Path,
        url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let worker = WorkerProcess::start_with_env(data_dir, url, args, env);
        wait_until(DEADLINE, "the worker to connect to RabbitMQ", || async {
            worker.stderr().contains("connected to RabbitMQ")
        })
        .await;
        worker
    }

    /// Starts a worker without waiting for it to connect (the broker may be
    /// down: it must run anyway, and connect once the broker is back).
    pub fn start(data_dir: &Path, url: &str, args: &[&str]) -> WorkerProcess {
        WorkerProcess::start_with_env(data_dir, url, args, &[])
    }

    fn start_with_env(
        data_dir: &Path,
        url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fastfood"));
        command
            .args(["worker", "--broker", url, "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for name in INHERITED_CONFIG {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("start fastfood worker");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().expect("piped stderr"), stderr.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        WorkerProcess { child, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.wait(DEADLINE).await.expect("a killed worker exits");
    }

    /// SIGTERM (a polite stop); does not wait.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for it to exit on its own, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|s| s.expect("wait"))
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}
