//! Random `kill -9`s under load: processes killed every few
//! seconds while customers keep ordering and collecting, restarted each
//! time; afterwards every invariant (`support::invariants`) holds:
//! U, L, S, M (in the store and on the boards), F, E.
//! The broker case runs on both stores (the files, and PostgreSQL with a
//! data directory per process) and skips without RabbitMQ unless
//! `FASTFOOD_REQUIRE_BROKER=1`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::WorkerProcess;
use crate::support::invariants::{
    Accepted, Attempt, BoardWatch, Ledger, ORDER_UNAVAILABLE, check_error, order_once,
    wait_settled_at,
};
use crate::support::pg::Backend;
use crate::support::rabbit::Rabbit;
use crate::support::{ServerProcess, http_client};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest one customer may wait for their order, kills and all.
const PATIENCE: Duration = Duration::from_secs(120);
/// How long after the last kill every order must be settled: with a broker,
/// an order whose server died before the broker confirmed it is queued again
/// by another server's sweep after 9 s (checked every 5 s).
const SETTLE: Duration = Duration::from_secs(90);

/// The customers' side: the servers that are up now, and what they got.
#[derive(Default)]
struct Crowd {
    bases: Mutex<Vec<String>>,
    ledger: Ledger,
    collected: Mutex<Vec<u32>>,
}

