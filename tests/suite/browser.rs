//! The pages in a real browser: headless Chromium, driven through chromedriver
//! (WebDriver) with fantoccini, against the real `fastfood` binary.
//!
//! One customer's journey across two windows, the lobby board and the kiosk:
//! order, see the number on the board, see it move to "Ready for pickup".
//! Then the board when the server dies and comes back. Then: 120 orders ready
//! at once, every number on the board (TV, portrait TV, phone); the shared
//! kiosk clearing itself and keeping nothing; the customer's own phone page
//! following an order, cancelling another, collecting with the pickup code,
//! and the number leaving the board. The kitchen page in complex mode
//! (RabbitMQ, two worker processes): the worker preparing an order is
//! killed, its lane goes grey and the other worker takes the order again.
//! Screenshots of every page at TV (1920×1080, 1080×1920), laptop (1366×768)
//! and phone (390×844) sizes go to `target/screenshots/`, checked to be
//! neither blank nor overflowing.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: `apt-get install
//! chromium chromium-driver`). Without them the test prints `SKIPPED: ...` and
//! passes, unless `FASTFOOD_REQUIRE_BROWSER=1`, where it fails.

use std::collections::HashSet;
use std::future::Future;
use std::io::Cursor;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::support::rabbit::Rabbit;
use crate::support::{Api, ServerProcess, WorkerProcess, place_orders, wait_for, wait_until};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TV: (u32, u32) = (1920, 1080);
const PORTRAIT_TV: (u32, u32) = (1080, 1920);
const PHONE: (u32, u32) = (390, 844);
/// A laptop, or the projector it drives.
const LAPTOP: (u32, u32) = (1366, 768);
/// The longest any wait for a page to show something may take.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_and_kiosk_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::spawn(data.path(), &["--prep-time", "2s"]).await;
    let data_dir = data.path().to_owned();
    in_browsers(&[TV, PHONE], move |clients| {
        journey(clients[0].clone(), clients[1].clone(), server, data_dir)
    })
    .await;
}

