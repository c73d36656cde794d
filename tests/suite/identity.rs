//! One restaurant, one identity: a store is born with a random identity
//! (`restaurant_id`), every order message carries it, and a worker never
//! acknowledges an order it cannot account for: a worker never creates a
//! data directory or a store; one whose store is another restaurant's gives
//! the order back untouched and stops; an order of its own restaurant that
//! the store does not know is set aside in `orders.orphaned`, never
//! acknowledged as done. Against the real RabbitMQ, a vhost per test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::rabbit::Rabbit;
use crate::support::{DEADLINE, ServerProcess, WorkerProcess, read_store, run_to_exit, wait_until};

/// The identity the store in `dir` was given.
fn identity(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("restaurant_id"))
        .expect("restaurant_id")
        .trim()
        .to_owned()
}

/// The statuses `orders.log` records for `ticket`, in order (a record that
/// only marks the order queued is not a change of status).
fn statuses(dir: &Path, ticket: u32) -> Vec<String> {
    let (_, _, records) = read_store(dir);
    let mut statuses: Vec<String> = records
        .iter()
        .filter(|r| r["order"]["order"] == ticket)
        .map(|r| r["order"]["status"].as_str().unwrap().to_owned())
        .collect();
    statuses.dedup();
    statuses
}

/// Waits for a worker that must refuse to run, or stop by itself, and
/// returns what it said.
async fn refused(mut worker: WorkerProcess) -> String {
    let status = worker
        .wait(DEADLINE)
        .await
        .expect("the worker stops by itself");
    assert!(!status.success(), "it stops with a failure");
    worker.stderr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_is_born_with_an_identity_that_never_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    let id = identity(dir.path());
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let mode = std::fs::metadata(dir.path().join("restaurant_id"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner reads it");
    assert!(server.stderr().contains(&format!("restaurant {id}")));
    drop(server);
    let again = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    assert_eq!(identity(dir.path()), id, "kept across restarts");
    drop(again);

    // A store from before identities gets one when `serve` opens it.
    std::fs::remove_file(dir.path().join("restaurant_id")).unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    let new = identity(dir.path());
    assert_ne!(new, id);
    assert!(
        server
            .stderr()
            .contains("this restaurant had no identity yet"),
        "{}",
        server.stderr()
    );
    drop(server);

    // A damaged identity stops the program, naming the file.
    std::fs::write(dir.path().join("restaurant_id"), "not an/identity\n").unwrap();
    let exited = run_to_exit(dir.path(), &[]).await;
    assert!(!exited.status.success());
    assert!(
        exited.stderr.contains("restaurant_id")
            && exited.stderr.contains("not a restaurant identity"),
        "{}",
        exited.stderr
    );
}

/// The newcomer's mistake: a worker started in another directory. It used
/// to create an empty store of its own there, take the order from
/// RabbitMQ, find it "not in the store", acknowledge it, and the order
/// stayed TAKEN forever. Now it refuses to start, creates nothing, and the
/// order waits for a worker of its restaurant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_in_another_directory_refuses_to_start_and_the_order_waits() {
    let Some(rabbit) = Rabbit::vhost("identity-elsewhere").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let ticket = server.place("a burger").await;
    assert_eq!(rabbit.depth("orders").await, (1, 0));

    let elsewhere = tempfile::tempdir().unwrap();
    let missing = elsewhere.path().join("data");
    let said = refused(WorkerProcess::start(
        &missing,
        &rabbit.url,
        &["--prep-time", "0"],
    ))
    .await;
    assert!(
        said.contains(&format!(
            "the data directory {} does not exist",
            missing.display()
        )) && said.contains("never creates one")
            && said.contains("Give --data-dir the data directory of the restaurant's server"),
        "{said}"
    );
    assert!(!missing.exists(), "a worker creates no data directory");

    let empty = elsewhere.path();
    let said = refused(WorkerProcess::start(
        empty,
        &rabbit.url,
        &["--prep-time", "0"],
    ))
    .await;
    assert!(
        said.contains(&format!(
            "the data directory {} holds no restaurant",
            empty.display()
        )),
        "{said}"
    );
    let left: Vec<_> = std::fs::read_dir(empty)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a worker creates no store: {left:?}");

    assert_eq!(
        rabbit.depth("orders").await,
        (1, 0),
        "the order still waits"
    );
    assert_eq!(server.order_json(ticket).await["status"], "TAKEN");
    let _cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "0"], &[]).await;
    server.wait_all_ready(&[ticket]).await;
    assert_eq!(
        statuses(dir.path(), ticket),
        ["TAKEN", "PREPARING", "READY"]
    );
    rabbit.wait_drained("orders").await;
}

