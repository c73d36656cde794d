//! The three-machine lab (`scripts/lab.sh`) under a rush across its three
//! servers: a machine killed and started again, a machine cut off from the
//! others and healed, the database primary's machine killed and the standby
//! promoted. The checker's verdict must be "nothing acknowledged lost", and
//! nothing of the lab may remain afterwards.
//!
//! Root only (namespaces, a bridge, RabbitMQ nodes and PostgreSQL clusters
//! as their own users); skips loudly otherwise, unless
//! `FASTFOOD_REQUIRE_ROOT=1` makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fastfood::rush::verdict::{self, History};
use serde_json::Value;

use crate::support::process::rush_recording;

/// `scripts/lab.sh` in this checkout.
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lab.sh")
}

/// `lab.sh ARGS --dir DIR` with this build's binary.
fn lab_sh(dir: &Path, args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("FASTFOOD_BIN", env!("CARGO_BIN_EXE_fastfood"))
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/lab.sh")
}

/// A lab of this test, taken down on drop (and by the script's own watcher
/// should this process die without dropping it).
struct Lab {
    dir: PathBuf,
}

impl Lab {
    /// `lab.sh up` in `dir`, owned by this process, with this build's binary.
    /// The guard exists only once the lab is up: an `up` that fails removes
    /// what it made itself, and one refused because another lab runs on this
    /// host must leave that lab alone (`down` takes down whatever lab runs).
    fn up(dir: &Path) -> Lab {
        let pid = std::process::id().to_string();
        let args = ["up", "--owner", &pid, "--prep-time", "200ms"];
        let output = lab_sh(dir, &args);
        assert!(
            output.status.success(),
            "lab.sh {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Lab {
            dir: dir.to_owned(),
        }
    }

    /// `lab.sh ARGS --dir DIR`, which must succeed; its stderr.
    fn run(&self, args: &[&str]) -> String {
        let output = self.try_run(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "lab.sh {args:?} failed:\n{}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        );
        stderr
    }

    fn try_run(&self, args: &[&str]) -> Output {
        lab_sh(&self.dir, args)
    }

    /// `SERVERS=` of the lab's `lab.env`.
    fn servers(&self) -> String {
        let env = std::fs::read_to_string(self.dir.join("lab.env")).expect("lab.env");
        env.lines()
            .find_map(|l| l.strip_prefix("SERVERS="))
            .expect("SERVERS= in lab.env")
            .trim_matches('"')
            .to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // `down` takes down whatever lab runs on this host: only while this
        // one is still there (its directory holds its `lab.id`).
        if !self.dir.join("lab.id").exists() {
            return;
        }
        let output = self.try_run(&["down"]);
        if !output.status.success() {
            eprintln!(
                "lab.sh down failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Whether this process runs as root; when not, says the test is skipped
/// (or fails, with `FASTFOOD_REQUIRE_ROOT=1`).
fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("FASTFOOD_REQUIRE_ROOT").as_deref() != Ok("1"),
        "FASTFOOD_REQUIRE_ROOT=1 but the tests do not run as root"
    );
    eprintln!("SKIPPED {test}: the lab makes network namespaces; run the tests as root");
    false
}

/// The lab's namespaces that exist now.
fn lab_namespaces() -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| ["m1", "m2", "m3"].contains(name))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_loses_no_acknowledged_order_to_a_kill_a_cut_or_a_failover() {
    if !root_or_skip("the lab test") {
        return;
    }
    let began = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("fastfood-lab-test-")
        .tempdir()
        .unwrap();
    // The rabbitmq and postgres users must reach the lab's directory.
    std::fs::set_permissions(
        temp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dir = temp.path().join("lab");
    let history_file = temp.path().join("history.json");
    {
        let lab = tokio::task::block_in_place(|| Lab::up(&dir));
        eprintln!("lab up after {:.0?}", began.elapsed());
        let servers = lab.servers();
        assert_eq!(servers.split(',').count(), 3, "{servers}");

        // Ended by Ctrl-C once the faults are over.
        let rush = rush_recording(
            &servers,
            &history_file,
            &[
                "--rate",
                "15",
                "--duration",
                "20m",
                "--timeout",
                "20s",
                "--settle",
                "120s",
            ],
        );
        let start = Instant::now();
        let mut timeline = Vec::new();
        let mut step = |what: &str, args: &[&str]| {
            let at = start.elapsed();
            tokio::task::block_in_place(|| lab.run(args));
            timeline.push(format!(
                "{:>6.1} s to {:>6.1} s  {what}",
                at.as_secs_f64(),
                start.elapsed().as_secs_f64()
            ));
        };
        let pause = |s: u64| tokio::time::sleep(Duration::from_secs(s));

        pause(10).await;
        step("kill m2", &["kill", "m2"]);
        pause(10).await;
        step("start m2", &["start", "m2"]);
        pause(10).await;
        step("cut m3", &["cut", "m3"]);
        pause(15).await;
        step("heal", &["heal"]);
        pause(10).await;
        // Who holds what, as the next kill takes it.
        let leaders = String::from_utf8_lossy(&lab.try_run(&["leader"]).stdout).replace('\n', " ");
        step(&format!("kill m1 ({})", leaders.trim()), &["kill", "m1"]);
        pause(5).await;
        step("failover (m2's standby promoted)", &["failover"]);
        pause(10).await;
        step("start m1 (as m2's standby)", &["start", "m1"]);
        pause(10).await;
        step("slow m1 (a slow, lossy link)", &["slow", "m1"]);
        pause(10).await;
        step("heal", &["heal"]);
        pause(10).await;

        // SAFETY: kill has no preconditions; the pid is our child's.
        let pid = rush.id().expect("the rush runs") as i32;
        unsafe { libc::kill(pid, libc::SIGINT) };
        let output = tokio::time::timeout(Duration::from_secs(300), rush.wait_with_output())
            .await
            .expect("the rush ends after Ctrl-C and its settle wait")
            .expect("its output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let text = std::fs::read_to_string(&history_file).expect("the history file");
        let history: History = serde_json::from_str(&text).expect("the history parses");
        let judged = verdict::judge(&history);
        eprintln!(
            "faults, since the rush began:\n{}\n{}",
            timeline.join("\n"),
            judged.text()
        );
        if !judged.ok {
            eprintln!(
                "--- status ---\n{}",
                String::from_utf8_lossy(&lab.try_run(&["status"]).stdout)
            );
        }
        assert!(judged.ok, "{}\n{stderr}", judged.text());
        assert!(output.status.success(), "{stdout}\n{stderr}");
        let json: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
        assert_eq!(json["verdict"]["ok"], true);
        assert!(judged.acknowledged > 500, "{}", judged.text());
        for server in &judged.servers {
            assert!(server.acknowledged > 50, "{}", judged.text());
        }
        assert!(judged.lost.is_empty() && judged.duplicated.is_empty());
    }
    // The lab is down (the guard above) and nothing of it remains.
    assert_eq!(lab_namespaces(), Vec::<String>::new());
    assert!(!dir.exists(), "{} is removed", dir.display());
    eprintln!("the lab test took {:.0?}", began.elapsed());
}
