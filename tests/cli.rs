//! The command line as a newcomer meets it, through the real binary: bad
//! values are refused with a sentence that says what to write instead,
//! `--help` tells what is required and which variables are read, and logs
//! written to a file carry no colour codes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `fastfood ARGS` with an empty environment plus `env`.
fn fastfood(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastfood"));
    command.args(args).env_clear().envs(env.iter().copied());
    command
}

/// Runs to the end; stdout and stderr as text.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, String, String) {
    let output = fastfood(args, env).output().expect("run fastfood");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// A command line clap refuses: exit status 2, and the message.
fn refused(args: &[&str]) -> String {
    let (output, _, stderr) = run(args, &[]);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

#[test]
fn a_port_without_an_address_is_refused_with_the_addresses_to_write() {
    let stderr = refused(&["serve", "--listen", ":0"]);
    assert!(
        stderr.contains("127.0.0.1:0") && stderr.contains("0.0.0.0:0"),
        "{stderr}"
    );
    assert!(!stderr.contains("lookup"), "{stderr}");
    let stderr = refused(&["serve", "--listen", "my laptop"]);
    assert!(stderr.contains("IP:PORT"), "{stderr}");
}

#[test]
fn a_negative_preparation_time_is_refused_as_such() {
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
        let stderr = refused(args);
        assert!(stderr.contains("cannot be negative"), "{args:?}: {stderr}");
        assert!(!stderr.contains("unexpected argument"), "{stderr}");
    }
}

#[test]
fn a_rush_target_without_a_scheme_asks_for_http() {
    let stderr = refused(&["rush", "--target", "127.0.0.1:7777"]);
    assert!(stderr.contains("http://127.0.0.1:7777"), "{stderr}");
    assert!(!stderr.contains("relative URL"), "{stderr}");
}

#[test]
fn a_worker_requires_a_broker_and_its_help_says_so() {
    let (output, help, _) = run(&["worker", "--help"], &[]);
    assert!(output.status.success());
    let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(
        usage.contains("--broker <BROKER>") && !usage.contains("[--broker"),
        "{usage}"
    );
    let stderr = refused(&["worker"]);
    assert!(stderr.contains("--broker"), "{stderr}");
}

/// `--help` with the wrapping undone.
fn flat_help(args: &[&str], env: &[(&str, &str)]) -> String {
    let (output, help, stderr) = run(args, env);
    assert!(output.status.success(), "{stderr}");
    help.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn help_names_each_variable_and_shows_a_value_only_when_set() {
    let help = flat_help(&["serve", "--help"], &[]);
    assert!(help.contains("[env: FASTFOOD_LISTEN]"), "{help}");
    assert!(!help.contains("=]"), "an empty value is shown: {help}");
    let help = flat_help(
        &["serve", "--help"],
        &[
            ("FASTFOOD_WORKERS", "3"),
            ("AMQP_URL", "amqp://guest:secret@127.0.0.1:5672"),
        ],
    );
    assert!(help.contains("[env: FASTFOOD_WORKERS=3]"), "{help}");
    assert!(help.contains("[env: AMQP_URL]"), "{help}");
    assert!(
        !help.contains("secret"),
        "the broker URL may hold a password"
    );
}

#[test]
fn long_help_lines_are_wrapped() {
    for command in ["serve", "worker", "rush"] {
        let (_, help, _) = run(&[command, "--help"], &[("COLUMNS", "80")]);
        for line in help.lines() {
            assert!(line.chars().count() <= 80, "{command}: {line:?}");
        }
    }
}

#[test]
fn logs_to_a_file_have_no_colour_and_the_summary_reads_well() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = fastfood(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--prep-time",
            "0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start fastfood serve");
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    let summary = loop {
        match seen.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("serving on") => break line,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("no 'serving on' line from the server: {e}");
            }
        }
    };
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let rest: Vec<String> = seen.try_iter().collect();
    assert!(status.success(), "{summary}\n{}", rest.join("\n"));
    for line in std::iter::once(&summary).chain(&rest) {
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
