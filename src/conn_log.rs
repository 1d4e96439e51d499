//! One log line per connection, when it ends: who it was, where it went and
//! why, what it carried and how long each stage took. Written through
//! `tracing` (target `stickytls::connection`), so `--log-format text|json`
//! shapes it like every other line, and bounded by the per-connection log
//! rate limit (lines over it are dropped and counted).
//!
//! What the client chose (its SNI) is written through
//! [`text::escape_bytes`]: neither format carries a control character
//! from the network. In the text format the escaped name is quoted like
//! every text field, so its backslashes show doubled there
//! (`sni="a\\x1bb"` for `a`, ESC, `b`); the JSON format carries the escaped
//! text itself (`"sni":"a\\x1bb"`, the string `a\x1bb`).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::info;

use crate::decision::text;
use crate::log_limit::LogLimiter;

/// The target of the per-connection lines: `RUST_LOG=stickytls::connection=off`
/// turns them off alone.
pub(crate) const TARGET: &str = "stickytls::connection";

static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);
const BLOCK: u64 = 1 << 20;

thread_local! {
    /// The next id of this thread's block, and the end of the block.
    static BLOCK_STATE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A process-unique connection id. Each thread takes a block of a million
/// ids from one shared counter, then numbers its connections from it
/// without touching anything another thread writes.
pub(crate) fn next_id() -> u64 {
    BLOCK_STATE.with(|b| {
        let (mut next, mut end) = b.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed) * BLOCK + 1;
            end = next + BLOCK - 1;
        }
        b.set((next + 1, end));
        next
    })
}

/// Why a connection ended, as its log line says.
pub mod close {
    /// Both sides closed.
    pub const CLOSED: &str = "closed";
    /// No bytes either way for the idle timeout.
    pub const IDLE: &str = "idle_timeout";
    pub const CLIENT_RESET: &str = "client_reset";
    pub const BACKEND_RESET: &str = "backend_reset";
    /// No backend could be reached.
    pub const NO_BACKEND: &str = "no_backend";
}

/// A connection's line in the making. With the line's level off (the
/// usual production filter is `warn`), it allocates nothing and reads no
/// clock: its times are only measured for a line that may be written.
#[derive(Debug)]
pub(crate) struct ConnectionTrace {
    /// When the connection was accepted; `None` when no line may be
    /// written at all, so that the fields that cost an allocation or a
    /// clock read are only filled in for a line.
    started: Option<Instant>,
    /// When the connect stage began, for the line's connect time.
    connecting: Option<Instant>,
    record: ConnectionRecord,
}

impl ConnectionTrace {
    /// A connection accepted now from `client` (the socket's peer).
    pub fn start(listener: &str, client: SocketAddr) -> Self {
        let on = tracing::enabled!(target: TARGET, tracing::Level::INFO);
        ConnectionTrace {
            started: on.then(Instant::now),
            connecting: None,
            record: ConnectionRecord {
                id: if on { next_id() } else { 0 },
                listener: on.then(|| listener.into()),
                client: Some(client),
                close: close::CLOSED,
                ..ConnectionRecord::default()
            },
        }
    }

    /// The client address a PROXY header named.
    pub fn client(&mut self, client: SocketAddr) {
        self.record.client = Some(client);
    }

    /// The ClientHello is complete: the hello time, and its server name
    /// (escaped: it is whatever the client sent).
    pub fn hello(&mut self, sni: Option<&[u8]>) {
        if let Some(started) = self.started {
            self.record.hello = Some(started.elapsed());
            self.record.sni = sni.map(|s| text::escape_bytes(s).into_owned());
        }
    }

    /// The pool and the rule that chose; `kind` is the key kind that
    /// decided or was re-bound.
    pub fn routed(&mut self, pool: &str, rule: &'static str, kind: Option<&'static str>) {
        if self.started.is_some() {
            self.record.pool = Some(pool.into());
        }
        self.record.rule = Some(rule);
        self.record.kind = kind;
    }

    /// The connect stage begins: attempts, failover included, until
    /// [`connected`](Self::connected).
    pub fn connecting(&mut self) {
        if self.started.is_some() {
            self.connecting = Some(Instant::now());
        }
    }

    /// A backend was reached.
    pub fn connected(&mut self, backend: &str) {
        if let Some(connecting) = self.connecting {
            self.record.backend = Some(backend.into());
            self.record.connect = Some(connecting.elapsed());
        }
    }

    /// The handshake's outcome as the server's flight told it.
    pub fn handshake(&mut self, version: Option<u16>, resumed: Option<bool>) {
        self.record.tls = version.map(version_name);
        self.record.resumed = resumed;
    }

    /// Bytes passed each way.
    pub fn bytes(&mut self, to_backend: u64, to_client: u64) {
        self.record.to_backend = to_backend;
        self.record.to_client = to_client;
    }

