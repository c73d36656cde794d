//! PostgreSQL for the database tests: a fresh database per test on the local
//! cluster (127.0.0.1:5432, user postgres, trust), dropped with everything
//! in it (`with (force)`) when the test ends, whatever happens; and
//! [`Backend`], so one test runs against the files and the database alike
//! ([`on_both_backends!`](crate::on_both_backends) makes the two tests).
//!
//! Without PostgreSQL the database tests skip, loudly (a `SKIPPED` line),
//! unless `FASTFOOD_REQUIRE_POSTGRES=1` makes that a failure (CI sets it).
//! Nothing here depends on the rest of `support`: the property tests
//! (`tests/properties.rs`) use it alone.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// Where the tests expect PostgreSQL.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";
/// The same, as an address to connect to.
const HOST: &str = "127.0.0.1:5432";

/// Whether PostgreSQL answers on [`HOST`] (and its programs are installed,
/// when `programs`); if not, says `test` is skipped, or fails when
/// `FASTFOOD_REQUIRE_POSTGRES=1`.
fn available(test: &str, programs: bool) -> bool {
    let answers = HOST
        .parse()
        .ok()
        .and_then(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .is_some();
    let missing = if !answers {
        format!("no PostgreSQL on {HOST}")
    } else if programs && installed().is_none() {
        "no PostgreSQL programs (initdb) in /usr/lib/postgresql".to_owned()
    } else {
        return true;
    };
    assert!(
        std::env::var("FASTFOOD_REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "FASTFOOD_REQUIRE_POSTGRES=1 but {missing}"
    );
    eprintln!(
        "SKIPPED {test}: {missing} (install and start one, user postgres with trust on 127.0.0.1, as .ci/run does)"
    );
    false
}

/// A database of the test's own, dropped on drop.
pub struct Database {
    pub name: String,
    /// `postgres://postgres@127.0.0.1:5432/<name>`.
    pub url: String,
}

/// Runs `sql` through `psql` on the database at `url`: its output, or why not.
fn try_query(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs `sql` on the database at `url`; its output (panics if it fails).
pub fn query(url: &str, sql: &str) -> String {
    try_query(url, sql).unwrap_or_else(|e| panic!("psql {sql}: {e}"))
}

/// Runs one statement through `psql` on the `postgres` database.
fn psql(sql: &str) -> Result<String, String> {
    try_query(&format!("{SERVER}/postgres"), sql)
}

impl Database {
    /// A fresh, empty database for `test`; `None` (after a loud `SKIPPED`
    /// line) when PostgreSQL does not answer here, unless
    /// `FASTFOOD_REQUIRE_POSTGRES=1` makes that a failure.
    pub fn create(test: &str) -> Option<Database> {
        if !available(test, false) {
            return None;
        }
        // PostgreSQL cuts names at 63 bytes.
        let short: String = test.chars().take(40).collect();
        let name = format!("ff_{short}_{}", std::process::id());
        let _ = psql(&format!("drop database if exists {name} with (force)"));
        psql(&format!("create database {name}")).unwrap_or_else(|e| {
            panic!("cannot create database {name} (is PostgreSQL running on 127.0.0.1:5432?): {e}")
        });
        Some(Database {
            url: format!("{SERVER}/{name}"),
            name,
        })
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
        query(&self.url, sql)
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
    /// A database of its own for `test`; `None` where PostgreSQL does not
    /// answer (see [`Database::create`]).
    pub fn postgres(test: &str) -> Option<Backend> {
        Database::create(test).map(Backend::Postgres)
    }

    /// Both backends, the database one fresh for `test` (the files alone,
    /// loudly, without PostgreSQL).
    pub fn both(test: &str) -> Vec<Backend> {
        std::iter::once(Backend::Files)
            .chain(Backend::postgres(test))
            .collect()
    }

    /// The options that select it (the data directory is given anyway).
    pub fn args(&self) -> Vec<&str> {
        match self {
            Backend::Files => Vec::new(),
            Backend::Postgres(db) => vec!["--database", &db.url],
        }
    }

    /// `args`, then the options that select it.
    pub fn with<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        all.extend(self.args());
        all
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Files => "files",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// Data directories for `processes` processes of one restaurant: the
    /// one they share on the files; one each with the database, as on
    /// machines of their own.
    pub fn data_dirs(&self, processes: usize) -> DataDirs {
        let count = match self {
            Backend::Files => 1,
            Backend::Postgres(_) => processes.max(1),
        };
        DataDirs(
            (0..count)
                .map(|_| tempfile::tempdir().expect("a temp dir"))
                .collect(),
        )
    }

    /// A short name, for what a test names after its backend (a vhost).
    pub fn tag(&self) -> &'static str {
        match self {
            Backend::Files => "files",
            Backend::Postgres(_) => "pg",
        }
    }
}

/// See [`Backend::data_dirs`].
pub struct DataDirs(Vec<tempfile::TempDir>);

impl DataDirs {
    /// Process number `process`'s data directory.
    pub fn of(&self, process: usize) -> &Path {
        self.0[process % self.0.len()].path()
    }
}

/// Two tests of one scenario, `NAME::files` and `NAME::postgres`:
/// `on_both_backends!(NAME, scenario)` with `async fn scenario(backend:
/// Backend)` beside it. The database test skips loudly without PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $scenario:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn files() {
                super::$scenario($crate::support::pg::Backend::Files).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(backend) = $crate::support::pg::Backend::postgres(stringify!($name))
                else {
                    return;
                };
                super::$scenario(backend).await;
            }
        }
    };
}

