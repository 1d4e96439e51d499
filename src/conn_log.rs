//! One log line per connection, when it ends: who it was, where it went and
//! why, what it carried and how long each stage took. Written through
//! `tracing` (target `stickytls::connection`), so `--log-format text|json`
//! shapes it like every other line, and bounded by the per-connection log
//! rate limit (lines over it are dropped and counted).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::info;

/// How log lines are written: `--log-format` and `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`: expected `text` or `json`"
            )),
        }
    }
}

static NEXT_BLOCK: AtomicU64 = AtomicU64::new(0);
const BLOCK: u64 = 1 << 20;

thread_local! {
    /// The next id of this thread's block, and the end of the block.
    static BLOCK_STATE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// A process-unique connection id. Each thread takes a block of a million
/// ids from one shared counter, then numbers its connections from it
/// without touching anything another thread writes.
pub fn next_id() -> u64 {
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

/// What one connection's line says. Filled in as the connection goes; the
/// fields a connection never reached stay empty (`-` in text).
#[derive(Debug, Default)]
pub struct ConnectionRecord {
    pub id: u64,
    pub listener: Option<std::sync::Arc<str>>,
    /// The client's address: the PROXY header's when the listener uses one.
    pub client: Option<SocketAddr>,
    pub sni: Option<String>,
    /// The version the server chose, e.g. "1.3".
    pub tls: Option<&'static str>,
    pub pool: Option<std::sync::Arc<str>>,
    pub backend: Option<std::sync::Arc<str>>,
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
            target: "stickytls::connection",
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
pub fn version_name(v: u16) -> &'static str {
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

    #[test]
    fn connection_ids_are_unique_across_threads() {
        let mut all: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).map(|_| next_id()).collect::<Vec<_>>()))
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert!(all.iter().all(|&id| id > 0));
    }

    #[test]
    fn log_formats_parse_by_name() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
