//! The kitchen: the [`Worker`]s that prepare orders, the [`Crew`] that
//! tells what the workers of one process are doing, and the [`View`] of
//! every process's workers and the queue that `/kitchen` shows.
//!
//! Dependencies point one way: a worker tells its [`Hand`] (its lane in the
//! crew); the crew sends [`Report`]s to whoever the app connects it to (the
//! view, the broker); the view reads reports, the queue and the store, and
//! is read by the web pages. Nothing here speaks AMQP: the broker carries
//! reports as opaque JSON.

mod crew;
mod view;
mod worker;

pub use crew::{Crew, Hand, Lane, Moment, Report};
pub use view::{LaneNow, Now, QueueNow, View};
pub use worker::{Cooking, Halt, Prepared, Worker};