async fn journey(tv: Client, phone: Client, mut server: ServerProcess, data_dir: PathBuf) {
    let base = server.base.clone();

    // ------------------------------------------------------------ the board
    let board = tv.window().await.expect("window handle");
    goto(&tv, &format!("{base}/")).await;
    wait_js(
        &tv,
        "the board to say it is live",
        "return document.body.dataset.conn === 'live'",
    )
    .await;
    let headings = js(
        &tv,
        "return [...document.querySelectorAll('h1, h2')].map(h => h.textContent.trim())",
    )
    .await;
    let headings = headings.to_string();
    for h in ["Order status", "Preparing", "Ready for pickup"] {
        assert!(headings.contains(h), "no heading {h:?} among {headings}");
    }
    assert_eq!(
        js(
            &tv,
            "return document.querySelector('#col-ready').closest('section')\
             .querySelector('[aria-live]')?.getAttribute('aria-live')"
        )
        .await,
        json!("polite"),
        "the ready column has an aria-live region"
    );

    // ------------------------------------------------------------ the kiosk
    let kiosk = tv.new_window(false).await.expect("new window").handle;
    tv.switch_to_window(kiosk.clone()).await.expect("switch");
    // (The ticket stays on screen long enough for the whole journey.)
    goto(&tv, &format!("{base}/kiosk?reset=300")).await;

    // An empty order is refused in a sentence, before anything is sent.
    click(&tv, "#place").await;
    let said = wait_text(&tv, "#order-error", "a sentence about the empty order").await;
    assert!(said.ends_with('.'), "not a sentence: {said:?}");

    // The server's own error: its `message`, as a sentence, not a code.
    let too_long = "x".repeat(1001);
    let expected = error_message(&server, &too_long).await;
    js(
        &tv,
        &format!(
            "const t = document.querySelector('#order-text'); t.value = {};\
             t.dispatchEvent(new Event('input')); return true",
            json!(too_long)
        ),
    )
    .await;
    click(&tv, "#place").await;
    wait_js(
        &tv,
        "the server's error message on the kiosk",
        &format!(
            "return document.querySelector('#order-error').textContent.trim() === {}",
            json!(expected)
        ),
    )
    .await;

    // Order with the quick-pick buttons plus some typing.
    click(&tv, "#clear").await;
    click(&tv, "button[data-item='burger']").await;
    click(&tv, "button[data-item='burger']").await;
    click(&tv, "button[data-item='fries']").await;
    let typed = tv
        .find(Locator::Css("#order-text"))
        .await
        .expect("order text box");
    assert_eq!(
        typed.prop("value").await.expect("value").as_deref(),
        Some("2 burgers, 1 fries")
    );
    typed.send_keys(", no onions").await.expect("typing");
    click(&tv, "#place").await;
    let number = wait_js(
        &tv,
        "a ticket number on the kiosk",
        "const n = document.querySelector('#ticket-number').textContent.trim();\
         return !document.querySelector('#ticket-view').hidden && /^[0-9]+$/.test(n) && Number(n)",
    )
    .await
    .as_u64()
    .expect("ticket number");
    assert_eq!(
        text(&tv, "#ticket-content").await,
        "2 burgers, 1 fries, no onions"
    );
    let stored = server.order_json(number as u32).await;
    assert_eq!(stored["content"], "2 burgers, 1 fries, no onions");

    // Other customers, so the board has something in every column.
    for i in 1..=9 {
        server.place(&format!("{i} cheeseburgers")).await;
    }

    // ------------------------------------------------------------ on the board
    tv.switch_to_window(board.clone()).await.expect("switch");
    wait_js(
        &tv,
        "the new number on the board",
        &format!("return !!document.querySelector('#columns li[data-order=\"{number}\"]')"),
    )
    .await;
    wait_js(
        &tv,
        "the number to stand out in \"Ready for pickup\"",
        &format!("return !!document.querySelector('#col-ready li.fresh[data-order=\"{number}\"]')"),
    )
    .await;
    wait_js(
        &tv,
        "the ready number announced to screen readers",
        &format!(
            "return document.querySelector('#ready-announcer').textContent\
             .includes('Order {number} is ready')"
        ),
    )
    .await;
    assert_fits(&tv, "board").await;
    assert_offline(&tv, "board").await;
    screenshot(&tv, "board", TV).await;

    // ------------------------------------------------------------ the ticket, live
    // The kiosk follows the order while it shows it. Collecting is for the
    // customer's own page, with the pickup code (see the phone page's test,
    // which also sees the collected number leave the board).
    tv.switch_to_window(kiosk.clone()).await.expect("switch");
    wait_js(
        &tv,
        "the kiosk to show the order ready",
        "return document.querySelector('#ticket-view').dataset.status === 'READY'\
         && /Ready/.test(document.querySelector('#ticket-status').textContent)",
    )
    .await;
    assert_fits(&tv, "kiosk").await;
    assert_offline(&tv, "kiosk").await;
    screenshot(&tv, "kiosk", TV).await;
    tv.switch_to_window(board.clone()).await.expect("switch");

    // ------------------------------------------------------------ on a phone
    goto(&phone, &format!("{base}/")).await;
    wait_js(
        &phone,
        "the phone board to show numbers",
        "return document.body.dataset.conn === 'live'\
         && document.querySelectorAll('#columns li[data-order]').length > 0",
    )
    .await;
    assert_fits(&phone, "board").await;
    screenshot(&phone, "board", PHONE).await;

    goto(&phone, &format!("{base}/kiosk?reset=300")).await;
    click(&phone, "button[data-item='cola']").await;
    assert_fits(&phone, "kiosk").await;
    screenshot(&phone, "kiosk", PHONE).await;
    click(&phone, "#place").await;
    wait_js(
        &phone,
        "the phone kiosk to show its order ready",
        "return document.querySelector('#ticket-view').dataset.status === 'READY'",
    )
    .await;
    assert_fits(&phone, "kiosk ticket").await;
    screenshot(&phone, "kiosk-ticket", PHONE).await;

    // ------------------------------------------------------------ outage
    // The stream drops: the board says so instead of showing stale numbers,
    // then comes back by itself once the server is back.
    let listen = server.base.trim_start_matches("http://").to_owned();
    server.kill9().await;
    wait_js(
        &tv,
        "the board to say the connection is lost",
        "return document.body.dataset.conn === 'down'\
         && !document.querySelector('#stale-banner').hidden",
    )
    .await;
    screenshot(&tv, "board-offline", TV).await;
    let _server = ServerProcess::spawn_listening(&data_dir, &listen, &["--prep-time", "2s"]).await;
    wait_js(
        &tv,
        "the board to reconnect by itself",
        "return document.body.dataset.conn === 'live'\
         && document.querySelector('#stale-banner').hidden\
         && document.querySelectorAll('#columns li[data-order]').length > 0",
    )
    .await;
}

// ---------------------------------------------------------------- a rush of ready orders

