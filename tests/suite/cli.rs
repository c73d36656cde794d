//! The command line as a newcomer meets it, through the real binary: bad
//! values (and numbers past what a kitchen needs) are refused with a
//! sentence that says what to write instead, a data directory is never
//! created with a tree of missing parents,
//! `--help` tells what is required and which variables are read, and logs
//! written to a file carry no colour codes.

use std::process::Output;
use std::time::Duration;

use crate::support::process::{ServerProcess, fastfood};

/// Runs `fastfood ARGS` to the end (the harness's environment policy, plus
/// `env`); stdout and stderr as text.
async fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, String, String) {
    let output = fastfood(args, env).output().await.expect("run fastfood");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// A command line clap refuses: exit status 2, and the message.
async fn refused(args: &[&str]) -> String {
    let (output, _, stderr) = run(args, &[]).await;
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

#[tokio::test]
async fn a_port_without_an_address_is_refused_with_the_addresses_to_write() {
    let stderr = refused(&["serve", "--listen", ":0"]).await;
    assert!(
        stderr.contains("127.0.0.1:0") && stderr.contains("0.0.0.0:0"),
        "{stderr}"
    );
    assert!(!stderr.contains("lookup"), "{stderr}");
    let stderr = refused(&["serve", "--listen", "my laptop"]).await;
    assert!(stderr.contains("IP:PORT"), "{stderr}");
}

#[tokio::test]
async fn a_negative_preparation_time_is_refused_as_such() {
    for args in [
        &["serve", "--prep-time", "-1"][..],
        &[
            "worker",
            "--broker",
            "amqp://127.0.0.1",
            "--prep-time",
            "-5s",
        ],
        &["rush", "--prep-time", "-1"],
    ] {
        let stderr = refused(args).await;
        assert!(stderr.contains("cannot be negative"), "{args:?}: {stderr}");
        assert!(!stderr.contains("unexpected argument"), "{stderr}");
    }
}

#[tokio::test]
async fn a_rush_target_without_a_scheme_asks_for_http() {
    let stderr = refused(&["rush", "--target", "127.0.0.1:7777"]).await;
    assert!(stderr.contains("http://127.0.0.1:7777"), "{stderr}");
    assert!(!stderr.contains("relative URL"), "{stderr}");
}

#[tokio::test]
async fn a_worker_requires_a_broker_and_its_help_says_so() {
    let (output, help, _) = run(&["worker", "--help"], &[]).await;
    assert!(output.status.success());
    let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(
        usage.contains("--broker <BROKER>") && !usage.contains("[--broker"),
        "{usage}"
    );
    // --broker's help is a worker's, not the server's "orders wait in
    // this process".
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!flat.contains("wait in this process"), "{flat}");
    assert!(flat.contains("RabbitMQ to take orders from"), "{flat}");
    // Without it: one sentence that says what to add, no usage line.
    let stderr = refused(&["worker", "--prep-time", "1s"]).await;
    assert!(stderr.contains("--broker amqp://"), "{stderr}");
    assert!(!stderr.contains("Usage:"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn a_worker_that_cannot_reach_the_broker_does_not_speak_of_queueing() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("amqp://guest:guest@{}", closed.local_addr().unwrap());
    drop(closed);
    let mut worker = crate::support::WorkerProcess::start(dir.path(), &url, &[]);
    crate::support::wait_until(
        crate::support::DEADLINE,
        "the worker says the broker is unreachable",
        || async { worker.stderr().contains("not reachable") },
    )
    .await;
    let log = worker.stderr();
    assert!(!log.contains("queued"), "a worker queues nothing:\n{log}");
    worker.kill9().await;
}

/// `--help` with the wrapping undone.
async fn flat_help(args: &[&str], env: &[(&str, &str)]) -> String {
    let (output, help, stderr) = run(args, env).await;
    assert!(output.status.success(), "{stderr}");
    help.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn help_names_each_variable_and_shows_a_value_only_when_set() {
    let help = flat_help(&["serve", "--help"], &[]).await;
    assert!(help.contains("[env: FASTFOOD_LISTEN]"), "{help}");
    assert!(!help.contains("=]"), "an empty value is shown: {help}");
    let help = flat_help(
        &["serve", "--help"],
        &[
            ("FASTFOOD_WORKERS", "3"),
            ("AMQP_URL", "amqp://guest:secret@127.0.0.1:5672"),
            (
                "DATABASE_URL",
                "postgres://fastfood:secret@db1,db2/fastfood",
            ),
        ],
    )
    .await;
    assert!(help.contains("[env: DATABASE_URL]"), "{help}");
    assert!(help.contains("[env: FASTFOOD_WORKERS=3]"), "{help}");
    assert!(help.contains("[env: AMQP_URL]"), "{help}");
    assert!(
        !help.contains("secret"),
        "the broker URL may hold a password"
    );
}

#[tokio::test]
async fn long_help_lines_are_wrapped() {
    for command in ["serve", "worker", "rush", "import"] {
        let (_, help, _) = run(&[command, "--help"], &[("COLUMNS", "80")]).await;
        for line in help.lines() {
            assert!(line.chars().count() <= 80, "{command}: {line:?}");
        }
    }
}

#[tokio::test]
async fn logs_to_a_file_have_no_colour_and_the_summary_reads_well() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::spawn(&data, &["--workers", "1", "--prep-time", "0"]).await;
    server.terminate();
    let status = server
        .wait(Duration::from_secs(10))
        .await
        .expect("the server stops on SIGTERM");
    let stderr = server.stderr();
    assert!(status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|line| line.contains("serving on"))
        .unwrap_or_else(|| panic!("no 'serving on' line from the server: {stderr}"));
    for line in stderr.lines() {
        assert!(
            !line.contains('\x1b'),
            "colour codes in a log file: {line:?}"
        );
    }
    assert!(summary.contains("with 1 worker,"), "{summary}");
    assert!(
        summary.contains(&format!("data dir {}", data.display())),
        "{summary}"
    );
}

#[tokio::test]
async fn numbers_beyond_any_kitchen_are_refused_with_the_bound() {
    for (args, bound) in [
        (&["serve", "--prep-time", "500000000000y"][..], "at most 1h"),
        (&["serve", "--prep-time", "61min"], "at most 1h"),
        (&["serve", "--workers", "100000"], "from 0 to 64"),
        (&["serve", "--workers", "65"], "from 0 to 64"),
        (
            &[
                "worker",
                "--broker",
                "amqp://127.0.0.1",
                "--workers",
                "100000",
            ],
            "from 0 to 64",
        ),
        (
            &["serve", "--queue-capacity", "100000000"],
            "from 1 to 1000000",
        ),
        (&["serve", "--fail-rate", "1"], "between 0 and 0.9"),
        (&["serve", "--fail-rate", "NaN"], "between 0 and 0.9"),
        (
            &["serve", "--allowed-hosts", "http://restaurant.example"],
            "without http://",
        ),
    ] {
        let stderr = refused(args).await;
        assert!(stderr.contains(bound), "{args:?}: {stderr}");
    }
    // The same bounds hold for the environment variables.
    let (output, _, stderr) = run(&["serve"], &[("FASTFOOD_WORKERS", "100000")]).await;
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("from 0 to 64"), "{stderr}");
}

#[tokio::test]
async fn a_data_dir_is_created_but_never_its_missing_parents() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("nonexistent/deep/dir");
    let data = deep.to_str().unwrap();
    let (output, _, stderr) = run(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        &[],
    )
    .await;
    assert!(!output.status.success(), "{stderr}");
    let missing = dir.path().join("nonexistent/deep");
    assert!(
        stderr.contains(&format!("{} does not exist", missing.display())),
        "names the missing directory: {stderr}"
    );
    assert!(
        !dir.path().join("nonexistent").exists(),
        "nothing was created"
    );

    // The data directory itself is created when its parent exists.
    let fresh = dir.path().join("fresh");
    let server = ServerProcess::spawn(&fresh, &["--prep-time", "0"]).await;
    assert!(fresh.join("counter").is_file());
    drop(server);
}
