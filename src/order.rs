//! An order and the one-way life of its status: `TAKEN → PREPARING → READY →
//! COLLECTED`, or `TAKEN → CANCELLED` (the customer cancelled, or the queue
//! refused it), or `PREPARING → CANCELLED` when the kitchen sets a poison
//! order aside ([`Order::set_aside`]). [`step_allowed`] is that rule, once.
//! Pure: no I/O.

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
    /// Withdrawn: before anyone cooked it (the customer cancelled, or the
    /// queue refused the order after it was numbered and the customer got an
    /// error instead of a ticket), or set aside by the kitchen after too many
    /// deliveries (see [`CancelledBy`]).
    Cancelled,
}

/// Who cancelled an order. Absent on orders cancelled because the queue
/// refused them (their customer never got a ticket) and on orders from
/// before this field existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelledBy {
    /// The customer, with `/cancel`, while it was TAKEN.
    Customer,
    /// The kitchen: it was delivered `--max-deliveries` times without being
    /// finished (a poison order) and was set aside while PREPARING.
    Kitchen,
}

/// Whether an order may go from `from` to `to`, cancelled by `by` when `to`
/// is CANCELLED: the one rule that taking a step ([`Order::advanced`],
/// [`Order::set_aside`]) and replaying the store's files both follow. Only
/// the kitchen cancels a PREPARING order, and the kitchen cancels nothing
/// else.
pub fn step_allowed(from: Status, to: Status, by: Option<CancelledBy>) -> bool {
    match (from, to) {
        (Status::Preparing, Status::Cancelled) => by == Some(CancelledBy::Kitchen),
        (Status::Taken, Status::Cancelled) => by != Some(CancelledBy::Kitchen),
        _ => from.can_become(to),
    }
}

impl Status {
    /// Whether anyone but the kitchen's set-aside may move an order from
    /// `self` to `next`. Statuses only move forward. (PREPARING → CANCELLED
    /// is the set-aside's alone: see [`step_allowed`].)
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
    /// The kitchen worker that claimed it last, as its lane on `/kitchen`
    /// names it: `worker 2 (pid 4121)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// How many times a worker took it from the queue to prepare it: 1, or
    /// more when a worker died or gave it back and another took it again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deliveries: u32,
    /// The workers that had it before the last claim and did not finish it
    /// (they died, or gave it back), oldest first; at most
    /// [`DROPPED_BY_KEPT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_by: Vec<String>,
    /// Who cancelled it, when it is CANCELLED (see [`CancelledBy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<CancelledBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
    /// When it left the restaurant: collected, or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
}

/// The most workers an order's `dropped_by` names: the first ones (the
/// kitchen sets an order aside long before, at `--max-deliveries`).
pub const DROPPED_BY_KEPT: usize = 100;