/// 120 orders READY and never collected: the board shows every number, on a
/// TV (landscape and portrait) and a phone. Where they do not all fit at a
/// readable size, pages rotate: each number must show up within one rotation
/// (read from the page every 500 ms). No tile is cut off or unreadably small,
/// and the ready column never summarises ("+N").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ready_number_is_on_the_board() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::spawn(data.path(), &["--prep-time", "0"]).await;
    let tickets = place_orders(&[&server.base], 120, 8).await;
    server.wait_all_ready(&tickets).await;

    in_browsers(&[TV, PORTRAIT_TV, PHONE], move |clients| async move {
        let base = server.base.clone();
        for (client, size) in clients.iter().zip([TV, PORTRAIT_TV, PHONE]) {
            goto(client, &format!("{base}/")).await;
            wait_js(
                client,
                "the board to show ready numbers",
                "return document.body.dataset.conn === 'live'\
                 && document.querySelectorAll('#col-ready li[data-order]').length > 0",
            )
            .await;
            let pages = every_number_within_a_rotation(client, &tickets, size).await;
            if size == TV {
                assert_eq!(pages, 1, "120 ready numbers fit a 1920×1080 TV at once");
            }
            if size == PHONE {
                assert!(pages > 1, "a phone shows 120 ready numbers page by page");
            }
            assert_fits(client, "board").await;
            screenshot(client, "board-120-ready", size).await;
        }

        // The legend says when a number counts as waiting long, and those
        // numbers are marked (a short threshold, for the test).
        let tv = &clients[0];
        goto(tv, &format!("{base}/?overdue=2")).await;
        wait_js(
            tv,
            "ready numbers marked as waiting over 2 s",
            "return document.querySelector('#overdue-legend').textContent === 'waiting over 2 s'\
             && document.querySelectorAll('#col-ready li.overdue').length === 120",
        )
        .await;
        goto(tv, &format!("{base}/")).await;
        wait_js(
            tv,
            "the default threshold in the legend",
            "return document.querySelector('#overdue-legend').textContent === 'waiting over 3 min'",
        )
        .await;
    })
    .await;
}

