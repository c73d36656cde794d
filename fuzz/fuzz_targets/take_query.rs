//! The ticket number parsers: `parse_ticket` (`GET /orders/N`) and the whole
//! `/take` query handling (`parse_take_query`), on arbitrary text. A ticket
//! comes out only for plain ASCII digits from 1 to u32::MAX; anything else is
//! a 400 JSON error; nothing panics.

#![no_main]

use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // parse_ticket against a plain oracle.
    let expected = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.trim_start_matches('0'))
        .filter(|digits| !digits.is_empty() && digits.len() <= 10)
        .and_then(|digits| digits.parse::<u64>().ok())
        .filter(|n| *n <= u32::MAX as u64)
        .map(|n| n as u32);
    match fastfood::web::parse_ticket(&text) {
        Ok(t) => assert_eq!(Some(t), expected, "{text:?}"),
        Err(e) => {
            assert_eq!(None, expected, "{text:?}: {e}");
            assert_eq!(e.into_response().status(), 400);
        }
    }
    // The query: whatever it holds, a ticket (then `order=` with it is in
    // there) or a 400.
    match fastfood::web::parse_take_query(Some(&text)) {
        Ok(asked) => assert!(
            asked.ticket >= 1 && text.contains("="),
            "{text:?} gave {}",
            asked.ticket
        ),
        Err(e) => assert_eq!(e.into_response().status(), 400, "{text:?}"),
    }
});
