//! The `issuance-bot` binary: config validation exit codes, and the serve
//! lifecycle over real sockets (ready → second instance refused by the
//! lease → SIGTERM → lease released → a successor starts).
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_issuance-bot");
const ALPACA_KEY: &str = "cli-test-alpaca-key-aaaaaaaaaaaaaaaaaaaaa";
const INTERNAL_KEY: &str = "cli-test-internal-key-bbbbbbbbbbbbbbbbbbbb";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16, metrics_port: u16) -> String {
    let path = dir.join(format!("issuance-{port}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
[server]
bind = "127.0.0.1:{port}"

[database]
url = "sqlite://{db}"

[auth.alpaca]
api_key = "{ALPACA_KEY}"

[auth.internal]
api_key = "{INTERNAL_KEY}"

[metrics]
bind = "127.0.0.1:{metrics_port}"
"#,
            db = dir.join("issuance.db").display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The binary with no `ISSUANCE_*` variables from the caller's shell.
fn command() -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ISSUANCE_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "info");
    command
}

fn run(args: &[&str]) -> Output {
    command().args(args).output().unwrap()
}

fn spawn_serve(config: &str) -> Child {
    command()
        .args(["serve", "--config", config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(port: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let response = client
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await;
        if let Ok(response) = response
            && response.status() == reqwest::StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "service never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "service ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn validate_config_prints_a_redacted_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 8080, 9100);
    let output = run(&["validate-config", "--config", &config]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(stdout.contains("REDACTED"), "{stdout}");
    assert!(!stdout.contains(ALPACA_KEY), "{stdout}");
    assert!(!stdout.contains(INTERNAL_KEY), "{stdout}");
}

#[test]
fn validate_config_rejects_bad_config_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 8080, 9100);
    let output = command()
        .args(["validate-config", "--config", &config])
        .env("ISSUANCE_SERVER__BIDN", "127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ISSUANCE_SERVER__BIDN"), "{stderr}");

    let output = run(&["validate-config", "--config", "/no/such/file.toml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn serve_holds_the_lease_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let config = write_config(dir.path(), port, metrics_port);

    let mut first = spawn_serve(&config);
    wait_ready(port).await;

    let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let metrics =
        reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");

    // A second instance on the same database refuses to start.
    let second_config = write_config(dir.path(), free_port(), free_port());
    let second = command()
        .args(["serve", "--config", &second_config])
        .output()
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(!second.status.success(), "{logs}");
    assert!(logs.contains("holds the service lease"), "{logs}");
    // ...and the first keeps serving.
    wait_ready(port).await;

    let status = terminate(&mut first);
    assert!(status.success(), "{status}");

    // The lease was released: a successor starts at once.
    let mut successor = spawn_serve(&config);
    wait_ready(port).await;
    assert!(terminate(&mut successor).success());
}
