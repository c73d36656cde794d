//! A restaurant's identity, and the one check of an order against it.
//!
//! A restaurant gets a random identity when its store is created (the file
//! store keeps it in `restaurant_id`; a database keeps the same string in a
//! `restaurant_id` column). Every order message a server publishes carries
//! it, so a worker can tell an order of its own restaurant from one of
//! another restaurant that shares the broker, and from a message that
//! carries none (published by hand, or by a fastfood from before there were
//! identities). [`RestaurantId::admits`] is the only place that decides.
//! Pure, but for the CSPRNG that draws a new identity.

use std::fmt;
use std::sync::Arc;

/// The longest identity accepted from a file, a database or a message.
pub const MAX_LEN: usize = 64;

/// A restaurant's identity: 1 to [`MAX_LEN`] ASCII letters, digits, `-` or
/// `_`. New ones are 32 lowercase hex digits (128 random bits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RestaurantId(Arc<str>);

/// The operating system could not give random bytes.
#[derive(Debug, thiserror::Error)]
#[error("no random numbers for a restaurant identity: {0}")]
pub struct NoRandomness(getrandom::Error);

/// What a delivered order says about the restaurant it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// It never left this process (the in-process queue): this restaurant's.
    Local,
    /// It came through a broker, carrying this identity, or none.
    Carried(Option<String>),
}

/// What the check of a delivered order against this restaurant found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It is this restaurant's order.
    Ours,
    /// It carries no identity: published by hand or by an older fastfood.
    /// Whether it is ours only the store can tell (by its ticket).
    Unstamped,
    /// It belongs to another restaurant (the identity it carries, cut to
    /// [`MAX_LEN`] characters): it must go back untouched, for that
    /// restaurant's workers.
    Foreign(String),
}

impl RestaurantId {
    /// A new identity from the OS's CSPRNG.
    pub fn generate() -> Result<RestaurantId, NoRandomness> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(NoRandomness)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(RestaurantId(hex.into()))
    }

    /// An identity as a file, a database or a message holds it (surrounding
    /// white space aside); `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<RestaurantId, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("it is empty".to_owned());
        }
        if text.len() > MAX_LEN {
            return Err(format!("it is longer than {MAX_LEN} characters"));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(format!(
                "it holds {c:?}; an identity is letters, digits, - and _"
            ));
        }
        Ok(RestaurantId(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The one check: whether an order stamped `stamp` may be handled by a
    /// worker of this restaurant.
    pub fn admits(&self, stamp: &Stamp) -> Admission {
        match stamp {
            Stamp::Local => Admission::Ours,
            Stamp::Carried(None) => Admission::Unstamped,
            Stamp::Carried(Some(carried)) if carried.trim() == self.as_str() => Admission::Ours,
            Stamp::Carried(Some(carried)) => {
                Admission::Foreign(carried.chars().take(MAX_LEN).collect())
            }
        }
    }
}

impl fmt::Display for RestaurantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RestaurantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RestaurantId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_identity_is_random_hex_and_parses_back() {
        let a = RestaurantId::generate().unwrap();
        let b = RestaurantId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(RestaurantId::parse(&format!("{a}\n")).unwrap(), a);
        for bad in ["", "  ", "a b", "é", "x/y", &"a".repeat(65)] {
            assert!(RestaurantId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RestaurantId::parse("pg-restaurant_1").is_ok());
    }

    #[test]
    fn only_an_order_carrying_another_identity_is_foreign() {
        let ours = RestaurantId::parse("aaaa").unwrap();
        assert_eq!(ours.admits(&Stamp::Local), Admission::Ours);
        assert_eq!(
            ours.admits(&Stamp::Carried(Some("aaaa".into()))),
            Admission::Ours
        );
        assert_eq!(ours.admits(&Stamp::Carried(None)), Admission::Unstamped);
        assert_eq!(
            ours.admits(&Stamp::Carried(Some("bbbb".into()))),
            Admission::Foreign("bbbb".into())
        );
        let long = "x".repeat(1000);
        assert_eq!(
            ours.admits(&Stamp::Carried(Some(long))),
            Admission::Foreign("x".repeat(MAX_LEN))
        );
    }
}
