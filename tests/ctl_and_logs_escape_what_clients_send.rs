//! A client's server name reaches an operator's terminal escaped: a real
//! router (the binary, text log to a file) is sent a raw ClientHello whose
//! SNI carries ESC, BEL, CR, LF, DEL, a C1 CSI and a byte that is not
//! UTF-8 (rustls refuses such names, so the hello is built byte by byte),
//! then the real `stickytls ctl` shows its decisions. Neither `ctl`'s
//! table, its `--json`, its error messages nor the router's log holds a
//! byte below 0x20 but the newlines of their layout, a DEL or a C1
//! control, and what the client sent can still be read from them.

mod common;
mod raw_hello;

use std::process::{Output, Stdio};
use std::time::Duration;

use common::router_process::{RouterProcess, scratch};
use common::rustls_backends;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_stickytls");

/// The server name sent: an OSC title write and a screen clear, a line
/// break that would start a fake table row, DEL, the C1 form of CSI
/// (U+009B in UTF-8) and a byte that is not UTF-8.
const SNI: &[u8] = b"evil\x1b]0;owned\x07\x1b[2J\r\nfake row\x7f\xc2\x9b31m\xff.example";

/// How `ctl`'s table and the log write it (the admin API's JSON already
/// carries the byte that is not UTF-8 as U+FFFD).
const SHOWN: &str = r"evil\x1b]0;owned\x07\x1b[2J\x0d\x0afake row\x7f\u{9b}31m";

/// Whether `bytes` could reach a terminal without it obeying anything: no
/// byte below 0x20 but a newline, no DEL, no C1 control.
fn inert(bytes: &[u8]) -> Result<(), String> {
    if let Some(b) = bytes
        .iter()
        .find(|&&b| (b < 0x20 && b != b'\n') || b == 0x7f)
    {
        return Err(format!(
            "control byte {b:#04x} in {:?}",
            String::from_utf8_lossy(bytes)
        ));
    }
    let text = String::from_utf8_lossy(bytes);
    match text.chars().find(|c| c.is_control() && *c != '\n') {
        Some(c) => Err(format!("control character {c:?} in {text:?}")),
        None => Ok(()),
    }
}

/// Runs `stickytls ctl --admin ADMIN ARGS`.
fn ctl(admin: &str, args: &[&str], stdout: Stdio) -> Output {
    std::process::Command::new(BIN)
        .args(["ctl", "--admin", admin])
        .args(args)
        .env_remove("STICKYTLS_ADMIN")
        .env_remove("STICKYTLS_ADMIN_TOKEN")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("stickytls ctl runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_name_reaches_no_terminal_raw() {
    let backends = rustls_backends(1, |_| {}).await;
    let dir = scratch("escapes");
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--backend",
        &format!("a={}", backends[0].addr()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut router = RouterProcess::start(&args, &dir.join("router.log")).await;
    let line = router.wait_for_log("admin endpoint listening").await;
    let admin = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("the admin line names its address")
        .to_string();

    // The hello reaches the backend (which refuses it: the router routes
    // on it all the same), and the connection ends.
    let mut s = TcpStream::connect(router.addr).await.unwrap();
    s.write_all(&raw_hello::hello(SNI, &[])).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("the connection ends");
    drop(s);
    const CONNECTION_LINE: &str = "stickytls::connection: connection id=";
    router.wait_for_log(CONNECTION_LINE).await;

    // The table: one row, the name escaped in its SNI column.
    let out = ctl(&admin, &["decisions", "default"], Stdio::piped());
    assert!(out.status.success(), "{out:?}");
    inert(&out.stdout).unwrap();
    inert(&out.stderr).unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        table.lines().count(),
        2,
        "a header and one decision:\n{table}"
    );
    assert!(table.contains(SHOWN), "{table}");
    assert!(table.contains("\u{fffd}.example"), "{table}");

    // --json: JSON, every control escaped inside its strings, and the
    // same name once parsed.
    let out = ctl(&admin, &["--json", "decisions", "default"], Stdio::piped());
    assert!(out.status.success(), "{out:?}");
    inert(&out.stdout).unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(
        json["decisions"][0]["sni"],
        String::from_utf8_lossy(SNI).as_ref()
    );
    let raw = String::from_utf8(out.stdout).unwrap();
    for escape in [r"\u001b", r"\u0007", r"\r\n", r"\u007f", r"\u009b"] {
        assert!(raw.contains(escape), "{escape} in {raw}");
    }

    // Messages on stderr are escaped too: the endpoint's answer names the
    // pool asked for.
    let out = ctl(&admin, &["backends", "no\x1b[31mpool\x07"], Stdio::piped());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    inert(&out.stderr).unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(r"no\x1b[31mpool\x07"), "{err}");

    // A reader that went away early is a quiet end, not a panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = ctl(&admin, &["decisions", "default"], Stdio::from(writer));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The router's text log: the connection line carries the escaped name
    // (quoted, like every text field, so its backslashes show doubled),
    // and no line carries a control character.
    let log = std::fs::read(dir.join("router.log")).unwrap();
    inert(&log).unwrap();
    let log = String::from_utf8(log).unwrap();
    let conn = log.lines().find(|l| l.contains(CONNECTION_LINE)).unwrap();
    let quoted = format!("sni=\"{}", SHOWN.replace('\\', r"\\"));
    assert!(conn.contains(&quoted), "{quoted} in {conn}");
    assert!(conn.contains(r"\\xff.example"), "{conn}");
    std::fs::remove_dir_all(&dir).ok();
}
