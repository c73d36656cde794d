//! The kitchen fan-out: every process with kitchen workers publishes its
//! crew's reports on the `fastfood.kitchen` exchange, and every server
//! listens, for its `/kitchen` page. The broker carries them as opaque JSON;
//! what they say is the kitchen's business.

use tokio_util::sync::CancellationToken;

use super::{Broker, KITCHEN_EXCHANGE};

impl Broker {
    /// A function that publishes one report (its JSON) on `fastfood.kitchen`
    /// while connected; reports that find no connection are dropped (the
    /// next one says it all again: the lanes, and the crew's moments of the
    /// last minute).
    pub fn kitchen_publisher(&self) -> impl Fn(Vec<u8>) + Send + Sync + 'static {
        let outbox = self.outbox(KITCHEN_EXCHANGE, "application/json");
        move |report| {
            let _ = outbox.try_send(report);
        }
    }

    /// Publishes one report now, waiting until it is handed to the
    /// connection: a process's last report, before it closes the connection.
    pub async fn publish_kitchen_report(&self, report: &[u8]) {
        self.publish_now(KITCHEN_EXCHANGE, "application/json", report)
            .await;
    }

    /// Calls `heard` with every report any process publishes, until `shutdown`.
    pub fn on_kitchen_reports(
        &self,
        heard: impl Fn(&[u8]) + Send + Sync + 'static,
        shutdown: CancellationToken,
    ) {
        self.listen(KITCHEN_EXCHANGE, || {}, heard, shutdown);
    }
}
