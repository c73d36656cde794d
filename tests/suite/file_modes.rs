//! Who may read the data directory: `orders.log` holds every live pickup
//! code, so a directory the server creates is 0700 and every file in it
//! 0600; a directory that already exists keeps its mode, and the log says
//! when other users may read it. Checked with stat(2) on a real server's
//! files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{DEADLINE, ServerProcess, wait_until};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_is_private_and_so_is_every_file_in_it() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    // Compacting after a few changes writes the snapshot and the history too.
    let server = ServerProcess::spawn_with_env(
        &dir,
        &["--prep-time", "0"],
        &[("FASTFOOD_COMPACT_AFTER", "4")],
    )
    .await;
    for i in 0..6 {
        let placed = server.place_coded(&format!("burger {i}")).await;
        server.wait_all_ready(&[placed.ticket]).await;
        assert_eq!(server.take(placed.ticket, &placed.code).await.status(), 200);
    }
    let expected = [
        "counter",
        "orders.lock",
        "orders.log",
        "orders.json",
        "history.jsonl",
    ];
    wait_until(
        DEADLINE,
        "the store has compacted into a snapshot and a history",
        || async { expected.iter().all(|name| dir.join(name).exists()) },
    )
    .await;
    assert_eq!(mode(&dir), 0o700, "the data directory it created");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            mode(&path),
            0o600,
            "{} is readable by others",
            path.display()
        );
    }
    assert!(
        !server.stderr().contains("open to other users"),
        "{}",
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_open_directory_keeps_its_mode_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    server.place("fries").await;
    assert_eq!(
        mode(dir.path()),
        0o755,
        "an existing directory keeps its mode"
    );
    let log = server.stderr();
    assert!(
        log.contains("open to other users (mode 0755)") && log.contains("chmod 700"),
        "{log}"
    );
    // Its new files are private all the same.
    for name in ["counter", "orders.log", "orders.lock"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
}
