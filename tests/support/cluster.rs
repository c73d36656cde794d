//! A three-node RabbitMQ cluster for the cluster tests, made by the repo's
//! own `scripts/rabbit-cluster.sh`: started once per test process, on the
//! first test that asks, and shared; each test has a virtual host of its own
//! on it. It is taken down when the test process exits (an `atexit` guard),
//! and should the process die without exiting, by the script's own watcher,
//! which takes it down once this process is gone. A test that kills or stops
//! nodes runs alone ([`Cluster::vhost_alone`]) and leaves all three nodes
//! running when it ends, even when it fails ([`ClusterVhost`]'s drop).
//!
//! Needs `rabbitmq-server` on this machine and root; skips loudly without
//! them, unless `FASTFOOD_REQUIRE_BROKER=1` makes that a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tokio::sync::{OnceCell, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The three nodes, as `scripts/rabbit-cluster.sh` numbers them.
pub const NODES: [u8; 3] = [1, 2, 3];

/// The cluster of this test process.
pub struct Cluster {
    dir: PathBuf,
    prefix: String,
    /// Node 1's AMQP port; nodes 2 and 3 have the next two.
    port: u16,
}

/// The cluster, once started (or `None` when it cannot be here).
static CLUSTER: OnceCell<Option<Cluster>> = OnceCell::const_new();
/// Whose turn it is on the cluster, as with the single broker.
static TURNS: RwLock<()> = RwLock::const_new(());

/// `scripts/rabbit-cluster.sh` in this checkout.
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbit-cluster.sh")
}

