//! Connecting to a backend, with failover. The hello is replayed to each
//! candidate in turn until one answers: a refused connection, a connect
//! timeout, or a backend that accepts but stays silent (or closes) before
//! sending its first byte all move on to the next candidate. Nothing has
//! reached the client at that point, so a dead backend never costs the
//! client its connection.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::backend::{ActiveGuard, Backend};
use crate::router::PoolState;

/// Every candidate failed. The backends are at fault, not the client.
#[derive(Debug)]
pub struct ConnectError {
    /// What happened at each backend tried, in order.
    pub attempts: Vec<(Arc<str>, AttemptError)>,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempts.is_empty() {
            return f
                .write_str("no backend to try: the pool has no backend with a non-zero weight");
        }
        f.write_str("every backend failed:")?;
        for (name, e) in &self.attempts {
            write!(f, " {name}: {e};")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {}

/// Why one backend attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    Refused(io::Error),
    ConnectTimeout,
    /// Accepted the hello but sent nothing within the first-byte timeout.
    Silent,
    /// Closed (or reset) before sending anything.
    Closed(Option<io::Error>),
    /// At its max_connections: skipped, not contacted.
    Full,
}

impl AttemptError {
    pub fn reason(&self) -> &'static str {
        match self {
            AttemptError::Refused(_) => "refused",
            AttemptError::ConnectTimeout => "timeout",
            AttemptError::Silent => "silent",
            AttemptError::Closed(_) => "closed",
            AttemptError::Full => "full",
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Refused(e) => write!(f, "connect failed ({e})"),
            AttemptError::ConnectTimeout => f.write_str("connect timed out"),
            AttemptError::Silent => {
                f.write_str("accepted but sent nothing within the first-byte timeout")
            }
            AttemptError::Closed(Some(e)) => write!(f, "closed before answering ({e})"),
            AttemptError::Closed(None) => f.write_str("closed before answering"),
            AttemptError::Full => f.write_str("at its max_connections"),
        }
    }
}

/// A backend that answered: its stream and the first bytes it sent.
#[derive(Debug)]
pub struct Connected {
    pub stream: TcpStream,
    pub backend: Arc<Backend>,
    /// Server bytes already read while waiting for the first byte; they go
    /// to the client (and the inspector) before anything else.
    pub first_bytes: Vec<u8>,
    /// How many candidates failed before this one.
    pub failed: usize,
    /// Holds one of the backend's connection slots while the connection
    /// lives (least connections, max connections).
    pub active: ActiveGuard,
}

/// Tries `candidates` in order. With `await_answer`, a candidate counts as
/// reached only once it sent its first byte: right for TLS, whose server
/// always answers a complete ClientHello. Without it (non-TLS input, whose
/// protocol may have the server wait for more), connecting is enough.
pub async fn connect(
    pool: &PoolState,
    candidates: &[Arc<Backend>],
    hello: &[u8],
    await_answer: bool,
) -> Result<Connected, ConnectError> {
    let t = &pool.config.timeouts;
    let mut attempts = Vec::new();
    for backend in candidates {
        let Some(active) = backend.try_track() else {
            backend.counters.failure("full");
            attempts.push((backend.name.clone(), AttemptError::Full));
            continue;
        };
        let first_byte = await_answer.then_some(t.first_byte);
        let started = std::time::Instant::now();
        match attempt(backend, hello, t.connect, first_byte).await {
            Ok((stream, first_bytes)) => {
                backend.connect_time(started.elapsed());
                backend.counters.connection();
                backend.mark_up();
                return Ok(Connected {
                    stream,
                    backend: backend.clone(),
                    first_bytes,
                    failed: attempts.len(),
                    active,
                });
            }
            Err(e) => {
                pool.stats.backend_failure();
                backend.counters.failure(e.reason());
                // A refusal or a connect timeout says the backend is down;
                // a silent one may be overloaded, and is skipped all the
                // same so the next clients do not wait on it too.
                backend.mark_down(&pool.clock, t.down_hold);
                warn!(backend = %backend.name, addr = %backend.addr, error = %e, "backend attempt failed; trying the next");
                attempts.push((backend.name.clone(), e));
            }
        }
    }
    Err(ConnectError { attempts })
}

async fn attempt(
    backend: &Backend,
    hello: &[u8],
    connect_timeout: Duration,
    first_byte_timeout: Option<Duration>,
) -> Result<(TcpStream, Vec<u8>), AttemptError> {
    let mut stream =
        match tokio::time::timeout(connect_timeout, TcpStream::connect(backend.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(AttemptError::Refused(e)),
            Err(_) => return Err(AttemptError::ConnectTimeout),
        };
    let _ = stream.set_nodelay(true);
    if let Err(e) = stream.write_all(hello).await {
        return Err(AttemptError::Closed(Some(e)));
    }
    let Some(first_byte_timeout) = first_byte_timeout else {
        return Ok((stream, Vec::new()));
    };
    // Capacity, not zeroed length: read_buf fills it without a memset.
    let mut first = Vec::with_capacity(16 * 1024);
    match tokio::time::timeout(first_byte_timeout, stream.read_buf(&mut first)).await {
        Ok(Ok(0)) => Err(AttemptError::Closed(None)),
        Ok(Ok(n)) => {
            debug!(backend = %backend.name, bytes = n, "backend answered");
            Ok((stream, first))
        }
        Ok(Err(e)) => Err(AttemptError::Closed(Some(e))),
        Err(_) => Err(AttemptError::Silent),
    }
}
