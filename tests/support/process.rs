//! The real `fastfood` binary as a child process, for crashes, signals and
//! several processes on one data directory. One launcher starts every form:
//! a server ([`ServerProcess`]), a kitchen ([`WorkerProcess`]) and a run
//! expected to stop by itself ([`run_to_exit`]), all with one environment
//! policy ([`app_reads`]). A child is killed on drop, and what it wrote on
//! stderr is printed if the test fails while it is alive.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::{Api, DEADLINE, POLL_EVERY, wait_until};

/// Whether the program reads the environment variable `name`: every one of
/// its own (`FASTFOOD_*`: options, the load tester's options, the crash
/// point, the test knobs), the broker URL and the log filter. A child starts
/// without any of them, so the environment the tests run in cannot change
/// what it does. A test that wants one passes it explicitly.
pub fn app_reads(name: &str) -> bool {
    name.starts_with("FASTFOOD_")
        || name == "AMQP_URL"
        || name == "DATABASE_URL"
        || name == "RUST_LOG"
}

/// `fastfood ARGS` with what the program reads ([`app_reads`]) cleared, logs
/// at `info`, then `env`.
pub fn fastfood<I, S>(args: I, env: &[(&str, &str)]) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    fastfood_under(&[], args, env)
}

/// [`fastfood`] run by `wrapper` (`["fiu-run", "-x"]`): `WRAPPER… fastfood ARGS`.
pub fn fastfood_under<I, S>(wrapper: &[&str], args: I, env: &[(&str, &str)]) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let binary = env!("CARGO_BIN_EXE_fastfood");
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(app_reads) {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "info").envs(env.iter().copied());
    command
}

/// The arguments of `fastfood serve` on `listen` with the data in `data_dir`.
fn serve_args<'a>(data_dir: &'a Path, listen: &'a str, args: &'a [&'a str]) -> Vec<&'a OsStr> {
    let head = ["serve", "--listen", listen, "--data-dir"].map(OsStr::new);
    let tail = args.iter().map(OsStr::new);
    head.into_iter()
        .chain([data_dir.as_os_str()])
        .chain(tail)
        .collect()
}

/// A running child `fastfood`, and what it is to the test through `face`:
/// the HTTP helpers of a server ([`Api`]), or nothing more for a worker.
pub struct Process<T> {
    child: tokio::process::Child,
    pub pid: u32,
    stderr: Arc<Mutex<String>>,
    stderr_done: Option<JoinHandle<()>>,
    face: T,
}

/// `fastfood serve`: a child process with a server's HTTP helpers.
pub type ServerProcess = Process<Api>;

/// `fastfood worker`: a kitchen with no HTTP of its own.
pub type WorkerProcess = Process<Kitchen>;

/// What a [`WorkerProcess`] is besides a process: nothing to ask it over HTTP.
pub struct Kitchen;

impl<T> Deref for Process<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.face
    }
}

impl<T> Process<T> {
    /// Starts `command`, keeping its stderr; stdout is left to the caller.
    fn spawn_child(mut command: Command, face: T) -> (Process<T>, tokio::process::ChildStdout) {
        let mut child = command.spawn().expect("start fastfood");
        let pid = child.id().expect("a pid");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().expect("piped stderr"), stderr.clone());
        let stderr_done = tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let process = Process {
            child,
            pid,
            stderr,
            stderr_done: Some(stderr_done),
            face,
        };
        (process, stdout)
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let status = self.wait(DEADLINE).await.expect("a killed process exits");
        assert!(!status.success(), "a SIGKILLed process does not exit 0");
    }

    /// SIGTERM (a polite stop); does not wait.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits for the process to exit, at most `timeout`; `None` if it is still
    /// running then. Once it has exited, its stderr is complete.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .expect("wait");
        if let Some(done) = self.stderr_done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
        Some(status)
    }

    /// Whether it is still running (it may have crashed at a crash point).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits until it has aborted at crash point `point` (as
    /// `FASTFOOD_CRASH_AT` told it to), as abruptly as `kill -9`.
    pub async fn wait_crashed_at(&mut self, point: &str) {
        let status = self.wait(DEADLINE).await.expect("it crashed");
        assert!(!status.success(), "{point}: it crashed: {status}");
        assert!(
            self.stderr()
                .contains(&format!("FASTFOOD_CRASH_AT={point}: aborting here")),
            "{point}: it crashed where told:\n{}",
            self.stderr()
        );
    }
}

impl<T> Drop for Process<T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- stderr of fastfood (pid {}) ---\n{}",
                self.pid,
                self.stderr()
            );
        }
        let _ = self.child.start_kill();
    }
}

impl ServerProcess {
    /// Starts `fastfood serve --listen 127.0.0.1:0 --data-dir DIR ARGS` and
    /// waits until it answers `/healthz`.
    pub async fn spawn(data_dir: &Path, args: &[&str]) -> ServerProcess {
        ServerProcess::launch(data_dir, "127.0.0.1:0", args, &[]).await
    }

    /// [`ServerProcess::spawn`] with extra environment variables (crash points).
    pub async fn spawn_with_env(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        ServerProcess::launch(data_dir, "127.0.0.1:0", args, env).await
    }

    /// [`ServerProcess::spawn`] run by `wrapper` (`["fiu-run", "-x"]`, which
    /// execs it, so `pid` is the server's).
    pub async fn spawn_under(wrapper: &[&str], data_dir: &Path, args: &[&str]) -> ServerProcess {
        let command = fastfood_under(wrapper, serve_args(data_dir, "127.0.0.1:0", args), &[]);
        ServerProcess::launch_command(command).await
    }

