//! The one rule for query parameters: each route takes the parameters listed
//! in [`TAKES`] and no other. A parameter a route does not take is refused
//! with `400 unknown_parameter` rather than ignored, on every route: a
//! request the server does not fully understand (`POST /order?content=fries`,
//! a typo like `/take?order=7&ordr=8`) must not do something else than the
//! client meant.
//!
//! The pages (`/`, `/kiosk`, …) are not in the table: they are documents a
//! person opens from a link, and a link may carry anything (a campaign tag,
//! a cache-buster); they take whatever it adds. Routes answer their own
//! errors about the parameters they do take (a missing or bad ticket).

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// A route (as the router spells it) and the parameters it takes; the
/// first, when `required`, must be there for the route to make sense.
pub struct Takes {
    pub route: &'static str,
    pub parameters: &'static [&'static str],
    /// The route's own answer for a missing first parameter (`bad_ticket`:
    /// "say which order") comes before this rule's.
    pub required: bool,
}

const fn takes(route: &'static str, parameters: &'static [&'static str], required: bool) -> Takes {
    Takes {
        route,
        parameters,
        required,
    }
}

/// Every API route and what it takes.
pub const TAKES: &[Takes] = &[
    takes("/order", &[], false),
    takes("/take", &["order", "code"], true),
    takes("/cancel", &["order", "code"], true),
    takes("/orders", &[], false),
    takes("/orders/{ticket}", &[], false),
    takes("/updates", &["board"], false),
    takes("/healthz", &[], false),
    takes("/readyz", &[], false),
    takes("/metrics", &[], false),
    takes("/kitchen/now", &[], false),
    takes("/kitchen/updates", &[], false),
    takes("/qr", &[], false),
];

/// Refuses a request to a route of [`TAKES`] that carries a parameter the
/// route does not take. Runs after routing, so it knows the route.
pub async fn known_parameters(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>();
    if let (Some(route), Some(query)) = (route, request.uri().query())
        && let Err(e) = check(route.as_str(), request.uri().path(), query)
    {
        return e.into_response();
    }
    next.run(request).await
}

/// The rule itself: `Err(unknown_parameter)` when `query` (as sent, still
/// percent-encoded) holds a parameter `route` does not take; `path` is the
/// request's, for the message. A route not in [`TAKES`] takes anything.
pub fn check(route: &str, path: &str, query: &str) -> Result<(), ApiError> {
    let Some(takes) = TAKES.iter().find(|t| t.route == route) else {
        return Ok(());
    };
    let mut keys = query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| part.split_once('=').map_or(part, |(key, _)| key))
        .map(|sent| (sent, decoded(sent)));
    if takes.required
        && let Some(first) = takes.parameters.first()
        && !keys.clone().any(|(_, key)| key == *first)
    {
        return Ok(());
    }
    let Some((sent, _)) = keys.find(|(_, key)| !takes.parameters.contains(&key.as_str())) else {
        return Ok(());
    };
    let path: String = path.chars().take(40).collect();
    let sent: String = sent.chars().take(24).flat_map(char::escape_debug).collect();
    let message = match takes.parameters {
        [] => format!("{path} takes no parameters, not \"{sent}\""),
        [one] => format!("{path} takes only {one}, not \"{sent}\""),
        [first @ .., last] => format!(
            "{path} takes only {} and {last}, not \"{sent}\"",
            first.join(", ")
        ),
    };
    Err(ApiError::Rejected {
        status: StatusCode::BAD_REQUEST,
        code: "unknown_parameter",
        message,
    })
}

/// A parameter name as the route reads it: percent-decoded, `+` a space.
fn decoded(sent: &str) -> String {
    form_urlencoded::parse(sent.as_bytes())
        .next()
        .map(|(key, _)| key.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(route: &str, query: &str) -> Option<&'static str> {
        check(route, "/x", query).err().map(|e| match e {
            ApiError::Rejected { code, .. } => code,
            _ => "other",
        })
    }

    #[test]
    fn each_route_takes_its_own_parameters_and_nothing_else() {
        for (route, query) in [
            ("/order", "content=fries"),
            ("/orders/{ticket}", "x=1"),
            ("/orders", "x"),
            ("/updates", "x"),
            ("/healthz", "x"),
            ("/readyz", "=1"),
            ("/take", "order=1&x=y"),
            ("/take", "x=y&order=1"),
            ("/take", "order=1&Order=1"),
            ("/take", "order=1&%00=1"),
            ("/cancel", "order=1&code=2&pickup=3"),
        ] {
            assert_eq!(
                code(route, query),
                Some("unknown_parameter"),
                "{route}?{query}"
            );
        }
        for (route, query) in [
            ("/order", ""),
            ("/orders", "&"),
            ("/take", "order=1"),
            ("/take", "order=1&code=123456"),
            ("/take", "ord%65r=1&c%6Fde=2"),
            ("/cancel", "code=2&order=1"),
            // The route says what is missing first.
            ("/take", "ORDER=1"),
            ("/take", "%FF=1"),
            // Not an API route: a page takes what a link adds.
            ("/kiosk", "utm_source=poster"),
        ] {
            assert_eq!(code(route, query), None, "{route}?{query}");
        }
    }

    #[test]
    fn the_message_quotes_what_was_sent() {
        let message = |route, path, query| check(route, path, query).unwrap_err().to_string();
        assert_eq!(
            message("/orders/{ticket}", "/orders/3", "x+y=1"),
            "/orders/3 takes no parameters, not \"x+y\""
        );
        assert_eq!(
            message("/take", "/take", "order=1&%41=1"),
            "/take takes only order and code, not \"%41\""
        );
    }
}
