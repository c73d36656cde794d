//! The customer's side: order, look, collect, cancel. Collecting and
//! cancelling need the order's pickup code; the store checks it, and
//! [`super::throttle`] limits the wrong ones.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, Result, body_refused};
use super::throttle::Client;
use crate::order::{CancelledBy, Order, Status, Ticket, parse_content};
use crate::pickup::PickupCode;
use crate::store::{Lookup, Outcome};
use crate::wait::Estimate;

/// The `201` of `POST /order`: the order, its pickup code (the only time it
/// is shown) and the wait.
#[derive(Serialize)]
struct Placed {
    #[serde(flatten)]
    order: Order,
    pickup_code: PickupCode,
    #[serde(flatten)]
    wait: Option<Estimate>,
}

/// `GET /orders/N` while the order is in the restaurant: the order, and
/// while it is TAKEN or PREPARING its wait.
#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    order: Order,
    #[serde(flatten)]
    wait: Option<Estimate>,
}

/// `POST /order`: the body is the order, as text.
pub async fn place(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body.map_err(body_refused)?;
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    let content = parse_content(content_type, &body)?;
    // Run to the end even if the customer hangs up: once an order is numbered
    // and stored, it must be queued (or cancelled), never left half-done.
    let front = app.front.clone();
    let placed = tokio::spawn(async move { front.place(content).await })
        .await
        .map_err(|e| ApiError::Internal(format!("order task failed: {e}")))??;
    crate::crash::here(crate::crash::point::BEFORE_REPLY);
    let location = format!("/orders/{}", placed.order.ticket);
    let wait = app.wait.estimate(&placed.order);
    let body = Placed {
        order: placed.order,
        pickup_code: placed.pickup_code,
        wait,
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// `POST /take?order=N&code=C`: the customer collects a READY order. The
/// parameters may come in an `application/x-www-form-urlencoded` body too
/// (the pages send them so, which keeps the code out of request lines that
/// proxies and access logs keep).
pub async fn collect(
    State(app): State<AppState>,
    client: Client,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Order>> {
    let asked = customer_params(TAKE, query, &headers, body)?;
    match by_customer(&app, client, &asked, Status::Collected).await? {
        Outcome::Changed(order) => Ok(Json(order)),
        Outcome::WrongStatus(order) | Outcome::Unchanged(order) => {
            Err(ApiError::NotReady(Box::new(order)))
        }
        other => Err(refusal(&app, TAKE, asked.ticket, other)),
    }
}

/// `POST /cancel?order=N&code=C` (or the same in a form body): the customer
/// cancels an order the kitchen has not started. The store decides against
/// a worker's claim: of the two, exactly one happens.
pub async fn cancel(
    State(app): State<AppState>,
    client: Client,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Order>> {
    let asked = customer_params(CANCEL, query, &headers, body)?;
    match by_customer(&app, client, &asked, Status::Cancelled).await? {
        Outcome::Changed(order) => {
            tracing::info!("order {} was cancelled by its customer", order.ticket);
            Ok(Json(order))
        }
        Outcome::WrongStatus(order) | Outcome::Unchanged(order) => {
            Err(ApiError::TooLate(Box::new(order)))
        }
        other => Err(refusal(&app, CANCEL, asked.ticket, other)),
    }
}

const TAKE: &str = "/take";
const CANCEL: &str = "/cancel";

/// The parameters of `/take` or `/cancel` (`route`): the query's, and a
/// form body's when there is one, under one rule ([`parse_customer`]). A
/// body of another type is refused (`415`) rather than ignored.
fn customer_params(
    route: &'static str,
    query: Option<String>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<CustomerQuery> {
    let body = body.map_err(body_refused)?;
    if body.is_empty() {
        return parse_customer(route, query.as_deref());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let media = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default();
    if !media
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
    {
        return Err(ApiError::Rejected {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: format!(
                "{route} takes the order and its code in the query or as a form (application/x-www-form-urlencoded), not another body"
            ),
        });
    }
    // A form is ASCII once percent-encoded; anything else is not one.
    let Ok(form) = std::str::from_utf8(&body) else {
        return Err(ApiError::Rejected {
            status: StatusCode::BAD_REQUEST,
            code: "not_text",
            message: format!("{route}'s form must be UTF-8"),
        });
    };
    let all = match query.as_deref() {
        Some(query) if !query.is_empty() => format!("{query}&{form}"),
        _ => form.to_owned(),
    };
    parse_customer(route, Some(&all))
}

/// A customer's step, through the throttle: `429` once too many wrong
/// codes were given for this order (by this client, or by everyone), or by
/// this client.
async fn by_customer(
    app: &AppState,
    client: Client,
    asked: &CustomerQuery,
    to: Status,
) -> Result<Outcome> {
    let ticket = asked.ticket;
    let attempt = app
        .throttle
        .begin(ticket, client)
        .await
        .map_err(|retry_after| ApiError::TooManyAttempts {
            ticket,
            retry_after,
        })?;
    let code = asked.code.as_deref().and_then(PickupCode::parse);
    let outcome = app.front.store.by_customer(ticket, to, code).await;
    let wrong = matches!(outcome, Ok(Outcome::WrongCode));
    app.throttle.finish(attempt, wrong);
    Ok(outcome?)
}

/// The answer to a customer's step that did not happen for a reason other
/// than the order's status.
fn refusal(app: &AppState, route: &'static str, ticket: Ticket, outcome: Outcome) -> ApiError {
    match outcome {
        Outcome::WrongCode => ApiError::WrongCode(ticket, route),
        Outcome::Collected => ApiError::AlreadyCollected(ticket),
        Outcome::Cancelled => match app.front.store.cancelled_by(ticket) {
            Some(CancelledBy::Kitchen) => ApiError::SetAside(ticket),
            _ => ApiError::AlreadyCancelled(ticket),
        },
        Outcome::NotFound => ApiError::NoSuchOrder(ticket),
        Outcome::Full => ApiError::Internal(format!("order {ticket}: unexpected outcome")),
        Outcome::Changed(o)
        | Outcome::ClaimedAgain { order: o, .. }
        | Outcome::OverLimit(o)
        | Outcome::Unchanged(o)
        | Outcome::WrongStatus(o) => {
            ApiError::Internal(format!("order {}: unexpected outcome", o.ticket))
        }
    }
}

/// `GET /orders/N`.
pub async fn show(
    State(app): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Response> {
    // A path that does not decode to text (`/orders/%FF`) is not a ticket
    // number either; axum's own rejection would answer in plain text.
    let Path(raw) = raw.map_err(|_| {
        ApiError::BadTicket(
            "that is not a ticket number; ticket numbers are whole numbers from 1 up".into(),
        )
    })?;
    let ticket = parse_ticket(&raw)?;
    match app.front.store.lookup(ticket) {
        Lookup::Live(order) => {
            let wait = app.wait.estimate(&order);
            Ok(Json(Shown { order, wait }).into_response())
        }
        Lookup::Collected => Ok(Json(
            serde_json::json!({ "order": ticket, "status": Status::Collected }),
        )
        .into_response()),
        Lookup::Cancelled => Ok(Json(Closed {
            order: ticket,
            status: Status::Cancelled,
            cancelled_by: app.front.store.cancelled_by(ticket),
        })
        .into_response()),
        Lookup::Unknown => Err(ApiError::NoSuchOrder(ticket)),
    }
}

/// A cancelled order as `GET /orders/N` shows it once it left: its number,
/// its status, and who cancelled it when known.
#[derive(serde::Serialize)]
struct Closed {
    order: Ticket,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_by: Option<CancelledBy>,
}

/// `GET /orders`: the whole board, written a piece at a time as the
/// socket takes it (a reader that stalls holds one piece, not the board).
pub async fn board(State(app): State<AppState>) -> Response {
    let pieces = futures_util::stream::unfold(app.board.snapshot(), |mut whole| async move {
        let piece = whole.next_piece()?;
        Some((Ok::<_, std::convert::Infallible>(piece), whole))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(pieces),
    )
        .into_response()
}

/// What `/take` and `/cancel` are asked: an order, and the pickup code given
/// for it (as typed; the store decides whether it is the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerQuery {
    pub ticket: Ticket,
    /// `None` when no `code` was given, or more than one.
    pub code: Option<String>,
}

/// The query of `POST /take` and `POST /cancel` (what follows the `?`,
/// still percent-encoded; `None` when there is no `?`): exactly one `order`
/// parameter holding a ticket number, a `code`, and nothing else. Public so
/// the fuzz targets reach it.
///
/// An unknown parameter is refused rather than ignored: collecting hands
/// food over, so a request the server does not fully understand (a typo like
/// `/take?order=7&ordr=8`) must not collect anything. A missing `code` is
/// not refused here: the store answers that, as for a wrong one.
pub fn parse_take_query(query: Option<&str>) -> Result<CustomerQuery> {
    parse_customer(TAKE, query)
}

/// [`parse_take_query`] for `route` (`/take` or `/cancel`), whose refusals
/// name that route.
pub fn parse_customer(route: &str, query: Option<&str>) -> Result<CustomerQuery> {
    // Percent-decoding that yields invalid UTF-8 becomes U+FFFD, which is
    // then refused as not a ticket number. Each value keeps the text that
    // was sent, so a refusal quotes it (`order=+1` decodes to " 1").
    let query = query.unwrap_or("");
    let sent = query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| part.split_once('=').map_or("", |(_, v)| v));
    let pairs: Vec<(String, String, &str)> = form_urlencoded::parse(query.as_bytes())
        .zip(sent)
        .map(|((k, v), sent)| (k.into_owned(), v.into_owned(), sent))
        .collect();
    let ticket = ticket_param(route, &pairs)?;
    if let Some((key, _, _)) = pairs.iter().find(|(k, _, _)| k != "order" && k != "code") {
        let shown: String = key.chars().take(24).flat_map(char::escape_debug).collect();
        return Err(ApiError::Rejected {
            status: StatusCode::BAD_REQUEST,
            code: "unknown_parameter",
            message: format!(
                "{route} takes only the order number and its pickup code (?order=42&code=482913), not \"{shown}\""
            ),
        });
    }
    let mut codes = pairs
        .iter()
        .filter(|(k, _, _)| k == "code")
        .map(|(_, v, _)| v);
    let code = match (codes.next(), codes.next()) {
        (Some(code), None) => Some(code.clone()),
        _ => None,
    };
    Ok(CustomerQuery { ticket, code })
}

/// The `order` parameter: exactly once, a ticket number. A refusal quotes
/// the value as it was sent.
fn ticket_param(route: &str, pairs: &[(String, String, &str)]) -> Result<Ticket> {
    let mut values = pairs.iter().filter(|(k, _, _)| k == "order");
    match (values.next(), values.next()) {
        (None, _) => Err(ApiError::BadTicket(format!(
            "say which order: {route}?order=42&code=482913"
        ))),
        (Some(_), Some(_)) => Err(ApiError::BadTicket(
            "give the order number once, not several times".into(),
        )),
        (Some((_, value, sent)), None) => {
            parse_ticket(value).map_err(|e| match parse_ticket(sent) {
                Err(as_sent) if value != sent => as_sent,
                _ => e,
            })
        }
    }
}

/// A ticket number: digits only, from 1 to 4294967295 (leading zeros are
/// the same number). Public so the fuzz targets reach it.
pub fn parse_ticket(raw: &str) -> Result<Ticket> {
    let shown: String = raw.chars().take(24).flat_map(char::escape_debug).collect();
    let bad = || {
        ApiError::BadTicket(format!(
            "\"{shown}\" is not a ticket number; ticket numbers are whole numbers from 1 up"
        ))
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match raw.parse::<Ticket>() {
        Ok(0) => Err(bad()),
        Ok(t) => Ok(t),
        Err(_) => Err(ApiError::BadTicket(format!(
            "\"{shown}\" is larger than any ticket number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_numbers_are_plain_positive_integers() {
        assert_eq!(parse_ticket("42").unwrap(), 42);
        assert_eq!(parse_ticket("4294967295").unwrap(), u32::MAX);
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.5",
            "1e3",
            " 1",
            "4294967296",
            "abc",
            "1\0",
        ] {
            assert!(parse_ticket(bad).is_err(), "{bad:?}");
        }
        let pairs = |v: &[(&'static str, &'static str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string(), *b))
                .collect::<Vec<_>>()
        };
        assert!(ticket_param(TAKE, &pairs(&[])).is_err());
        assert!(ticket_param(TAKE, &pairs(&[("order", "1"), ("order", "2")])).is_err());
        assert_eq!(
            ticket_param(TAKE, &pairs(&[("x", "y"), ("order", "7")])).unwrap(),
            7
        );
        assert_eq!(parse_take_query(Some("order=7")).unwrap().ticket, 7);
        assert_eq!(parse_take_query(Some("ord%65r=%37")).unwrap().ticket, 7);
        assert_eq!(
            parse_take_query(Some("code=482+913&order=7")).unwrap(),
            CustomerQuery {
                ticket: 7,
                code: Some("482 913".into())
            }
        );
        assert_eq!(
            parse_take_query(Some("order=7&code=1&code=2"))
                .unwrap()
                .code,
            None
        );
        for bad in [
            None,
            Some(""),
            Some("order=7&x=y"),
            Some("x=y&order=7"),
            Some("order=%FF"),
        ] {
            assert!(parse_take_query(bad).is_err(), "{bad:?}");
        }
        // A refusal quotes what was sent, not what it decodes to.
        for (query, quoted) in [("order=+1", "\"+1\""), ("order=%2B1", "\"%2B1\"")] {
            let message = parse_take_query(Some(query)).unwrap_err().to_string();
            assert!(message.starts_with(quoted), "{query}: {message}");
        }
    }
}