fn is_zero(n: &u32) -> bool {
    *n == 0
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
            worker: None,
            deliveries: 0,
            dropped_by: Vec::new(),
            cancelled_by: None,
            ready_at: None,
            closed_at: None,
        }
    }

    /// This order claimed by `worker` (TAKEN → PREPARING), or claimed again
    /// (PREPARING, left by a worker that died or gave it back): stamped with
    /// the time, the worker's name and one more delivery.
    pub fn claimed(&self, worker: &str, at: Timestamp) -> Result<Order, IllegalStep> {
        let mut next = match self.status {
            Status::Preparing => {
                let mut again = self.clone();
                if let Some(before) = &self.worker
                    && again.dropped_by.len() < DROPPED_BY_KEPT
                {
                    again.dropped_by.push(before.clone());
                }
                again
            }
            _ => self.advanced(Status::Preparing, at)?,
        };
        next.preparing_at = Some(at);
        next.worker = Some(worker.to_owned());
        next.deliveries = self.deliveries.saturating_add(1);
        Ok(next)
    }

    /// This order set aside by the kitchen (PREPARING → CANCELLED, cancelled
    /// by the kitchen): it was delivered as often as the kitchen allows and
    /// never finished, so it is a poison order.
    /// The worker that claimed it last did not finish it either: it joins
    /// `dropped_by`.
    pub fn set_aside(&self, at: Timestamp) -> Result<Order, IllegalStep> {
        let mut next = self.step(Status::Cancelled, Some(CancelledBy::Kitchen), at)?;
        if let Some(last) = &self.worker
            && next.dropped_by.len() < DROPPED_BY_KEPT
        {
            next.dropped_by.push(last.clone());
        }
        Ok(next)
    }

    /// This order one step further on, stamped with the time of the step;
    /// a cancel is the customer's (or the counter's, when the queue
    /// refused the order: `cancelled_by` stays absent, see [`CancelledBy`]).
    pub fn advanced(&self, to: Status, at: Timestamp) -> Result<Order, IllegalStep> {
        self.step(to, None, at)
    }

    /// This order cancelled by its customer (TAKEN → CANCELLED).
    pub fn cancelled_by_customer(&self, at: Timestamp) -> Result<Order, IllegalStep> {
        self.step(Status::Cancelled, Some(CancelledBy::Customer), at)
    }

    fn step(
        &self,
        to: Status,
        by: Option<CancelledBy>,
        at: Timestamp,
    ) -> Result<Order, IllegalStep> {
        if !step_allowed(self.status, to, by) {
            return Err(IllegalStep {
                ticket: self.ticket,
                from: self.status,
                to,
            });
        }
        let mut next = self.clone();
        next.status = to;
        if to == Status::Cancelled {
            next.cancelled_by = by;
        }
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
    #[error(
        "the order has nothing visible in it (only spaces, zero-width or other invisible characters): say what you would like"
    )]
    Invisible,
    #[error("the order is {0} characters long; at most {MAX_CONTENT_CHARS} fit on a ticket")]
    TooLong(usize),
    #[error("the order must be text (UTF-8)")]
    NotText,
    #[error("the order must be sent as UTF-8, not {0}")]
    Charset(String),
    #[error(
        "the order holds a control character (U+{code:04X}, character {at}): send plain text; new lines and tabs are fine"
    )]
    Control {
        /// The character's code point.
        code: u32,
        /// Where it is, counted in characters from 1.
        at: usize,
    },
}

/// The text of an order as it arrives: the request body and its declared
/// `Content-Type`, if any. This one function is every rule an order's text
/// goes through, so the fuzz target and the unit tests check all of them:
///
/// 1. a `charset` other than UTF-8 (or US-ASCII, a part of it) is refused
///    ([`ContentError::Charset`]): decoding it as UTF-8 would store mangled
///    text;
/// 2. the body must be UTF-8; a leading byte order mark is dropped (an
///    editor's encoding marker, not part of the order);
/// 3. new lines (`\n`, `\r\n`) and tabs are kept; any other control
///    character (NUL, ESC and so ANSI escape sequences, a lone `\r`, DEL,
///    C1) is refused, not stripped: on a screen or in a terminal log it
///    would hide or rewrite text, and stripping it would change the order
///    behind the customer's back;
/// 4. whitespace (and any byte order mark) around the order is trimmed, so
///    normalising twice gives the same text; then it must hold something
///    visible: not only whitespace, zero-width or other default-ignorable
///    characters (the BOM, joiners, variation selectors, Hangul fillers),
///    combining marks with nothing to sit on, or U+2800 (a blank braille
///    cell). Such characters are kept inside visible text (an emoji
///    sequence needs its joiners);
/// 5. at most [`MAX_CONTENT_CHARS`] characters remain.
pub fn parse_content(content_type: Option<&[u8]>, body: &[u8]) -> Result<String, ContentError> {
    if let Some(charset) = content_type.and_then(declared_charset)
        && !["utf-8", "utf8", "us-ascii"]
            .iter()
            .any(|utf8| charset.eq_ignore_ascii_case(utf8))
    {
        // Named when it is a charset's name; anything else is not repeated.
        let name = charset.len() <= 40
            && charset
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+".contains(&b));
        let shown = match name {
            true => format!("charset {charset}"),
            false => "the charset it names".to_owned(),
        };
        return Err(ContentError::Charset(shown));
    }
    let text = std::str::from_utf8(body).map_err(|_| ContentError::NotText)?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut chars = text.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        let line_end = c == '\r' && chars.peek().is_some_and(|(_, next)| *next == '\n');
        if c.is_control() && !matches!(c, '\n' | '\t') && !line_end {
            return Err(ContentError::Control {
                code: c as u32,
                at: i + 1,
            });
        }
    }
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{FEFF}');
    if text.is_empty() {
        return Err(ContentError::Empty);
    }
    if !text.chars().any(visible) {
        return Err(ContentError::Invisible);
    }
    match text.chars().count() {
        n if n > MAX_CONTENT_CHARS => Err(ContentError::TooLong(n)),
        _ => Ok(text.to_owned()),
    }
}

