//! Pickup codes: the secret printed on a customer's receipt that `/take`
//! and `/cancel` ask for, so that a ticket number (shown on every board)
//! is not enough to collect somebody else's food. Pure but for drawing a
//! new code from the operating system's CSPRNG.
//!
//! A code is six decimal digits (a million possibilities): short enough to
//! read off a receipt and type on a phone. It is shown as `482913`, and
//! typed as `482913`, `482 913` or `482-913`. Only the store keeps it
//! (see [`crate::store`]); its `Debug` form hides the digits, so a code
//! never reaches a log line by accident.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// How many digits a code has.
pub const DIGITS: usize = 6;
/// How many codes there are: 10^DIGITS.
const CODES: u32 = 1_000_000;

/// A pickup code: six ASCII digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PickupCode([u8; DIGITS]);

/// The operating system could not give random bytes.
#[derive(Debug, thiserror::Error)]
#[error("no random numbers for a pickup code: {0}")]
pub struct NoRandomness(getrandom::Error);

impl PickupCode {
    /// A new code, uniform over the million, from the OS's CSPRNG.
    pub fn generate() -> Result<PickupCode, NoRandomness> {
        // Rejection sampling: the top few values of a u32 would make the
        // low codes a little likelier than the others.
        let limit = u32::MAX - u32::MAX % CODES;
        loop {
            let n = getrandom::u32().map_err(NoRandomness)?;
            if n < limit {
                return Ok(PickupCode::from_number(n % CODES));
            }
        }
    }

    fn from_number(mut n: u32) -> PickupCode {
        let mut digits = [b'0'; DIGITS];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        PickupCode(digits)
    }

    /// A code as a customer types it: six digits, possibly split in two
    /// halves by one space or hyphen (`482 913`, `482-913`), with spaces
    /// around. `None` for anything else.
    pub fn parse(text: &str) -> Option<PickupCode> {
        let text = text.trim();
        let bytes = text.as_bytes();
        let digits: Vec<u8> = match bytes.len() {
            DIGITS => bytes.to_vec(),
            7 if matches!(bytes[3], b' ' | b'-') => [&bytes[..3], &bytes[4..]].concat(),
            _ => return None,
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(PickupCode(digits.try_into().expect("six digits")))
    }

    /// Whether `given` is this code, in time that does not depend on where
    /// they differ.
    pub fn matches(&self, given: &PickupCode) -> bool {
        self.0.ct_eq(&given.0).into()
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }
}

impl fmt::Display for PickupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hidden: a code must not reach a log through `{:?}`.
impl fmt::Debug for PickupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PickupCode(******)")
    }
}

impl Serialize for PickupCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PickupCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match text.as_bytes() {
            b if b.len() == DIGITS && b.iter().all(u8::is_ascii_digit) => {
                Ok(PickupCode::parse(&text).expect("six digits"))
            }
            _ => Err(serde::de::Error::custom(
                "a pickup code is six digits, such as \"482913\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_typed_three_ways() {
        let code = PickupCode::generate().unwrap();
        assert_eq!(code.as_str().len(), 6);
        assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
        let right = PickupCode::parse("482913").unwrap();
        for typed in ["482913", "482 913", "482-913", " 482913 "] {
            assert!(right.matches(&PickupCode::parse(typed).unwrap()), "{typed}");
        }
        assert!(!right.matches(&PickupCode::parse("482914").unwrap()));
        for bad in [
            "", "48291", "4829133", "48 2913", "482_913", "abcdef", "482  913",
        ] {
            assert!(PickupCode::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(PickupCode::from_number(7).as_str(), "000007");
        assert_eq!(format!("{right:?}"), "PickupCode(******)");
        assert_eq!(serde_json::to_string(&right).unwrap(), "\"482913\"");
        assert!(serde_json::from_str::<PickupCode>("\"482 913\"").is_err());
    }

    #[test]
    fn codes_are_spread_over_the_million() {
        let codes: std::collections::HashSet<_> = (0..1000)
            .map(|_| PickupCode::generate().unwrap().to_string())
            .collect();
        // Two draws in a thousand may collide (about 40% of the time one
        // pair does); a broken generator repeats far more.
        assert!(codes.len() > 990, "{}", codes.len());
    }
}
