//! Runs the real `devnet` binary: `--once` must complete a mint and a
//! redemption and exit 0; a SIGINT while serving (to the devnet, or to
//! its process group as Ctrl-C does) must stop everything. Either way no
//! anvil may be left behind, and the temporary files go unless
//! `--keep-db` was given.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] fns"
)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Generous: a cold anvil, a debug build and a busy two-core machine.
const TIMEOUT: Duration = Duration::from_mins(5);

/// The devnet process with its output read on background threads (so a
/// full pipe never blocks it). Should a test fail while it runs, its
/// whole process group (anvil included) is killed, so nothing outlives
/// the test.
struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    /// Stdout lines received so far.
    output: Vec<String>,
    /// Stderr, once the devnet has exited.
    errors: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}

fn devnet(extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args([
            "--port",
            "0",
            "--sim-port",
            "0",
            "--step-timeout-secs",
            "120",
        ])
        .args(extra)
        // Its own process group, like a shell job: Ctrl-C reaches the
        // whole group, anvil included.
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Running {
        child,
        stdout: rx,
        stderr: Some(stderr),
        output: Vec::new(),
        errors: String::new(),
    }
}

impl Running {
    /// Reads stdout until a line contains `needle`.
    fn read_until(&mut self, needle: &str, deadline: Instant) {
        while !self.output.iter().any(|line| line.contains(needle)) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.stdout.recv_timeout(remaining) else {
                panic!("no {needle:?} in time: {:#?}", self.output);
            };
            self.output.push(line);
        }
    }

    /// Waits for the exit, then reads the rest of the output.
    fn wait(&mut self, deadline: Instant) -> ExitStatus {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "devnet did not exit in time: {:#?}",
                self.output
            );
            thread::sleep(Duration::from_millis(100));
        };
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(10)) {
            self.output.push(line);
        }
        if let Some(reader) = self.stderr.take() {
            self.errors = reader.join().unwrap();
        }
        status
    }
}

/// `anvil http://... (pid 1234, chain id 31337)` -> 1234, for each of
/// the two chains.
fn anvil_pids(output: &[String]) -> Vec<u32> {
    let pids: Vec<u32> = output
        .iter()
        .filter(|line| {
            line.contains("[chain] anvil ") && line.contains("chain id")
        })
        .map(|line| {
            let after = line.split("(pid ").nth(1).unwrap();
            after.split(',').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 2, "two anvils in {output:#?}");
    pids
}

/// Whether `pid` is still an anvil process (a reused pid is not).
fn anvil_alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        String::from_utf8_lossy(&cmdline).contains("anvil")
    })
}

fn line_with<'a>(output: &'a [String], needle: &str) -> &'a str {
    output
        .iter()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in {output:#?}"))
}

fn assert_cleaned_up(output: &[String]) {
    for pid in anvil_pids(output) {
        assert!(!anvil_alive(pid), "anvil {pid} survived the devnet");
    }
    let removed = line_with(output, "[devnet] removed ");
    let dir = removed.split("[devnet] removed ").nth(1).unwrap();
    assert!(!Path::new(dir).exists(), "{dir} was left behind");
}

#[test]
fn once_mints_and_redeems_end_to_end_then_exits_leaving_nothing_behind() {
    let deadline = Instant::now() + TIMEOUT;
    let mut devnet = devnet(&["--once", "--qty", "10.5"]);
    let status = devnet.wait(deadline);
    assert!(
        status.success(),
        "exit {status}\nstdout: {:#?}\nstderr: {}",
        devnet.output,
        devnet.errors
    );
    let output = &devnet.output;

    // One mint on each chain, each its vault's first receipt.
    let mint = line_with(output, "[mint] completed on base: tx 0x");
    assert!(mint.contains("receipt #1"), "{mint}");
    assert!(mint.contains("AP balance 10.5 tAAPL"), "{mint}");
    assert!(mint.contains("request completed"), "{mint}");
    assert!(mint.contains("AP 989.5 AAPL"), "{mint}");
    let second = line_with(output, "[mint] completed on ethereum: tx 0x");
    assert!(second.contains("receipt #1"), "{second}");
    assert!(second.contains("AP balance 10.5 tAAPL"), "{second}");
    assert!(second.contains("AP 979 AAPL"), "{second}");

    // The redemption on base.
    let redemption =
        line_with(output, "[redemption] completed on base: burn tx 0x");
    assert!(redemption.contains("receipt #1: 10.5"), "{redemption}");
    assert!(redemption.contains("AP balance 0 tAAPL"), "{redemption}");
    assert!(redemption.contains("request completed"), "{redemption}");
    assert!(
        redemption.contains("AP 989.5 AAPL (the redeemed shares restored)"),
        "{redemption}"
    );
    // The mint came before the redemption, and both before the exit.
    let position = |needle: &str| {
        output
            .iter()
            .position(|line| line.contains(needle))
            .unwrap()
    };
    assert!(position("[mint] completed") < position("[redemption] completed"));
    assert!(
        position("[redemption] completed")
            < position("demo complete, everything stopped")
    );
    // --once never prints the serving banner.
    assert!(!output.iter().any(|line| line.contains("is serving")));
    assert_cleaned_up(output);
}

