//! The admin endpoint against web pages the operator opens, over raw HTTP
//! to the real binary started from a file (docs/security.md, "Admin
//! endpoint"):
//! - without the token, a `Host` (compared without its port) that is not
//!   the address the endpoint was reached at, `localhost`, `127.0.0.1`,
//!   `[::1]` or a name in `[admin] allowed_hosts` gets 403: a page that
//!   points its own DNS name at 127.0.0.1 (DNS rebinding) can neither read
//!   the API nor put a backend in maint; with the token, any `Host` is
//!   served;
//! - a request a browser marks as coming from another site (`Origin` not
//!   the endpoint's own, `Origin: null`, `Sec-Fetch-Site: cross-site` or
//!   `same-site`) gets 403 for every method, token or not: a plain HTML form
//!   no longer reloads the file;
//! - `curl -X POST http://127.0.0.1:PORT/api/v1/reload`, `stickytls ctl
//!   reload` (the systemd unit's `ExecReload`) and a same-origin browser
//!   request still work.
//!
//! Then in headless Chromium: a page on another site that submits a form to
//! `/api/v1/reload` is refused and the file is not applied, a page reached
//! under a rebound name gets 403, and the stats page, reached through a
//! tunnel on another port, still loads and refreshes itself.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::router_process::{RouterProcess, scratch};
use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "0123456789abcdef0123";

