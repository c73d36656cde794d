//! `fastfood import`: a restaurant's files copied into an empty database,
//! in one transaction: every order (live ones with their pickup codes, and
//! the ones that left, as history), and the ticket counter, so the next
//! ticket continues from it.

use super::committer::{BATCH_LOCK, Guard, Rows, WRITE};
use super::link::{Line, Link, said};
use super::{database, schema};
use crate::order::Ticket;
use crate::store::state::Change;
use crate::store::{Exported, StoreError};

/// What an import copied.
#[derive(Debug)]
pub struct Imported {
    pub live: usize,
    pub left: usize,
    /// The last ticket number handed out; the database's next one follows.
    pub counter: Ticket,
}

/// Copies `files` and the counter (`counter`, the last number handed out)
/// into the database at `url`, which must hold no orders; no other process
/// may use the database meanwhile.
pub async fn import(url: &str, files: &Exported, counter: Ticket) -> Result<Imported, StoreError> {
    let mut link = Link::new(url, Some(Line::Alone))?;
    let shown = link.shown().to_owned();
    let fail = |e: tokio_postgres::Error| database(&shown, said(&e));
    let (client, _) = link.connect_now().await?;
    schema::migrate(client, &shown).await?;
    client
        .batch_execute(&format!(
            "begin; select pg_advisory_xact_lock({BATCH_LOCK})"
        ))
        .await
        .map_err(fail)?;
    let held: i64 = client
        .query_one("select count(*) from fastfood_changes", &[])
        .await
        .map_err(fail)?
        .get(0);
    if held > 0 {
        return Err(database(
            &shown,
            format!(
                "the database already holds a restaurant ({held} changes): import only into an empty \
                 database (createdb), never on top of orders"
            ),
        ));
    }
    // The ones that left first, then the live ones: versions 1, 2, 3, …
    let changes: Vec<Change> = files
        .left
        .iter()
        .map(|o| (o, None))
        .chain(files.live.iter().map(|(o, code)| (o, *code)))
        .enumerate()
        .map(|(i, (order, pickup_code))| Change {
            version: i as u64 + 1,
            order: order.clone(),
            pickup_code,
        })
        .collect();
    if !changes.is_empty() {
        let write = client.prepare(WRITE).await.map_err(fail)?;
        let guard = Guard {
            base: 0,
            after: None,
        };
        let (_, wrote) = Rows::of(&changes)
            .write(client, &write, &guard)
            .await
            .map_err(fail)?;
        if !wrote {
            return Err(database(
                &shown,
                "another process wrote orders while they were imported",
            ));
        }
    }
    // The restaurant keeps its identity: orders already in RabbitMQ carry it.
    if let Some(restaurant) = &files.restaurant {
        client
            .execute(
                "update fastfood_meta set restaurant_id = $1",
                &[&restaurant.as_str()],
            )
            .await
            .map_err(fail)?;
    }
    let counter = counter.max(files.highest);
    if counter > 0 {
        client
            .execute(
                "select setval('fastfood_ticket', $1::bigint, true)",
                &[&i64::from(counter)],
            )
            .await
            .map_err(fail)?;
    }
    client.batch_execute("commit").await.map_err(fail)?;
    Ok(Imported {
        live: files.live.len(),
        left: files.left.len(),
        counter,
    })
}
