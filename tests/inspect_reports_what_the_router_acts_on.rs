//! `stickytls inspect` (the real binary) reports the status the router
//! acts on. The same bytes go to a running router and to `inspect`: a
//! real rustls hello, whole or in records of any size, is routed and
//! reported `complete` (exit 0); that hello in a record declaring more
//! bytes than the hello holds is refused by the router and reported
//! `malformed` (exit 1), with what it said. Every capture the inspector's
//! tests and the fuzz seeds hold is reported with the status
//! `feed_client` answers on it, and the exit code is 0 exactly when every
//! side given is complete. A client's control characters stay escaped in
//! the JSON, and a reader that closes the pipe early ends it quietly.

mod common;
mod raw_hello;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::router_process::scratch;
use common::*;
use serde_json::Value;
use stickytls::inspect::report::status_name;
use stickytls::inspect::{Handshake, Limits, Status};
use stickytls_peers::client::{Client, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_stickytls");
const PAST: &str = "handshake data after the ClientHello in its record";

/// Runs `stickytls inspect FILES` with stdout to `stdout`.
fn inspect_to(files: &[&Path], stdout: Stdio) -> Output {
    std::process::Command::new(BIN)
        .arg("inspect")
        .args(files)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("stickytls inspect runs")
}

/// `stickytls inspect FILES`: its exit code and its report.
fn inspect(files: &[&Path]) -> (i32, Value) {
    let out = inspect_to(files, Stdio::piped());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&out.stdout).expect("the report is JSON");
    (out.status.code().expect("an exit code, not a signal"), v)
}

/// What the router does with `hello`: true when it forwarded it (the
/// backend answered through it), false when it closed the connection
/// without a byte.
async fn routed(router: std::net::SocketAddr, hello: &[u8]) -> bool {
    let mut s = TcpStream::connect(router).await.unwrap();
    s.write_all(hello).await.unwrap();
    let mut first = [0u8; 5];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut first))
        .await
        .expect("the router answers or closes");
    matches!(read, Ok(n) if n > 0)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_says_complete_exactly_when_the_router_routes() {
    let farm = rustls_backends(1, |_| {}).await;
    let router = start_router(config(&named(&farm))).await;
    let dir = scratch("inspect-status");
    let hello = Client::new(ClientOptions::default())
        .unwrap()
        .client_hello()
        .unwrap();
    let (code, whole) = inspect(&[&write(&dir, "whole.bin", &hello)]);
    assert_eq!(code, 0, "{whole}");
    assert_eq!(whole["client"]["status"], "complete");

    // A valid hello stays complete (and routed) in records of any size.
    for max in [1, 7, 100, 1000] {
        let stream = raw_hello::reframe(&hello, max);
        assert!(routed(router.addr, &stream).await, "records of {max}");
        let (code, v) = inspect(&[&write(&dir, &format!("records-{max}.bin"), &stream)]);
        assert_eq!(code, 0, "records of {max}: {v}");
        assert_eq!(v["client"]["status"], "complete");
        assert_eq!(v["client"]["ja4"], whole["client"]["ja4"]);
        assert!(v["client"]["records"].as_u64().unwrap() > 1 || max >= 1000);
    }

    // Its record declaring more than the hello: refused, whether the extra
    // bytes came or not, and never reported complete.
    let before = router.stats().rejected;
    for (extra, sent) in [(1, 1), (1, 0), (300, 300)] {
        let stream = raw_hello::running_past(&hello, extra, sent);
        assert!(
            !routed(router.addr, &stream).await,
            "{extra}/{sent} refused"
        );
        let (code, v) = inspect(&[&write(&dir, "past.bin", &stream)]);
        assert_eq!(code, 1, "{v}");
        assert_eq!(v["client"]["status"], "malformed", "{v}");
        assert!(v["client"]["error"].as_str().unwrap().contains(PAST), "{v}");
        assert_eq!(
            v["client"]["sni"], whole["client"]["sni"],
            "what was refused is shown"
        );
    }
    assert_eq!(router.stats().rejected, before + 3, "{:?}", router.stats());
    std::fs::remove_dir_all(&dir).ok();
}

/// Every regular file in `dir` whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