impl Cluster {
    /// The shared cluster, started on first use; `None` (after a loud
    /// `SKIPPED` line) when RabbitMQ is not installed or this is not root.
    async fn get(test: &str) -> Option<&'static Cluster> {
        let cluster = CLUSTER
            .get_or_init(|| async {
                tokio::task::spawn_blocking(Cluster::start)
                    .await
                    .expect("starting the cluster")
            })
            .await
            .as_ref();
        if cluster.is_none() {
            assert!(
                std::env::var("FASTFOOD_REQUIRE_BROKER").as_deref() != Ok("1"),
                "FASTFOOD_REQUIRE_BROKER=1 but no RabbitMQ cluster can be started here"
            );
            eprintln!(
                "SKIPPED {test}: a RabbitMQ cluster needs rabbitmq-server installed and root"
            );
        }
        cluster
    }

    /// Starts the three nodes (about 20 s), under a directory and node names
    /// of this process, on ports that are free now.
    fn start() -> Option<Cluster> {
        let installed = Command::new("sh")
            .args(["-c", "command -v rabbitmq-server"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        // SAFETY: geteuid has no preconditions.
        if !installed || unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let pid = std::process::id();
        let cluster = Cluster {
            dir: std::env::temp_dir().join(format!("fastfood-test-cluster-{pid}")),
            prefix: format!("fastfood-test-{pid}-"),
            port: free_ports(),
        };
        // SAFETY: registers a plain function, run once at exit.
        unsafe { libc::atexit(take_down_at_exit) };
        let started = cluster.script(&["up"]);
        assert!(started.is_ok(), "the cluster did not start: {started:?}");
        Some(cluster)
    }

    /// Runs `scripts/rabbit-cluster.sh ARGS` for this cluster.
    fn script(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(script())
            .args(args)
            .env("CLUSTER_DIR", &self.dir)
            .env("CLUSTER_PREFIX", &self.prefix)
            .env("CLUSTER_PORT", self.port.to_string())
            .env("CLUSTER_OWNER", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("rabbit-cluster.sh {args:?}: {stderr}"))
        }
    }

    /// A fresh vhost for `test` on the cluster, which other tests share.
    pub async fn vhost(test: &str) -> Option<ClusterVhost> {
        let cluster = Cluster::get(test).await?;
        let turn = TURNS.read().await;
        Some(cluster.make_vhost(test, Some(turn), None).await)
    }

    /// Like [`Cluster::vhost`], for a test that kills or stops nodes: no
    /// other cluster test runs meanwhile, and all three nodes run again when
    /// it is dropped.
    pub async fn vhost_alone(test: &str) -> Option<ClusterVhost> {
        let cluster = Cluster::get(test).await?;
        let turn = TURNS.write().await;
        Some(cluster.make_vhost(test, None, Some(turn)).await)
    }

    async fn make_vhost(
        &'static self,
        test: &str,
        shared: Option<RwLockReadGuard<'static, ()>>,
        alone: Option<RwLockWriteGuard<'static, ()>>,
    ) -> ClusterVhost {
        let vhost = format!("fastfood-{test}");
        let _ = self.ctl(1, &["delete_vhost", &vhost]).await;
        self.ctl(1, &["add_vhost", &vhost])
            .await
            .expect("add_vhost");
        self.ctl(
            1,
            &["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"],
        )
        .await
        .expect("set_permissions");
        ClusterVhost {
            cluster: self,
            vhost,
            _shared: shared,
            _alone: alone,
        }
    }

    /// Node `n`'s Erlang name.
    pub fn node(&self, n: u8) -> String {
        format!("{}{n}@localhost", self.prefix)
    }

    /// Runs `rabbitmqctl -q -n NODE ARGS` on node `n`.
    pub async fn ctl(&self, n: u8, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node(n)])
            .args(args)
            .output()
            .await
            .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "rabbitmqctl -n {} {args:?}: {}",
                self.node(n),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `kill -9` of node `n`, as a crash would; returns once it is gone.
    pub async fn kill(&'static self, n: u8) {
        self.node_command("kill", n).await;
    }

    /// Stops node `n` cleanly.
    pub async fn stop(&'static self, n: u8) {
        self.node_command("stop", n).await;
    }

    /// Starts node `n` again (a no-op if it runs); it rejoins by itself.
    pub async fn start_node(&'static self, n: u8) {
        self.node_command("start", n).await;
    }

    async fn node_command(&'static self, command: &'static str, n: u8) {
        let n_text = n.to_string();
        tokio::task::spawn_blocking(move || self.script(&[command, &n_text]))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Takes the cluster down when the test process exits.
extern "C" fn take_down_at_exit() {
    if let Some(Some(cluster)) = CLUSTER.get() {
        let _ = cluster.script(&["down"]);
    }
}

/// Three consecutive AMQP ports, each free now with its distribution port
/// (port + 20000), somewhere this process alone is likely to pick, and all
/// below Linux's ephemeral ports (32768 and up), so no outgoing connection
/// takes one while a node restarts its listener.
fn free_ports() -> u16 {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    let span: u16 = 12700 - 10000;
    let start = (std::process::id() % u32::from(span / 3)) as u16 * 3;
    (0..span / 3)
        .map(|i| 10000 + (start + i * 3) % span)
        .find(|&base| (base..base + 3).all(|p| free(p) && free(p + 20000)))
        .expect("three free ports")
}

/// A test's virtual host on the cluster, deleted on drop; a test that had
/// the cluster alone starts every node again first.
pub struct ClusterVhost {
    cluster: &'static Cluster,
    pub vhost: String,
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

impl ClusterVhost {
    /// The three nodes' URLs for this vhost, comma-separated (`--broker`).
    pub fn urls(&self) -> String {
        NODES
            .iter()
            .map(|n| self.url(*n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `n`'s URL for this vhost.
    pub fn url(&self, n: u8) -> String {
        let port = self.cluster.port + u16::from(n) - 1;
        format!("amqp://guest:guest@127.0.0.1:{port}/{}", self.vhost)
    }

    pub fn cluster(&self) -> &'static Cluster {
        self.cluster
    }

    /// Messages in `queue` (ready, unacknowledged), asked of node `n`.
    pub async fn depth(&self, n: u8, queue: &str) -> Option<(u64, u64)> {
        let out = self
            .cluster
            .ctl(
                n,
                &[
                    "list_queues",
                    "-p",
                    &self.vhost,
                    "name",
                    "messages_ready",
                    "messages_unacknowledged",
                ],
            )
            .await
            .ok()?;
        out.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&queue))
            .and_then(|f| Some((f.get(1)?.parse().ok()?, f.get(2)?.parse().ok()?)))
    }

    /// The node (1, 2 or 3) of each client connection to this vhost, by the
    /// port it came in on, asked of node `n`.
    pub async fn connection_nodes(&self, n: u8) -> Vec<u8> {
        let out = self
            .cluster
            .ctl(
                n,
                &["list_connections", "--no-table-headers", "vhost", "port"],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        out.lines()
            .filter_map(|line| {
                let (vhost, port) = line.split_once('\t')?;
                let port: u16 = port.trim().parse().ok()?;
                (vhost == self.vhost).then(|| (port - self.cluster.port + 1) as u8)
            })
            .collect()
    }
}

impl Drop for ClusterVhost {
    fn drop(&mut self) {
        let cluster = self.cluster;
        if self._alone.is_some() {
            for n in NODES {
                if let Err(e) = cluster.script(&["start", &n.to_string()]) {
                    eprintln!("could not start node {n} again: {e}");
                }
            }
        }
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "-n", &cluster.node(1), "delete_vhost", &self.vhost])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