#[test]
fn keep_db_leaves_the_database_and_config_but_no_anvil() {
    let deadline = Instant::now() + TIMEOUT;
    let mut devnet = devnet(&["--once", "--keep-db"]);
    let status = devnet.wait(deadline);
    assert!(status.success(), "exit {status}: {}", devnet.errors);
    let output = &devnet.output;
    let kept = line_with(output, "[devnet] kept the database and config in ");
    let dir = Path::new(
        kept.split("[devnet] kept the database and config in ")
            .nth(1)
            .unwrap(),
    )
    .to_owned();
    let database = std::fs::metadata(dir.join("issuance.db"));
    let config = std::fs::read_to_string(dir.join("issuance.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(database.unwrap().len() > 0);
    let config = config.unwrap();
    assert!(config.contains("[chains.base]"), "{config}");
    assert!(config.contains("[chains.ethereum]"), "{config}");
    for pid in anvil_pids(output) {
        assert!(!anvil_alive(pid), "anvil {pid} survived the devnet");
    }
}

/// Where a signal is sent.
#[derive(Clone, Copy)]
enum Target {
    /// The devnet alone (`kill -INT <pid>`).
    Process,
    /// Its whole process group, as a terminal's Ctrl-C does: anvil gets
    /// the SIGINT too.
    Group,
}

#[test]
fn sigint_while_serving_stops_the_service_the_simulator_and_anvil() {
    stop_while_serving(Target::Process);
}

#[test]
fn ctrl_c_to_the_process_group_while_serving_stops_everything() {
    stop_while_serving(Target::Group);
}

fn stop_while_serving(target: Target) {
    let deadline = Instant::now() + TIMEOUT;
    let mut devnet = devnet(&[]);
    devnet.read_until("is serving", deadline);
    devnet.read_until("Another redemption", deadline);
    // The banner's URLs answer while serving.
    let service = banner_address(&devnet.output, "  service ");
    let sim = banner_address(&devnet.output, "  ITN simulator ");
    assert!(TcpStream::connect(&service).is_ok());
    assert!(TcpStream::connect(&sim).is_ok());

    let pid = devnet.child.id().to_string();
    let killed = match target {
        Target::Process => Command::new("kill").args(["-INT", &pid]).status(),
        Target::Group => Command::new("kill")
            .args(["-INT", "--", &format!("-{pid}")])
            .status(),
    }
    .unwrap();
    assert!(killed.success());
    let status = devnet.wait(deadline);
    assert!(
        status.success(),
        "exit {status}: {:#?}\nstderr: {}",
        devnet.output,
        devnet.errors
    );
    let output = &devnet.output;
    line_with(output, "[devnet] stopped by SIGINT");
    line_with(output, "[service] service stopped");
    line_with(output, "[sim] simulator stopped");
    assert!(
        TcpStream::connect(&service).is_err(),
        "service still listens"
    );
    assert!(TcpStream::connect(&sim).is_err(), "simulator still listens");
    assert_cleaned_up(output);
}

/// `  service        http://127.0.0.1:PORT` -> `127.0.0.1:PORT`.
fn banner_address(output: &[String], label: &str) -> String {
    let line = line_with(output, label);
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap();
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}
