//! `stickytls ctl`: the admin API from a shell. Its command line
//! ([`Args`]), a small HTTP/1.1 client (hyper's, over one tokio connection
//! per command), and tables for people; `--json` prints the API's own
//! answer instead.
//!
//! What it prints comes from the network (a client's SNI in `decisions`,
//! and any string the endpoint answers): every string is escaped by
//! `decision::text` before it reaches the terminal, on stdout and on
//! stderr, so only the tables' own newlines are control characters;
//! `--json` stays JSON, with every control character inside its strings
//! written as a `\u` escape.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::decision::text;

/// One API request and how to reach the endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port` of the admin endpoint.
    pub addr: String,
    pub token: Option<String>,
    /// Connecting and the whole exchange.
    pub timeout: Duration,
}

/// Why a command failed; printed as is, and the process exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The endpoint could not be reached or did not answer in time.
    #[error(
        "cannot reach the admin endpoint at {addr}: {why} (is the router running with [admin] bind or --admin?)"
    )]
    Unreachable { addr: String, why: String },
    /// It answered with an error status.
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
    /// It answered something that is not the API's JSON.
    #[error("unexpected answer from the admin endpoint: {0}")]
    Garbled(String),
}

/// Largest answer read: decisions and backends lists are small.
const MAX_ANSWER: usize = 4 << 20;

impl Endpoint {
    /// Sends one request and returns the JSON answer of a 2xx.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CtlError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(CtlError::Unreachable {
                addr: self.addr.clone(),
                why: format!("no answer within {} s", self.timeout.as_secs()),
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CtlError> {
        let unreachable = |why: String| CtlError::Unreachable {
            addr: self.addr.clone(),
            why,
        };
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr);
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| CtlError::Garbled(e.to_string()))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = res.status();
        let bytes = Limited::new(res.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        driver.abort();
        let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
            CtlError::Garbled(format!(
                "{status} with a body that is not JSON: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        if status.is_success() {
            Ok(json)
        } else {
            Err(CtlError::Api {
                status,
                message: json["error"].as_str().unwrap_or("error").to_string(),
            })
        }
    }
}

/// One `ctl` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Pools,
    Backends {
        pool: String,
    },
    Set {
        pool: String,
        backend: String,
        state: Option<String>,
        weight: Option<u32>,
    },
    Lookup {
        pool: String,
        by: By,
    },
    Forget {
        pool: String,
        by: By,
    },
    Decisions {
        pool: String,
        limit: Option<usize>,
    },
    Stats,
    /// Re-read the configuration file and apply it.
    Reload,
}

/// What an affinity lookup is by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum By {
    Key(String),
    Client(String),
}

impl By {
    fn query(&self) -> String {
        match self {
            By::Key(k) => format!("key={}", encode(k)),
            By::Client(c) => format!("client={}", encode(c)),
        }
    }
}

/// `stickytls ctl`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The router's admin endpoint, HOST:PORT.
    #[arg(
        long,
        value_name = "ADDR",
        env = "STICKYTLS_ADMIN",
        default_value = "127.0.0.1:9900"
    )]
    admin: String,
    /// The [admin] token (better given in the environment than on a
    /// command line others can read).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "STICKYTLS_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Verb,
}

/// What `stickytls ctl` is asked to do.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Verb {
    /// The pools, with their backends up and affinity table sizes.
    Pools,
    /// A pool's backends: effective state, weight, connections, resumptions.
    Backends { pool: String },
    /// Change a backend's state (up, drain, maint) and/or weight.
    Set {
        pool: String,
        backend: String,
        /// up: in service; drain: no new sessions, its sessions still
        /// resume there; maint: nothing new, its clients move elsewhere.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        #[arg(long, value_name = "N")]
        weight: Option<u32>,
    },
    /// Where a session key or a client address goes, and why.
    Lookup(AffinityArgs),
    /// Forget a session key's or a client address's affinity.
    Forget(AffinityArgs),
    /// The last routing decisions, newest first.
    Decisions {
        pool: String,
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// The router's counters.
    Stats,
    /// Re-read the router's configuration file and apply it in place
    /// (as SIGHUP does); prints what changed, or the file's mistakes.
    Reload,
}

/// Which affinity a lookup or a forget is about.
#[derive(Debug, clap::Args)]
pub(crate) struct AffinityArgs {
    pool: String,
    /// A session ID, ticket or PSK identity, in hex.
    #[arg(
        long,
        value_name = "HEX",
        required_unless_present = "client",
        conflicts_with = "client"
    )]
    key: Option<String>,
    /// A client IP address.
    #[arg(long, value_name = "IP")]
    client: Option<String>,
}

impl AffinityArgs {
    fn split(self) -> (String, By) {
        let by = match (self.key, self.client) {
            (Some(k), _) => By::Key(k),
            (None, Some(c)) => By::Client(c),
            (None, None) => unreachable!("clap requires --key or --client"),
        };
        (self.pool, by)
    }
}