    /// [`ServerProcess::spawn`] on a given address (a server started again
    /// where its screens expect it).
    pub async fn spawn_listening(data_dir: &Path, listen: &str, args: &[&str]) -> ServerProcess {
        ServerProcess::launch(data_dir, listen, args, &[]).await
    }

    /// [`ServerProcess::spawn`] for a server that may end by itself before
    /// it answers (a worker that aborts on a poison pill): `Err` with how it
    /// ended, when it did.
    pub async fn try_spawn(data_dir: &Path, args: &[&str]) -> Result<ServerProcess, Exited> {
        let command = fastfood(serve_args(data_dir, "127.0.0.1:0", args), &[]);
        let (mut process, stdout) = Process::spawn_child(command, Api::at(String::new()));
        let mut stdout = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, stdout.next_line()).await;
        let up = match line {
            Ok(Ok(Some(line))) => {
                let base = line.strip_prefix("listening on ").map(str::to_owned);
                tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
                match base {
                    Some(base) => {
                        process.face = Api::at(base);
                        let url = process.url("/healthz");
                        tokio::time::timeout(DEADLINE, async {
                            loop {
                                let answered = process.client.get(&url).send().await;
                                if matches!(answered, Ok(r) if r.status() == 200) {
                                    return true;
                                }
                                if !process.is_running() {
                                    return false;
                                }
                                tokio::time::sleep(POLL_EVERY).await;
                            }
                        })
                        .await
                        .unwrap_or(false)
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if up {
            return Ok(process);
        }
        let status = process
            .wait(DEADLINE)
            .await
            .unwrap_or_else(|| panic!("fastfood neither came up nor ended:\n{}", process.stderr()));
        Err(Exited {
            status,
            stderr: process.stderr(),
        })
    }

    async fn launch(
        data_dir: &Path,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        ServerProcess::launch_command(fastfood(serve_args(data_dir, listen, args), env)).await
    }

    async fn launch_command(command: Command) -> ServerProcess {
        let (mut process, stdout) = Process::spawn_child(command, Api::at(String::new()));
        let mut stdout = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(DEADLINE, stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "fastfood printed no `listening on` line ({other:?}); stderr:\n{}",
                process.stderr()
            ),
        };
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the first line is {line:?}, not `listening on http://…`"));
        process.face = Api::at(base.to_owned());
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let url = process.url("/healthz");
        let ready = tokio::time::timeout(DEADLINE, async {
            loop {
                if matches!(process.client.get(&url).send().await, Ok(r) if r.status() == 200) {
                    return true;
                }
                if !process.is_running() {
                    return false;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "fastfood did not come up; stderr:\n{}",
            process.stderr()
        );
        process
    }
}

impl WorkerProcess {
    /// Starts `fastfood worker --broker URL --data-dir DIR ARGS` and waits
    /// until it is connected to the broker.
    pub async fn spawn(
        data_dir: &Path,
        url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let worker = WorkerProcess::launch(data_dir, url, args, env);
        wait_until(DEADLINE, "the worker to connect to RabbitMQ", || async {
            worker.stderr().contains("connected to RabbitMQ")
        })
        .await;
        worker
    }

    /// Starts a worker without waiting for it to connect (the broker may be
    /// down: it must run anyway, and connect once the broker is back).
    pub fn start(data_dir: &Path, url: &str, args: &[&str]) -> WorkerProcess {
        WorkerProcess::launch(data_dir, url, args, &[])
    }

    fn launch(data_dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let head = ["worker", "--broker", url, "--data-dir"].map(OsStr::new);
        let argv = head
            .into_iter()
            .chain([data_dir.as_os_str()])
            .chain(args.iter().map(OsStr::new));
        let (worker, mut stdout) = Process::spawn_child(fastfood(argv, env), Kitchen);
        // Nothing is expected there; keep the pipe empty all the same.
        tokio::spawn(async move {
            let mut sink = [0u8; 4096];
            while let Ok(1..) = stdout.read(&mut sink).await {}
        });
        worker
    }
}

/// Starts `fastfood rush --target TARGETS --no-chart --json --history FILE
/// ARGS`: a rush that records what its customers and boards saw and prints
/// its summary and verdict as JSON.
pub fn rush_recording(targets: &str, history: &Path, args: &[&str]) -> tokio::process::Child {
    let head = [
        "rush",
        "--target",
        targets,
        "--no-chart",
        "--json",
        "--history",
    ];
    let argv = head
        .iter()
        .map(OsStr::new)
        .chain([history.as_os_str()])
        .chain(args.iter().map(OsStr::new));
    fastfood(argv, &[]).spawn().expect("start fastfood rush")
}

/// What a run of the binary that is expected to stop by itself left behind.
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
}

/// Runs `fastfood serve` on `data_dir` expecting it to exit by itself (it
/// refuses to start); panics if it is still running after [`DEADLINE`].
pub async fn run_to_exit(data_dir: &Path, args: &[&str]) -> Exited {
    let child = fastfood(serve_args(data_dir, "127.0.0.1:0", args), &[])
        .spawn()
        .expect("start fastfood");
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("fastfood should have stopped by itself")
        .expect("its output");
    Exited {
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A memory figure of process `pid` in bytes: `field` of `/proc/PID/status`
/// (`VmRSS` what it holds now, `VmHWM` the most it ever held).
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}