/// The PostgreSQL programs of the newest version installed, if any.
fn installed() -> Option<std::path::PathBuf> {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("bin/initdb").exists())
        .collect();
    versions.sort();
    Some(versions.pop()?.join("bin"))
}

/// The PostgreSQL programs (of the newest version installed).
fn bin() -> std::path::PathBuf {
    installed().expect("a PostgreSQL version with initdb in /usr/lib/postgresql")
}

/// A PostgreSQL cluster of the test's own, in a temp dir, run as the
/// `postgres` user (the server refuses root). Stopped at once, with
/// everything it started, when dropped, whatever happened.
pub struct Cluster {
    pub port: u16,
    pub dir: std::path::PathBuf,
    /// User postgres's password, for a cluster that asks for one.
    password: Option<String>,
    /// Owns the parent directory, removed last.
    _root: tempfile::TempDir,
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs a PostgreSQL program as the `postgres` user; its output, or why not.
fn as_postgres(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin().join(program))
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn postgres_owns(path: &std::path::Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success());
}

impl Cluster {
    fn empty() -> Cluster {
        let root = tempfile::tempdir().expect("a temp dir");
        postgres_owns(root.path());
        Cluster {
            port: free_port(),
            dir: root.path().join("data"),
            password: None,
            _root: root,
        }
    }

    /// A new primary, started; `None` (after a loud `SKIPPED` line) where
    /// PostgreSQL is not installed and running here, unless
    /// `FASTFOOD_REQUIRE_POSTGRES=1`.
    pub fn primary(test: &str) -> Option<Cluster> {
        if !available(test, true) {
            return None;
        }
        let cluster = Cluster::empty();
        let dir = cluster.dir.to_str().unwrap();
        as_postgres("initdb", &["-D", dir, "-A", "trust", "-U", "postgres"]).expect("initdb");
        cluster.start();
        Some(cluster)
    }

    /// A new cluster, started, that asks for user postgres's `password`
    /// on 127.0.0.1 (`scram-sha-256`); [`Cluster::url`] carries it.
    pub fn with_password(test: &str, password: &str) -> Option<Cluster> {
        if !available(test, true) {
            return None;
        }
        let mut cluster = Cluster::empty();
        let file = cluster.dir.with_file_name("password");
        std::fs::write(&file, password).expect("write the password file");
        postgres_owns(&file);
        let pwfile = format!("--pwfile={}", file.display());
        let dir = cluster.dir.to_str().unwrap();
        as_postgres(
            "initdb",
            &[
                "-D",
                dir,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--auth-host=scram-sha-256",
                &pwfile,
            ],
        )
        .expect("initdb");
        cluster.password = Some(password.to_owned());
        cluster.start();
        Some(cluster)
    }

    /// A standby of `primary` (`pg_basebackup -R`), started.
    pub fn standby_of(primary: &Cluster) -> Cluster {
        let cluster = Cluster::empty();
        let dir = cluster.dir.to_str().unwrap();
        let port = primary.port.to_string();
        as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                dir,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        )
        .expect("pg_basebackup");
        cluster.start();
        cluster
    }

    pub fn start(&self) {
        let dir = self.dir.to_str().unwrap();
        let log = self.dir.with_file_name("log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.parent().unwrap().display()
        );
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                dir,
                "-w",
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "start",
            ],
        )
        .expect("pg_ctl start");
    }

    /// `postgres://postgres@127.0.0.1:PORT/db` (with the password, if the
    /// cluster asks for one).
    pub fn url(&self, db: &str) -> String {
        let password = self
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(":{p}"));
        format!("postgres://postgres{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` on database `db` through `psql`.
    pub fn sql(&self, db: &str, sql: &str) -> Result<String, String> {
        try_query(&self.url(db), sql)
    }

    /// The postmaster's process id, if it runs.
    pub fn postmaster(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// `kill -9` of the postmaster, then of the processes it had started
    /// (as when the machine dies: nothing of the server answers any more).
    pub fn kill9(&self) {
        let Some(pid) = self.postmaster() else { return };
        let children = children_of(pid);
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        for child in children {
            let _ = Command::new("kill")
                .args(["-9", &child.to_string()])
                .status();
        }
    }

    /// `pg_ctl promote`: the standby becomes the primary.
    pub fn promote(&self) {
        as_postgres(
            "pg_ctl",
            &["-D", self.dir.to_str().unwrap(), "-w", "promote"],
        )
        .expect("pg_ctl promote");
    }
}

/// The processes whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid …: the comm may hold spaces.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.postmaster().is_some() {
            let stopped = as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    self.dir.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
            if stopped.is_err() {
                self.kill9();
            }
        }
    }
}
