//! The pages in a real browser: headless Chromium, driven through chromedriver
//! (WebDriver) with fantoccini, against the real `fastfood` binary.
//!
//! One customer's journey across two windows, the lobby board and the kiosk:
//! order, see the number on the board, see it move to "Ready for pickup",
//! collect it, see it leave. Then the board when the server dies and comes
//! back, and screenshots of both pages at TV (1920×1080) and phone (390×844)
//! sizes in `target/screenshots/`, checked to be neither blank nor overflowing.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: `apt-get install
//! chromium chromium-driver`). Without them the test prints `SKIPPED: ...` and
//! passes, unless `FASTFOOD_REQUIRE_BROWSER=1`, where it fails.

use std::collections::HashSet;
use std::io::Cursor;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::support::{Api, ServerProcess, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TV: (u32, u32) = (1920, 1080);
const PHONE: (u32, u32) = (390, 844);
/// The longest any wait for a page to show something may take.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_and_kiosk_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().expect("temp dir");
    let profiles = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::spawn(data.path(), &["--prep-time", "2s"]).await;
    let (_driver, driver_url) = start_chromedriver();
    let tv = open_browser(&driver_url, TV, &profiles.path().join("tv")).await;
    let phone = open_browser(&driver_url, PHONE, &profiles.path().join("phone")).await;

    // Run the checks in a task so that a failure still closes both browsers
    // (dropping chromedriver alone could leave Chromium running).
    let outcome = tokio::spawn(journey(
        tv.clone(),
        phone.clone(),
        server,
        data.path().to_owned(),
    ))
    .await;
    let _ = tv.close().await;
    let _ = phone.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
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
    goto(&tv, &format!("{base}/kiosk")).await;

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

    // ------------------------------------------------------------ collect
    tv.switch_to_window(kiosk.clone()).await.expect("switch");
    wait_js(
        &tv,
        "the kiosk to show the order ready, with the collect button on",
        "return document.querySelector('#ticket-view').dataset.status === 'READY'\
         && !document.querySelector('#collect').disabled",
    )
    .await;
    assert_fits(&tv, "kiosk").await;
    assert_offline(&tv, "kiosk").await;
    screenshot(&tv, "kiosk", TV).await;
    click(&tv, "#collect").await;
    wait_js(
        &tv,
        "the kiosk to show the order collected",
        "return document.querySelector('#ticket-view').dataset.status === 'COLLECTED'",
    )
    .await;
    let after = server.order_json(number as u32).await;
    assert_eq!(after["status"], "COLLECTED");

    tv.switch_to_window(board.clone()).await.expect("switch");
    wait_js(
        &tv,
        "the collected number to leave the board",
        &format!("return !document.querySelector('#columns li[data-order=\"{number}\"]')"),
    )
    .await;

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

    goto(&phone, &format!("{base}/kiosk")).await;
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

/// The page fits its viewport across (no sideways scrolling), and the board,
/// a screen on a wall, fits it entirely.
async fn assert_fits(client: &Client, page: &str) {
    let size = js(
        client,
        "const d = document.documentElement;\
         return [d.scrollWidth, d.scrollHeight, innerWidth, innerHeight]",
    )
    .await;
    let n = |i: usize| size[i].as_u64().unwrap_or_default();
    assert!(n(0) <= n(2), "{page} scrolls sideways: {size}");
    if page == "board" {
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
