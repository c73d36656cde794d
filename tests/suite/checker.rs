//! The checker of `fastfood rush --history` on one host: two servers and two
//! kitchen workers sharing one data directory and one RabbitMQ vhost, a rush
//! spread over both servers, one server killed with `kill -9` and started
//! again mid-rush. The verdict must be "nothing acknowledged lost", agree
//! with the store's own files, and catch a loss when there is one.

use std::net::TcpListener;
use std::time::Duration;

use fastfood::rush::verdict::{self, Answer, History, Ordered};
use serde_json::Value;

use crate::support::invariants::{Accepted, wait_settled};
use crate::support::process::rush_recording;
use crate::support::rabbit::Rabbit;
use crate::support::{ServerProcess, WorkerProcess};

/// An address on 127.0.0.1 free now, so a server killed there can be
/// started again where its customers and its board watcher expect it.
fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("its address").to_string()
}

/// The `201`s of a recorded history, as the store checks want them (the
/// pickup code is not recorded: these checks do not use it).
fn accepted(history: &History) -> Vec<Accepted> {
    history
        .acknowledged()
        .map(|(ticket, _, content)| Accepted {
            ticket,
            content: content.to_owned(),
            code: String::new(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rush_over_two_servers_one_killed_and_restarted_loses_nothing_acknowledged() {
    let Some(rabbit) = Rabbit::vhost("checker").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server_args = ["--workers", "0", "--broker", &rabbit.url];
    let (first, second) = (free_address(), free_address());
    let a = ServerProcess::spawn_listening(dir.path(), &first, &server_args).await;
    let mut b = ServerProcess::spawn_listening(dir.path(), &second, &server_args).await;
    let _kitchens = [
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "50ms"], &[]).await,
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "50ms"], &[]).await,
    ];

    let history_file = dir.path().join("history.json");
    let targets = format!("{},{}", a.base, b.base);
    let rush = rush_recording(
        &targets,
        &history_file,
        &[
            "--rate",
            "30",
            "--duration",
            "8s",
            "--timeout",
            "10s",
            "--settle",
            "60s",
        ],
    );

    // Mid-rush: the second server dies as abruptly as a machine, then comes
    // back on the same address.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.kill9().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = ServerProcess::spawn_listening(dir.path(), &second, &server_args).await;

    let output = tokio::time::timeout(Duration::from_secs(180), rush.wait_with_output())
        .await
        .expect("the rush ends")
        .expect("its output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let json: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    let verdict = &json["verdict"];
    assert_eq!(verdict["ok"], true, "{verdict:#}");
    assert_eq!(verdict["lost"], Value::Array(vec![]), "{verdict:#}");
    assert_eq!(verdict["duplicated"], Value::Array(vec![]), "{verdict:#}");
    let acknowledged = verdict["acknowledged"].as_u64().expect("a count");
    assert!(acknowledged > 100, "{verdict:#}");
    // Both servers took orders, and the killed one had a window without a
    // 201 (customers could not connect, or lost the connection).
    let servers = verdict["servers"].as_array().expect("per server");
    assert_eq!(servers.len(), 2);
    for server in servers {
        assert!(server["acknowledged"].as_u64() > Some(10), "{server:#}");
    }
    let windows = servers[1]["windows"].as_array().expect("windows");
    let down: Vec<&Value> = windows
        .iter()
        .filter(|w| {
            let answers = w["answers"].as_object().expect("answers");
            answers.contains_key("cannot connect") || answers.contains_key("connection lost")
        })
        .collect();
    assert!(!down.is_empty(), "{verdict:#}");
    // The restarted server's board came back: its watcher connected again.
    assert!(
        servers[1]["board_connections"].as_u64() >= Some(2),
        "{verdict:#}"
    );

    // The store's own files agree with the verdict read from the clients.
    let text = std::fs::read_to_string(&history_file).expect("the history file");
    let history: History = serde_json::from_str(&text).expect("the history parses");
    wait_settled(dir.path(), &accepted(&history), Duration::from_secs(60)).await;
    eprintln!("{}", verdict::judge(&history).text());

    // And the same checker catches a 201 whose order is nowhere.
    let mut broken = history.clone();
    let ghost = history.acknowledged().map(|(t, _, _)| t).max().unwrap() + 1000;
    broken.orders.push(Ordered {
        server: 1,
        sent_ms: 0,
        took_ms: 1,
        answer: Answer::Created {
            ticket: ghost,
            content: "never stored".into(),
        },
    });
    let judged = verdict::judge(&broken);
    assert!(!judged.ok);
    assert_eq!(
        judged.lost.iter().map(|l| l.ticket).collect::<Vec<_>>(),
        vec![ghost]
    );
    assert!(
        judged
            .text()
            .contains(&format!("order {ghost} (from {})", b.base))
    );
}
