//! `GET /stats` as a person sees it: Debian's headless Chromium loads the
//! page from a router that carried real TLS traffic (fresh and resumed
//! handshakes, a rejected connection, a backend in maintenance) and the
//! rendered DOM must show each backend with the same figures the JSON API
//! reports, the maintained backend's state coloured, and the decisions
//! naming the SNI the clients sent. A screenshot proves it paints; with
//! `STICKYTLS_SCREENSHOT=PATH` it is copied there (docs/img/stats-page.png
//! is made that way).
//!
//! The browser is a real dependency: without `chromium` on PATH the test
//! fails and says that `scripts/test` installs it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use serde_json::{Value, json};
use stickytls::admin::AdminConfig;
use stickytls::client::ctl::Endpoint;
use stickytls_peers::cert::TestCa;
use stickytls_peers::client::{Client, ClientOptions, Writes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The name the clients send and the backends' certificates carry.
const SNI: &str = "shop.stats.test";
/// How long one Chromium run may take: it is slow to start on a loaded
/// two-core machine, but a hang must still end the test.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn api(admin: SocketAddr) -> Endpoint {
    Endpoint {
        addr: admin.to_string(),
        token: None,
        timeout: Duration::from_secs(10),
    }
}

async fn get(api: &Endpoint, path: &str) -> Value {
    api.call(Method::GET, path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A temporary directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("stickytls-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `chromium` on PATH, or a failure that says how to get it: a missing
/// browser must never pass as a rendered page.
fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`chromium` is not on PATH: this test renders the stats page in Debian's \
                 headless Chromium; scripts/test installs it (apt-get install chromium)"
            )
        })
}

/// Runs headless Chromium with `args` after the common flags, with its
/// stdout into `stdout_to`, in a fresh profile; kills its whole process
/// group after [`BROWSER_TIMEOUT`]. Stderr (dbus and GPU chatter) is
/// dropped; the exit status must be success.
fn run_chromium(browser: &Path, args: &[String], stdout_to: &Path) {
    use std::os::unix::process::CommandExt;
    let profile = TempDir::new("chromium-profile");
    let out = std::fs::File::create(stdout_to).expect("create the browser's output file");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        // Its own process group, so a timeout ends its helpers too.
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "chromium {args:?} did not finish within {} s",
                BROWSER_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium {args:?} failed: {status}");
}

/// One raw request; the response head (lower-cased) and its body.
async fn raw_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the admin endpoint answers")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

/// The `<tr ...>` of a backend in the rendered DOM, up to its `</tr>`.
fn backend_row<'a>(dom: &'a str, pool: &str, backend: &str) -> &'a str {
    let marker = format!("data-pool=\"{pool}\" data-backend=\"{backend}\"");
    let at = dom
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for backend {backend} in the page:\n{dom}"));
    let start = dom[..at].rfind("<tr").expect("the row opens");
    let end = at + dom[at..].find("</tr>").expect("the row closes");
    &dom[start..end]
}

