//! An order and the one-way life of its status: `TAKEN → PREPARING → READY →
//! COLLECTED` (or `TAKEN → CANCELLED` when the queue refused it). Pure: no I/O.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A ticket number, as printed on the customer's receipt.
pub type Ticket = u32;

/// The most characters an order may hold, after trimming.
pub const MAX_CONTENT_CHARS: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Taken,
    Preparing,
    Ready,
    Collected,
    /// Withdrawn before anyone cooked it: the queue refused the order after it
    /// was numbered, and the customer got an error instead of a ticket.
    Cancelled,
}

impl Status {
    /// Whether an order may go from `self` to `next`. Statuses only move forward.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Taken, Preparing) | (Preparing, Ready) | (Ready, Collected) | (Taken, Cancelled)
        )
    }

    /// Whether an order with this status is still in the restaurant (on the board).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Taken | Status::Preparing | Status::Ready)
    }

    /// How far along the kitchen's line an order is: TAKEN 0, PREPARING 1,
    /// READY 2, COLLECTED 3, CANCELLED 4 (out of the line, after everything).
    pub fn rank(self) -> u8 {
        match self {
            Status::Taken => 0,
            Status::Preparing => 1,
            Status::Ready => 2,
            Status::Collected => 3,
            Status::Cancelled => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Taken => "TAKEN",
            Status::Preparing => "PREPARING",
            Status::Ready => "READY",
            Status::Collected => "COLLECTED",
            Status::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time, written as RFC 3339 UTC with milliseconds
/// (`2026-11-21T08:00:00.123Z`): readable in `jq` and by `new Date()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(SystemTime::now())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339(&text)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("bad timestamp {text:?}: {e}")))
    }
}

/// One customer's order, exactly as the API shows it and the store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The ticket number; `order` in JSON, as the API has always called it.
    #[serde(rename = "order")]
    pub ticket: Ticket,
    pub status: Status,
    pub content: String,
    pub taken_at: Timestamp,
    /// The message broker confirmed it holds this order (RabbitMQ mode only).
    /// A TAKEN order that never got this far, because its server died between
    /// storing and queueing it, is found and queued again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preparing_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
    /// When it left the restaurant: collected, or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
}

/// A step the rules forbid, such as READY → PREPARING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("order {ticket} cannot go from {from} to {to}")]
pub struct IllegalStep {
    pub ticket: Ticket,
    pub from: Status,
    pub to: Status,
}

impl Order {
    /// A newly taken order.
    pub fn new(ticket: Ticket, content: String, at: Timestamp) -> Self {
        Order {
            ticket,
            status: Status::Taken,
            content,
            taken_at: at,
            queued: false,
            preparing_at: None,
            ready_at: None,
            closed_at: None,
        }
    }

    /// This order one step further on, stamped with the time of the step.
    pub fn advanced(&self, to: Status, at: Timestamp) -> Result<Order, IllegalStep> {
        if !self.status.can_become(to) {
            return Err(IllegalStep {
                ticket: self.ticket,
                from: self.status,
                to,
            });
        }
        let mut next = self.clone();
        next.status = to;
        match to {
            Status::Preparing => next.preparing_at = Some(at),
            Status::Ready => next.ready_at = Some(at),
            Status::Collected | Status::Cancelled => next.closed_at = Some(at),
            Status::Taken => unreachable!("nothing becomes TAKEN"),
        }
        Ok(next)
    }
}

/// Why an order's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("the order is empty: say what you would like")]
    Empty,
    #[error("the order is {0} characters long; at most {MAX_CONTENT_CHARS} fit on a ticket")]
    TooLong(usize),
}

/// The text of an order as the customer typed it, trimmed and checked.
pub fn parse_content(text: &str) -> Result<String, ContentError> {
    let text = text.trim();
    let chars = text.chars().count();
    match chars {
        0 => Err(ContentError::Empty),
        n if n > MAX_CONTENT_CHARS => Err(ContentError::TooLong(n)),
        _ => Ok(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        use Status::*;
        let all = [Taken, Preparing, Ready, Collected, Cancelled];
        let legal = [
            (Taken, Preparing),
            (Preparing, Ready),
            (Ready, Collected),
            (Taken, Cancelled),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn advancing_stamps_the_step_and_refuses_going_back() {
        let at = Timestamp::now();
        let taken = Order::new(7, "fries".into(), at);
        let preparing = taken.advanced(Status::Preparing, at).unwrap();
        assert_eq!(preparing.preparing_at, Some(at));
        let ready = preparing.advanced(Status::Ready, at).unwrap();
        assert_eq!(ready.ready_at, Some(at));
        let err = ready.advanced(Status::Preparing, at).unwrap_err();
        assert_eq!(err.to_string(), "order 7 cannot go from READY to PREPARING");
    }

    #[test]
    fn content_is_trimmed_and_counted_in_characters() {
        assert_eq!(parse_content("  burger \n"), Ok("burger".into()));
        assert_eq!(parse_content(" \t\n"), Err(ContentError::Empty));
        assert!(parse_content(&"é".repeat(1000)).is_ok());
        assert_eq!(
            parse_content(&"é".repeat(1001)),
            Err(ContentError::TooLong(1001))
        );
    }

    #[test]
    fn an_order_round_trips_through_json() {
        let order = Order::new(1, "cola".into(), Timestamp::now());
        let json = serde_json::to_string(&order).unwrap();
        assert!(json.starts_with(r#"{"order":1,"status":"TAKEN","content":"cola","taken_at":""#));
        let back: Order = serde_json::from_str(&json).unwrap();
        // Milliseconds survive; finer precision is not kept.
        assert_eq!(back.ticket, 1);
        assert!(
            serde_json::from_str::<Order>(
                r#"{"order":1,"status":"COOKING","content":"x","taken_at":"2026-01-01T00:00:00Z"}"#
            )
            .is_err()
        );
    }
}
