//! The order text rule, `fastfood::order::parse_content`, on an arbitrary
//! `Content-Type` and body. Whatever comes in: no panic; an accepted order
//! is the body's own text, trimmed, 1 to 1000 characters, holding no
//! control character but new lines and tabs; normalising it again gives it
//! back unchanged; a refusal names its reason (not UTF-8 only when the body is
//! not, a charset only when one was declared).
//!
//! Input: the first byte is the length of the `Content-Type` value (255:
//! none), then that value, then the body.

#![no_main]

use fastfood::order::{ContentError, MAX_CONTENT_CHARS, parse_content};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let (content_type, body) = match len {
        255 => (None, rest),
        n => {
            let n = (n as usize).min(rest.len());
            (Some(&rest[..n]), &rest[n..])
        }
    };
    match parse_content(content_type, body) {
        Ok(text) => {
            let whole = std::str::from_utf8(body).expect("accepted text was UTF-8");
            assert!(whole.contains(&text), "{text:?} is not from {whole:?}");
            let chars = text.chars().count();
            assert!((1..=MAX_CONTENT_CHARS).contains(&chars), "{chars} characters");
            assert_eq!(text, text.trim(), "trimmed");
            assert!(!text.starts_with('\u{FEFF}'), "{text:?}");
            let mut it = text.chars().peekable();
            while let Some(c) = it.next() {
                let line_end = c == '\r' && it.peek() == Some(&'\n');
                assert!(
                    !c.is_control() || matches!(c, '\n' | '\t') || line_end,
                    "{text:?} holds {c:?}"
                );
            }
            assert_eq!(parse_content(None, text.as_bytes()), Ok(text.clone()), "idempotent");
        }
        Err(ContentError::NotText) => assert!(std::str::from_utf8(body).is_err()),
        Err(ContentError::Charset(shown)) => {
            // At most 40 characters, each escaped in at most 10 (`\u{10ffff}`).
            assert!(content_type.is_some() && shown.chars().count() <= 400, "{shown:?}");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
