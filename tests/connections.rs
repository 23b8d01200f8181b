//! The front door's connection limits, over real sockets: stalled and idle
//! connections are closed within their timeouts while a well-behaved
//! client keeps getting prompt answers, and the per-client and total caps
//! refuse extra connections with 503 before reading them.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use issuance_bot::config::Config;
use issuance_bot::{RunningService, start_service};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

const ATTACKER: Ipv4Addr = Ipv4Addr::LOCALHOST;
const GOOD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

async fn start(dir: &tempfile::TempDir, connections: &str) -> RunningService {
    let path = dir.path().join("issuance.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"

[server.connections]
{connections}

[database]
url = "sqlite://{db}"

[auth.alpaca]
api_key = "connections-test-alpaca-key-aaaaaaaaaaaaaa"

[auth.internal]
api_key = "connections-test-internal-key-bbbbbbbbbbbb"
"#,
            db = dir.path().join("bot.db").display()
        ),
    )
    .unwrap();
    let config = Config::from_sources(Some(&path), Vec::new()).unwrap();
    start_service(config).await.unwrap()
}

/// A connection to the service from `source` (any 127/8 address is ours).
async fn connect(source: Ipv4Addr, service: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    socket.connect(service).await.unwrap()
}

/// Reads until the peer closes; returns what it sent and when it closed
/// (`None` if it was still open at `deadline`).
async fn read_until_closed(
    stream: &mut TcpStream,
    deadline: Instant,
) -> (String, Option<Instant>) {
    let mut seen = Vec::new();
    let mut buf = [0_u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&seen).into(), None),
            Ok(Ok(0) | Err(_)) => {
                return (
                    String::from_utf8_lossy(&seen).into(),
                    Some(Instant::now()),
                );
            }
            Ok(Ok(read)) => seen.extend_from_slice(&buf[..read]),
        }
    }
}

/// One well-behaved `GET /health` on a fresh connection from `source`.
async fn health(source: Ipv4Addr, service: SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = connect(source, service).await;
    stream
        .write_all(
            b"GET /health HTTP/1.1\r\nHost: bot\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let (answer, _) =
        read_until_closed(&mut stream, Instant::now() + Duration::from_secs(5))
            .await;
    (answer, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_idle_connections_are_closed_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(
        &dir,
        "header_read_timeout_ms = 1000\nbody_read_timeout_ms = 1000\n\
         idle_timeout_ms = 1000\nmax_connections_per_client = 1000",
    )
    .await;
    let addr = service.local_addr();

    // Hundreds of bad connections from one address, of four kinds.
    let opened = Instant::now();
    let mut partial_headers = Vec::new();
    let mut unfinished_bodies = Vec::new();
    let mut idle_after_connect = Vec::new();
    let mut idle_keep_alive = Vec::new();
    for _ in 0..100 {
        let mut stream = connect(ATTACKER, addr).await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: bo")
            .await
            .unwrap();
        partial_headers.push(stream);
        let mut stream = connect(ATTACKER, addr).await;
        stream
            .write_all(
                b"POST /accounts HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n\
                  Content-Length: 100\r\n\r\n{\"email\":",
            )
            .await
            .unwrap();
        unfinished_bodies.push(stream);
        idle_after_connect.push(connect(ATTACKER, addr).await);
    }
    for _ in 0..50 {
        let mut stream = connect(ATTACKER, addr).await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: bot\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0_u8; 512];
        let read = stream.read(&mut buf).await.unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..read]).starts_with("HTTP/1.1 200")
        );
        idle_keep_alive.push(stream);
    }

    // Meanwhile a well-behaved client is answered promptly, every time.
    for _ in 0..20 {
        let (answer, took) = health(GOOD, addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(took < Duration::from_millis(500), "/health took {took:?}");
    }

    // Every stalled connection is closed within its timeout (+ slack for
    // a loaded machine), never left open.
    let deadline = opened + Duration::from_secs(6);
    for (kind, streams) in [
        ("partial headers", &mut partial_headers),
        ("unfinished body", &mut unfinished_bodies),
        ("idle after connect", &mut idle_after_connect),
        ("idle keep-alive", &mut idle_keep_alive),
    ] {
        for stream in streams.iter_mut() {
            let (answer, closed) = read_until_closed(stream, deadline).await;
            assert!(closed.is_some(), "a {kind} connection was still open");
            if kind == "unfinished body" {
                assert!(
                    answer.starts_with("HTTP/1.1 408"),
                    "{kind}: {answer:?}"
                );
            }
        }
    }
    // And the service is still fine.
    let (answer, _) = health(GOOD, addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_refused_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(
        &dir,
        "idle_timeout_ms = 60000\nheader_read_timeout_ms = 60000\n\
         max_connections = 8\nmax_connections_per_client = 5",
    )
    .await;
    let addr = service.local_addr();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect(ATTACKER, addr).await);
    }
    // No pause needed: the front door admits in accept order.
    // A sixth from the same address: refused before anything is read.
    let mut sixth = connect(ATTACKER, addr).await;
    let (answer, closed) =
        read_until_closed(&mut sixth, Instant::now() + Duration::from_secs(5))
            .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("too many connections"), "{answer:?}");
    assert!(closed.is_some());
    // Another address is still served...
    let (answer, _) = health(GOOD, addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // ...until the total cap (8) is reached.
    for _ in 0..3 {
        held.push(connect(GOOD, addr).await);
    }
    let (answer, _) = health(Ipv4Addr::new(127, 0, 0, 3), addr).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    // Closing connections frees their places.
    held.clear();
    let mut answered = false;
    for _ in 0..50 {
        let (answer, _) = health(Ipv4Addr::new(127, 0, 0, 3), addr).await;
        if answer.starts_with("HTTP/1.1 200") {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "places were never freed");
    service.stop().await.unwrap();
}