impl Crowd {
    /// A server that is up, chosen at random; waits while there is none.
    async fn some_base(&self) -> String {
        loop {
            {
                let bases = self.bases.lock().unwrap();
                if !bases.is_empty() {
                    return bases[fastrand::usize(..bases.len())].clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn set(&self, slot: usize, base: &str) {
        let mut bases = self.bases.lock().unwrap();
        if slot < bases.len() {
            bases[slot] = base.to_owned();
        } else {
            bases.push(base.to_owned());
        }
    }

    /// One customer: orders (again, elsewhere, until a `201`; each attempt a
    /// distinct order), waits until it is READY and collects it. `None` if
    /// `stop` came before any `201`.
    async fn customer(
        &self,
        client: &reqwest::Client,
        id: usize,
        stop: &CancellationToken,
    ) -> Option<Accepted> {
        let give_up = Instant::now() + PATIENCE;
        let mut attempt = 0;
        let accepted = loop {
            if stop.is_cancelled() {
                return None;
            }
            assert!(Instant::now() < give_up, "customer {id} never got a 201");
            attempt += 1;
            let base = self.some_base().await;
            let content = format!("customer {id}, attempt {attempt}: burger");
            let answer = order_once(client, &base, &content, ORDER_UNAVAILABLE).await;
            self.ledger.note(&answer);
            match answer {
                Attempt::Accepted(a) => break a,
                Attempt::Refused(..) => tokio::time::sleep(Duration::from_millis(50)).await,
                Attempt::NoAnswer(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let ticket = accepted.ticket;
        loop {
            assert!(
                Instant::now() < give_up,
                "L: order {ticket} (customer {id}) was not READY within {PATIENCE:?}"
            );
            let base = self.some_base().await;
            match status_of(client, &base, ticket).await.as_deref() {
                Some("READY") => {}
                Some("COLLECTED") => break, // a /take whose answer was lost
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let Ok(response) = client
                .post(format!("{base}/take?order={ticket}&code={}", accepted.code))
                .send()
                .await
            else {
                continue;
            };
            let status = response.status().as_u16();
            if status == 200 {
                break;
            }
            let content_type = crate::support::header(&response, "content-type");
            let Ok(body) = response.text().await else {
                continue;
            };
            // Already collected by an earlier /take whose answer was lost, or
            // the store busy for a moment.
            match check_error(
                status,
                &content_type,
                &body,
                &[(410, "already_collected"), (503, "store_unavailable")],
            ) {
                (410, _) => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.collected.lock().unwrap().push(ticket);
        Some(accepted)
    }
}

/// The status `GET /orders/N` shows at `base`, if it answers 200.
async fn status_of(client: &reqwest::Client, base: &str, ticket: u32) -> Option<String> {
    let response = client
        .get(format!("{base}/orders/{ticket}"))
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None; // 404 while this server has not caught up yet
    }
    let body: Value = response.json().await.ok()?;
    body["status"].as_str().map(str::to_owned)
}

/// A random pause of `min..max` milliseconds.
async fn pause(min: u64, max: u64) {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(min..max))).await;
}

/// One server (in-process queue) killed every 1–3 s for 20 s under load.
async fn random_kill_9s_of_one_server(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = backend.with(&["--prep-time", "20ms"]);
    let crowd = Arc::new(Crowd::default());
    let board = Arc::new(Mutex::new(String::new()));
    let watch = BoardWatch::start(board.clone());
    let mut server = ServerProcess::spawn(d, &args).await;
    crowd.set(0, &server.base);
    *board.lock().unwrap() = server.base.clone();

    // Eight customers after another, until told to stop.
    let stop = CancellationToken::new();
    let customers: Vec<_> = (0..8)
        .map(|c| {
            let (crowd, stop) = (crowd.clone(), stop.clone());
            tokio::spawn(async move {
                let client = http_client();
                let mut served = 0;
                for n in 0.. {
                    match crowd.customer(&client, c * 1_000_000 + n, &stop).await {
                        Some(_) => served += 1,
                        None => break,
                    }
                }
                served
            })
        })
        .collect();

    // kill -9 every 1–3 s for 20 s, restarting at once each time.
    let storm = Instant::now() + Duration::from_secs(20);
    let mut kills = 0;
    while Instant::now() < storm {
        pause(1000, 3000).await;
        server.kill9().await;
        kills += 1;
        server = ServerProcess::spawn(d, &args).await;
        crowd.set(0, &server.base);
        *board.lock().unwrap() = server.base.clone();
    }
    stop.cancel();
    let mut served = 0;
    for customer in customers {
        served += customer.await.expect("a customer failed");
    }
    let accepted = crowd.ledger.accepted();
    eprintln!(
        "{kills} kills; {served} customers served; {}",
        crowd.ledger.summary()
    );
    assert!(kills >= 6, "the storm killed {kills} times");
    assert!(
        accepted.len() > 50,
        "orders flowed: {}",
        crowd.ledger.summary()
    );
    assert!(
        crowd.ledger.no_answer() > 0,
        "the kills hit requests in flight"
    );

    let files = wait_settled_at(&backend.store_at(d), &accepted, SETTLE).await;
    for ticket in crowd.collected.lock().unwrap().iter() {
        assert_eq!(
            files.fates()[ticket].status,
            fastfood::order::Status::Collected,
            "order {ticket} stays collected"
        );
    }
    // The count goes on after the last restart.
    let next = server.place("after the storm").await;
    assert!(next > files.highest(), "{next} after {}", files.highest());
    watch.finish().await;
}

crate::on_both_backends!(
    random_kill_9s_of_one_server_under_load_lose_nothing,
    random_kill_9s_of_one_server
);

/// 4 servers and 3 workers on one store (on the files one directory; on the
/// database one data directory each, as on machines of their own), a
/// random one killed every 2–4 s while 2,000 customers order and collect.
async fn random_kill_9s_of_servers_and_workers(backend: Backend) {
    const ORDERS: usize = 2000;
    const SERVERS: usize = 4;
    let Some(rabbit) = Rabbit::vhost(&format!("kill-storm-{}", backend.tag())).await else {
        return;
    };
    let dirs = backend.data_dirs(SERVERS + 3);
    let server_args = backend.with(&["--workers", "0", "--broker", &rabbit.url]);
    let worker_args = backend.with(&["--prep-time", "10ms", "--workers", "2"]);
    let crowd = Arc::new(Crowd::default());

    let mut servers = futures_util::future::join_all(
        (0..SERVERS).map(|i| ServerProcess::spawn(dirs.of(i), &server_args)),
    )
    .await;
    let boards: Vec<Arc<Mutex<String>>> = servers
        .iter()
        .enumerate()
        .map(|(slot, s)| {
            crowd.set(slot, &s.base);
            Arc::new(Mutex::new(s.base.clone()))
        })
        .collect();
    // Boards on two of the servers, following them across their restarts.
    let watches: Vec<BoardWatch> = boards[..2]
        .iter()
        .map(|b| BoardWatch::start(b.clone()))
        .collect();
    let mut workers = Vec::new();
    for w in 0..3 {
        let dir = dirs.of(SERVERS + w);
        workers.push(WorkerProcess::spawn(dir, &rabbit.url, &worker_args, &[]).await);
    }

    // 2,000 customers, 32 at a time, each ordering (again elsewhere if need
    // be) until a 201, then collecting.
    let customers = tokio::spawn({
        let crowd = crowd.clone();
        async move {
            let client = http_client();
            let never = CancellationToken::new();
            futures_util::stream::iter(0..ORDERS)
                .map(|id| {
                    let (crowd, client, never) = (crowd.clone(), client.clone(), never.clone());
                    async move { crowd.customer(&client, id, &never).await.expect("served") }
                })
                .buffer_unordered(32)
                .collect::<Vec<Accepted>>()
                .await
        }
    });

    // A kill -9 every 2–4 s of a server or a worker, restarted at once.
    let mut kills = (0, 0);
    while !customers.is_finished() {
        pause(2000, 4000).await;
        if customers.is_finished() {
            break;
        }
        let victim = fastrand::usize(..servers.len() + workers.len());
        if victim < servers.len() {
            // Customers stop choosing it just before it dies.
            crowd
                .bases
                .lock()
                .unwrap()
                .retain(|b| *b != servers[victim].base);
            servers[victim].kill9().await;
            servers[victim] = ServerProcess::spawn(dirs.of(victim), &server_args).await;
            crowd
                .bases
                .lock()
                .unwrap()
                .push(servers[victim].base.clone());
            *boards[victim].lock().unwrap() = servers[victim].base.clone();
            kills.0 += 1;
        } else {
            let w = victim - servers.len();
            workers[w].kill9().await;
            let dir = dirs.of(SERVERS + w);
            workers[w] = WorkerProcess::spawn(dir, &rabbit.url, &worker_args, &[]).await;
            kills.1 += 1;
        }
    }
    let accepted = customers.await.expect("the customers failed");
    eprintln!(
        "{} server and {} worker kills; {}",
        kills.0,
        kills.1,
        crowd.ledger.summary()
    );
    assert_eq!(accepted.len(), ORDERS);
    assert_eq!(crowd.ledger.accepted().len(), ORDERS);
    assert!(kills.0 + kills.1 >= 3, "the storm killed {kills:?}");

    // U, L, S, M, F: every order settled, the queue drained.
    let files = wait_settled_at(&backend.store_at(dirs.of(0)), &accepted, SETTLE).await;
    for ticket in crowd.collected.lock().unwrap().iter() {
        assert_eq!(
            files.fates()[ticket].status,
            fastfood::order::Status::Collected
        );
    }
    rabbit.wait_drained("orders").await;
    for watch in watches {
        watch.finish().await;
    }
    // Every server's board follows the shared store to the end.
    let version = files.version();
    for server in &servers {
        crate::support::wait_until(
            crate::support::DEADLINE,
            "every board catches up",
            || async { server.board().await.version >= version },
        )
        .await;
    }
}

crate::on_both_backends!(
    random_kill_9s_of_servers_and_workers_sharing_one_store_lose_nothing,
    random_kill_9s_of_servers_and_workers
);
