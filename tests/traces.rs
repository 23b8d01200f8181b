//! Trace export end to end: the service binary, started with
//! `telemetry.otlp_endpoint` pointing at a real OTLP/HTTP receiver (a
//! small HTTP server here that decodes the protobuf), performs a mint and
//! a redemption on the e2e stack (anvil, the ITN simulator). The receiver
//! must get every step of each as spans tagged with the flow's id: the
//! mint's driver steps in the trace of the request that confirmed the
//! journal (linked to the request that initiated the mint), the
//! redemption's in the trace of the monitor's detection; Alpaca spans
//! with status and attempt; the configured headers on every export; no
//! credential in any attribute.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

#[path = "e2e/harness.rs"]
#[allow(dead_code, reason = "shared with the e2e target; not all used here")]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use harness::{Env, Options};

const BIN: &str = env!("CARGO_BIN_EXE_issuance-bot");
const HYPERDX_KEY: &str = "hyperdx-ingestion-key-for-the-test";
const SERVICE_NAME: &str = "issuance-bot-traces-test";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Export {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// An OTLP/HTTP receiver: answers every request 200 with an empty
/// `ExportTraceServiceResponse` and keeps what it got.
struct Receiver {
    port: u16,
    exports: Arc<Mutex<Vec<Export>>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let exports = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&exports);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&kept)));
            }
        });
        Self { port, exports }
    }

    fn exports(&self) -> Vec<Export> {
        self.exports.lock().unwrap().clone()
    }
}

