//! Every error the API answers, as JSON: `{"error": "<code>", "message":
//! "<a sentence for a person>"}` with the right status. Internal details are
//! logged, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::front::FrontError;
use crate::order::{ContentError, Order, Ticket};
use crate::queue::QueueError;
use crate::store::StoreError;
use crate::ticket::TicketError;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadOrder(#[from] ContentError),
    #[error("{0}")]
    BadTicket(String),
    #[error("there is no order {0}")]
    NoSuchOrder(Ticket),
    #[error("order {} is not ready yet: it is {}", .0.ticket, .0.status)]
    NotReady(Box<Order>),
    #[error("order {0} was already collected")]
    AlreadyCollected(Ticket),
    #[error("order {0} was cancelled")]
    AlreadyCancelled(Ticket),
    #[error(
        "the kitchen could not make order {0} and set it aside (it failed every time it was prepared); please see the counter"
    )]
    SetAside(Ticket),
    #[error(
        "that is not the pickup code of order {0}: give the six digits printed on its receipt ({1}?order={0}&code= followed by them)"
    )]
    WrongCode(Ticket, &'static str),
    #[error("too many wrong pickup codes for order {ticket}; try again in {} seconds", retry_after_secs(.retry_after))]
    TooManyAttempts {
        ticket: Ticket,
        retry_after: std::time::Duration,
    },
    #[error("order {} can no longer be cancelled: it is {}", .0.ticket, .0.status)]
    TooLate(Box<Order>),
    #[error("the kitchen cannot take more orders right now ({0}); please try again shortly")]
    QueueUnavailable(#[from] QueueError),
    #[error("the order book is busy or cannot be written right now; please try again shortly")]
    StoreUnavailable(#[source] StoreError),
    #[error(
        "the restaurant is full: it holds {0} orders, its most, and takes a new one once an order is collected; please try again in a little while"
    )]
    RestaurantFull(usize),
    #[error("{}", tickets_message(.0))]
    NoTickets(#[from] TicketError),
    #[error("{message}")]
    Rejected {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("something went wrong on our side; it has been logged")]
    Internal(String),
}

impl From<FrontError> for ApiError {
    fn from(e: FrontError) -> Self {
        match e {
            FrontError::Queue(e) => e.into(),
            FrontError::Tickets(e) => e.into(),
            FrontError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy(_) | StoreError::Io { .. } | StoreError::Database(_) => {
                ApiError::StoreUnavailable(e)
            }
            StoreError::Full(max) => ApiError::RestaurantFull(max),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        ApiError::Rejected {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("there is nothing at {what}"),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadOrder(ContentError::Empty | ContentError::Invisible) => {
                (StatusCode::BAD_REQUEST, "empty_order")
            }
            ApiError::BadOrder(ContentError::TooLong(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "order_too_long")
            }
            ApiError::BadOrder(ContentError::NotText) => (StatusCode::BAD_REQUEST, "not_text"),
            ApiError::BadOrder(ContentError::Control { .. }) => {
                (StatusCode::BAD_REQUEST, "control_character")
            }
            ApiError::BadOrder(ContentError::Charset(_)) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_charset")
            }
            ApiError::BadTicket(_) => (StatusCode::BAD_REQUEST, "bad_ticket"),
            ApiError::NoSuchOrder(_) => (StatusCode::NOT_FOUND, "unknown_order"),
            ApiError::NotReady(_) => (StatusCode::CONFLICT, "not_ready"),
            ApiError::AlreadyCollected(_) => (StatusCode::GONE, "already_collected"),
            ApiError::AlreadyCancelled(_) => (StatusCode::GONE, "already_cancelled"),
            ApiError::SetAside(_) => (StatusCode::GONE, "set_aside"),
            ApiError::WrongCode(..) => (StatusCode::FORBIDDEN, "wrong_code"),
            ApiError::TooManyAttempts { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
            }
            ApiError::TooLate(_) => (StatusCode::CONFLICT, "too_late"),
            ApiError::QueueUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "queue_unavailable"),
            ApiError::StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::RestaurantFull(_) => (StatusCode::SERVICE_UNAVAILABLE, "restaurant_full"),
            ApiError::NoTickets(
                TicketError::Busy(_)
                | TicketError::Io { .. }
                | TicketError::Slow(_)
                | TicketError::Database(_),
            ) => (StatusCode::SERVICE_UNAVAILABLE, "tickets_unavailable"),
            ApiError::NoTickets(TicketError::Exhausted { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "tickets_exhausted")
            }
            ApiError::NoTickets(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ApiError::Rejected { status, code, .. } => (*status, code),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!("internal error: {detail}");
                self.to_string()
            }
            ApiError::NoTickets(e) if status.is_server_error() => {
                tracing::error!("ticket counter: {e}");
                self.to_string()
            }
            ApiError::StoreUnavailable(e) => {
                tracing::warn!("order store: {e}");
                self.to_string()
            }
            _ => self.to_string(),
        };
        let mut body = json!({ "error": code, "message": capitalise(&message) });
        if let ApiError::NotReady(order) | ApiError::TooLate(order) = &self {
            body["status"] = json!(order.status);
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::TooManyAttempts { retry_after, .. } = &self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(retry_after)),
            );
        }
        // Worth retrying: the queue, the store or the counter is busy or down
        // for a while. Running out of ticket numbers is not.
        let exhausted = matches!(self, ApiError::NoTickets(TicketError::Exhausted { .. }));
        if let ApiError::RestaurantFull(_) = &self {
            // A place frees when a customer collects: seconds, not a moment.
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(FULL_RETRY_AFTER_SECS),
            );
        } else if status == StatusCode::SERVICE_UNAVAILABLE && !exhausted {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `Retry-After` of `503 restaurant_full`.
pub const FULL_RETRY_AFTER_SECS: u64 = 10;

/// Whole seconds to wait, rounded up, at least one.
fn retry_after_secs(wait: &std::time::Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

/// What a customer is told when no ticket can be had; the file and the
/// details are logged, not shown.
fn tickets_message(e: &TicketError) -> String {
    match e {
        TicketError::Exhausted { .. } => format!(
            "every ticket number up to {} has been handed out, so no new orders can be taken; \
             the restaurant's staff must start a new ticket roll (a new data directory)",
            u32::MAX
        ),
        TicketError::Busy(_)
        | TicketError::Io { .. }
        | TicketError::Slow(_)
        | TicketError::Database(_) => {
            "no ticket number can be handed out right now; please try again shortly".into()
        }
        TicketError::Corrupt { .. }
        | TicketError::NotAFile { .. }
        | TicketError::Missing { .. }
        | TicketError::Stopped => "something went wrong on our side; it has been logged".into(),
    }
}

/// "order 5 is…" → "Order 5 is…", with a full stop: messages are sentences.
fn capitalise(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// A request body that could not be read: `408` when it did not arrive in
/// time (the connection's body timeout), otherwise axum's own rejection.
pub fn body_refused(e: axum::extract::rejection::BytesRejection) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(error) = source {
        if let Some(late) = error.downcast_ref::<super::server::BodyTimedOut>() {
            return ApiError::Rejected {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "body_timeout",
                message: late.to_string(),
            };
        }
        source = error.source();
    }
    rejected(e.status(), e.body_text())
}

/// Turns any of axum's own rejections (a bad query, a body too large…) into
/// our error format, keeping its status and its explanation.
pub fn rejected(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        let message = "the request is far larger than any order (1000 characters at most)".into();
        return ApiError::Rejected {
            status,
            code: "too_large",
            message,
        };
    }
    let code = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    ApiError::Rejected {
        status,
        code,
        message: text,
    }
}
