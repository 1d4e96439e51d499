//! `stickytls selftest`, the real binary, against the real router in front
//! of three real rustls backends: it passes when every resumption goes home,
//! fails with exit 1 and a per-backend account when the pool does not
//! inspect, and what it says each backend answered agrees with what the
//! backends themselves recorded.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::Value;
use stickytls::config::Balance;
use stickytls_peers::backend::{BackendOptions, RunningBackend};
use stickytls_peers::cert::TestCa;
use stickytls_peers::openssl::{SServer, SServerOptions};

/// Only stops a hang; a run takes a second or two.
const HANG: Duration = Duration::from_secs(120);

const KINDS: [&str; 3] = ["tls12-session-id", "tls12-ticket", "tls13-psk"];

async fn selftest(target: SocketAddr, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_stickytls"))
        .arg("selftest")
        .arg("--target")
        .arg(target.to_string())
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(HANG, run)
        .await
        .expect("selftest finished")
        .expect("selftest started")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn kind<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == name)
        .unwrap_or_else(|| panic!("no kind {name} in {report:#}"))
}

/// Waits until every connection a backend accepted has finished its
/// handshake one way or the other: the last ones may still be in flight
/// on the backends' side when the client process exits.
async fn settled(backends: &[RunningBackend]) {
    let done = || {
        backends
            .iter()
            .all(|b| b.handshakes().len() as u64 + b.failed_handshakes() == b.connections())
    };
    tokio::time::timeout(HANG, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("backends settle");
}

/// Each backend's own record: (name, full handshakes, resumed ones).
async fn records(backends: &[RunningBackend]) -> Vec<(String, usize, usize)> {
    settled(backends).await;
    backends
        .iter()
        .map(|b| {
            let full = b.handshakes().iter().filter(|h| !h.resumed).count();
            (b.name().to_string(), full, b.resumed())
        })
        .collect()
}

/// What selftest says each backend answered (full handshakes, resumed)
/// must be what the backends recorded themselves since `before`.
async fn assert_backends_agree(
    report: &Value,
    backends: &[RunningBackend],
    before: &[(String, usize, usize)],
) {
    let after = records(backends).await;
    let seen = report["backends"].as_array().unwrap();
    assert_eq!(seen.len(), backends.len(), "{report:#}");
    for ((name, full, resumed), (_, full0, resumed0)) in after.iter().zip(before) {
        let s = seen
            .iter()
            .find(|s| s["backend"] == name.as_str())
            .unwrap_or_else(|| panic!("backend {name} not seen: {report:#}"));
        assert_eq!(s["full_handshakes"], full - full0, "{name}: {report:#}");
        assert_eq!(
            s["resumed_handshakes"],
            resumed - resumed0,
            "{name}: {report:#}"
        );
    }
}

/// One row of the text table.
#[derive(Debug)]
struct Row {
    kind: String,
    backend: String,
    attempts: usize,
    reached: usize,
    resumed: usize,
}

/// The table's rows: `kind  issued-by  attempts  reached  resumed  rate`,
/// the kind only on its first row.
fn table(stdout: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut kind = String::new();
    for line in stdout
        .lines()
        .skip_while(|l| !l.starts_with("kind "))
        .skip(1)
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 5 || !words[words.len() - 1].ends_with('%') {
            break;
        }
        let n = words.len();
        let number = |i: usize| words[i].parse::<usize>().unwrap();
        if n > 5 {
            kind = words[..n - 5].join(" ");
        }
        rows.push(Row {
            kind: kind.clone(),
            backend: words[n - 5].to_string(),
            attempts: number(n - 4),
            reached: number(n - 3),
            resumed: number(n - 2),
        });
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_passes_when_every_resumption_returns_to_its_issuer() {
    let backends = rustls_backends(3, |_| {}).await;
    let router = start_router(config(&named(&backends))).await;
    let before = records(&backends).await;

    let out = selftest(
        router.addr,
        &["--connections", "12", "--sni", "localhost", "--json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["passed"], true);
    for name in KINDS {
        let k = kind(&report, name);
        assert_eq!(k["sessions_made"], 12, "{name}: {k:#}");
        assert_eq!(k["attempts"], 12, "{name}: {k:#}");
        assert_eq!(k["resumed_on_issuer"], 12, "{name}: {k:#}");
        assert_eq!(k["rate"], 1.0, "{name}: {k:#}");
        // Round robin spread the fresh sessions, so every backend issued
        // some and had its resumptions sent back.
        let issuers: Vec<&str> = k["by_issuer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["backend"].as_str().unwrap())
            .collect();
        assert_eq!(issuers, ["a", "b", "c"], "{name}: {k:#}");
    }
    assert_eq!(
        kind(&report, "tls13-psk")["warm_up"]["resumed_on_issuer"],
        12
    );
    assert_backends_agree(&report, &backends, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_confirms_tls13_key_names_with_one_session_per_backend() {
    // Round robin gives each backend one session. The router routes on a
    // ticket key name once two resumptions with it were accepted on one
    // backend, so each session is resumed twice from its own address.
    let backends = rustls_backends(3, |_| {}).await;
    let router = start_router(config(&named(&backends))).await;
    let out = selftest(
        router.addr,
        &[
            "--connections",
            "3",
            "--sni",
            "localhost",
            "--kinds",
            "tls13-psk",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    let psk = kind(&report, "tls13-psk");
    assert_eq!(psk["warm_up"]["attempts"], 6, "{psk:#}");
    assert_eq!(psk["warm_up"]["resumed_on_issuer"], 6, "{psk:#}");
    assert_eq!(psk["resumed_on_issuer"], 3, "{psk:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_fails_with_exit_1_and_shows_where_resumptions_went_without_inspection() {
    let backends = rustls_backends(3, |_| {}).await;
    let mut config = config(&named(&backends));
    config.pools[0].inspect = false;
    config.pools[0].balance = Balance::RoundRobin;
    let router = start_router(config).await;

    let out = selftest(router.addr, &["--connections", "12", "--sni", "localhost"]).await;
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    let stdout = String::from_utf8_lossy(&out.stdout);

    // The table: a row per kind and issuing backend, and one for all.
    let rows = table(&stdout);
    for title in ["TLS 1.2 session ID", "TLS 1.2 ticket", "TLS 1.3 PSK"] {
        let of_kind: Vec<&Row> = rows.iter().filter(|r| r.kind == title).collect();
        let who: Vec<&str> = of_kind.iter().map(|r| r.backend.as_str()).collect();
        assert_eq!(who, ["a", "b", "c", "all"], "{title}:\n{output}");
        let all = of_kind[3];
        assert_eq!(all.attempts, 12, "{output}");
        // Each backend has its own keys: nothing resumes off its issuer.
        assert_eq!(all.reached, all.resumed, "{output}");
        // Fresh addresses and a random order leave it to the balancer,
        // which puts a third of them home by chance; 12 of 12 would take
        // a chance of 3^-12.
        assert!(all.reached < all.attempts, "{title}:\n{output}");
        // And the reason names where the others went.
        let missed = all.attempts - all.reached;
        assert!(
            stdout.contains(&format!(
                "{title}: {missed} reached another backend and got a full handshake there"
            )),
            "{title}:\n{output}"
        );
    }
    assert!(stdout.contains("inspect = false"), "{output}");
    assert!(
        stdout.lines().last().unwrap().starts_with("FAIL: "),
        "{output}"
    );

    // The same run in JSON agrees with the backends' own records.
    let before = records(&backends).await;
    let out = selftest(
        router.addr,
        &["--connections", "12", "--sni", "localhost", "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["passed"], false);
    for name in KINDS {
        let k = kind(&report, name);
        assert_eq!(k["passed"], false, "{k:#}");
        let rate = k["rate"].as_f64().unwrap();
        assert!(rate < 0.99, "{name}: {k:#}");
    }
    assert_backends_agree(&report, &backends, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_over_http_tells_apart_backends_that_share_one_certificate() {
    // One certificate for the whole farm, as many deployments have.
    let leaf = TestCa::shared().leaf("www.example.test");
    let backends = rustls_backends(3, |o: &mut BackendOptions| {
        o.leaf = Some(leaf.clone());
    })
    .await;
    let router = start_router(config(&named(&backends))).await;
    let before = records(&backends).await;

    let out = selftest(
        router.addr,
        &[
            "--connections",
            "9",
            "--sni",
            "localhost",
            "--http",
            "--http-header",
            "X-Backend",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    for name in KINDS {
        let k = kind(&report, name);
        assert_eq!(k["resumed_on_issuer"], 9, "{name}: {k:#}");
        assert_eq!(k["by_issuer"].as_array().unwrap().len(), 3, "{k:#}");
    }
    assert_backends_agree(&report, &backends, &before).await;

    // By certificate, the three are one: selftest says so.
    let out = selftest(
        router.addr,
        &[
            "--connections",
            "3",
            "--sni",
            "localhost",
            "--kinds",
            "tls13-psk",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Only one certificate was seen") && stdout.contains("use --http"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_passes_against_openssl_backends_by_certificate_and_by_whoami_page() {
    // Another TLS stack, a server selftest knows nothing about: OpenSSL's
    // s_server, serving `backend=<name>` from /whoami with HTTP/1.0.
    let mut farm = Vec::new();
    for name in ["a", "b", "c"] {
        farm.push(
            SServer::start(SServerOptions::new(name))
                .await
                .expect("s_server starts"),
        );
    }
    let named: Vec<_> = farm
        .iter()
        .map(|s| (s.name().to_string(), s.addr()))
        .collect();
    let router = start_router(config(&named)).await;

    for args in [
        &["--connections", "6", "--sni", "localhost", "--json"][..],
        &[
            "--connections",
            "6",
            "--sni",
            "localhost",
            "--http",
            "--http-path",
            "/whoami",
            "--json",
        ][..],
    ] {
        let out = selftest(router.addr, args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let report = json(&out);
        let labels: Vec<&str> = report["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["backend"].as_str().unwrap())
            .collect();
        let expected = if args.contains(&"--http") {
            ["backend=a", "backend=b", "backend=c"]
        } else {
            ["a", "b", "c"]
        };
        assert_eq!(labels, expected, "{report:#}");
        for name in KINDS {
            assert_eq!(
                kind(&report, name)["resumed_on_issuer"],
                6,
                "{args:?} {name}: {report:#}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selftest_reports_a_kind_the_backends_do_not_offer_as_untested() {
    // No ticket key: TLS 1.2 resumes by session ID only. (TLS 1.3 would
    // resume from the session cache, with random ticket identities that
    // carry no key name, so nothing lets a router route them from a new
    // address: selftest rightly fails that kind, by chance how much.)
    let backends = rustls_backends(3, |o: &mut BackendOptions| o.tickets = false).await;
    let router = start_router(config(&named(&backends))).await;
    let out = selftest(
        router.addr,
        &[
            "--connections",
            "6",
            "--sni",
            "localhost",
            "--kinds",
            "tls12-session-id,tls12-ticket",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    let tickets = kind(&report, "tls12-ticket");
    assert_eq!(tickets["attempts"], 0, "{tickets:#}");
    assert_eq!(tickets["passed"], Value::Null, "untested, not failed");
    let why = tickets["reasons"][0]["what"].as_str().unwrap();
    assert!(why.contains("issued no TLS 1.2 ticket"), "{why}");
    assert_eq!(kind(&report, "tls12-session-id")["resumed_on_issuer"], 6);
}

#[tokio::test]
async fn selftest_refuses_sources_that_cannot_make_the_test() {
    // Fresh loopback addresses cannot reach a router elsewhere.
    let out = selftest("192.0.2.1:443".parse().unwrap(), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--source"));
    // One address cannot be both home and away.
    let out = selftest("127.0.0.1:1".parse().unwrap(), &["--source", "127.0.0.2"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // An address this host does not have cannot be bound.
    let out = selftest(
        "127.0.0.1:1".parse().unwrap(),
        &["--source", "127.0.0.2", "--source", "192.0.2.7"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("192.0.2.7"));
}