/// HTTP/1.1 with keep-alive, bodies by Content-Length (what the
/// exporter's client sends).
async fn serve(mut stream: TcpStream, exports: Arc<Mutex<Vec<Export>>>) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) =
                buffer.windows(4).position(|window| window == b"\r\n\r\n")
            {
                break at + 4;
            }
            let mut chunk = [0_u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| {
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0_u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
        let body = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        exports.lock().unwrap().push(Export {
            path,
            headers,
            body,
        });
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                      content-length: 0\r\n\r\n";
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A span as received, with its attributes as text.
#[derive(Debug, Clone)]
struct ReceivedSpan {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    links: Vec<Vec<u8>>,
    attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text(attribute: &KeyValue) -> String {
    match attribute
        .value
        .as_ref()
        .and_then(|value| value.value.as_ref())
    {
        Some(AnyValue::StringValue(text)) => text.clone(),
        Some(AnyValue::IntValue(number)) => number.to_string(),
        Some(AnyValue::BoolValue(flag)) => flag.to_string(),
        Some(AnyValue::DoubleValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every span of every export, and the `service.name` of each batch.
fn decode(exports: &[Export]) -> (Vec<ReceivedSpan>, BTreeSet<String>) {
    let mut spans = Vec::new();
    let mut services = BTreeSet::new();
    for export in exports {
        let request =
            ExportTraceServiceRequest::decode(export.body.as_slice()).unwrap();
        for resource_spans in request.resource_spans {
            if let Some(resource) = &resource_spans.resource {
                services.extend(
                    resource
                        .attributes
                        .iter()
                        .filter(|attribute| attribute.key == "service.name")
                        .map(text),
                );
            }
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        attributes: span
                            .attributes
                            .iter()
                            .map(|attribute| {
                                (attribute.key.clone(), text(attribute))
                            })
                            .collect(),
                        links: span
                            .links
                            .iter()
                            .map(|link| link.span_id.clone())
                            .collect(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                    });
                }
            }
        }
    }
    (spans, services)
}

fn spawn_service(
    config: &std::path::Path,
    port: u16,
    key_file: &std::path::Path,
) -> Child {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ISSUANCE_") {
            command.env_remove(name);
        }
    }
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("ISSUANCE_SERVER__BIND", format!("127.0.0.1:{port}"))
        // The HyperDX form: the ingestion key from a credential file.
        .env(
            "ISSUANCE_TELEMETRY__OTLP_HEADERS_FILE__AUTHORIZATION",
            key_file,
        )
        .env("RUST_LOG", "info,rocket=off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(port: u16) {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    loop {
        let health = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await;
        if health.is_ok_and(|answer| answer.status().is_success()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// SIGTERM, then wait: the exporter flushes on a graceful stop.
fn terminate(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mint_and_a_redemption_arrive_as_traces_of_their_steps() {
    let receiver = Receiver::start().await;
    let mut env = Env::start_opts(Options::default()).await;
    // From here on the service runs as the binary, exporting spans.
    env.pause().await;
    let config = env.config_path().to_owned();
    let mut text = std::fs::read_to_string(&config).unwrap();
    write!(
        text,
        "\n[telemetry]\nservice_name = \"{SERVICE_NAME}\"\n\
         otlp_endpoint = \"http://127.0.0.1:{}/v1/traces\"\n\
         [telemetry.otlp_headers]\nx-tenant = \"issuer-test\"\n",
        receiver.port
    )
    .unwrap();
    std::fs::write(&config, text).unwrap();
    let key_file = config.with_extension("hyperdx-key");
    std::fs::write(&key_file, format!("{HYPERDX_KEY}\n")).unwrap();
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = spawn_service(&config, port, &key_file);
    wait_healthy(port).await;
    env.base_url = format!("http://127.0.0.1:{port}");
    env.sim.set_issuer_base_url(env.base_url.parse().unwrap());

    let outcome = env.request_mint("2").await;
    let issuer_request_id = outcome.issuer_request_id.clone().unwrap();
    let flow_id = outcome.tokenization_request_id.to_string();
    env.wait_for_status(&issuer_request_id, "completed").await;
    let redemption_id = redeem(&env, "0.5").await;
    wait_for_redemption(&env, &redemption_id).await;
    terminate(&mut child);

    let exports = receiver.exports();
    assert!(!exports.is_empty(), "nothing exported");
    for export in &exports {
        assert_eq!(export.path, "/v1/traces");
        assert_eq!(
            export.headers.get("content-type").map(String::as_str),
            Some("application/x-protobuf")
        );
        assert_eq!(
            export.headers.get("authorization").map(String::as_str),
            Some(HYPERDX_KEY)
        );
        assert_eq!(
            export.headers.get("x-tenant").map(String::as_str),
            Some("issuer-test")
        );
    }
    let (spans, services) = decode(&exports);
    assert_eq!(services, BTreeSet::from([SERVICE_NAME.to_owned()]));

    // Every step of the mint, each tagged with the mint's id.
    let flow: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.attr("flow.id") == Some(flow_id.as_str()))
        .collect();
    let names: BTreeSet<&str> =
        flow.iter().map(|span| span.name.as_str()).collect();
    for expected in [
        "mint.step",
        "mint.deposit",
        "chain.sign",
        "mint.command",
        "chain.broadcast",
        "mint.follow",
        "chain.receipt",
        "mint.callback",
        "alpaca.mint_callback",
    ] {
        assert!(names.contains(expected), "{expected} missing: {names:?}");
    }
    assert!(
        flow.iter()
            .all(|span| span.attr("flow.kind") == Some("mint")),
        "{flow:#?}"
    );
    let commands: BTreeSet<&str> = flow
        .iter()
        .filter(|span| span.name == "mint.command")
        .filter_map(|span| span.attr("command"))
        .collect();
    assert_eq!(
        commands,
        BTreeSet::from([
            "record_tx_intent",
            "record_minted",
            "record_callback_delivered"
        ])
    );
    let callback = flow
        .iter()
        .find(|span| span.name == "alpaca.mint_callback")
        .unwrap();
    assert_eq!(callback.attr("attempt"), Some("1"), "{callback:?}");
    assert_eq!(
        callback.attr("http.response.status_code"),
        Some("200"),
        "{callback:?}"
    );

    // The driver's steps continue the trace of the request that confirmed
    // the journal, and link to the request that initiated the mint.
    let by_id: BTreeMap<&[u8], &ReceivedSpan> = spans
        .iter()
        .map(|span| (span.span_id.as_slice(), span))
        .collect();
    let steps: Vec<&&ReceivedSpan> = flow
        .iter()
        .filter(|span| span.name == "mint.step")
        .collect();
    for step in &steps {
        let parent = by_id
            .get(step.parent_span_id.as_slice())
            .unwrap_or_else(|| panic!("step without its request: {step:?}"));
        assert_eq!(parent.name, "POST /inkind/issuance/confirm", "{parent:?}");
        assert_eq!(parent.trace_id, step.trace_id);
        assert_eq!(
            step.attr("flow.request_id"),
            parent.attr("request_id"),
            "{step:?}"
        );
        let initiated = step
            .links
            .iter()
            .filter_map(|link| by_id.get(link.as_slice()))
            .map(|span| span.name.as_str())
            .collect::<Vec<_>>();
        assert_eq!(initiated, ["POST /inkind/issuance"], "{step:?}");
    }
    // No credential in any attribute.
    let secret = env.sim.config().broker_secret.clone();
    for span in &spans {
        for value in span.attributes.values() {
            for credential in [
                secret.as_str(),
                harness::ALPACA_KEY,
                harness::INTERNAL_KEY,
                HYPERDX_KEY,
            ] {
                assert!(!value.contains(credential), "{span:?}");
            }
        }
    }
    // ...so the whole mint after the confirmation is one trace.
    let trace = &steps[0].trace_id;
    assert!(flow.iter().all(|span| &span.trace_id == trace), "{flow:#?}");

    // The redemption: detected by the monitor, whose span starts its
    // trace; every step after it in that trace, tagged with its id.
    let flow: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.attr("flow.id") == Some(redemption_id.as_str()))
        .collect();
    let names: BTreeSet<&str> =
        flow.iter().map(|span| span.name.as_str()).collect();
    for expected in [
        "redemption.detect",
        "redemption.step",
        "redemption.redeem_call",
        "alpaca.redeem",
        "redemption.command",
        "redemption.poll",
        "alpaca.get_request",
        "redemption.burn",
        "chain.sign",
        "chain.broadcast",
        "redemption.follow_burn",
        "chain.receipt",
    ] {
        assert!(names.contains(expected), "{expected} missing: {names:?}");
    }
    let detect = flow
        .iter()
        .find(|span| span.name == "redemption.detect")
        .unwrap();
    for step in flow.iter().filter(|span| span.name == "redemption.step") {
        assert_eq!(step.parent_span_id, detect.span_id, "{step:?}");
    }
    assert!(
        flow.iter().all(|span| span.trace_id == detect.trace_id
            && span.attr("flow.kind") == Some("redemption")),
        "{flow:#?}"
    );
    env.stop().await;
}

/// The AP sends `qty` tAAPL back to the issuer wallet; returns the
/// redemption's id (`0x<tx hash>-<log index>`).
async fn redeem(env: &Env, qty: &str) -> String {
    use alloy::sol_types::SolEvent as _;
    use receipt_vault::OffchainAssetReceiptVault as Vault;

    let amount = issuance_bot::quantity::Quantity::parse(qty)
        .unwrap()
        .to_shares();
    let bot = env.chain.bot.address();
    let receipt = env
        .chain
        .vault_as(&env.chain.ap)
        .transfer(bot, amount)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "transfer reverted");
    let log = receipt
        .inner
        .logs()
        .iter()
        .find(|log| {
            Vault::Transfer::decode_log_data(&log.inner.data)
                .is_ok_and(|transfer| transfer.to == bot)
        })
        .unwrap();
    format!("{:#x}-{}", receipt.transaction_hash, log.log_index.unwrap())
}

async fn wait_for_redemption(env: &Env, id: &str) {
    let deadline = tokio::time::Instant::now() + harness::TIMEOUT;
    loop {
        let (status, body) = env.get(&format!("/redemptions/{id}")).await;
        if status == 200 && body["state"] == "completed" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redemption {id} never completed; last seen {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
