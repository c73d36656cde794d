//! The files under a running restaurant: a full disk, another
//! process holding the store's or the counter's lock, and damaged files the
//! matrix in `durability` does not cover yet. The real binary, real
//! files; afterwards the invariants of `support::invariants` hold.
//!
//! The full-disk test mounts a small tmpfs, which needs root (the tests run
//! as root here and in CI); elsewhere it skips loudly, unless
//! `FASTFOOD_REQUIRE_ROOT=1` makes that a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::invariants::{
    Accepted, Attempt, HeldLock, accept, check_files, check_forward_in_store, check_no_ghost,
    check_unique, order_once, read_files, wait_settled,
};
use crate::support::{
    DEADLINE, Damage, ServerProcess, dir_contents, each_damage_is_refused, expect_error, header,
    http_client, log_line, run_to_exit, stored_order, write_store,
};

/// How long `/order` may take to give up on a lock held elsewhere (the lock
/// wait is 3 s).
const LOCK_BOUND: Duration = Duration::from_secs(10);
/// How quickly the board and the health check must answer while a lock is
/// held elsewhere: well under the lock wait, so they do not wait for it.
const PROMPT: Duration = Duration::from_secs(2);

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    mount: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let parent = tempfile::tempdir().unwrap();
        let mount = parent.path().join("tmpfs");
        std::fs::create_dir(&mount).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs {
                mount,
                _parent: parent,
            }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("FASTFOOD_REQUIRE_ROOT").as_deref() != Ok("1"),
                    "FASTFOOD_REQUIRE_ROOT=1 but a tmpfs cannot be mounted: {why}"
                );
                eprintln!(
                    "SKIPPED {test}: cannot mount a tmpfs to fill ({why}); run the tests as root"
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |args: &[&str]| {
            std::process::Command::new("umount")
                .args(args)
                .arg(&self.mount)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !umount(&[]) && !umount(&["-l"]) {
            eprintln!("could not unmount {}", self.mount.display());
        }
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![b'x'; 1024];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Whatever is left is less than a page.
    let _ = file.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_keeps_the_store_whole_and_recovers() {
    let Some(tmpfs) = Tmpfs::mount("256k", "a_full_disk") else {
        return;
    };
    let d = tmpfs.mount.join("data");
    let server = ServerProcess::spawn(&d, &["--prep-time", "0"]).await;
    let client = http_client();
    let mut accepted = Vec::new();
    for i in 0..5 {
        accepted.push(accept(&client, &server.base, &format!("before {i}")).await);
    }
    wait_settled(&d, &accepted, DEADLINE).await;
    let (first, code) = (accepted[0].ticket, &accepted[0].code);
    let taken = client
        .post(server.url(&format!("/take?order={first}&code={code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 200);

    // The disk fills up: /order fails, as a JSON 503, once the little room
    // left in the log's last page is used up.
    let filler = tmpfs.mount.join("filler");
    let filled = fill(&filler);
    eprintln!("filled {filled} bytes");
    let full = [(503, "store_unavailable"), (503, "tickets_unavailable")];
    // Orders of nearly 1000 characters: once one no longer fits in what is
    // left, nothing the store would write fits (the kitchen's changes of
    // these orders are longer still).
    let long = |i: usize| {
        let text = format!("{i}: {}", "a burger with everything on it, ".repeat(31));
        text.trim().to_owned()
    };
    fill_until_refused(&client, &server.base, &full, long, &mut accepted).await;
    eprintln!("refused once {} orders were in", accepted.len());

    // The store is whole: every file parses, no half line, nothing moved
    // backward; and while the disk stays full, nothing changes at all.
    let files = read_files(&d);
    check_files(&files);
    check_forward_in_store(&files);
    check_unique(&files, &accepted);
    let store = |d: &Path| {
        ["orders.json", "orders.log", "history.jsonl"].map(|f| std::fs::read(d.join(f)).ok())
    };
    let before = store(&d);
    for i in 0..3 {
        let again = order_once(&client, &server.base, &long(1000 + i), &full).await;
        assert!(matches!(again, Attempt::Refused(503, _)), "{again:?}");
    }
    let files = read_files(&d);
    check_files(&files);
    assert!(
        store(&d) == before,
        "a refused order leaves the store as it was"
    );
    check_no_ghost(&server.board().await, &accepted);
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the server stays up");

    // Room again: service resumes, and every order accepted before is fine.
    std::fs::remove_file(&filler).unwrap();
    let mut i = 0;
    let resumed = crate::support::wait_for(DEADLINE, "/order to be accepted again", || {
        i += 1;
        let (client, base) = (client.clone(), server.base.clone());
        let content = format!("after {i}");
        async move {
            match order_once(&client, &base, &content, &full).await {
                Attempt::Accepted(a) => Some(a),
                Attempt::Refused(..) => None,
                Attempt::NoAnswer(e) => panic!("the server answers: {e}"),
            }
        }
    })
    .await;
    accepted.push(resumed);
    let files = wait_settled(&d, &accepted, DEADLINE).await;
    assert_eq!(
        files.fates()[&first].status,
        fastfood::order::Status::Collected
    );
    drop(server);
}

/// `GET /readyz`: its status and its `checks.store`.
async fn readiness(client: &reqwest::Client, server: &ServerProcess) -> (u16, String) {
    let response = client.get(server.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        body["checks"]["store"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_503_while_the_disk_is_full_and_comes_back_after() {
    let Some(tmpfs) = Tmpfs::mount("256k", "readiness_on_a_full_disk") else {
        return;
    };
    let d = tmpfs.mount.join("data");
    let server = ServerProcess::spawn(&d, &["--prep-time", "0"]).await;
    let client = http_client();
    let mut accepted = Vec::new();
    for i in 0..3 {
        accepted.push(accept(&client, &server.base, &format!("before {i}")).await);
    }
    wait_settled(&d, &accepted, DEADLINE).await;
    assert_eq!(readiness(&client, &server).await, (200, "ok".to_owned()));

    // Full: orders fail, and from then on readiness says so every time it is
    // asked, though nothing else tries to write (the kitchen is idle, and
    // the store's idle cycles have nothing to write).
    let filler = tmpfs.mount.join("filler");
    fill(&filler);
    let full = [(503, "store_unavailable"), (503, "tickets_unavailable")];
    let long = |i: usize| format!("{i}: {}", "a burger with everything on it, ".repeat(31));
    // Three refusals in a row: full for anything the store would write (a
    // refused group commit may have been refused for its size alone).
    fill_until_refused(
        &client,
        &server.base,
        &full,
        |i| long(i).trim().to_owned(),
        &mut accepted,
    )
    .await;
    let mut answers = Vec::new();
    for _ in 0..50 {
        answers.push(readiness(&client, &server).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answers
            .iter()
            .all(|(status, store)| *status == 503 && store == "failing"),
        "every /readyz on a full disk is 503 with the store failing: {answers:?}"
    );

    // Room again: ready within a few seconds, without any order to prove it.
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    crate::support::wait_until(
        Duration::from_secs(5),
        "/readyz to answer 200 again",
        || async { readiness(&client, &server).await.0 == 200 },
    )
    .await;
    eprintln!("ready again {:?} after the disk had room", freed.elapsed());
    let log = std::fs::read(d.join("orders.log")).unwrap();
    assert!(
        log.ends_with(b"}\n"),
        "the probe of orders.log leaves nothing behind"
    );
    accepted.push(accept(&client, &server.base, "after the disk had room").await);
    wait_settled(&d, &accepted, DEADLINE).await;
    assert_eq!(readiness(&client, &server).await, (200, "ok".to_owned()));
    drop(server);
}

/// Runs `/order` while `hold` (a file in the data directory) is locked by
/// this process for about 6 s: it answers `expected` (503 JSON) within
/// [`LOCK_BOUND`], the board and the health check answer promptly all the
/// while, and once the lock is released orders succeed.
async fn lock_held_elsewhere(hold: &str, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = ServerProcess::spawn(d, &["--prep-time", "0"]).await;
    let client = http_client();
    let mut accepted = Vec::new();
    for i in 0..3 {
        accepted.push(accept(&client, &server.base, &format!("before {i}")).await);
    }
    wait_settled(d, &accepted, DEADLINE).await;
    let counter_before = read_files(d).counter;

    let path = d.join(hold);
    let lock = tokio::task::spawn_blocking(move || HeldLock::take(&path))
        .await
        .unwrap();
    let held_at = Instant::now();
    let ordering = tokio::spawn({
        let (client, base) = (client.clone(), server.base.clone());
        async move {
            let asked = Instant::now();
            let response = client
                .post(format!("{base}/order"))
                .body("while locked")
                .send()
                .await
                .expect("an answer");
            let took = asked.elapsed();
            let retry_after = header(&response, "retry-after");
            (response, took, retry_after)
        }
    });
    // Meanwhile the server answers what does not need the lock, at once.
    while !ordering.is_finished() {
        for path in [
            "/orders",
            "/healthz",
            &format!("/orders/{}", accepted[0].ticket),
        ] {
            let asked = Instant::now();
            let response = client.get(server.url(path)).send().await.unwrap();
            let took = asked.elapsed();
            assert_eq!(response.status(), 200, "GET {path} while {hold} is locked");
            assert!(
                took < PROMPT,
                "GET {path} took {took:?} while {hold} was locked elsewhere"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (response, took, retry_after) = ordering.await.unwrap();
    eprintln!("/order answered after {took:?} with {hold} locked");
    assert!(took < LOCK_BOUND, "/order took {took:?}");
    assert_eq!(retry_after, "1", "worth retrying");
    expect_error(response, 503, expected).await;
    assert!(
        server
            .board()
            .await
            .all_ready(&accepted.iter().map(|a| a.ticket).collect::<Vec<_>>()),
        "no ghost on the board"
    );

    // Held about 6 s in all, then released: orders go through again.
    tokio::time::sleep_until((held_at + Duration::from_secs(6)).into()).await;
    drop(lock);
    let after = accept(&client, &server.base, "after the lock").await;
    match hold {
        // The counter was locked: no number was handed out.
        "counter" => assert_eq!(after.ticket, counter_before + 1),
        // The store was locked: the number was handed out, then the store
        // refused the order (a gap, like any order that failed after it was
        // numbered).
        _ => assert_eq!(after.ticket, counter_before + 2),
    }
    accepted.push(after);
    wait_settled(d, &accepted, DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_lock_held_elsewhere_gives_503_in_bounded_time_and_the_rest_answers() {
    lock_held_elsewhere("orders.lock", "store_unavailable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_locked_elsewhere_gives_503_in_bounded_time_and_the_rest_answers() {
    lock_held_elsewhere("counter", "tickets_unavailable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_damaged_files_stop_the_program_with_the_file_and_the_reason() {
    let cases: &[(&str, Damage, &str, &[&str])] = &[
        (
            "an empty counter",
            |d| std::fs::write(d.join("counter"), []).unwrap(),
            "counter",
            &["exactly 4 bytes", "0 bytes"],
        ),
        (
            "a 5-byte counter",
            |d| std::fs::write(d.join("counter"), [0, 0, 0, 3, 0]).unwrap(),
            "counter",
            &["exactly 4 bytes", "5 bytes"],
        ),
        (
            "an 8-byte counter (a u64)",
            |d| std::fs::write(d.join("counter"), 3u64.to_be_bytes()).unwrap(),
            "counter",
            &["exactly 4 bytes", "8 bytes"],
        ),
        (
            "the counter missing, the orders only in the history",
            |d| {
                let history: Vec<String> = (1..=3)
                    .map(|n| log_line(3 * n as u64, stored_order(n, "COLLECTED")))
                    .collect();
                std::fs::write(d.join("history.jsonl"), history.join("\n") + "\n").unwrap();
                std::fs::write(d.join("orders.json"), "{\"version\":9,\"orders\":[\n]}\n").unwrap();
                std::fs::remove_file(d.join("counter")).unwrap();
            },
            "counter",
            &["missing", "orders up to 3"],
        ),
        (
            "a snapshot of blanks",
            |d| std::fs::write(d.join("orders.json"), " \n\t\n").unwrap(),
            "orders.json",
            &["empty"],
        ),
        (
            "an order taken twice in the log",
            |d| {
                let log = format!(
                    "{{\"base\":9}}\n{}\n",
                    log_line(10, stored_order(2, "TAKEN"))
                );
                std::fs::write(d.join("orders.log"), log).unwrap();
            },
            "orders.log",
            &["line 2", "order 2 is taken twice"],
        ),
        (
            "a log line with an unknown status",
            |d| {
                let log = format!(
                    "{{\"base\":9}}\n{}\n",
                    log_line(10, stored_order(1, "COOKING"))
                );
                std::fs::write(d.join("orders.log"), log).unwrap();
            },
            "orders.log",
            &["line 2", "COOKING"],
        ),
        (
            "a history line with an unknown status",
            |d| {
                let history = log_line(2, stored_order(4, "EATEN")) + "\n";
                std::fs::write(d.join("history.jsonl"), history).unwrap();
            },
            "history.jsonl",
            &["line 1", "EATEN"],
        ),
        (
            "a log line repeated",
            |d| {
                let l = log_line(10, stored_order(4, "TAKEN"));
                std::fs::write(d.join("orders.log"), format!("{{\"base\":9}}\n{l}\n{l}\n"))
                    .unwrap();
                std::fs::write(d.join("counter"), 4u32.to_be_bytes()).unwrap();
            },
            "orders.log",
            &["line 3", "change 10 comes after change 10"],
        ),
    ];
    each_damage_is_refused(cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_that_is_a_file_or_a_counter_that_is_a_directory_gets_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, "not a directory").unwrap();
    let run = run_to_exit(&file, &["--prep-time", "0"]).await;
    assert!(!run.status.success(), "it must not start\n{}", run.stderr);
    for said in [&file.display().to_string(), "is a file, not a directory"] {
        assert!(
            run.stderr.contains(said),
            "stderr says {said:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains("os error"),
        "no raw OS error:\n{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"not a directory",
        "left alone"
    );

    // Below a file: the OS error is the sentence, said once.
    let below = file.join("data");
    let run = run_to_exit(&below, &["--prep-time", "0"]).await;
    assert!(!run.status.success(), "it must not start\n{}", run.stderr);
    assert!(
        run.stderr.contains(&below.display().to_string()),
        "stderr names {}:\n{}",
        below.display(),
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("os error").count(),
        1,
        "the OS error once:\n{}",
        run.stderr
    );

    let d = dir.path().join("store");
    std::fs::create_dir(&d).unwrap();
    write_store(&d);
    std::fs::remove_file(d.join("counter")).unwrap();
    std::fs::create_dir(d.join("counter")).unwrap();
    let run = run_to_exit(&d, &["--prep-time", "0"]).await;
    assert!(!run.status.success(), "it must not start\n{}", run.stderr);
    let counter = d.join("counter").display().to_string();
    for said in [counter.as_str(), "is a directory", "4-byte file"] {
        assert!(
            run.stderr.contains(said),
            "stderr says {said:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains("os error"),
        "no raw OS error:\n{}",
        run.stderr
    );
    assert!(d.join("counter").is_dir(), "left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_at_the_last_number_starts_and_refuses_orders_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_store(d);
    std::fs::write(d.join("counter"), u32::MAX.to_be_bytes()).unwrap();
    let server = ServerProcess::spawn(d, &["--prep-time", "0"]).await;
    let before = dir_contents(d);
    let client = http_client();
    for _ in 0..3 {
        let response = server.order("one more").await;
        assert_eq!(
            header(&response, "retry-after"),
            "",
            "retrying will not help: no Retry-After"
        );
        let error = expect_error(response, 503, "tickets_exhausted").await;
        assert!(
            error["message"].as_str().unwrap().contains("4294967295"),
            "{error}"
        );
    }
    assert!(
        server.board().await.all_ready(&[1, 2, 3]),
        "the board stays"
    );
    // A store written before there were pickup codes: its orders need none.
    let taken = client
        .post(server.url("/take?order=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 200, "collecting still works");
    let after = dir_contents(d);
    assert_eq!(
        after["counter"], before["counter"],
        "the counter never wraps"
    );
    assert_eq!(after["orders.json"], before["orders.json"]);
    let files = read_files(d);
    check_files(&files);
    assert_eq!(files.log.len(), 1, "only the collection was recorded");
}

/// Places orders of `long(i)` on a full disk until three in a row are
/// refused as `full` (a refused group commit may have been refused for its
/// size alone: a smaller one may still fit), keeping the accepted ones.
async fn fill_until_refused(
    client: &reqwest::Client,
    base: &str,
    full: &[(u16, &str)],
    long: impl Fn(usize) -> String,
    accepted: &mut Vec<Accepted>,
) {
    let mut refusals = 0;
    for i in 0..200 {
        match order_once(client, base, &long(i), full).await {
            Attempt::Accepted(a) => {
                accepted.push(a);
                refusals = 0;
            }
            Attempt::Refused(..) => {
                refusals += 1;
                if refusals == 3 {
                    break;
                }
            }
            Attempt::NoAnswer(e) => panic!("the server answers: {e}"),
        }
    }
    assert_eq!(refusals, 3, "a full disk refuses orders");
}
