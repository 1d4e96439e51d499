//! A client that sends most of a big ClientHello and then stalls costs
//! the router a bounded amount of memory, however it frames its records:
//! 200 connections that each sent 16 KB of a hello and stalled grow the
//! router's resident memory by at most 32 KB each (twice what they sent,
//! the fixed cost of a connection included).
//!
//! "16 KB" counts the bytes on the wire, record headers included: what
//! the router reads, keeps to replay to the backend, and counts against
//! `max_hello_bytes`. As 1-byte records (a 5-byte header and one byte of
//! handshake each) that is 2,730 records carrying 2,730 bytes of hello.
//!
//! The router runs as its own process, so its VmRSS (/proc/PID/status) is
//! its own; each connection comes from its own 127.2.0.x address, so no
//! per-address limit closes any of them, and the test waits until the
//! router has read every byte sent (the kernel's receive queue of each of
//! its sockets is empty, /proc/net/tcp) before it reads the RSS.

mod common;
mod raw_hello;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::router_process::{RouterProcess, scratch};
use common::rustls_backends;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Connections opened per measurement.
const CONNECTIONS: usize = 200;

/// Bytes each connection sends before it stalls, on the wire.
const SENT: usize = 16 * 1024;

/// The bound on the router's growth per connection: twice what each sent.
const BOUND_PER_CONNECTION: u64 = 2 * SENT as u64;

/// Only stops a hang.
const WAIT: Duration = Duration::from_secs(60);

/// The router's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// For the router's established sockets on `port` (IPv4, loopback): how
/// many there are and how many bytes wait in their receive queues, unread
/// by the router.
fn router_sockets(port: u16) -> (usize, u64) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    let mut open = 0;
    let mut unread = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx_queue:rx_queue ...
        if f.len() < 5 || f[1] != local || f[3] != "01" {
            continue;
        }
        open += 1;
        let rx = f[4].split(':').nth(1).unwrap();
        unread += u64::from_str_radix(rx, 16).unwrap();
    }
    (open, unread)
}

/// A ClientHello of about 20 KB (a long server name), larger than any
/// 16 KB prefix of it in any framing.
fn big_hello_message() -> Vec<u8> {
    raw_hello::hello_message(&vec![b'a'; 20_000], &[])
}

/// The first `SENT` bytes of the big hello framed as records of `size`
/// bytes of handshake each.
fn prefix(size: usize) -> Vec<u8> {
    let mut wire: Vec<u8> = big_hello_message()
        .chunks(size)
        .flat_map(raw_hello::record)
        .collect();
    wire.truncate(SENT);
    wire
}

/// Opens `CONNECTIONS` connections to `router`, each from an address of
/// its own (127.2.0.1, 127.2.0.2, ...), each sending `bytes` and then
/// nothing; waits until the router has read them all.
async fn stall(router: SocketAddr, bytes: &[u8]) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for i in 0..CONNECTIONS {
        let socket = TcpSocket::new_v4().unwrap();
        let source = IpAddr::from([127, 2, (i / 250) as u8, (i % 250) as u8 + 1]);
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let mut s = socket.connect(router).await.unwrap();
        s.write_all(bytes).await.unwrap();
        held.push(s);
    }
    let started = Instant::now();
    loop {
        let (open, unread) = router_sockets(router.port());
        if open >= CONNECTIONS && unread == 0 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the router did not read every byte within {WAIT:?}: {open} connections open, \
             {unread} bytes unread"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held
}

/// Starts a router whose hello budget (32 KB) lets a 16 KB prefix of the
/// big hello through in any framing, and whose hello timeout outlasts the
/// test.
async fn router(name: &str) -> (RouterProcess, Vec<stickytls_peers::backend::RunningBackend>) {
    let backends = rustls_backends(1, |_| {}).await;
    let dir = scratch(name);
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--max-hello-bytes",
        "32768",
        "--hello-timeout",
        "120s",
        "--backend",
        &format!("a={}", backends[0].addr()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let router = RouterProcess::start(&args, &dir.join("router.log")).await;
    (router, backends)
}

/// The router's RSS once it has stopped moving: unchanged for a second
/// (or, on a machine too busy for that, after 20 s). A router that has
/// just started still maps in what its first seconds touch (up to a few
/// hundred kilobytes at a time), which is nobody's connection.
async fn settled_rss(pid: u32) -> u64 {
    let started = Instant::now();
    let (mut last, mut same) = (rss(pid), 0);
    while same < 10 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// The router's growth per connection when `CONNECTIONS` connections each
/// send `bytes` and stall. The baseline is the settled RSS of a router
/// that has seen one connection (which sent a record header and left),
/// so that what only the first connection ever costs (the worker's
/// allocator cache) is not charged to these; what each connection costs
/// beyond its bytes (its task, its socket, the inspector) is.
async fn growth_per_connection(name: &str, bytes: &[u8]) -> u64 {
    let (router, _backends) = router(name).await;
    let mut first = TcpStream::connect(router.addr).await.unwrap();
    first.write_all(&bytes[..5]).await.unwrap();
    drop(first);
    let before = settled_rss(router.pid()).await;
    let held = stall(router.addr, bytes).await;
    let after = rss(router.pid());
    drop(held);
    let per = after.saturating_sub(before) / CONNECTIONS as u64;
    eprintln!(
        "{name}: RSS {before} -> {after} bytes, {per} bytes per connection (bound {BOUND_PER_CONNECTION})"
    );
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_sent_as_one_byte_records_and_stalled_hold_at_most_twice_their_bytes() {
    let bytes = prefix(1);
    assert_eq!(bytes.len(), SENT);
    let per = growth_per_connection("hello-1-byte-records", &bytes).await;
    assert!(
        per <= BOUND_PER_CONNECTION,
        "each stalled connection grew the router by {per} bytes, over {BOUND_PER_CONNECTION}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_sent_as_full_records_and_stalled_hold_at_most_twice_their_bytes() {
    let bytes = prefix(16 * 1024);
    assert_eq!(bytes.len(), SENT);
    let per = growth_per_connection("hello-full-records", &bytes).await;
    assert!(
        per <= BOUND_PER_CONNECTION,
        "each stalled connection grew the router by {per} bytes, over {BOUND_PER_CONNECTION}"
    );
}