/// The text of the cell marked `data-field="field"` in a row.
fn field<'a>(row: &'a str, field: &str) -> &'a str {
    let marker = format!("data-field=\"{field}\"");
    let at = row
        .find(&marker)
        .unwrap_or_else(|| panic!("no {field} in row {row}"));
    let from = at + row[at..].find('>').expect("the cell's tag closes") + 1;
    let to = from + row[from..].find('<').expect("the cell's text ends");
    &row[from..to]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_page_renders_the_apis_figures_in_headless_chromium() {
    let browser = chromium();
    let backends = rustls_backends(3, |o| {
        o.leaf = Some(TestCa::shared().leaf_for(&o.name, &[SNI]));
    })
    .await;
    let mut cfg = config(&named(&backends));
    cfg.admin = Some(AdminConfig::new("127.0.0.1:0".parse().unwrap()));
    let router = start_router(cfg).await;
    let admin = router.admin_addr().expect("the admin endpoint is on");
    let api = api(admin);
    let addr = router.addr;

    // Real traffic: six clients, each a fresh handshake then two
    // resumptions on the backend that issued its session.
    let mut resumed = 0;
    for i in 0..6u8 {
        let client = Client::new(ClientOptions {
            sni: Some(SNI.to_string()),
            ..Default::default()
        })
        .expect("client options");
        let first = client
            .connect(addr, Some(ip(20 + i)))
            .await
            .expect("connects");
        assert!(
            !first.server_resumed,
            "a fresh client's first handshake is full"
        );
        for _ in 0..2 {
            let again = client
                .connect(addr, Some(ip(20 + i)))
                .await
                .expect("reconnects");
            assert_eq!(
                again.backend, first.backend,
                "a resumption reaches its issuer"
            );
            resumed += usize::from(again.server_resumed);
        }
    }
    assert!(resumed >= 6, "sessions resumed: {resumed} of 12");

    // A rejection: something that is not TLS at all.
    let mut junk = TcpStream::connect(addr)
        .await
        .expect("connect to the router");
    junk.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("write junk");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), junk.read_to_end(&mut sink)).await;

    // One connection kept open, so an `active` figure is not zero.
    let held_client = Client::new(ClientOptions {
        sni: Some(SNI.to_string()),
        ..Default::default()
    })
    .expect("client options");
    let held = held_client
        .open(addr, Some(ip(90)), Writes::Whole)
        .await
        .expect("held connection");
    let held_on = held.reached().backend.clone();
    // Maintenance for a backend that does not hold it.
    let maint = ["a", "b", "c"]
        .into_iter()
        .find(|b| *b != held_on)
        .expect("another backend")
        .to_string();
    let changed = api
        .call(
            Method::POST,
            &format!("/api/v1/pools/default/backends/{maint}"),
            Some(&json!({ "state": "maint" })),
        )
        .await
        .expect("set maint");
    assert_eq!(changed["state"], "maint");

    // The counters settle once the router has seen every close: then the
    // API and the page read the same figures.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let stats = get(&api, "/api/v1/stats").await;
        if stats["open_to_backends"] == 1 && stats["active"] == 1 && stats["rejected"] == 1 {
            break stats;
        }
        assert!(Instant::now() < deadline, "counters never settled: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats["rejected_by_reason"]["not_tls"], 1, "{stats}");
    let listed = get(&api, "/api/v1/pools/default/backends").await;
    let listed = listed["backends"].as_array().expect("backends").clone();
    assert_eq!(listed.len(), 3);

    // The answer itself: HTML, never cached, no script allowed.
    let (head, body) = raw_get(admin, "/stats").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    let (head, _) = raw_get(admin, "/stats?refresh=0").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let (head, body) = raw_get(admin, "/stats?token=secret").await;
    assert!(
        head.starts_with("http/1.1 400"),
        "a token in the URL is refused: {head}"
    );
    assert!(body.contains("token"), "{body}");

    // The browser's view.
    let url = format!("http://{admin}/stats");
    let work = TempDir::new("stats-page");
    let dom_file = work.0.join("dom.html");
    let (b, u, d) = (browser.clone(), url.clone(), dom_file.clone());
    tokio::task::spawn_blocking(move || run_chromium(&b, &["--dump-dom".into(), u], &d))
        .await
        .expect("chromium runs");
    let dom = std::fs::read_to_string(&dom_file).expect("the DOM chromium printed");
    assert!(
        dom.contains("<title>stickytls stats</title>"),
        "not the page:\n{dom}"
    );

    for b in &listed {
        let name = b["name"].as_str().expect("name");
        let row = backend_row(&dom, "default", name);
        let state = b["state"].as_str().expect("state");
        assert!(
            row.contains(&format!("class=\"state state-{state}\"")),
            "{name} is shown {state}, coloured: {row}"
        );
        assert_eq!(field(row, "state"), state, "{name}");
        for f in ["active", "total", "handshakes", "resumed", "weight"] {
            assert_eq!(
                field(row, f),
                b[f].to_string(),
                "{name}'s {f} as the API reports it"
            );
        }
    }
    let maint_row = backend_row(&dom, "default", &maint);
    assert!(maint_row.contains("state state-maint"), "{maint_row}");
    assert!(
        maint_row.starts_with("<tr class=\"row-maint\""),
        "{maint_row}"
    );
    assert_eq!(field(backend_row(&dom, "default", &held_on), "active"), "1");

    // Resumption shows: some backend's rate is above zero, as is the
    // router's hit ratio.
    let resumed_rows = listed
        .iter()
        .filter(|b| b["resumed"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(resumed_rows > 0, "{listed:?}");
    assert!(listed.iter().any(|b| {
        let rate = field(
            backend_row(&dom, "default", b["name"].as_str().unwrap()),
            "resumption-rate",
        );
        rate.ends_with('%') && rate != "0.0%"
    }));
    let hit_value = field(&dom, "hit-ratio");
    assert!(
        hit_value.ends_with('%') && hit_value != "0.0%",
        "hit ratio {hit_value}"
    );

    // The rejection, by reason, with the API's count.
    let rejection = dom
        .split("data-reason=\"not_tls\"")
        .nth(1)
        .expect("not_tls is among the top rejection reasons");
    assert!(
        rejection.contains("<td class=\"num\">1</td>"),
        "{rejection}"
    );

    // The decisions name the SNI the clients sent, and their backends.
    let decisions: Vec<&str> = dom
        .match_indices("<tr class=\"decision\"")
        .map(|(i, _)| &dom[i..])
        .collect();
    assert!(
        decisions.len() >= 15,
        "the last decisions are listed ({} rows)",
        decisions.len()
    );
    let with_sni = decisions.iter().filter(|d| field(d, "sni") == SNI).count();
    assert_eq!(with_sni, decisions.len(), "every decision names {SNI}");
    assert!(decisions.iter().any(|d| field(d, "backend") == held_on));

    // The picture: a real PNG of some size.
    let shot = work.0.join("stats.png");
    let (b, u) = (browser.clone(), format!("{url}?refresh=0"));
    let args = vec![
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,900".to_string(),
        "--hide-scrollbars".to_string(),
        u,
    ];
    let log = work.0.join("screenshot.log");
    tokio::task::spawn_blocking(move || run_chromium(&b, &args, &log))
        .await
        .expect("chromium runs");
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    assert!(
        png.len() > 20 * 1024,
        "a 1280x900 page of tables is more than a blank image: {} bytes",
        png.len()
    );
    if let Some(to) = std::env::var_os("STICKYTLS_SCREENSHOT") {
        std::fs::copy(&shot, &to).expect("copy the screenshot to STICKYTLS_SCREENSHOT");
    }

    drop(held);
}
