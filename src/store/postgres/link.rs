//! One connection to the database, made again with backoff whenever it is
//! lost. Every session is bounded: `statement_timeout` and `lock_timeout`
//! on the server, a timeout on the connection, and the callers' own timeout
//! around each transaction. The URL is only ever shown through [`redact`].

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use super::database;
use crate::backoff::{self, Backoff};
use crate::store::{Job, StoreError};

/// How long a connection attempt may take, per host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The server-side bound on every statement and lock wait.
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(4);
/// How long the database keeps a session of ours that is in a transaction
/// but sends nothing: ours never pause inside one, so a session that does is
/// on a process that died or a machine that was cut off mid-transaction,
/// perhaps holding the line's lock that every other process's committer
/// waits for. Ended by the server after this, the lock is free again.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(2);
/// The channel every committing transaction notifies.
pub(super) const CHANNEL: &str = "fastfood_changes";
/// The advisory lock a process with an in-process queue holds exclusively,
/// and a process with a broker holds shared, for its life.
const LINE_LOCK: i64 = 0x6661_7374_666f_6f01;
/// How long a process waits for the line's lock before refusing to start
/// beside another: long enough for the session of a process just killed to
/// end, short enough that a real second process hears why at once.
const LINE_PATIENCE: Duration = Duration::from_secs(5);

/// How this connection takes the line's lock (see [`super::Sharing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Line {
    Alone,
    Shared,
}

/// A connection, or what is needed to make it again.
pub(super) struct Link {
    config: Config,
    shown: String,
    /// The committer's link takes the line's lock and listens for changes;
    /// the ticket numbering's does neither.
    line: Option<Line>,
    /// Shared with the transactions in flight, which own a handle each: the
    /// connection closes once the link and all of them have let it go.
    client: Option<Arc<Client>>,
    /// Counts the connections made, so statements prepared on an old one
    /// are prepared again.
    generation: u64,
    backoff: Backoff,
    next_try: Instant,
    /// Whom a change notification wakes (set once the store's inbox exists).
    wake: Arc<OnceLock<mpsc::WeakSender<Job>>>,
}

/// The URL as a `Config`, or a sentence that does not show the password.
pub(super) fn parse(url: &str) -> Result<Config, StoreError> {
    let mut config = Config::from_str(url).map_err(|e| {
        StoreError::Database(format!(
            "{} is not a PostgreSQL URL ({e}): write postgres://USER:PASSWORD@HOST:5432/DATABASE, \
             or several hosts as postgres://HOST1,HOST2/DATABASE?target_session_attrs=read-write",
            redact(url)
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("fastfood");
    }
    Ok(config)
}

/// The URL without its password, for messages: `user:***@` in a URL,
/// `password=***` in a parameter (URL or key/value form).
pub fn redact(url: &str) -> String {
    let mut shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    let mut from = 0;
    while let Some(found) = shown[from..].find("password=") {
        let start = from + found + "password=".len();
        let end = shown[start..]
            .find(['&', ' '])
            .map_or(shown.len(), |e| start + e);
        shown.replace_range(start..end, "***");
        from = start + 3;
    }
    shown
}

/// A tokio-postgres error as a sentence, with the server's own words when
/// it said something.
pub(super) fn said(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) if db.code() == &tokio_postgres::error::SqlState::INVALID_PASSWORD => format!(
            "the server refused the password of user {:?}: check the password in the URL (it is never shown here)",
            db.message()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .trim_matches('"')
        ),
        Some(db) if db.code() == &tokio_postgres::error::SqlState::INVALID_CATALOG_NAME => {
            format!(
                "{}: create it first (createdb), or name another in the URL",
                db.message()
            )
        }
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !text.contains(&cause) {
                    text = format!("{text}: {cause}");
                }
                source = cause_of(source);
            }
            text
        }
    }
}

fn cause_of<'e>(
    e: Option<&'e (dyn std::error::Error + 'static)>,
) -> Option<&'e (dyn std::error::Error + 'static)> {
    e.and_then(|e| e.source())
}

impl Link {
    pub(super) fn new(url: &str, line: Option<Line>) -> Result<Link, StoreError> {
        Ok(Link {
            config: parse(url)?,
            shown: redact(url),
            line,
            client: None,
            generation: 0,
            backoff: backoff::DATABASE_RECONNECT,
            next_try: Instant::now(),
            wake: Arc::new(OnceLock::new()),
        })
    }

    /// The URL without its password.
    pub(super) fn shown(&self) -> &str {
        &self.shown
    }

    /// From now on a change notification asks `jobs` to follow.
    pub(super) fn wake_on_changes(&self, jobs: mpsc::WeakSender<Job>) {
        let _ = self.wake.set(jobs);
    }

    /// Connects now, whatever the backoff says (at start).
    pub(super) async fn connect_now(&mut self) -> Result<(&Arc<Client>, u64), StoreError> {
        self.next_try = Instant::now();
        self.client().await
    }