/// A file: the admin endpoint on `bind` with `admin_extra` lines, one pool
/// `web` of two backends, `a` with `weight_a`. Nothing listens at the
/// backends' addresses: these tests only use the API.
fn config_text(bind: &str, admin_extra: &str, weight_a: u32) -> String {
    format!(
        "[admin]\nbind = \"{bind}\"\n{admin_extra}\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\n\
         [pool.web]\nbackends = [\n  {{ name = \"a\", address = \"127.0.0.1:9\", weight = {weight_a} }},\n  {{ name = \"b\", address = \"127.0.0.1:10\" }},\n]\n\n\
         [pool.web.health]\ncheck = \"none\"\n"
    )
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Router {
    _process: RouterProcess,
    /// The admin endpoint's port.
    port: u16,
    file: PathBuf,
}

async fn start(name: &str, text: &str) -> Router {
    let dir = scratch(name);
    let file = dir.join("stickytls.toml");
    write(&file, text);
    let args: Vec<String> = ["--config", file.to_str().unwrap(), "--threads", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut process = RouterProcess::start(&args, &dir.join("stderr.log")).await;
    let line = process.wait_for_log("admin endpoint listening").await;
    let admin: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("the admin line names its address")
        .parse()
        .unwrap();
    Router {
        _process: process,
        port: admin.port(),
        file,
    }
}

/// One request on its own connection to `to`: the request line, `headers`
/// (a `Host` among them, or not), an empty body for writes or `body`.
/// Returns the status and the body.
async fn send(
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut s = TcpStream::connect(to).await.expect("admin connect");
    s.write_all(req.as_bytes())
        .await
        .expect("write the request");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the admin endpoint answers")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What curl sends: `curl -X POST http://127.0.0.1:PORT/api/v1/reload`.
fn curl(host: &str) -> [(&str, &str); 3] {
    [
        ("Host", host),
        ("User-Agent", "curl/8.5.0"),
        ("Accept", "*/*"),
    ]
}

/// A request under the endpoint's own address, with the token, which must
/// succeed: the parsed JSON.
async fn api(port: u16, method: &str, path: &str, body: &str) -> Value {
    let (host, bearer) = (format!("127.0.0.1:{port}"), format!("Bearer {TOKEN}"));
    // The token is ignored by an endpoint without one.
    let mut headers = vec![("Host", host.as_str()), ("Authorization", bearer.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let (status, text) = send(loopback(port), method, path, &headers, body).await;
    assert_eq!(status, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

async fn backend(port: u16, name: &str) -> Value {
    let listed = api(port, "GET", "/api/v1/pools/web/backends", "").await;
    listed["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {name}: {listed}"))
}

fn assert_refused(what: &str, (status, body): &(u16, String), mentions: &[&str]) {
    assert_eq!(*status, 403, "{what}: {body}");
    let json: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: {body}"));
    assert_eq!(json["status"], 403, "{what}: {body}");
    let error = json["error"].as_str().unwrap_or_default();
    for m in mentions {
        assert!(error.contains(m), "{what}: the reason names {m:?}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_only_the_endpoints_own_names_are_served() {
    let text = config_text(
        "127.0.0.1:0",
        "allowed_hosts = [\"router1.example.net\"]\n",
        1,
    );
    let router = start("admin-host-names", &text).await;
    let (port, to) = (router.port, loopback(router.port));
    let evil = format!("evil.example:{port}");

    // A page that rebinds evil.example to 127.0.0.1: it reads nothing...
    let r = send(to, "GET", "/api/v1/pools", &[("Host", &evil)], "").await;
    assert_refused(
        "rebound GET",
        &r,
        &[&format!("Host `{evil}`"), "allowed_hosts", "Bearer"],
    );
    for path in ["/metrics", "/stats", "/api/v1/stats", "/no/such/route"] {
        let r = send(to, "GET", path, &[("Host", &evil)], "").await;
        assert_refused(path, &r, &["Host"]);
    }
    // ... and changes nothing.
    let maint = send(
        to,
        "POST",
        "/api/v1/pools/web/backends/a",
        &[("Host", &evil), ("Content-Type", "application/json")],
        "{\"state\":\"maint\"}",
    )
    .await;
    assert_refused("rebound JSON POST", &maint, &["Host"]);
    let forget = send(
        to,
        "DELETE",
        "/api/v1/pools/web/affinity?client=127.0.0.1",
        &[("Host", &evil)],
        "",
    )
    .await;
    assert_refused("rebound DELETE", &forget, &["Host"]);
    assert_eq!(backend(port, "a").await["state"], "up");
    // A bearer token is no help where none is configured.
    let r = send(
        to,
        "GET",
        "/api/v1/pools",
        &[
            ("Host", &evil),
            ("Authorization", "Bearer anything-at-all-here"),
        ],
        "",
    )
    .await;
    assert_refused("a token where none is set", &r, &["Host"]);
    // Names that merely contain an allowed one.
    for host in [
        "router1.example.net.evil.example",
        "localhost.evil.example:80",
        "127.0.0.1.nip.io",
        "127.0.0.2",
    ] {
        let r = send(to, "GET", "/api/v1/pools", &[("Host", host)], "").await;
        assert_refused(host, &r, &["Host"]);
    }
    let r = send(to, "GET", "/api/v1/pools", &[], "").await;
    assert_refused("no Host", &r, &["Host"]);

    // The endpoint's own names, with any port or none (an SSH tunnel
    // changes it), and the names allowed_hosts lists.
    let own = format!("127.0.0.1:{port}");
    for host in [
        own.as_str(),
        "127.0.0.1",
        "127.0.0.1:19900",
        "localhost",
        "localhost:19900",
        "LocalHost",
        "[::1]",
        "[::1]:19900",
        "router1.example.net",
        "router1.example.net:443",
        "Router1.Example.NET",
    ] {
        let (status, body) = send(to, "GET", "/api/v1/pools", &[("Host", host)], "").await;
        assert_eq!(status, 200, "Host {host}: {body}");
    }
    // A write under an allowed name goes through.
    let (status, body) = send(
        to,
        "POST",
        "/api/v1/pools/web/backends/a",
        &[
            ("Host", "router1.example.net:9900"),
            ("Content-Type", "application/json"),
        ],
        "{\"state\":\"drain\"}",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend(port, "a").await["state"], "drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_another_site_is_refused_and_the_file_is_not_applied() {
    let router = start("admin-cross-site", &config_text("127.0.0.1:0", "", 1)).await;
    let (port, to) = (router.port, loopback(router.port));
    let own = format!("127.0.0.1:{port}");
    // The file changes on disk; only a reload would apply it.
    write(&router.file, &config_text("127.0.0.1:0", "", 5));

    // What a plain HTML form on http://evil.example sends (text/plain, no
    // body), as measured on the old code, where it answered 200.
    let form = send(
        to,
        "POST",
        "/api/v1/reload",
        &[
            ("Host", &own),
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        "",
    )
    .await;
    assert_refused(
        "a cross-site form",
        &form,
        &["Origin: http://evil.example", &format!("http://{own}")],
    );
    /// A request a browser sends from another page: its method, path,
    /// marks, and what the refusal must name.
    struct Case {
        method: &'static str,
        path: &'static str,
        marks: &'static [(&'static str, &'static str)],
        names: &'static [&'static str],
    }
    let case = |method, path, marks, names| Case {
        method,
        path,
        marks,
        names,
    };
    let reload = "/api/v1/reload";
    let refusals = [
        case(
            "POST",
            reload,
            &[("Sec-Fetch-Site", "cross-site")],
            &["Sec-Fetch-Site: cross-site", "same-origin"],
        ),
        case("POST", reload, &[("Origin", "null")], &["Origin: null"]),
        // Another port of the same host is another origin (a dev server
        // on localhost:3000, say).
        case(
            "POST",
            reload,
            &[
                ("Origin", "http://127.0.0.1:3000"),
                ("Sec-Fetch-Site", "same-site"),
            ],
            &["Sec-Fetch-Site: same-site"],
        ),
        case(
            "POST",
            reload,
            &[("Origin", "http://127.0.0.1:3000")],
            &["Origin: http://127.0.0.1:3000"],
        ),
        // Every method: a cross-site GET is refused too.
        case(
            "GET",
            "/api/v1/pools",
            &[("Sec-Fetch-Site", "cross-site")],
            &["Sec-Fetch-Site"],
        ),
        case(
            "GET",
            "/stats",
            &[("Sec-Fetch-Site", "cross-site")],
            &["Sec-Fetch-Site"],
        ),
        case(
            "DELETE",
            "/api/v1/pools/web/affinity?client=127.0.0.1",
            &[("Origin", "http://evil.example")],
            &["Origin"],
        ),
    ];
    for c in refusals {
        let mut headers = vec![("Host", own.as_str())];
        headers.extend(c.marks.iter().copied());
        let r = send(to, c.method, c.path, &headers, "").await;
        let what = format!("{} {} {:?}", c.method, c.path, c.marks);
        assert_refused(&what, &r, c.names);
    }
    // Nothing was applied.
    let last = api(port, "GET", "/api/v1/reload", "").await;
    assert_eq!(last["last"], Value::Null, "no reload ran: {last}");
    assert_eq!(backend(port, "a").await["weight"], 1);

    // curl from a shell, as docs/operations.md shows it.
    let (status, body) = send(to, "POST", "/api/v1/reload", &curl(&own), "").await;
    assert_eq!(status, 200, "curl -X POST .../api/v1/reload: {body}");
    assert!(body.contains("weight 1 -> 5"), "{body}");
    assert_eq!(backend(port, "a").await["weight"], 5);

    // The systemd unit's ExecReload: `stickytls ctl --admin 127.0.0.1:PORT
    // reload`.
    write(&router.file, &config_text("127.0.0.1:0", "", 6));
    let ctl = Command::new(env!("CARGO_BIN_EXE_stickytls"))
        .args(["ctl", "--admin", &own, "reload"])
        .output()
        .expect("run stickytls ctl");
    assert!(
        ctl.status.success(),
        "ctl reload: {}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    assert_eq!(backend(port, "a").await["weight"], 6);

    // A browser's same-origin request: a page of the endpoint's own.
    write(&router.file, &config_text("127.0.0.1:0", "", 7));
    let origin = format!("http://{own}");
    let (status, body) = send(
        to,
        "POST",
        "/api/v1/reload",
        &[
            ("Host", &own),
            ("Origin", &origin),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(backend(port, "a").await["weight"], 7);
    // And a page typed into the address bar.
    let (status, body) = send(
        to,
        "GET",
        "/stats",
        &[("Host", &own), ("Sec-Fetch-Site", "none")],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_opens_any_host_name_but_never_another_sites_page() {
    // A wildcard bind, as on a host scraped from the network: the token is
    // required for writes.
    let text = config_text("0.0.0.0:0", &format!("token = \"{TOKEN}\"\n"), 1);
    let router = start("admin-token-hosts", &text).await;
    let (port, to) = (router.port, loopback(router.port));
    let evil = format!("evil.example:{port}");
    let bearer = format!("Bearer {TOKEN}");

    let r = send(to, "GET", "/api/v1/pools", &[("Host", &evil)], "").await;
    assert_refused("no token", &r, &["Host"]);
    let r = send(
        to,
        "GET",
        "/api/v1/pools",
        &[
            ("Host", &evil),
            ("Authorization", "Bearer wrong-token-wrong-token"),
        ],
        "",
    )
    .await;
    assert_refused("a wrong token", &r, &["Host"]);
    let (status, body) = send(
        to,
        "GET",
        "/api/v1/pools",
        &[("Host", &evil), ("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, 200, "the token, any Host: {body}");
    let (status, body) = send(
        to,
        "POST",
        "/api/v1/pools/web/backends/a",
        &[
            ("Host", "router1.internal:9900"),
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        "{\"state\":\"maint\"}",
    )
    .await;
    assert_eq!(status, 200, "a write with the token, by any name: {body}");
    assert_eq!(backend(port, "a").await["state"], "maint");

    // The token does not make another site's page welcome.
    write(&router.file, &text.replace("weight = 1", "weight = 9"));
    for extra in [
        ("Origin", "http://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = send(
            to,
            "POST",
            "/api/v1/reload",
            &[
                ("Host", &format!("127.0.0.1:{port}")),
                ("Authorization", &bearer),
                extra,
            ],
            "",
        )
        .await;
        assert_refused(&format!("token and {extra:?}"), &r, &[extra.0]);
    }
    let last = api(port, "GET", "/api/v1/reload", "").await;
    assert_eq!(last["last"], Value::Null, "{last}");

    // Scraped by address over the network (here 127.0.0.2, which the
    // wildcard bind accepts on): the Host is the address the connection
    // reached, served without the token; another address is not.
    let other = SocketAddr::from(([127, 0, 0, 2], port));
    let reached = format!("127.0.0.2:{port}");
    let (status, body) = send(other, "GET", "/metrics", &[("Host", &reached)], "").await;
    assert_eq!(status, 200, "{body}");
    let r = send(other, "GET", "/metrics", &[("Host", "127.0.0.3")], "").await;
    assert_refused("another address", &r, &["Host `127.0.0.3`"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_on_ipv6_loopback_answers_to_its_bracketed_address() {
    let router = start("admin-ipv6", &config_text("[::1]:0", "", 1)).await;
    let port = router.port;
    let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    for host in [format!("[::1]:{port}"), "[::1]".into(), "localhost".into()] {
        let (status, body) = send(to, "GET", "/api/v1/pools", &[("Host", &host)], "").await;
        assert_eq!(status, 200, "Host {host}: {body}");
    }
    let origin = format!("http://[::1]:{port}");
    let (status, body) = send(
        to,
        "GET",
        "/api/v1/pools",
        &[("Host", &format!("[::1]:{port}")), ("Origin", &origin)],
        "",
    )
    .await;
    assert_eq!(status, 200, "its own origin: {body}");
    for host in ["[::2]", "::1", "evil.example"] {
        let r = send(to, "GET", "/api/v1/pools", &[("Host", host)], "").await;
        assert_refused(host, &r, &["Host"]);
    }
}

// ---------------------------------------------------------------------------
// In a real browser.

/// How long one Chromium run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// `chromium` on PATH, or a failure that says how to get it.
fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`chromium` is not on PATH: this test drives Debian's headless Chromium; \
                 scripts/test installs it (apt-get install chromium)"
            )
        })
}

/// Headless Chromium in a fresh profile under `work` (named `profile`),
/// with `args`, its stdout into `out`, in a process group of its own.
fn browser(work: &Path, profile: &str, args: &[String], out: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", work.join(profile).display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromium")
}

/// Ends a browser started by [`browser`] and its helpers.
fn end(mut child: Child) {
    let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
    let _ = child.wait();
}

/// The DOM Chromium dumps after loading with `args`; it is ended after
/// [`BROWSER_TIMEOUT`].
fn dump_dom(work: &Path, profile: &str, args: &[String]) -> String {
    let out = work.join(format!("{profile}.html"));
    let mut args = args.to_vec();
    args.push("--dump-dom".into());
    let mut child = browser(work, profile, &args, &out);
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            end(child);
            panic!("chromium {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium {args:?}: {status}");
    std::fs::read_to_string(out).unwrap()
}

/// Serves `page` as HTML to every request: the other site.
async fn serve_page(page: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// What went through a [`tunnel`].
#[derive(Debug, Default)]
struct Seen {
    /// Requests for the path watched.
    requests: AtomicUsize,
    /// Answers with status 200, and with 403.
    ok: AtomicUsize,
    refused: AtomicUsize,
}

/// A tunnel to `to` on a port of its own (what `ssh -L` gives), counting
/// the requests for `path` that go through it and the answers.
async fn tunnel(to: SocketAddr, path: &'static str) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let counted = seen.clone();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let (seen, seen_answers) = (counted.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(to).await else {
                    return;
                };
                let (mut dr, mut dw) = down.into_split();
                let (mut ur, mut uw) = up.into_split();
                let needle = format!("GET {path}");
                let requests = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = dr.read(&mut buf).await {
                        if n == 0 || uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let n = text.matches(&needle).count();
                        seen.requests.fetch_add(n, Ordering::Relaxed);
                    }
                    let _ = uw.shutdown().await;
                };
                let answers = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = ur.read(&mut buf).await {
                        if n == 0 || dw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let (ok, refused) = (
                            text.matches("HTTP/1.1 200 ").count(),
                            text.matches("HTTP/1.1 403 ").count(),
                        );
                        seen_answers.ok.fetch_add(ok, Ordering::Relaxed);
                        seen_answers.refused.fetch_add(refused, Ordering::Relaxed);
                    }
                    let _ = dw.shutdown().await;
                };
                tokio::join!(requests, answers);
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_headless_chromium_another_sites_form_is_refused_and_the_stats_page_refreshes() {
    let router = start("admin-browser", &config_text("127.0.0.1:0", "", 1)).await;
    let port = router.port;
    write(&router.file, &config_text("127.0.0.1:0", "", 5));
    let work = scratch("admin-browser-chromium");

    // A page on another site whose form posts to the reload, as soon as
    // it loads.
    let attack = format!(
        "<!doctype html><html><body><form id=f method=POST enctype=text/plain \
         action=\"http://127.0.0.1:{port}/api/v1/reload\"></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    let evil_port = serve_page(attack).await;
    let (w, dom) = (work.clone(), format!("http://evil.example:{evil_port}/"));
    let dom = tokio::task::spawn_blocking(move || {
        dump_dom(
            &w,
            "attack",
            &[
                "--host-resolver-rules=MAP evil.example 127.0.0.1".into(),
                "--virtual-time-budget=5000".into(),
                dom,
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        dom.contains("403") && dom.contains("Sec-Fetch-Site: cross-site"),
        "the form reached the endpoint and was refused:\n{dom}"
    );
    let last = api(port, "GET", "/api/v1/reload", "").await;
    assert_eq!(last["last"], Value::Null, "{last}");
    assert_eq!(backend(port, "a").await["weight"], 1);

    // DNS rebinding: the browser reaches the endpoint under the page's own
    // name.
    let (w, url) = (
        work.clone(),
        format!("http://rebound.example:{port}/api/v1/pools"),
    );
    let dom = tokio::task::spawn_blocking(move || {
        dump_dom(
            &w,
            "rebound",
            &[
                "--host-resolver-rules=MAP rebound.example 127.0.0.1".into(),
                url,
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        dom.contains(&format!("Host `rebound.example:{port}`")) && !dom.contains("\"pools\""),
        "{dom}"
    );

    // The stats page through a tunnel (another port), refreshing itself
    // every second: each refresh is a same-origin navigation, and served
    // (a refused one would end the refreshing: the 403 is no stats page).
    let (tunnel_port, seen) = tunnel(loopback(port), "/stats").await;
    let url = format!("http://127.0.0.1:{tunnel_port}/stats?refresh=1");
    let child = browser(&work, "refresh", &[url], &work.join("refresh.out"));
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    while seen.requests.load(Ordering::Relaxed) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    end(child);
    let (requests, ok, refused) = (
        seen.requests.load(Ordering::Relaxed),
        seen.ok.load(Ordering::Relaxed),
        seen.refused.load(Ordering::Relaxed),
    );
    assert!(
        requests >= 3,
        "the page loaded and refreshed itself: {seen:?}"
    );
    assert!(ok >= 2 && refused == 0, "{seen:?}");
    let _ = std::fs::remove_dir_all(&work);
}