/// Two restaurants, one vhost (the mistake; a vhost each is the way): a
/// worker of restaurant B takes one of A's orders, gives it back untouched
/// and stops, saying which store it opened; B's store is left as it was,
/// and A's own worker then prepares every order once. It used to
/// acknowledge each of A's orders as "not in the store", losing them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_of_another_restaurant_gives_the_order_back_and_stops() {
    let Some(rabbit) = Rabbit::vhost("identity-two").await else {
        return;
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Restaurant B exists: its server made its store, then stopped.
    drop(ServerProcess::spawn(b.path(), &["--prep-time", "0"]).await);
    let b_before = std::fs::read(b.path().join("orders.log")).unwrap();

    let server = ServerProcess::spawn(a.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let mut tickets = Vec::new();
    for n in 0..3 {
        tickets.push(server.place(&format!("burger {n}")).await);
    }
    let said = refused(WorkerProcess::start(
        b.path(),
        &rabbit.url,
        &["--prep-time", "0"],
    ))
    .await;
    let (id_a, id_b) = (identity(a.path()), identity(b.path()));
    assert!(
        said.contains(&format!(
            "order 1 belongs to restaurant {id_a}, but the data directory {} is restaurant {id_b}",
            b.path().display()
        )) && said.contains("gave it back to the queue untouched")
            && said.contains("virtual host of its own"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(b.path().join("orders.log")).unwrap(),
        b_before,
        "B's store is untouched"
    );
    wait_until(DEADLINE, "all three orders wait again", || async {
        rabbit.depth("orders").await == (3, 0)
    })
    .await;

    let _cook = WorkerProcess::spawn(a.path(), &rabbit.url, &["--prep-time", "0"], &[]).await;
    server.wait_all_ready(&tickets).await;
    for ticket in &tickets {
        assert_eq!(statuses(a.path(), *ticket), ["TAKEN", "PREPARING", "READY"]);
        assert_eq!(server.order_json(*ticket).await["deliveries"], 1);
    }
    rabbit.wait_drained("orders").await;
}

/// A store restored from a backup older than the queue: RabbitMQ holds a
/// message of this restaurant whose ticket the store does not know. The
/// worker sets it aside in `orders.orphaned`, untouched, with an error in
/// its log, and goes on; it used to acknowledge it and log "dropped it".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_store_does_not_know_is_set_aside_not_acknowledged() {
    let Some(rabbit) = Rabbit::vhost("identity-orphan").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    drop(ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), backup.path().join(entry.file_name())).unwrap();
    }
    let mut server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let lost = server.place("a burger the backup never saw").await;
    server.kill9().await;
    // The backup comes back: the same restaurant, without order `lost`.
    for entry in std::fs::read_dir(backup.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }

    let cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "0"], &[]).await;
    wait_until(DEADLINE, "the message is set aside", || async {
        rabbit.depth("orders.orphaned").await == (1, 0)
    })
    .await;
    rabbit.wait_drained("orders").await;
    let log = cook.stderr();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("order {lost} is not in the store")))
        .unwrap_or_else(|| panic!("no line about order {lost}:\n{log}"));
    assert!(
        line.contains("ERROR")
            && line.contains(&identity(dir.path()))
            && line.contains("set it aside untouched")
            && line.contains("orders.orphaned"),
        "{line}"
    );

    // The worker goes on: the next order of the restaurant is prepared.
    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let next = server.place("the next burger").await;
    server.wait_all_ready(&[next]).await;
}