/// Reads the ready column every 500 ms until every one of `tickets` was on
/// screen (at most 25 s, more than a rotation). Every reading: tiles inside
/// their column, digits inside their tile, a readable size, no "+N" tile.
/// Returns how many pages the numbers take.
async fn every_number_within_a_rotation(client: &Client, tickets: &[u32], size: (u32, u32)) -> u64 {
    let wanted: HashSet<u64> = tickets.iter().map(|&t| u64::from(t)).collect();
    let mut seen = HashSet::new();
    let mut pages = 0;
    let readable = (0.035 * f64::from(size.0.min(size.1))).max(20.0);
    let deadline = Instant::now() + Duration::from_secs(25);
    while !wanted.is_subset(&seen) {
        assert!(
            Instant::now() < deadline,
            "at {}×{}, after 25 s, never saw ready numbers {:?}",
            size.0,
            size.1,
            wanted.difference(&seen).collect::<Vec<_>>()
        );
        let look = js(
            client,
            "const list = document.querySelector('#col-ready');\
             const box = list.getBoundingClientRect();\
             const tiles = [...list.children];\
             const out = tiles.filter(li => { const r = li.getBoundingClientRect();\
               return r.top < box.top - 1 || r.bottom > box.bottom + 1\
                 || r.left < box.left - 1 || r.right > box.right + 1\
                 || r.bottom > innerHeight || li.scrollWidth > li.clientWidth + 1; });\
             return { shown: tiles.map(li => Number(li.dataset.order)),\
               summary: tiles.filter(li => !li.dataset.order).length,\
               cut: out.map(li => li.textContent),\
               font: Math.min(...tiles.map(li => parseFloat(getComputedStyle(li).fontSize))),\
               pages: Number(list.dataset.pages),\
               page: document.querySelector('#ready-page').textContent }",
        )
        .await;
        assert_eq!(look["summary"], 0, "the ready column summarised: {look}");
        assert_eq!(look["cut"], json!([]), "tiles cut off: {look}");
        let font = look["font"].as_f64().unwrap_or_default();
        assert!(
            font >= readable,
            "ready numbers at {font} px, under {readable} px"
        );
        pages = look["pages"].as_u64().unwrap_or_default();
        let page = look["page"].as_str().unwrap_or_default();
        if pages > 1 {
            assert!(
                page.starts_with("page ") && page.ends_with(&format!(" of {pages}")),
                "no \"page N of {pages}\" but {page:?}"
            );
        } else {
            assert_eq!(page, "", "one page needs no page number");
        }
        for n in look["shown"].as_array().expect("numbers") {
            seen.insert(n.as_u64().expect("a number"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pages
}

// ---------------------------------------------------------------- the shared kiosk

/// The kiosk is a shared screen: after an order it shows the number (with the
/// pickup code and a QR code of the customer's page, when the server gives a
/// code), then clears itself; a reload shows nothing of an earlier order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosk_clears_itself_and_keeps_nothing() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::spawn(data.path(), &["--workers", "1", "--prep-time", "20s"]).await;
    // Someone ahead, so there is a wait to tell.
    server.place("a big family order").await;

    in_browsers(&[TV, PHONE], move |clients| async move {
        let base = server.base.clone();
        for (client, size) in clients.iter().zip([TV, PHONE]) {
            goto(client, &format!("{base}/kiosk?reset=4")).await;
            click(client, "button[data-item='burger']").await;
            click(client, "#place").await;
            let placed = Instant::now();
            let number = wait_js(
                client,
                "a ticket number on the kiosk",
                "const n = document.querySelector('#ticket-number').textContent.trim();\
                 return !document.querySelector('#ticket-view').hidden && /^[0-9]+$/.test(n) && Number(n)",
            )
            .await
            .as_u64()
            .expect("ticket number") as u32;
            let order = server.order_json(number).await;
            assert!(
                order.get("pickup_code").is_none(),
                "GET /orders/N shows the pickup code: {order}"
            );

            // The code and the QR code, when the server gives codes: wait for
            // the QR code (it is drawn by a second request).
            let code = text(client, "#pickup-code").await;
            if !code.is_empty() {
                let re_code = code.len() == 7
                    && code.chars().enumerate().all(|(i, c)| if i == 3 { c == ' ' } else { c.is_ascii_digit() });
                assert!(re_code, "the pickup code shown as \"123 456\", not {code:?}");
                wait_js(
                    client,
                    "the QR code of the customer's page",
                    "return !!document.querySelector('#qr svg path')",
                )
                .await;
            }
            // The wait in words, when the server says how long.
            if order.get("ahead").is_some() || order.get("estimated_ready_at").is_some() {
                let words = wait_text(client, "#wait", "the wait in words").await;
                assert!(
                    words.contains("ahead of you") || words.contains("You are next") || words.contains("ready"),
                    "the wait in words: {words:?}"
                );
            }
            assert_fits(client, "kiosk ticket").await;
            assert_offline(client, "kiosk ticket").await;
            screenshot(client, "kiosk-ticket", size).await;

            // By itself, after about 4 s: a fresh order screen, no trace left.
            wait_js(
                client,
                "the kiosk to return to a fresh order screen",
                "return document.querySelector('#ticket-view').hidden\
                 && !document.querySelector('#order-view').hidden",
            )
            .await;
            let after = placed.elapsed();
            assert!(
                after >= Duration::from_secs(3),
                "the ticket stayed only {after:?}, not about 4 s"
            );
            let leftovers = |code: &str| {
                format!(
                    "return [document.querySelector('#ticket-number').textContent,\
                       document.querySelector('#pickup-code').textContent,\
                       document.querySelector('#qr').childElementCount,\
                       {code} !== '' && document.body.innerText.includes({code}),\
                       localStorage.length + sessionStorage.length]",
                    code = json!(code)
                )
            };
            assert_eq!(
                js(client, &leftovers(&code)).await,
                json!(["", "", 0, false, 0]),
                "the kiosk kept something of order {number}"
            );
            client.refresh().await.expect("reload");
            wait_js(
                client,
                "the reloaded kiosk to show the order screen",
                "return !document.querySelector('#order-view').hidden",
            )
            .await;
            assert_eq!(
                js(client, &leftovers(&code)).await,
                json!(["", "", 0, false, 0]),
                "after a reload the kiosk shows something of order {number}"
            );
            assert!(
                js(client, "return document.querySelector('#ticket-view').hidden").await == json!(true),
                "after a reload the kiosk shows a ticket"
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------- the phone page

/// The customer's own page on a phone: without a code it asks for one;
/// with the code (from the QR code's URL fragment) it cancels an order still
/// in line, follows another to READY, refuses a wrong code in a sentence,
/// and collects with the right one; the board sees the number leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_page_follows_an_order_to_ready_and_collects_it() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::spawn(data.path(), &["--workers", "1", "--prep-time", "6s"]).await;

    in_browsers(&[PHONE, TV], move |clients| async move {
        let (phone, tv) = (&clients[0], &clients[1]);
        let base = server.base.clone();
        let first: Value = server.order("1 burger").await.json().await.expect("JSON");
        let second: Value = server.order("1 cola").await.json().await.expect("JSON");
        let (a, b) = (
            first["order"].as_u64().expect("a number"),
            second["order"].as_u64().expect("a number"),
        );

        // Without the code in the address: a form, no buttons that act.
        goto(phone, &format!("{base}/my/{a}")).await;
        wait_js(
            phone,
            "the phone page to ask for the pickup code",
            "return !document.querySelector('#code-view').hidden\
             && document.querySelector('#collect').hidden\
             && document.querySelector('#cancel').hidden",
        )
        .await;
        assert_eq!(text(phone, "#number").await, a.to_string());
        click(phone, "#code-form button[type=submit]").await;
        let said = wait_text(phone, "#code-error", "a sentence about the missing code").await;
        assert!(said.ends_with('.'), "not a sentence: {said:?}");

        let code_of = |order: &Value| {
            order["pickup_code"].as_str().map(str::to_owned).unwrap_or_else(|| {
                panic!("needs pickup codes from the backend: POST /order answered {order} without a pickup_code")
            })
        };
        let (code_a, code_b) = (code_of(&first), code_of(&second));

        // Cancel the second while it is still in line.
        goto(phone, &format!("{base}/my/{b}#code={code_b}")).await;
        wait_js(
            phone,
            "Cancel while in line",
            "return document.querySelector('#ticket').dataset.status === 'TAKEN'\
             && !document.querySelector('#cancel').hidden",
        )
        .await;
        click(phone, "#cancel").await;
        click(phone, "#confirm-yes").await;
        wait_js(
            phone,
            "the order to show as cancelled",
            "return document.querySelector('#ticket').dataset.status === 'CANCELLED'",
        )
        .await;
        assert_eq!(server.order_json(b as u32).await["status"], "CANCELLED");

        // The board, to see the first number leave once collected.
        goto(tv, &format!("{base}/")).await;

        // Follow the first: the wait in words while in the kitchen, then READY.
        let wrong = if code_a == "000000" { "111111" } else { "000000" };
        goto(phone, &format!("{base}/my/{a}#code={wrong}")).await;
        wait_js(
            phone,
            "the wait in words while the order is in the kitchen",
            "const s = document.querySelector('#ticket').dataset.status;\
             return s === 'READY' || /ready/.test(document.querySelector('#wait').textContent)",
        )
        .await;
        wait_js(
            phone,
            "the phone page to say READY, show this at the counter",
            "return document.querySelector('#ticket').dataset.status === 'READY'\
             && !document.querySelector('#ready-banner').hidden\
             && /show this at the counter/.test(document.querySelector('#ready-banner').textContent)\
             && !document.querySelector('#collect').hidden",
        )
        .await;
        assert_eq!(
            js(phone, "return document.querySelector('#status').getAttribute('aria-live')").await,
            json!("polite")
        );

        // A wrong code: refused in a sentence, and the page asks again.
        click(phone, "#collect").await;
        let refused = wait_text(phone, "#code-error", "the wrong code refused").await;
        assert!(refused.ends_with('.'), "not a sentence: {refused:?}");
        assert_eq!(server.order_json(a as u32).await["status"], "READY");

        // The right one, typed into the form: collected.
        let input = phone.find(Locator::Css("#code-input")).await.expect("code box");
        input.send_keys(&code_a).await.expect("typing");
        click(phone, "#code-form button[type=submit]").await;
        assert_fits(phone, "phone page").await;
        assert_offline(phone, "phone page").await;
        screenshot(phone, "my-ready", PHONE).await;
        click(phone, "#collect").await;
        wait_js(
            phone,
            "the phone page to show the order collected",
            "return document.querySelector('#ticket').dataset.status === 'COLLECTED'",
        )
        .await;
        assert_eq!(server.order_json(a as u32).await["status"], "COLLECTED");
        wait_js(
            tv,
            "the collected number to leave the board",
            &format!("return document.body.dataset.conn === 'live'\
                      && !document.querySelector('#columns li[data-order=\"{a}\"]')"),
        )
        .await;
    })
    .await;
}

/// A poison order on the customer's phone: a server dies in the middle of
/// it (`kill -9`), the server started again with `--max-deliveries 1` sets
/// it aside; the phone page then says in words that the kitchen could not
/// make it and to see the counter, with nothing to collect or cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_page_tells_the_customer_of_a_poison_order_set_aside() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let mut first =
        ServerProcess::spawn(data.path(), &["--workers", "1", "--prep-time", "10m"]).await;
    let pill: Value = first
        .order("a poison burger")
        .await
        .json()
        .await
        .expect("JSON");
    let n = pill["order"].as_u64().expect("a number") as u32;
    let code = pill["pickup_code"].as_str().expect("a code").to_owned();
    wait_until(Duration::from_secs(60), "the pill PREPARING", || async {
        first.order_json(n).await["status"] == "PREPARING"
    })
    .await;
    first.kill9().await;
    let server = ServerProcess::spawn(data.path(), &["--max-deliveries", "1"]).await;
    wait_until(Duration::from_secs(60), "the pill set aside", || async {
        server.order_json(n).await["cancelled_by"] == "kitchen"
    })
    .await;

    in_browsers(&[PHONE], move |clients| async move {
        let phone = &clients[0];
        goto(phone, &format!("{}/my/{n}#code={code}", server.base)).await;
        wait_js(
            phone,
            "the phone page to say the order was set aside",
            "return document.querySelector('#ticket').dataset.status === 'CANCELLED'\
             && document.body.dataset.setAside === 'true'",
        )
        .await;
        let said = text(phone, "#status").await;
        assert!(
            said.contains("kitchen could not make this order") && said.contains("see the counter"),
            "{said:?}"
        );
        assert_eq!(
            js(
                phone,
                "return [document.querySelector('#collect').hidden, document.querySelector('#cancel').hidden]"
            )
            .await,
            json!([true, true]),
            "nothing to collect or cancel"
        );
        assert_fits(phone, "phone page").await;
        screenshot(phone, "my-set-aside", PHONE).await;
        drop(server);
    })
    .await;
}

// ---------------------------------------------------------------- the kitchen

/// Complex mode as `/kitchen` shows it: the server takes orders into
/// RabbitMQ, two worker processes prepare them. The worker preparing an
/// order is killed (`kill -9`): within seconds its lane says it stopped
/// answering, the other worker has the order again (delivery 2), the log
/// tells what happened, and the order still ends READY. The same page on
/// a laptop or projector and on a phone; and the page when the server dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kitchen_page_shows_a_killed_worker_and_its_order_taken_again() {
    if !browser_available() {
        return;
    }
    let Some(rabbit) = Rabbit::vhost("kitchen-page").await else {
        return;
    };
    let data = tempfile::tempdir().expect("temp dir");
    let server =
        ServerProcess::spawn(data.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    // Long enough that the order is still being prepared again while the
    // page is read and photographed on three browsers after the first
    // worker is declared gone (3 s of silence), on a loaded machine too: at
    // 8 s the orders behind it had started moving before the last look.
    let prep = ["--prep-time", "20s"];
    let workers = vec![
        WorkerProcess::spawn(data.path(), &rabbit.url, &prep, &[]).await,
        WorkerProcess::spawn(data.path(), &rabbit.url, &prep, &[]).await,
    ];

    in_browsers(&[TV, LAPTOP, PHONE], move |clients| async move {
        let mut server = server;
        let mut workers = workers;
        let base = server.base.clone();
        for client in &clients {
            goto(client, &format!("{base}/kitchen")).await;
        }
        let tv = &clients[0];
        wait_js(
            tv,
            "the kitchen page to show both worker processes, idle",
            "return document.body.dataset.conn === 'live'\
             && document.querySelectorAll('#lanes .lane[data-state=\"idle\"][data-process=\"worker\"]').length === 2\
             && document.querySelector('#queue-kind').textContent === 'RabbitMQ'",
        )
        .await;
        let pids: HashSet<u64> = workers.iter().map(|w| u64::from(w.pid)).collect();
        let shown: HashSet<u64> = js(
            tv,
            "return [...document.querySelectorAll('#lanes .lane')].map(l => Number(l.dataset.pid))",
        )
        .await
        .as_array()
        .expect("pids")
        .iter()
        .map(|p| p.as_u64().expect("a pid"))
        .collect();
        assert_eq!(shown, pids, "one lane per worker process, with its pid");

        // One order: whichever worker takes it, the page shows it there.
        let order = server.place("1 burger").await;
        let lane = |order: u32| {
            format!(
                "document.querySelector('#lanes .lane[data-state=\"preparing\"][data-order=\"{order}\"]')"
            )
        };
        let holder = wait_js(
            tv,
            "the order preparing in a worker's lane",
            &format!("const l = {}; return l && Number(l.dataset.pid)", lane(order)),
        )
        .await
        .as_u64()
        .expect("a pid") as u32;
        let first = js(
            tv,
            &format!(
                "const l = {}; return [l.querySelector('.lane-order').textContent,\
                 l.querySelector('.lane-state').textContent,\
                 l.querySelector('.lane-doing').textContent,\
                 l.querySelector('.lane-delivery').hidden]",
                lane(order)
            ),
        )
        .await;
        assert_eq!(first[0], json!(order.to_string()), "{first}");
        assert_eq!(first[1], json!("Preparing"), "{first}");
        assert_eq!(first[3], json!(true), "a first delivery is not highlighted: {first}");
        // The time it has been at it ticks by itself, between events.
        let doing = |t: &Value| t.as_str().unwrap_or_default().to_owned();
        let before = doing(&first[2]);
        assert!(
            before.starts_with("for ") && before.ends_with(" s"),
            "how long, in seconds: {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let later = doing(
            &js(
                tv,
                &format!("return {}.querySelector('.lane-doing').textContent", lane(order)),
            )
            .await,
        );
        assert_ne!(before, later, "the time at the order does not tick");

        // Kill the worker whose lane holds the order.
        let killed = workers
            .iter_mut()
            .find(|w| w.pid == holder)
            .unwrap_or_else(|| panic!("the lane shows pid {holder}, no worker process has it"));
        killed.kill9().await;
        let killed_at = Instant::now();
        // The order in a lane of the worker left (the killed one's lane
        // shows it too, until the server finds that worker silent).
        let other = |order: u32| {
            format!(
                "document.querySelector('#lanes .lane[data-state=\"preparing\"][data-order=\"{order}\"]:not([data-pid=\"{holder}\"])')"
            )
        };

        // RabbitMQ hands the order to the other worker at once.
        let again = wait_js(
            tv,
            "the order preparing again in the other worker's lane, delivery 2",
            &format!(
                "const l = {}; return l && l.dataset.delivery === '2'\
                 && !l.querySelector('.lane-delivery').hidden\
                 && l.querySelector('.lane-delivery').textContent",
                other(order)
            ),
        )
        .await;
        assert!(
            again.as_str().is_some_and(|t| t.contains("delivery 2")),
            "the second delivery said on the lane: {again}"
        );
        // Orders behind it, waiting for the one worker left.
        for i in 2..=5 {
            server.place(&format!("{i} fries")).await;
        }

        // The killed worker's lane: gone, once it has been silent for 3 s.
        wait_js(
            tv,
            "the killed worker's lane to show it stopped answering",
            &format!(
                "const l = document.querySelector('#lanes .lane[data-pid=\"{holder}\"]');\
                 return !l || (l.dataset.state === 'gone'\
                   && l.querySelector('.lane-state').textContent === 'Stopped answering')"
            ),
        )
        .await;
        let took = killed_at.elapsed();
        assert!(
            took < Duration::from_secs(8),
            "the killed worker shown gone only after {took:?}"
        );
        wait_js(
            tv,
            "the log to tell what became of the order",
            &format!(
                "return [...document.querySelectorAll('#log .log-text')]\
                 .some(t => /stopped answering/.test(t.textContent) && /\\border {order}\\b/.test(t.textContent))"
            ),
        )
        .await;
        let log = js(
            tv,
            "return [...document.querySelectorAll('#log .log-line time')]\
             .map(t => [t.dateTime, t.textContent])",
        )
        .await;
        let lines = log.as_array().expect("the log's times");
        assert!(lines.len() >= 4, "joined twice, taken again, stopped answering: {log}");
        for line in lines {
            let shown = line[1].as_str().unwrap_or_default();
            assert!(
                shown.starts_with(|c: char| c.is_ascii_digit()),
                "every line of the log starts with its time: {log}"
            );
        }
        let at = |i: usize| lines[i][0].as_str().unwrap_or_default();
        assert!(
            (1..lines.len()).all(|i| at(i - 1) >= at(i)),
            "the newest line comes first: {log}"
        );

        // The line behind it, as the store sees it (a broker's queue cannot
        // be read without taking its orders).
        wait_js(
            tv,
            "the waiting orders as chips, with the store's note",
            "return document.querySelectorAll('#next .chip[data-order]').length === 4\
             && document.querySelector('#next .chip.first').dataset.order === '2'\
             && !document.querySelector('#next-note').hidden\
             && /store/.test(document.querySelector('#next-note').textContent)",
        )
        .await;

        for (client, size) in clients.iter().zip([TV, LAPTOP, PHONE]) {
            wait_js(
                client,
                "the page to show the killed worker and the order again",
                &format!(
                    "return document.querySelector('#lanes .lane[data-pid=\"{holder}\"][data-state=\"gone\"]')\
                     && {}?.dataset.delivery === '2'",
                    other(order)
                ),
            )
            .await;
            assert_fits(client, if size == PHONE { "kitchen on a phone" } else { "kitchen" }).await;
            assert_offline(client, "kitchen").await;
            screenshot(client, "kitchen-worker-killed", size).await;
        }

        // The order still ends READY, made by the worker left.
        wait_until(WAIT * 2, "the order to be READY", || async {
            server.order_json(order).await["status"] == "READY"
        })
        .await;
        let stored = server.order_json(order).await;
        assert_eq!(stored["deliveries"], 2, "{stored}");
        wait_js(
            tv,
            "the worker left to count the order done",
            &format!(
                "const l = [...document.querySelectorAll('#lanes .lane')]\
                 .find(l => Number(l.dataset.pid) !== {holder});\
                 return l && /done 1\\b/.test(l.querySelector('.lane-stats').textContent)"
            ),
        )
        .await;

        // The server dies: the page says so instead of going on ticking.
        server.kill9().await;
        wait_js(
            tv,
            "the kitchen page to say the connection is lost",
            "return document.body.dataset.conn === 'down'\
             && !document.querySelector('#stale-banner').hidden",
        )
        .await;
        screenshot(tv, "kitchen-offline", TV).await;
    })
    .await;
}

/// Starts chromedriver and one headless Chromium per size, runs `body` with
/// them in a task, then closes every browser whatever happened (dropping
/// chromedriver alone could leave Chromium running).
async fn in_browsers<F, Fut>(sizes: &[(u32, u32)], body: F)
where
    F: FnOnce(Vec<Client>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let profiles = tempfile::tempdir().expect("temp dir");
    let (_driver, driver_url) = start_chromedriver();
    let mut clients = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        clients.push(open_browser(&driver_url, size, &profiles.path().join(i.to_string())).await);
    }
    let outcome = tokio::spawn(body(clients.clone())).await;
    for client in clients {
        let _ = client.close().await;
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

// ---------------------------------------------------------------- helpers

/// Is a browser here? If not: say so loudly and skip, or fail when required.
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{} not installed (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    if std::env::var("FASTFOOD_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("FASTFOOD_REQUIRE_BROWSER=1 but {why}");
    }
    eprintln!("SKIPPED: browser test: {why}");
    false
}

/// A child process that is killed and reaped when dropped, even on panic.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start_chromedriver() -> (Guard, String) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    (Guard(child), format!("http://127.0.0.1:{port}"))
}

/// A headless Chromium session whose page is exactly `width`×`height` CSS
/// pixels, whatever the window decorations (device metrics emulation).
async fn open_browser(driver: &str, (width, height): (u32, u32), profile: &Path) -> Client {
    let small = width < 600;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--mute-audio",
                // Both windows keep running their scripts as if in front.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.display()),
            ],
            "mobileEmulation": {
                "deviceMetrics": {
                    "width": width,
                    "height": height,
                    "pixelRatio": 1.0,
                    "mobile": small,
                    "touch": small,
                },
            },
        }),
    );
    // chromedriver needs a moment to listen.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(driver)
            .await
        {
            Ok(client) => return client,
            Err(e) if Instant::now() >= deadline => {
                panic!("no Chromium session through chromedriver at {driver}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Waits until `script` returns something other than null or false.
async fn wait_js(client: &Client, what: &str, script: &str) -> Value {
    wait_for(WAIT, what, || async {
        match js(client, script).await {
            Value::Null | Value::Bool(false) => None,
            value => Some(value),
        }
    })
    .await
}

async fn text(client: &Client, css: &str) -> String {
    let script = format!(
        "return document.querySelector({}).textContent.trim()",
        json!(css)
    );
    js(client, &script)
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits for the element to have some text, and returns it.
async fn wait_text(client: &Client, css: &str, what: &str) -> String {
    let script = format!(
        "return document.querySelector({}).textContent.trim() || null",
        json!(css)
    );
    let value = wait_js(client, what, &script).await;
    value.as_str().unwrap_or_default().to_string()
}

async fn goto(client: &Client, url: &str) {
    client
        .goto(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
}

/// A real click (WebDriver), on an element that must be there.
async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// What the server says, as `message`, about an order it refuses.
async fn error_message(server: &Api, body: &str) -> String {
    let res = server.order(body.to_string()).await;
    assert!(res.status().is_client_error(), "{} accepted", res.status());
    let error: Value = res.json().await.expect("a JSON error");
    error["message"]
        .as_str()
        .expect("an error message")
        .to_string()
}

/// The page fits its viewport across (no sideways scrolling), and the board
/// and the kitchen, screens on a wall, fit it entirely.
async fn assert_fits(client: &Client, page: &str) {
    let size = js(
        client,
        "const d = document.documentElement;\
         return [d.scrollWidth, d.scrollHeight, innerWidth, innerHeight]",
    )
    .await;
    let n = |i: usize| size[i].as_u64().unwrap_or_default();
    assert!(n(0) <= n(2), "{page} scrolls sideways: {size}");
    if page == "board" || page == "kitchen" {
        assert!(n(1) <= n(3), "{page} is taller than the screen: {size}");
    }
}

/// Everything the page loaded came from the server itself: no CDN, no fonts.
async fn assert_offline(client: &Client, page: &str) {
    let foreign = js(
        client,
        "return performance.getEntriesByType('resource')\
         .map(e => e.name).filter(n => !n.startsWith(location.origin))",
    )
    .await;
    assert_eq!(foreign, json!([]), "{page} loaded outside resources");
}

/// Saves a screenshot in `target/screenshots/` and checks it is the right
/// size and not blank.
async fn screenshot(client: &Client, page: &str, (width, height): (u32, u32)) {
    // Let one-off animations (a tile popping in) finish; endless ones (the
    // pulse of a fresh number, the blinking dot) do not count.
    wait_js(
        client,
        "the page's animations to settle before a screenshot",
        "return document.getAnimations().every(a => a.playState !== 'running'\
         || a.effect.getComputedTiming().endTime === Infinity)",
    )
    .await;
    let png = client.screenshot().await.expect("screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    let path = dir.join(format!("{page}-{width}x{height}.png"));
    std::fs::write(&path, &png).expect("write screenshot");

    let mut decoder = png::Decoder::new(Cursor::new(&png));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("frame size")];
    let info = reader.next_frame(&mut pixels).expect("PNG pixels");
    assert_eq!(
        (info.width, info.height),
        (width, height),
        "{} has the wrong size",
        path.display()
    );

    let channels = info.color_type.samples();
    let mut colours = HashSet::new();
    let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0f64);
    for px in pixels[..info.buffer_size()].chunks_exact(channels) {
        let rgb = if channels >= 3 {
            [px[0], px[1], px[2]]
        } else {
            [px[0]; 3]
        };
        colours.insert(rgb);
        let luma =
            0.2126 * f64::from(rgb[0]) + 0.7152 * f64::from(rgb[1]) + 0.0722 * f64::from(rgb[2]);
        sum += luma;
        sum_sq += luma * luma;
        count += 1.0;
    }
    let mean = sum / count;
    let spread = (sum_sq / count - mean * mean).max(0.0).sqrt();
    assert!(
        colours.len() > 16 && spread > 5.0,
        "{} looks blank: {} colours, luminance spread {spread:.1}",
        path.display(),
        colours.len()
    );
}
