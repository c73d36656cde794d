//! PostgreSQL for the database tests: a fresh database per test on the local
//! cluster (127.0.0.1:5432, user postgres, trust), dropped with everything
//! in it (`with (force)`) when the test ends, whatever happens; and
//! [`Backend`], so one test runs against the files and the database alike.

use std::process::Command;

use tokio_postgres::{Client, NoTls};

/// Where the tests expect PostgreSQL.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of the test's own, dropped on drop.
pub struct Database {
    pub name: String,
    /// `postgres://postgres@127.0.0.1:5432/<name>`.
    pub url: String,
}

/// Runs one statement through `psql` on the `postgres` database.
fn psql(sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("{SERVER}/postgres"))
        .args(["-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Database {
    /// A fresh, empty database for `test`. PostgreSQL must run here: the
    /// continuous integration script starts it.
    pub fn create(test: &str) -> Database {
        let name = format!("ff_{test}_{}", std::process::id());
        let _ = psql(&format!("drop database if exists {name} with (force)"));
        psql(&format!("create database {name}")).unwrap_or_else(|e| {
            panic!("cannot create database {name} (is PostgreSQL running on 127.0.0.1:5432?): {e}")
        });
        Database {
            url: format!("{SERVER}/{name}"),
            name,
        }
    }

    /// A connection of the test's own, to look and to meddle.
    pub async fn connect(&self) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// Runs `sql` on this database as the superuser, through `psql`.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                &self.url,
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Closes every connection to it and lets none in: the database is lost
    /// to the restaurant until [`Database::allow`].
    pub fn refuse_connections(&self) {
        psql(&format!(
            "alter database {0} allow_connections false; \
             select pg_terminate_backend(pid) from pg_stat_activity where datname = '{0}'",
            self.name
        ))
        .expect("refuse connections");
    }

    /// Lets connections in again.
    pub fn allow(&self) {
        psql(&format!(
            "alter database {} allow_connections true",
            self.name
        ))
        .expect("allow connections");
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = psql(&format!(
            "drop database if exists {} with (force)",
            self.name
        )) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// Where a test's restaurant keeps its orders: the data directory, or a
/// database of its own.
pub enum Backend {
    Files,
    Postgres(Database),
}

impl Backend {
    /// Both backends, the database one fresh for `test`.
    pub fn both(test: &str) -> [Backend; 2] {
        [Backend::Files, Backend::Postgres(Database::create(test))]
    }

    /// The options that select it (the data directory is given anyway).
    pub fn args(&self) -> Vec<&str> {
        match self {
            Backend::Files => Vec::new(),
            Backend::Postgres(db) => vec!["--database", &db.url],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Files => "files",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }
}
