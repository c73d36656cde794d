//! The tables, created at start and checked every time, inside one
//! transaction under an advisory lock, so processes that start together do
//! not race. A schema newer than this binary knows is refused; a table of
//! another shape under one of our names is refused, never altered.

use tokio_postgres::Client;

use super::database;
use super::link::said;
use crate::store::StoreError;

/// The schema this binary writes and reads.
pub(super) const VERSION: i32 = 1;
/// Held while the schema is checked or created.
const MIGRATE_LOCK: i64 = 0x6661_7374_666f_6f02;

/// Every table, with its columns as `information_schema` names their types.
const TABLES: &[(&str, &[(&str, &str)])] = &[
    (
        "fastfood_meta",
        &[
            ("one", "boolean"),
            ("schema_version", "integer"),
            ("restaurant_id", "text"),
        ],
    ),
    (
        "fastfood_changes",
        &[
            ("version", "bigint"),
            ("ticket", "bigint"),
            ("body", "jsonb"),
            ("pickup_code", "text"),
        ],
    ),
    (
        "fastfood_orders",
        &[
            ("ticket", "bigint"),
            ("status", "text"),
            ("body", "jsonb"),
            ("pickup_code", "text"),
            ("version", "bigint"),
        ],
    ),
];

const CREATE: &str = "
create table fastfood_meta (
    one boolean primary key default true check (one),
    schema_version integer not null,
    restaurant_id text not null
);
create table fastfood_changes (
    version bigint primary key,
    ticket bigint not null,
    body jsonb not null,
    pickup_code text
);
create table fastfood_orders (
    ticket bigint primary key,
    status text not null,
    body jsonb not null,
    pickup_code text,
    version bigint not null
);
create index fastfood_orders_live on fastfood_orders (ticket)
    where status not in ('COLLECTED', 'CANCELLED');
create sequence fastfood_ticket minvalue 1 maxvalue 4294967295 no cycle;
";

/// Creates the schema in an empty database, or checks the one there.
pub(super) async fn migrate(client: &Client, shown: &str) -> Result<(), StoreError> {
    let fail = |e: tokio_postgres::Error| database(shown, said(&e));
    client
        .batch_execute(&format!(
            "begin; select pg_advisory_xact_lock({MIGRATE_LOCK})"
        ))
        .await
        .map_err(fail)?;
    let checked = check_or_create(client, shown).await;
    let end = if checked.is_ok() {
        "commit"
    } else {
        "rollback"
    };
    let ended = client.batch_execute(end).await.map_err(fail);
    checked?;
    ended
}

async fn check_or_create(client: &Client, shown: &str) -> Result<(), StoreError> {
    let fail = |e: tokio_postgres::Error| database(shown, said(&e));
    let names: Vec<&str> = TABLES.iter().map(|(name, _)| *name).collect();
    let rows = client
        .query(
            "select table_name::text, column_name::text, data_type::text \
             from information_schema.columns \
             where table_schema = current_schema() and table_name = any($1) \
             order by table_name, ordinal_position",
            &[&names],
        )
        .await
        .map_err(fail)?;
    let sequence: Option<String> = client
        .query_one("select to_regclass('fastfood_ticket')::text", &[])
        .await
        .map_err(fail)?
        .get(0);
    let columns = |table: &str| -> Vec<(String, String)> {
        rows.iter()
            .filter(|r| r.get::<_, String>(0) == table)
            .map(|r| (r.get(1), r.get(2)))
            .collect()
    };
    let present: Vec<&str> = names
        .iter()
        .copied()
        .filter(|t| !columns(t).is_empty())
        .collect();
    if present.is_empty() && sequence.is_none() {
        client.batch_execute(CREATE).await.map_err(fail)?;
        client
            .execute(
                "insert into fastfood_meta (schema_version, restaurant_id) \
                 values ($1, gen_random_uuid()::text)",
                &[&VERSION],
            )
            .await
            .map_err(fail)?;
        tracing::info!("created the order tables in the database at {shown}");
        return Ok(());
    }
    let not_ours = |what: String| {
        database(
            shown,
            format!(
                "{what}. This database is not a fastfood restaurant's (or was changed by hand), and \
                 fastfood never alters a table it did not make: give --database an empty database \
                 (createdb fastfood) or the one your restaurant already uses"
            ),
        )
    };
    for (table, wanted) in TABLES {
        let found = columns(table);
        if found.is_empty() {
            continue;
        }
        let fits = found.len() == wanted.len()
            && found
                .iter()
                .zip(wanted.iter())
                .all(|((n, t), (wn, wt))| n == wn && t == wt);
        if !fits {
            let shape: Vec<String> = found.iter().map(|(n, t)| format!("{n} {t}")).collect();
            return Err(not_ours(format!(
                "the table {table} has other columns than fastfood's ({})",
                shape.join(", ")
            )));
        }
    }
    if let Some((table, _)) = TABLES.iter().find(|(t, _)| columns(t).is_empty()) {
        return Err(not_ours(format!(
            "the table {table} is missing, but {} exist",
            present.join(", ")
        )));
    }
    if sequence.is_none() {
        return Err(not_ours("the sequence fastfood_ticket is missing".into()));
    }
    let version: Option<i32> = client
        .query_opt("select schema_version from fastfood_meta", &[])
        .await
        .map_err(fail)?
        .map(|r| r.get(0));
    match version {
        None => Err(not_ours("the table fastfood_meta is empty".into())),
        Some(v) if v > VERSION => Err(database(
            shown,
            format!(
                "the database's schema is version {v}, newer than this fastfood knows (version \
                 {VERSION}): a newer fastfood created or upgraded it. Run that newer fastfood, \
                 never this one, against this database"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// The restaurant's identity, drawn when the tables were created.
pub(super) async fn restaurant_id(client: &Client, shown: &str) -> Result<String, StoreError> {
    client
        .query_one("select restaurant_id from fastfood_meta", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| database(shown, said(&e)))
}