/// `stickytls ctl`: runs the command `args` name, prints its answer, and
/// says how the process exits: 0 when the router answered, 1 when it
/// could not be reached or answered an error, 2 for a command that asks
/// nothing (printed on stderr).
pub fn cli(args: Args) -> ExitCode {
    let endpoint = Endpoint {
        addr: args.admin,
        token: args.token,
        timeout: Duration::from_secs(10),
    };
    let cmd = match args.command {
        Verb::Pools => Command::Pools,
        Verb::Backends { pool } => Command::Backends { pool },
        Verb::Set {
            pool,
            backend,
            state,
            weight,
        } => {
            if state.is_none() && weight.is_none() {
                super::print_err("stickytls ctl set: give --state and/or --weight");
                return ExitCode::from(super::USAGE);
            }
            Command::Set {
                pool,
                backend,
                state,
                weight,
            }
        }
        Verb::Lookup(a) => {
            let (pool, by) = a.split();
            Command::Lookup { pool, by }
        }
        Verb::Forget(a) => {
            let (pool, by) = a.split();
            Command::Forget { pool, by }
        }
        Verb::Decisions { pool, limit } => Command::Decisions { pool, limit },
        Verb::Stats => Command::Stats,
        Verb::Reload => Command::Reload,
    };
    call(&endpoint, &cmd, args.json)
}

/// Runs `cmd`, prints its answer (or the error, on stderr, escaped: it
/// may quote what the endpoint sent) and says how the process exits.
fn call(endpoint: &Endpoint, cmd: &Command, json: bool) -> ExitCode {
    let answer = match super::block_on("ctl", run(endpoint, cmd, json)) {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    match answer {
        Ok(mut out) => {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            match super::print("ctl", &out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(code) => code,
            }
        }
        Err(e) => {
            super::print_err(&format!("stickytls ctl: {}", text::escape(&e.to_string())));
            ExitCode::from(1)
        }
    }
}

/// Runs a command: the API's JSON, and the text to print (a table, or the
/// pretty JSON with `json`).
pub(crate) async fn run(
    endpoint: &Endpoint,
    cmd: &Command,
    json: bool,
) -> Result<String, CtlError> {
    let (answer, render): (Value, fn(&Value) -> String) = match cmd {
        Command::Pools => (
            endpoint.call(Method::GET, "/api/v1/pools", None).await?,
            pools_table,
        ),
        Command::Backends { pool } => (
            endpoint
                .call(
                    Method::GET,
                    &format!("/api/v1/pools/{}/backends", encode(pool)),
                    None,
                )
                .await?,
            backends_table,
        ),
        Command::Set {
            pool,
            backend,
            state,
            weight,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(s) = state {
                body.insert("state".into(), s.clone().into());
            }
            if let Some(w) = weight {
                body.insert("weight".into(), (*w).into());
            }
            let path = format!(
                "/api/v1/pools/{}/backends/{}",
                encode(pool),
                encode(backend)
            );
            (
                endpoint
                    .call(Method::POST, &path, Some(&Value::Object(body)))
                    .await?,
                backend_row,
            )
        }
        Command::Lookup { pool, by } => (
            endpoint
                .call(
                    Method::GET,
                    &format!("/api/v1/pools/{}/affinity?{}", encode(pool), by.query()),
                    None,
                )
                .await?,
            key_values,
        ),
        Command::Forget { pool, by } => (
            endpoint
                .call(
                    Method::DELETE,
                    &format!("/api/v1/pools/{}/affinity?{}", encode(pool), by.query()),
                    None,
                )
                .await?,
            key_values,
        ),
        Command::Decisions { pool, limit } => {
            let mut path = format!("/api/v1/pools/{}/decisions", encode(pool));
            if let Some(n) = limit {
                let _ = write!(path, "?limit={n}");
            }
            (
                endpoint.call(Method::GET, &path, None).await?,
                decisions_table,
            )
        }
        Command::Stats => (
            endpoint.call(Method::GET, "/api/v1/stats", None).await?,
            key_values,
        ),
        Command::Reload => (
            endpoint.call(Method::POST, "/api/v1/reload", None).await?,
            reload_summary,
        ),
    };
    Ok(if json {
        text::json(&serde_json::to_string_pretty(&answer).unwrap_or_default()).into_owned()
    } else {
        render(&answer)
    })
}

/// What an applied reload changed, one line each.
fn reload_summary(v: &Value) -> String {
    let lines = |field: &str| -> Vec<String> {
        v[field]
            .as_array()
            .map(|a| a.iter().map(cell).collect())
            .unwrap_or_default()
    };
    let mut out = format!("reloaded {}\n", cell(&v["file"]));
    let changes = lines("changes");
    if changes.is_empty() {
        out.push_str("  no change\n");
    }
    for c in changes {
        let _ = writeln!(out, "  {c}");
    }
    for r in lines("restart_required") {
        let _ = writeln!(out, "  changed, applies at the next restart: {r}");
    }
    out
}

/// Percent-encodes what is not unreserved in a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A JSON value as a table cell: strings bare but escaped, null as `-`,
/// anything else as its JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => text::escape(s).into_owned(),
        other => text::json(&other.to_string()).into_owned(),
    }
}

