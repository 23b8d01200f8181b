//! Runs the real `devnet` binary: `--once` must complete a mint and a
//! redemption and exit 0; a SIGINT while serving must stop everything.
//! Either way no anvil may be left behind and the temporary files go.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] fns"
)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: a cold anvil, a debug build and a busy two-core machine.
const TIMEOUT: Duration = Duration::from_mins(5);

fn devnet(extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args([
            "--port",
            "0",
            "--sim-port",
            "0",
            "--step-timeout-secs",
            "120",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stdout lines as they come, from a reader thread.
fn lines(child: &mut Child) -> Receiver<String> {
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
    rx
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

/// Waits for exit; kills the child (and fails) at the deadline.
fn wait(child: &mut Child, deadline: Instant) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("devnet did not exit in time: {}", stderr_of(child));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Every line received until the channel closes (the child exited).
fn drain(rx: &Receiver<String>, into: &mut Vec<String>) {
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        into.push(line);
    }
}

/// `anvil http://... (pid 1234, chain id 31337)` -> 1234.
fn anvil_pid(output: &[String]) -> u32 {
    let line = output
        .iter()
        .find(|line| line.contains("[chain] anvil "))
        .unwrap_or_else(|| panic!("no anvil line in {output:#?}"));
    let after = line.split("(pid ").nth(1).unwrap();
    after.split(',').next().unwrap().parse().unwrap()
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
    let pid = anvil_pid(output);
    assert!(!anvil_alive(pid), "anvil {pid} survived the devnet");
    let removed = line_with(output, "[devnet] removed ");
    let dir = removed.split("[devnet] removed ").nth(1).unwrap();
    assert!(!Path::new(dir).exists(), "{dir} was left behind");
}

#[test]
fn once_mints_and_redeems_end_to_end_then_exits_leaving_nothing_behind() {
    let deadline = Instant::now() + TIMEOUT;
    let mut child = devnet(&["--once", "--qty", "10.5"]);
    let rx = lines(&mut child);
    let status = wait(&mut child, deadline);
    let mut output = Vec::new();
    drain(&rx, &mut output);
    assert!(
        status.success(),
        "exit {status}\nstdout: {output:#?}\nstderr: {}",
        stderr_of(&mut child)
    );

    let mint = line_with(&output, "[mint] completed: tx 0x");
    assert!(mint.contains("receipt #1"), "{mint}");
    assert!(mint.contains("AP balance 10.5 tAAPL"), "{mint}");
    assert!(mint.contains("request completed"), "{mint}");
    assert!(mint.contains("AP 989.5 AAPL"), "{mint}");

    let redemption = line_with(&output, "[redemption] completed: burn tx 0x");
    assert!(redemption.contains("receipt #1: 10.5"), "{redemption}");
    assert!(redemption.contains("AP balance 0 tAAPL"), "{redemption}");
    assert!(redemption.contains("request completed"), "{redemption}");
    assert!(
        redemption.contains("AP 1000 AAPL (restored)"),
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
    assert_cleaned_up(&output);
}

#[test]
fn sigint_while_serving_stops_the_service_the_simulator_and_anvil() {
    let deadline = Instant::now() + TIMEOUT;
    let mut child = devnet(&[]);
    let rx = lines(&mut child);
    let mut output = Vec::new();
    while !output
        .iter()
        .any(|line: &String| line.contains("is serving"))
    {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(remaining) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "never started serving: {output:#?}\n{}",
                stderr_of(&mut child)
            );
        };
        output.push(line);
    }
    // The banner's URLs answer while serving.
    drain_until(&rx, &mut output, "Another redemption");
    let service = banner_address(&output, "  service ");
    let sim = banner_address(&output, "  ITN simulator ");
    assert!(TcpStream::connect(&service).is_ok());
    assert!(TcpStream::connect(&sim).is_ok());

    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait(&mut child, deadline);
    drain(&rx, &mut output);
    assert!(status.success(), "exit {status}: {output:#?}");
    line_with(&output, "[devnet] stopped by SIGINT");
    line_with(&output, "[service] service stopped");
    line_with(&output, "[sim] simulator stopped");
    assert!(
        TcpStream::connect(&service).is_err(),
        "service still listens"
    );
    assert!(TcpStream::connect(&sim).is_err(), "simulator still listens");
    assert_cleaned_up(&output);
}

fn drain_until(rx: &Receiver<String>, into: &mut Vec<String>, needle: &str) {
    while !into.iter().any(|line| line.contains(needle)) {
        into.push(rx.recv_timeout(Duration::from_secs(30)).unwrap());
    }
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
