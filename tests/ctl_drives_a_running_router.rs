//! `stickytls ctl` against a running `stickytls run` (the real binary, its
//! admin endpoint on, real TLS through it): tables, `--json`, changes,
//! and exit 1 with a clear message on errors. Also the binary's admin
//! rules (a non-loopback bind needs a token, in `run` and `check`) and its
//! one log line per connection, as JSON.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use stickytls_peers::client::{Client, ClientOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_stickytls");

/// A running router binary and every JSON log line it wrote.
struct RouterProcess {
    _child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
    lines: Arc<Mutex<Vec<Value>>>,
}

async fn start(backends: &[(String, SocketAddr)]) -> RouterProcess {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--log-format", "json", "--threads", "1"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, addr) in backends {
        cmd.arg("--backend").arg(format!("{name}={addr}"));
    }
    let mut child = cmd.spawn().expect("the router binary starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (mut listen, mut admin) = (None, None);
    while listen.is_none() || admin.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
            .await
            .expect("the router logs its addresses")
            .unwrap()
            .expect("the router is still running");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        let f = &v["fields"];
        if let Some(a) = f["listen"].as_str() {
            listen = a.parse().ok();
        }
        if f["message"] == "admin endpoint listening" {
            admin = f["addr"].as_str().and_then(|a| a.parse().ok());
        }
        lines.lock().unwrap().push(v);
    }
    let keep = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            if let Ok(v) = serde_json::from_str(&line) {
                keep.lock().unwrap().push(v);
            }
        }
    });
    RouterProcess {
        _child: child,
        listen: listen.unwrap(),
        admin: admin.unwrap(),
        lines,
    }
}

/// Runs `stickytls ARGS`: exit code, stdout, stderr.
async fn stickytls(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("STICKYTLS_ADMIN")
        .env_remove("STICKYTLS_ADMIN_TOKEN")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The cells of a table's rows (header first).
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_shows_and_steers_a_running_router() {
    let backends = rustls_backends(2, |_| {}).await;
    let router = start(&named(&backends)).await;
    let admin = router.admin.to_string();
    let ctl = |args: &[&str]| {
        let mut all = vec!["ctl", "--admin", admin.as_str()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            stickytls(&refs).await
        }
    };

    let client = Client::new(ClientOptions::default()).unwrap();
    let mut reached = Vec::new();
    for _ in 0..3 {
        reached.push(client.connect(router.listen, None).await.unwrap());
    }

    let (code, out, err) = ctl(&["pools"]).await;
    assert_eq!(code, 0, "{err}");
    let t = cells(&out);
    assert_eq!(t[0][0], "POOL");
    assert_eq!(t[1][0], "default");

    let (code, out, err) = ctl(&["backends", "default"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let state_col = lines[0].find("STATE").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| &l[state_col..state_col + 2] == "up"),
        "columns line up:\n{out}"
    );
    let total: u64 = cells(&out)[1..]
        .iter()
        .map(|r| r[5].parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 3, "TOTAL counts the connections:\n{out}");

    let (code, out, _) = ctl(&["--json", "backends", "default"]).await;
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).expect("--json prints the API's JSON");
    assert_eq!(json["backends"][0]["name"], "a");

    let (code, out, err) = ctl(&["set", "default", "a", "--state", "drain", "--weight", "3"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        &cells(&out)[1][..4],
        ["a", &backends[0].addr().to_string(), "drain", "3"]
    );
    let (_, out, _) = ctl(&["--json", "backends", "default"]).await;
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["backends"][0]["state"], "drain");
    for _ in 0..4 {
        let r = Client::new(ClientOptions::default())
            .unwrap()
            .connect(router.listen, Some(ip(50)))
            .await
            .unwrap();
        assert_eq!(r.backend, "b", "a drained takes no new session");
    }

    let (code, _, err) = ctl(&["set", "default", "a", "--state", "sideways"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("400") && err.contains("unknown state"),
        "{err}"
    );
    let (code, _, err) = ctl(&["set", "default", "zz", "--state", "up"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("zz"), "{err}");
    let (code, _, err) = ctl(&["backends", "nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no pool named `nope`"), "{err}");

    let (code, out, err) = ctl(&["decisions", "default", "--limit", "2"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "a header and 2 decisions:\n{out}");
    let (code, out, _) = ctl(&["lookup", "default", "--client", "127.0.0.50"]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("backend") && l.ends_with(" b")),
        "{out}"
    );
    let (code, out, _) = ctl(&["forget", "default", "--client", "127.0.0.50"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("removed"), "{out}");
    let (code, out, _) = ctl(&["stats"]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("connections") && l.ends_with(" 7")),
        "{out}"
    );

    // One log line per connection, with its fields, once each has ended.
    let logged = |lines: &[Value]| {
        lines
            .iter()
            .filter(|v| v["target"] == "stickytls::connection")
            .cloned()
            .collect::<Vec<Value>>()
    };
    let mut conn_lines = logged(&router.lines.lock().unwrap());
    // A line is written when the router sees the connection end, a little
    // after the client does: wait for it (bounded, for a broken router).
    for _ in 0..6000 {
        if conn_lines.len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        conn_lines = logged(&router.lines.lock().unwrap());
    }
    assert_eq!(conn_lines.len(), 7, "{conn_lines:?}");
    let first = &conn_lines[0]["fields"];
    for field in [
        "id",
        "listener",
        "client",
        "sni",
        "tls",
        "pool",
        "backend",
        "rule",
        "kind",
        "resumed",
        "to_backend",
        "to_client",
        "hello_ms",
        "connect_ms",
        "total_ms",
        "close",
    ] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    assert_eq!(first["pool"], "default");
    assert_eq!(first["close"], "closed");
    assert_eq!(first["backend"], reached[0].backend.as_str());
    assert!(first["to_client"].as_u64().unwrap() > 0);

    drop(router);
    let (code, _, err) = stickytls(&["ctl", "--admin", &admin, "pools"]).await;
    assert_eq!(code, 1, "the router is gone");
    assert!(err.contains("cannot reach the admin endpoint"), "{err}");
}

#[tokio::test]
async fn run_and_check_refuse_a_public_admin_endpoint_without_a_token() {
    let (code, _, err) = stickytls(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "a=127.0.0.1:1",
        "--admin",
        "0.0.0.0:0",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("token"), "{err}");

    let dir = std::env::temp_dir().join(format!("stickytls-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("public.toml");
    let base = "[[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"p\"\n\n[pool.p]\nbackends = [{ name = \"a\", address = \"127.0.0.1:1\" }]\n";
    std::fs::write(&file, format!("{base}\n[admin]\nbind = \"0.0.0.0:9900\"\n")).unwrap();
    let (code, _, err) = stickytls(&["check", "--config", file.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("token") && err.contains(":8:"),
        "located at the bind line: {err}"
    );

    std::fs::write(
        &file,
        format!("{base}\n[admin]\nbind = \"0.0.0.0:9900\"\ntoken = \"0123456789abcdef-token\"\n"),
    )
    .unwrap();
    let (code, out, err) = stickytls(&["check", "--config", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    std::fs::remove_dir_all(&dir).ok();
}