/// Columns aligned on the widest cell, two spaces apart.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{c:<w$}");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn rows(list: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| fields.iter().map(|f| cell(&item[*f])).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn pools_table(v: &Value) -> String {
    let fields = [
        "name",
        "balance",
        "inspect",
        "backends",
        "backends_up",
        "affinity_entries",
        "affinity_evictions",
        "clients_tracked",
    ];
    table(
        &[
            "POOL", "BALANCE", "INSPECT", "BACKENDS", "UP", "ENTRIES", "EVICTED", "CLIENTS",
        ],
        &rows(&v["pools"], &fields),
    )
}

const BACKEND_HEADERS: [&str; 8] = [
    "BACKEND", "ADDRESS", "STATE", "WEIGHT", "ACTIVE", "TOTAL", "RESUMED", "RESUMED%",
];

fn backend_cells(b: &Value) -> Vec<String> {
    let mut row: Vec<String> = [
        "name", "address", "state", "weight", "active", "total", "resumed",
    ]
    .iter()
    .map(|f| cell(&b[*f]))
    .collect();
    let handshakes = b["handshakes"].as_u64().unwrap_or(0);
    let resumed = b["resumed"].as_u64().unwrap_or(0);
    row.push(if handshakes == 0 {
        "-".into()
    } else {
        format!("{:.1}", resumed as f64 * 100.0 / handshakes as f64)
    });
    row
}

fn backends_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["backends"]
        .as_array()
        .map(|list| list.iter().map(backend_cells).collect())
        .unwrap_or_default();
    table(&BACKEND_HEADERS, &rows)
}

fn backend_row(v: &Value) -> String {
    table(&BACKEND_HEADERS, &[backend_cells(v)])
}

fn decisions_table(v: &Value) -> String {
    table(
        &["TIME", "CLIENT", "SNI", "RULE", "KIND", "BACKEND", "REASON"],
        &rows(
            &v["decisions"],
            &["time", "client", "sni", "rule", "kind", "backend", "reason"],
        ),
    )
}

/// An object as `key  value` lines; nested lists as indented tables.
fn key_values(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return cell(v);
    };
    let mut flat = Vec::new();
    let mut nested = String::new();
    for (k, val) in obj {
        match val {
            Value::Array(items) if items.iter().all(Value::is_object) => {
                let _ = writeln!(nested, "\n{}:", text::escape(k));
                let headers: Vec<String> = items
                    .first()
                    .and_then(Value::as_object)
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                let fields: Vec<&str> = headers.iter().map(String::as_str).collect();
                let upper: Vec<String> = headers
                    .iter()
                    .map(|h| text::escape(&h.to_uppercase()).into_owned())
                    .collect();
                let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
                if !items.is_empty() {
                    for l in table(&upper, &rows(val, &fields)).lines() {
                        let _ = writeln!(nested, "  {l}");
                    }
                } else {
                    nested.push_str("  (none)\n");
                }
            }
            other => flat.push(vec![text::escape(k).into_owned(), cell(other)]),
        }
    }
    let width = flat.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in &flat {
        let _ = writeln!(out, "{:<width$}  {}", r[0], r[1]);
    }
    out.push_str(&nested);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let t = table(
            &["A", "LONG HEADER"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        assert_eq!(t, "A          LONG HEADER\nwide cell  x\ny          z\n");
    }

    #[test]
    fn tables_show_what_a_client_chose_escaped() {
        let v = serde_json::json!({ "decisions": [{
            "time": "t", "client": "192.0.2.1:1", "sni": "a\u{1b}[2J\r\nb\u{7f}\u{9b}",
            "rule": "balancer", "kind": null, "backend": "x", "reason": "r",
        }]});
        let t = decisions_table(&v);
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(t.contains(r"a\x1b[2J\x0d\x0ab\x7f\u{9b}"), "{t}");
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        let kv = key_values(&serde_json::json!({ "k\u{7}": "v\u{1b}", "n": [1, "\u{7f}"] }));
        assert!(!kv.chars().any(|c| c.is_control() && c != '\n'), "{kv:?}");
    }

    #[test]
    fn path_segments_and_query_values_are_percent_encoded() {
        assert_eq!(encode("web 1/a"), "web%201%2Fa");
        assert_eq!(encode("::1"), "%3A%3A1");
        assert_eq!(encode("ab-c_d.e~"), "ab-c_d.e~");
    }
}