/// The `charset` parameter of a `Content-Type` value, unquoted.
fn declared_charset(content_type: &[u8]) -> Option<String> {
    let value = String::from_utf8_lossy(content_type);
    value.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Whether a character shows something on its own: not whitespace, not a
/// control, not default-ignorable (Unicode's list of characters that render
/// as nothing), not a combining mark, not a blank braille cell.
fn visible(c: char) -> bool {
    use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
    use icu_properties::{CodePointMapData, CodePointSetData};
    !(c.is_whitespace()
        || c.is_control()
        || c == '\u{2800}'
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || matches!(
            CodePointMapData::<GeneralCategory>::new().get(c),
            GeneralCategory::NonspacingMark
                | GeneralCategory::EnclosingMark
                | GeneralCategory::Format
        ))
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
    fn only_the_kitchen_cancels_a_preparing_order_and_only_that() {
        use Status::*;
        let kitchen = Some(CancelledBy::Kitchen);
        let customer = Some(CancelledBy::Customer);
        assert!(step_allowed(Preparing, Cancelled, kitchen));
        assert!(!step_allowed(Preparing, Cancelled, customer));
        assert!(!step_allowed(Preparing, Cancelled, None));
        assert!(!step_allowed(Taken, Cancelled, kitchen));
        assert!(step_allowed(Taken, Cancelled, customer));
        assert!(step_allowed(Taken, Cancelled, None));
        assert!(!step_allowed(Ready, Cancelled, kitchen));

        let at = Timestamp::now();
        let taken = Order::new(3, "poison".into(), at);
        assert!(taken.set_aside(at).is_err(), "nobody cooks a TAKEN order");
        let claimed = taken.claimed("worker 1 (pid 10)", at).unwrap();
        let again = claimed.claimed("worker 1 (pid 11)", at).unwrap();
        assert_eq!(again.dropped_by, ["worker 1 (pid 10)"]);
        assert_eq!(again.deliveries, 2);
        let aside = again.set_aside(at).unwrap();
        assert_eq!(aside.dropped_by, ["worker 1 (pid 10)", "worker 1 (pid 11)"]);
        assert_eq!(
            (aside.status, aside.cancelled_by, aside.closed_at),
            (Cancelled, kitchen, Some(at))
        );
        assert!(
            again.cancelled_by_customer(at).is_err(),
            "too late for the customer"
        );
        let by_customer = taken.cancelled_by_customer(at).unwrap();
        assert_eq!(by_customer.cancelled_by, customer);
        let json = serde_json::to_value(&aside).unwrap();
        assert_eq!(json["cancelled_by"], "kitchen");
        // An order written before the field existed reads as cancelled by
        // nobody in particular.
        let mut old = serde_json::to_value(&by_customer).unwrap();
        old.as_object_mut().unwrap().remove("cancelled_by");
        let old: Order = serde_json::from_value(old).unwrap();
        assert_eq!(old.cancelled_by, None);
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
        let parse = |text: &str| parse_content(None, text.as_bytes());
        assert_eq!(parse("  burger \n"), Ok("burger".into()));
        assert_eq!(parse(" \t\n"), Err(ContentError::Empty));
        assert!(parse(&"é".repeat(1000)).is_ok());
        assert_eq!(parse(&"é".repeat(1001)), Err(ContentError::TooLong(1001)));
    }

    #[test]
    fn an_order_must_show_something() {
        let parse = |text: &str| parse_content(None, text.as_bytes());
        for invisible in [
            "\u{200B}",
            "\u{FEFF}\u{200B}\u{FEFF}",
            " \u{200B}\u{200C}\u{200D}\u{2060} ",
            "\u{00AD}",
            "\u{3164}\u{115F}",
            "\u{FE0F}",
            "\u{0301}\u{20DD}",
            "\u{2800}",
            "\u{202E}\u{2066}",
            "\u{E0041}",
        ] {
            assert_eq!(
                parse(invisible),
                Err(ContentError::Invisible),
                "{invisible:?}"
            );
        }
        assert_eq!(parse("\u{FEFF}"), Err(ContentError::Empty), "a BOM alone");
        assert_eq!(
            parse("\u{FEFF}\u{FEFF} "),
            Err(ContentError::Empty),
            "BOMs alone"
        );
        assert_eq!(parse("\u{FEFF} \u{FEFF}x\u{FEFF}"), Ok("x".into()));
        // Inside visible text, joiners and marks stay.
        assert_eq!(parse("👨\u{200D}🍳 ok"), Ok("👨\u{200D}🍳 ok".into()));
        assert_eq!(parse("cafe\u{0301}"), Ok("cafe\u{0301}".into()));
        assert_eq!(parse("❤\u{FE0F}"), Ok("❤\u{FE0F}".into()));
    }

    #[test]
    fn a_leading_bom_goes_and_control_characters_are_refused() {
        let parse = |text: &str| parse_content(None, text.as_bytes());
        assert_eq!(parse("\u{FEFF}fries"), Ok("fries".into()));
        assert_eq!(parse("fries\r\n cola\t2"), Ok("fries\r\n cola\t2".into()));
        for (text, code, at) in [
            ("fr\0ies", 0, 3),
            ("\u{1b}[31mred\u{1b}[0m", 0x1b, 1),
            ("a\rb", 0x0d, 2),
            ("del\u{7f}", 0x7f, 4),
            ("c1 \u{9b}31m", 0x9b, 4),
            ("\u{FEFF}\u{7}", 7, 1),
        ] {
            assert_eq!(
                parse(text),
                Err(ContentError::Control { code, at }),
                "{text:?}"
            );
        }
        let err = parse("x\u{1b}").unwrap_err().to_string();
        assert!(
            err.contains("U+001B") && err.contains("character 2"),
            "{err}"
        );
    }

    #[test]
    fn only_utf8_is_read() {
        let parse = |ct: &str, body: &[u8]| parse_content(Some(ct.as_bytes()), body);
        assert_eq!(parse("text/plain", b"fries"), Ok("fries".into()));
        assert_eq!(
            parse("text/plain; charset=UTF-8", b"fries"),
            Ok("fries".into())
        );
        assert_eq!(
            parse("text/plain;charset=\"utf8\"", b"fries"),
            Ok("fries".into())
        );
        assert_eq!(
            parse("text/plain; charset=US-ASCII", b"fries"),
            Ok("fries".into())
        );
        assert_eq!(
            parse("text/plain; Charset=utf-16le", b"f\0r\0"),
            Err(ContentError::Charset("charset utf-16le".into()))
        );
        assert_eq!(
            parse("text/plain; charset=iso-8859-1", b"caf\xe9"),
            Err(ContentError::Charset("charset iso-8859-1".into()))
        );
        assert_eq!(parse_content(None, b"caf\xe9"), Err(ContentError::NotText));
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
