//! fastfood: a fast-food restaurant in one binary, for learning message
//! queues. A customer orders and gets a ticket number; the order waits in a
//! queue; kitchen workers prepare it (TAKEN → PREPARING → READY) in a
//! file-locked store; a lobby board shows every change live; the customer
//! collects the order with their number.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`serve`, `worker`, `rush`) and the signal
//!   handler; the top: nothing depends on it.
//! - [`config`]: the settings of `serve` and `worker`, every flag with an env var.
//! - [`app`]: assembles a mode from its configuration; starts and stops it.
//! - [`order`]: an order and its one-way statuses. Pure.
//! - [`pickup`]: pickup codes: drawn, parsed, compared. Pure but for the
//!   CSPRNG.
//! - [`restaurant`]: a restaurant's identity, and the one check of a
//!   delivered order against it. Pure but for the CSPRNG.
//! - [`ticket`]: the counter file; the only code that opens it.
//! - [`store`]: the order store's files; the only code that opens them.
//!   `store::postgres` keeps the same store in PostgreSQL (`--database`),
//!   the only code that speaks to the database (tokio-postgres).
//! - `durable`: the file locks with a bounded wait, and directory fsyncs, that
//!   the counter and the store share.
//! - [`backoff`]: the one retry policy, with each retrying loop's constants.
//! - [`front`]: the front counter: number, store and queue an order.
//! - [`board`]: the live board and its fan-out to every screen.
//! - [`queue`]: where orders wait for the kitchen.
//! - [`broker`]: RabbitMQ, the only code that speaks AMQP (lapin).
//! - [`kitchen`]: a worker: claim, prepare, mark ready, acknowledge.
//! - [`wait`]: how long an order should wait: the line and the kitchen's
//!   pace, learnt from the store's changes.
//! - [`web`]: routes, handlers, JSON errors, SSE, embedded pages, and the
//!   accept loop with its connection limits (`web::server`).
//! - [`crash`]: crash points the durability tests set by env var.
//! - [`metrics`]: every Prometheus metric's name, help and buckets, the
//!   process's recorder, and its text for `/metrics`. Depends on [`order`]
//!   alone, so any module records with one call.
//! - `rush` (cargo feature `rush`, on by default): `fastfood rush`, a
//!   simulated lunch rush that measures a restaurant, and `rush::sse`, the
//!   one Server-Sent Events reader. It is a client on top: it may start an
//!   embedded restaurant through [`app`], and nothing in the restaurant
//!   depends on it. `cargo build --no-default-features` leaves it (and
//!   reqwest, plotters, indicatif, hdrhistogram) out.

pub mod app;
pub mod backoff;
pub mod board;
pub mod broker;
pub mod cli;
pub mod config;
pub mod crash;
mod durable;
pub mod front;
pub mod kitchen;
pub mod metrics;
pub mod order;
pub mod pickup;
pub mod queue;
pub mod restaurant;
#[cfg(feature = "rush")]
pub mod rush;
pub mod store;
pub mod ticket;
pub mod wait;
pub mod web;
