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

/// The PostgreSQL programs (of the newest version installed).
fn bin() -> std::path::PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed in /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("bin/initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL version with initdb")
        .join("bin")
}

/// A PostgreSQL cluster of the test's own, in a temp dir, run as the
/// `postgres` user (the server refuses root). Stopped at once, with
/// everything it started, when dropped, whatever happened.
pub struct Cluster {
    pub port: u16,
    pub dir: std::path::PathBuf,
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
            _root: root,
        }
    }

    /// A new primary, started.
    pub fn primary() -> Cluster {
        let cluster = Cluster::empty();
        let dir = cluster.dir.to_str().unwrap();
        as_postgres("initdb", &["-D", dir, "-A", "trust", "-U", "postgres"]).expect("initdb");
        cluster.start();
        cluster
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

    /// `postgres://postgres@127.0.0.1:PORT/db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` on database `db` through `psql`.
    pub fn sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                &self.url(db),
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
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
