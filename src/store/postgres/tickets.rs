//! Ticket numbers from the database's sequence `fastfood_ticket`, on a
//! connection of their own. `nextval` never hands out one value twice,
//! across sessions, crashes and a failover to a synchronous standby (the
//! sequence is logged ahead of what it hands out); gaps are possible,
//! repeats are not. The customers waiting together share one statement.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Statement;

use super::link::{Link, STATEMENT_TIMEOUT, said};
use crate::ticket::{Numbered, TicketError, Tickets};

/// Most numbers drawn in one statement.
const MAX_BATCH: usize = 4096;

const DRAW: &str = "select nextval('fastfood_ticket') from generate_series(1, $1::bigint)";

/// The draw, prepared once per connection (by its generation): one round
/// trip a draw instead of two.
type Prepared = Option<(u64, Statement)>;

/// Starts the task that draws numbers for the returned handle.
pub(super) fn start(mut link: Link) -> Tickets {
    let (tickets, mut inbox) = Tickets::drawn_elsewhere(MAX_BATCH);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut prepared: Prepared = None;
        while inbox.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let count = batch.len() as i64;
            let drawn = tokio::time::timeout(
                STATEMENT_TIMEOUT + Duration::from_secs(1),
                draw(&mut link, &mut prepared, count),
            )
            .await
            .unwrap_or_else(|_| {
                Err(TicketError::Database(format!(
                    "PostgreSQL at {}: drawing ticket numbers took too long",
                    link.shown()
                )))
            });
            match drawn {
                Ok(numbers) => {
                    for (reply, ticket) in batch.drain(..).zip(numbers) {
                        let _ = reply.send(Ok(Numbered::durable_already(ticket)));
                    }
                }
                Err(e) => {
                    if !matches!(e, TicketError::Exhausted { .. }) {
                        link.lost();
                    }
                    tracing::debug!("ticket numbers: {e}");
                    for reply in batch.drain(..) {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    });
    tickets
}

async fn draw(
    link: &mut Link,
    prepared: &mut Prepared,
    count: i64,
) -> Result<Vec<u32>, TicketError> {
    let shown = link.shown().to_owned();
    let fail = |e: tokio_postgres::Error| {
        if e.as_db_error().is_some_and(|db| {
            db.code() == &tokio_postgres::error::SqlState::SEQUENCE_GENERATOR_LIMIT_EXCEEDED
        }) {
            TicketError::Exhausted {
                path: PathBuf::from("fastfood_ticket"),
            }
        } else {
            TicketError::Database(format!("PostgreSQL at {shown}: {}", said(&e)))
        }
    };
    let (client, generation) = link
        .client()
        .await
        .map_err(|e| TicketError::Database(e.to_string()))?;
    let statement = match prepared {
        Some((made_on, statement)) if *made_on == generation => statement.clone(),
        _ => {
            let statement = client.prepare(DRAW).await.map_err(fail)?;
            *prepared = Some((generation, statement.clone()));
            statement
        }
    };
    let rows = client.query(&statement, &[&count]).await.map_err(fail)?;
    rows.iter()
        .map(|row| {
            let n: i64 = row.get(0);
            u32::try_from(n).map_err(|_| TicketError::Exhausted {
                path: PathBuf::from("fastfood_ticket"),
            })
        })
        .collect()
}
