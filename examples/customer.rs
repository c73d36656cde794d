//! A customer: orders, follows the lobby board until their number is READY,
//! and collects it.
//!
//! ```text
//! cargo run --release -- serve --prep-time 3s        # in one terminal
//! cargo run --example customer -- "2 burgers, 1 cola" # in another
//! ```
//!
//! The server is `FASTFOOD_URL` (default `http://127.0.0.1:7777`).

use fastfood::rush::sse;
use futures_util::StreamExt;
use serde_json::Value;

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let base = std::env::var("FASTFOOD_URL").unwrap_or_else(|_| "http://127.0.0.1:7777".into());
    let words: Vec<String> = std::env::args().skip(1).collect();
    let wanted = if words.is_empty() {
        "1 cheeseburger".to_owned()
    } else {
        words.join(" ")
    };
    let client = reqwest::Client::new();

    // Watch the board first, so no change can slip by between ordering and watching.
    let board = client
        .get(format!("{base}/updates"))
        .send()
        .await?
        .error_for_status()?;
    let mut events = Box::pin(sse::events(board.bytes_stream(), 64 << 20));

    let response = client
        .post(format!("{base}/order"))
        .body(wanted.clone())
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        return Err(format!("the counter said no: {}", body["message"]).into());
    }
    let ticket = body["order"]
        .as_u64()
        .ok_or("the reply has no ticket number")?;
    let code = body["pickup_code"]
        .as_str()
        .ok_or("the reply has no pickup code")?
        .to_owned();
    println!(
        "ticket {ticket}, pickup code {code}: {wanted} ({} orders ahead, ready about {})",
        body["ahead"], body["estimated_ready_at"]
    );

    let mut last = String::new();
    while let Some(event) = events.next().await {
        // The whole board (first, or after falling behind), or one change.
        let event: Value = serde_json::from_str(&event?.data)?;
        let mine = match event["orders"].as_array() {
            Some(orders) => orders.iter().find(|o| o["order"] == ticket),
            None if event["change"]["order"] == ticket => Some(&event["change"]),
            None => continue,
        };
        let Some(status) = mine.and_then(|o| o["status"].as_str()) else {
            if !last.is_empty() {
                return Err(format!("order {ticket} left the board before we collected it").into());
            }
            continue;
        };
        if status != last {
            println!("  {status}");
            last = status.to_owned();
        }
        if status == "READY" {
            break;
        }
        if status == "CANCELLED" || status == "COLLECTED" {
            return Err(format!("order {ticket} is {status}: nothing to collect").into());
        }
    }

    let response = client
        .post(format!("{base}/take?order={ticket}&code={code}"))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        return Err(format!("could not collect: {}", body["message"]).into());
    }
    println!(
        "collected order {ticket}: {}",
        body["content"].as_str().unwrap_or_default()
    );
    Ok(())
}