#[test]
fn every_capture_is_reported_with_the_status_feed_client_answers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut streams = files(&root.join("fuzz/seeds/client_stream"), ".bin");
    streams.extend(files(&root.join("fuzz/regressions/client_stream"), ".bin"));
    streams.extend(files(
        &root.join("crates/stickytls-inspect/testdata"),
        ".client.bin",
    ));
    streams.extend(files(&root.join("fuzz/tls-parser-wrong"), ".bin"));
    assert!(streams.len() >= 20, "{streams:?}");
    let mut seen = std::collections::BTreeSet::new();
    for path in &streams {
        let bytes = std::fs::read(path).unwrap();
        let answer = Handshake::new(Limits::default()).feed_client(&bytes);
        let (code, v) = inspect(&[path]);
        let name = path.display();
        assert_eq!(v["client"]["status"], status_name(&answer), "{name}: {v}");
        assert_eq!(code == 0, answer == Status::Done, "{name}: exit {code}");
        seen.insert(status_name(&answer));
    }
    assert!(
        seen.contains("complete") && seen.contains("malformed"),
        "{seen:?}"
    );
}

#[test]
fn exit_code_is_zero_only_when_every_side_is_complete() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = root.join("fuzz/seeds");
    let dir = scratch("inspect-sides");
    for name in [
        "rustls-tls13-psk-resumption",
        "rustls-tls12-full-ticket",
        "rustls-tls13-hrr",
    ] {
        let client = seeds.join(format!("{name}.client.bin"));
        let server = seeds.join(format!("{name}.server.bin"));
        let (code, v) = inspect(&[&client, &server]);
        assert_eq!(code, 0, "{name}: {v}");
        for side in ["client", "client2", "server"] {
            if let Some(s) = v.get(side) {
                assert_eq!(s["status"], "complete", "{name} {side}: {v}");
            }
        }
        // The server's reply cut short: that side is incomplete, exit 1.
        let reply = std::fs::read(&server).unwrap();
        let cut = write(&dir, "cut.server.bin", &reply[..reply.len().min(40)]);
        let (code, v) = inspect(&[&client, &cut]);
        assert_eq!(code, 1, "{name}: {v}");
        assert_eq!(v["server"]["status"], "incomplete", "{name}: {v}");
    }
    // After a retry, the second hello cut short: client complete, client2
    // incomplete, exit 1.
    let client = std::fs::read(seeds.join("rustls-tls13-hrr.client.bin")).unwrap();
    // Records: the first hello, a ChangeCipherSpec, the second hello.
    let (mut start, mut end) = (0, 0);
    for _ in 0..3 {
        start = end;
        end += 5 + usize::from(u16::from_be_bytes([client[end + 3], client[end + 4]]));
    }
    assert_eq!(
        (client[start], client[start + 5]),
        (0x16, 0x01),
        "a ClientHello"
    );
    let cut = write(&dir, "hrr-cut.client.bin", &client[..end - 10]);
    let (code, v) = inspect(&[&cut, &seeds.join("rustls-tls13-hrr.server.bin")]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["client"]["status"], "complete", "{v}");
    assert_eq!(v["client2"]["status"], "incomplete", "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_clients_control_characters_stay_escaped_and_a_closed_pipe_is_quiet() {
    let dir = scratch("inspect-escapes");
    let sni = b"evil\x1b]0;owned\x07\r\n\x7f\xc2\x9b.example";
    let alpn: &[&[u8]] = &[b"h2\x1b[2J", b"\x07\x7f"];
    let path = write(&dir, "hostile.bin", &raw_hello::hello(sni, alpn));
    let out = inspect_to(&[&path], Stdio::piped());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stdout
            .iter()
            .all(|&b| b == b'\n' || (b >= 0x20 && b != 0x7f)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["client"]["sni"], String::from_utf8_lossy(sni).as_ref());
    assert_eq!(v["client"]["alpn"][0], "h2\x1b[2J");
    assert_eq!(v["client"]["alpn"][1], "\x07\x7f");

    // `stickytls inspect FILE | head -1` once head has gone: no panic, no
    // message, the exit code the report earns.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = inspect_to(&[&path], Stdio::from(writer));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let past = raw_hello::running_past(&raw_hello::hello(b"x.example", &[]), 1, 1);
    let out = inspect_to(&[&write(&dir, "past.bin", &past)], Stdio::from(writer));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}
