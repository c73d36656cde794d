//! The cross-origin guard's decision, `fastfood::web::foreign`, on arbitrary
//! `Host`, `Origin`, `Sec-Fetch-Site` and request authority. Whatever comes
//! in: no panic; a request without `Origin` and `Sec-Fetch-Site` passes; one
//! with either passes only when its host is one the server answers to, the
//! origin (if any) is that very host, and `Sec-Fetch-Site` (if any) says
//! same-origin or none; a refusal is a short sentence without control
//! characters.
//!
//! Input: the first byte says which of the four fields are present (one bit
//! each) and which server is asked (bit 4: one listening on loopback, or on
//! 10.1.2.3 with --allowed-hosts restaurant.example); the fields follow,
//! separated by 0xFF bytes.

#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use fastfood::web::{Hosts, foreign};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|b| *b == 0xFF);
    let mut next = |bit: u8| {
        let field = fields.next().unwrap_or_default();
        (which & (1 << bit) != 0).then_some(field)
    };
    let (host, origin, site, authority) = (next(0), next(1), next(2), next(3));
    let hosts = if which & 16 == 0 {
        Hosts::new("127.0.0.1:7777".parse().unwrap(), &[])
    } else {
        Hosts::new("10.1.2.3:7777".parse().unwrap(), &["restaurant.example".to_owned()])
    };
    let mut headers = HeaderMap::new();
    for (name, value) in [("host", host), ("origin", origin), ("sec-fetch-site", site)] {
        if let Some(value) = value {
            let Ok(value) = HeaderValue::from_bytes(value) else {
                return;
            };
            headers.insert(name, value);
        }
    }
    let authority = match authority.map(std::str::from_utf8) {
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => return,
        None => None,
    };
    let verdict = foreign(&headers, authority, &hosts);
    match verdict {
        None if origin.is_none() && site.is_none() => {}
        None => {
            let host = match headers.get("host") {
                Some(h) => h.to_str().expect("a passing Host is text"),
                None => authority.expect("a passing request has a host"),
            };
            assert!(hosts.answers_to(host), "{host:?} passed");
            if let Some(origin) = headers.get("origin") {
                let origin = origin.to_str().expect("a passing Origin is text");
                let (_, from) = origin.split_once("://").expect("an origin with a scheme");
                assert!(from.eq_ignore_ascii_case(host), "{origin:?} passed for {host:?}");
            }
            if let Some(site) = headers.get("sec-fetch-site") {
                assert!(matches!(site.as_bytes(), b"same-origin" | b"none"), "{site:?} passed");
            }
        }
        Some(why) => {
            assert!(origin.is_some() || site.is_some(), "refused a request of no browser");
            // A sentence, quoting at most 80 characters of what was sent,
            // each escaped in at most 10 (`\u{10ffff}`).
            assert!(why.chars().count() < 1100, "{why}");
            assert!(!why.chars().any(char::is_control), "{why:?}");
        }
    }
});