    /// The connection is over: its line, within the rate limit.
    pub fn finish(mut self, close: &'static str, limit: &LogLimiter) {
        let Some(started) = self.started else {
            return;
        };
        if !limit.allow() {
            return;
        }
        self.record.total = started.elapsed();
        self.record.close = close;
        self.record.emit();
    }
}

/// What one connection's line says. Filled in as the connection goes; the
/// fields a connection never reached stay empty (`-` in text).
#[derive(Debug, Default)]
pub(crate) struct ConnectionRecord {
    pub id: u64,
    pub listener: Option<Box<str>>,
    /// The client's address: the PROXY header's when the listener uses one.
    pub client: Option<SocketAddr>,
    /// The server name the client sent, escaped by [`text::escape_bytes`]
    /// so that no control character it chose reaches a terminal or a log
    /// reader, in either log format.
    pub sni: Option<String>,
    /// The version the server chose, e.g. "1.3".
    pub tls: Option<&'static str>,
    pub pool: Option<Box<str>>,
    pub backend: Option<Box<str>>,
    pub rule: Option<&'static str>,
    /// The key kind that decided (rule 1) or was re-bound (rule 2).
    pub kind: Option<&'static str>,
    pub resumed: Option<bool>,
    pub to_backend: u64,
    pub to_client: u64,
    /// Accept to a complete ClientHello (PROXY header included).
    pub hello: Option<Duration>,
    /// Starting to connect to reaching a backend (its first byte, for
    /// TLS), failover included.
    pub connect: Option<Duration>,
    pub total: Duration,
    pub close: &'static str,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

impl ConnectionRecord {
    /// Writes the line at info level on target `stickytls::connection`.
    pub fn emit(&self) {
        let dash = "-";
        info!(
            target: TARGET,
            id = self.id,
            listener = self.listener.as_deref().unwrap_or(dash),
            client = %self.client.map_or_else(|| dash.to_string(), |c| c.to_string()),
            sni = self.sni.as_deref().unwrap_or(dash),
            tls = self.tls.unwrap_or(dash),
            pool = self.pool.as_deref().unwrap_or(dash),
            backend = self.backend.as_deref().unwrap_or(dash),
            rule = self.rule.unwrap_or(dash),
            kind = self.kind.unwrap_or(dash),
            resumed = self.resumed,
            to_backend = self.to_backend,
            to_client = self.to_client,
            hello_ms = ms(self.hello),
            connect_ms = ms(self.connect),
            total_ms = ms(Some(self.total)),
            close = self.close,
            "connection"
        );
    }
}

/// A TLS version as the log and metrics name it.
pub(crate) fn version_name(v: u16) -> &'static str {
    match v {
        0x0304 => "1.3",
        0x0303 => "1.2",
        0x0302 => "1.1",
        0x0301 => "1.0",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the log formats write into, for reading back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// One connection whose SNI carries ESC, BEL, CR, LF, DEL, a C1 CSI
    /// and a byte that is not UTF-8, logged in `format`: the bytes written.
    fn hostile_line(json: bool) -> Vec<u8> {
        let out = Captured::default();
        let writer = {
            let out = out.clone();
            move || out.clone()
        };
        let builder = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO);
        let run = || {
            let mut t = ConnectionTrace::start("main", "192.0.2.1:4000".parse().unwrap());
            t.hello(Some(b"a\x1b]0;owned\x07\r\nb\x7f\xc2\x9bc\xff.example"));
            t.routed("default", "balancer", None);
            t.finish(close::CLOSED, &LogLimiter::new(100));
        };
        if json {
            tracing::subscriber::with_default(builder.json().finish(), run);
        } else {
            tracing::subscriber::with_default(builder.finish(), run);
        }
        out.0.lock().unwrap().clone()
    }

    #[test]
    fn the_text_line_carries_no_control_character_a_client_sent() {
        let line = hostile_line(false);
        let text = String::from_utf8(line.clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        assert!(
            line.iter().all(|&b| b == b'\n' || (b >= 0x20 && b != 0x7f)),
            "{text:?}"
        );
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        // Quoted like every text field, so the escapes' backslashes double.
        assert!(
            text.contains(r#"sni="a\\x1b]0;owned\\x07\\x0d\\x0ab\\x7f\\u{9b}c\\xff.example""#),
            "{text}"
        );
    }

    #[test]
    fn the_json_line_is_json_with_the_same_escaped_name() {
        let line = hostile_line(true);
        assert!(line.iter().all(|&b| b == b'\n' || (b >= 0x20 && b != 0x7f)));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            v["fields"]["sni"],
            r"a\x1b]0;owned\x07\x0d\x0ab\x7f\u{9b}c\xff.example"
        );
        assert_eq!(v["fields"]["pool"], "default");
    }

    #[test]
    fn connection_ids_are_unique_across_threads() {
        let mut all: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).map(|_| next_id()).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert!(all.iter().all(|&id| id > 0));
    }
}