    /// The connection, made again if it was lost and the backoff allows a
    /// try now; otherwise why there is none.
    /// With it, which connection it is (see `generation`).
    pub(super) async fn client(&mut self) -> Result<(&Arc<Client>, u64), StoreError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.lost();
        }
        if self.client.is_none() {
            if Instant::now() < self.next_try {
                return Err(database(
                    &self.shown,
                    "the database cannot be reached; trying again shortly",
                ));
            }
            let connected = tokio::time::timeout(
                CONNECT_TIMEOUT * 2 + STATEMENT_TIMEOUT + LINE_PATIENCE,
                self.connect(),
            )
            .await
            .unwrap_or_else(|_| {
                Err(database(
                    &self.shown,
                    "the database did not answer in time: is it running, and is the URL right?",
                ))
            });
            match connected {
                Ok(client) => {
                    self.backoff.reset();
                    self.generation += 1;
                    self.client = Some(Arc::new(client));
                }
                Err(e) => {
                    self.next_try = Instant::now() + self.backoff.pause();
                    return Err(e);
                }
            }
        }
        Ok((self.client.as_ref().expect("connected"), self.generation))
    }

    /// Forgets the connection (it failed, or a statement overran): the next
    /// call of [`Link::client`] makes a new one. Dropping it closes it, and
    /// the server lets go of its locks and rolls back its transaction.
    pub(super) fn lost(&mut self) {
        if self.client.take().is_some() {
            self.next_try = Instant::now() + self.backoff.pause();
        }
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        let fail = |e: tokio_postgres::Error| database(&self.shown, said(&e));
        let (client, mut connection) = self.config.connect(NoTls).await.map_err(fail)?;
        let wake = self.wake.clone();
        // This session's own notifications tell its committer nothing new:
        // known once the session answers which it is.
        let own = Arc::new(OnceLock::new());
        let own_pid = own.clone();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if own_pid.get() == Some(&n.process_id()) {
                            continue;
                        }
                        if let Some(jobs) = wake.get().and_then(|w| w.upgrade()) {
                            // A full inbox means a cycle is coming anyway.
                            let _ = jobs.try_send(Job::Follow);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("database connection: {}", said(&e));
                        break;
                    }
                }
            }
        });
        let ms = STATEMENT_TIMEOUT.as_millis();
        client
            .batch_execute(&format!(
                "set statement_timeout = {ms}; set lock_timeout = {ms}; \
                 set idle_in_transaction_session_timeout = {}",
                IDLE_IN_TRANSACTION.as_millis()
            ))
            .await
            .map_err(fail)?;
        if let Some(line) = self.line {
            let pid: i32 = client
                .query_one("select pg_backend_pid()", &[])
                .await
                .map_err(fail)?
                .get(0);
            let _ = own.set(pid);
            client
                .batch_execute(&format!("listen {CHANNEL}"))
                .await
                .map_err(fail)?;
            let take = match line {
                Line::Alone => "select pg_try_advisory_lock($1)",
                Line::Shared => "select pg_try_advisory_lock_shared($1)",
            };
            // A process killed a moment ago may still hold the lock: its
            // session ends once the server reads the closed socket, so a
            // restart waits a little for it before refusing.
            let patience = Instant::now() + LINE_PATIENCE;
            let held = loop {
                let held: bool = client
                    .query_one(take, &[&LINE_LOCK])
                    .await
                    .map_err(fail)?
                    .get(0);
                if held || Instant::now() >= patience {
                    break held;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            if !held {
                return Err(StoreError::Database(match line {
                    Line::Alone => format!(
                        "another fastfood process already uses the database at {}: orders waiting in \
                         one process's own queue would be invisible to the others, and stranded if it \
                         died. Run every process with --broker amqp://guest:guest@127.0.0.1:5672 \
                         (orders then wait in RabbitMQ, which all of them share)",
                        self.shown
                    ),
                    Line::Shared => format!(
                        "a fastfood server with its own in-process queue (no --broker) already uses the \
                         database at {}: stop it and start it again with --broker, so that every \
                         process shares one line",
                        self.shown
                    ),
                }));
            }
        }
        tracing::info!("connected to PostgreSQL at {}", self.shown);
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db1,db2/fastfood?target_session_attrs=read-write"),
            "postgres://app:***@db1,db2/fastfood?target_session_attrs=read-write"
        );
        assert_eq!(
            redact("postgres://app@db/f?password=s3cret&sslmode=disable"),
            "postgres://app@db/f?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("host=db user=app password=s3cret dbname=f"),
            "host=db user=app password=*** dbname=f"
        );
        assert_eq!(redact("postgres://db/f"), "postgres://db/f");
        let e = parse("postgres://app:s3cret@db:notaport/f").err().unwrap();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
