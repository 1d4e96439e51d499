//! Connecting to a backend, with failover. The hello is replayed to the
//! next candidate when one fails: a refused connection, a connect timeout,
//! or a backend that accepts but stays silent (or closes) before sending
//! its first byte. Nothing has reached the client at that point, so a dead
//! backend never costs the client its connection.
//!
//! A refusal or a connect timeout is the backend's alone: it is marked
//! down for `down_hold`, and the failover goes on. A backend that accepted
//! and then failed the hello may have been reacting to this client (a deny
//! list, a WAF, a PROXY source it refuses): that counts against it only
//! once a second client prefix sees the same ([`Backend::hello_refused`]),
//! and the hello goes to at most [`HELLO_FAILURES`] such backends before
//! the client's connection is closed, so one client's hellos are not
//! replayed to the whole pool.
//!
//! The one failure that stops the failover at once is this host's own:
//! out of file descriptors, ephemeral ports or memory, every other backend
//! would fail the same way, and none of them is to blame or marked down
//! for it.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::backend::{ActiveGuard, Backend, HelloRefusal};
use crate::pool::PoolState;
use crate::proxy_out::{self, Origin};

/// How many backends one connection's hello may reach and see fail after
/// the connect (closed, reset, silent) before the connection is closed:
/// the first choice, and one more. A backend that crashed once, or
/// restarted mid-accept, still lets its client be served by the next;
/// a hello that every backend refuses reaches two of them, not the pool.
pub(crate) const HELLO_FAILURES: usize = 2;

/// No backend was reached. Never the client's fault: either every
/// candidate failed (the backends'), or this host could not open a
/// connection (ours, see [`ConnectError::fault`]).
///
/// No `source()`: the message names every attempt's error, and no one of
/// them alone is the cause.
#[derive(Debug, thiserror::Error)]
#[error("{}", summary(.attempts))]
pub(crate) struct ConnectError {
    /// What happened at each backend tried, in order; the last one ended
    /// the failover if it does not allow another try.
    pub attempts: Vec<(Arc<str>, AttemptError)>,
}

/// Whose failure an attempt was, which decides what is done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The backend: it is counted and the next candidate is tried; a
    /// refused or timed-out connect marks it down for `down_hold`, a
    /// failed hello only as [`Backend::hello_refused`] says.
    Backend,
    /// This host (descriptors, ports, memory): no backend is blamed, and
    /// trying another would only fail again.
    Local,
}

impl ConnectError {
    /// Whether the failover stopped because the hello failed on
    /// [`HELLO_FAILURES`] backends, which one client can provoke at will:
    /// say so only within the log's rate limit.
    pub fn stopped_after_hello(&self) -> bool {
        self.attempts
            .iter()
            .filter(|(_, e)| e.after_hello())
            .count()
            >= HELLO_FAILURES
    }

    /// [`Fault::Local`] when the failover stopped at a failure of this host;
    /// otherwise the backends were all tried (or there were none).
    #[cfg(test)]
    fn fault(&self) -> Fault {
        match self.attempts.last() {
            Some((_, e)) => e.fault(),
            None => Fault::Backend,
        }
    }
}

/// The message of a [`ConnectError`]: whose fault, and each attempt.
fn summary(attempts: &[(Arc<str>, AttemptError)]) -> String {
    if attempts.is_empty() {
        return "no backend to try: the pool has no backend with a non-zero weight".into();
    }
    if let Some((name, e)) = attempts.last().filter(|(_, e)| !e.may_try_another()) {
        return format!(
            "cannot open a connection to {name} on this host ({e}); no other backend was tried: raise the open-file limit or free ephemeral ports"
        );
    }
    use std::fmt::Write;
    let after_hello = attempts.iter().filter(|(_, e)| e.after_hello()).count();
    let mut out = if after_hello >= HELLO_FAILURES {
        format!(
            "{after_hello} backends took the connection and failed this client's hello; no more are tried (one client's hello is never replayed to the whole pool):"
        )
    } else {
        String::from("every backend failed:")
    };
    for (name, e) in attempts {
        // Writing to a String cannot fail.
        let _ = write!(out, " {name}: {e};");
    }
    out
}

/// Why one backend attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
    /// Refused or unreachable.
    #[error("connect failed ({0})")]
    Refused(#[source] io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    /// Accepted the hello but sent nothing within the first-byte timeout.
    #[error("accepted but sent nothing within the first-byte timeout")]
    Silent,
    /// Closed before sending anything.
    #[error("closed before answering")]
    Closed,
    /// Reset (or failed otherwise) before sending anything.
    #[error("closed before answering ({0})")]
    Reset(#[source] io::Error),
    /// At its max_connections: skipped, not contacted.
    #[error("at its max_connections")]
    Full,
    /// This host could not open the connection (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM, EADDRNOTAVAIL): the backend was never reached.
    #[error("no connection could be opened ({0})")]
    Local(#[source] io::Error),
}

impl AttemptError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AttemptError::Refused(_) => "refused",
            AttemptError::ConnectTimeout => "timeout",
            AttemptError::Silent => "silent",
            AttemptError::Closed | AttemptError::Reset(_) => "closed",
            AttemptError::Full => "full",
            AttemptError::Local(_) => "local",
        }
    }

    pub fn fault(&self) -> Fault {
        match self {
            AttemptError::Local(_) => Fault::Local,
            _ => Fault::Backend,
        }
    }

    /// Whether the next candidate is worth trying: nothing has reached the
    /// client yet, so only a failure of this host stops the failover.
    pub fn may_try_another(&self) -> bool {
        self.fault() == Fault::Backend
    }

    /// Whether the backend took the connection and the hello, and then
    /// failed it (closed, reset, or sent nothing): something this client's
    /// hello may have provoked, unlike a refused or timed-out connect.
    pub fn after_hello(&self) -> bool {
        matches!(
            self,
            AttemptError::Silent | AttemptError::Closed | AttemptError::Reset(_)
        )
    }

    /// A failed `connect(2)`, sorted by whose fault it is.
    fn connect_failed(e: io::Error) -> Self {
        if is_local_failure(&e) {
            AttemptError::Local(e)
        } else {
            AttemptError::Refused(e)
        }
    }
}

/// Whether a failed `connect(2)` is this host's doing (out of descriptors,
/// buffers, memory or local ports) rather than the backend's: the same for
/// every backend, so neither a reason to mark one down nor to try another.
/// Shared by connection attempts and health probes.
pub(crate) fn is_local_failure(e: &io::Error) -> bool {
    use rustix::io::Errno;
    let local = [
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOBUFS,
        Errno::NOMEM,
        Errno::ADDRNOTAVAIL,
    ];
    e.raw_os_error()
        .is_some_and(|code| local.iter().any(|l| l.raw_os_error() == code))
}

/// A backend that answered: its stream and the first bytes it sent.
#[derive(Debug)]
pub(crate) struct Connected {
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
/// `origin` is what a PROXY header tells a backend with `send_proxy`.
pub(crate) async fn connect(
    pool: &PoolState,
    candidates: &[Arc<Backend>],
    hello: &[u8],
    origin: &Origin,
    await_answer: bool,
) -> Result<Connected, ConnectError> {
    let t = &pool.config.timeouts;
    let mut attempts = Vec::new();
    let mut hello_failures = 0;
    for backend in candidates {
        if hello_failures >= HELLO_FAILURES {
            break;
        }
        let Some(active) = backend.try_track() else {
            backend.counters.failure("full");
            attempts.push((backend.name.clone(), AttemptError::Full));
            continue;
        };
        let first_byte = await_answer.then_some(t.first_byte);
        let started = std::time::Instant::now();
        match attempt(backend, hello, origin, t.connect, first_byte).await {
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
            Err(e) if !e.may_try_another() => {
                warn!(backend = %backend.name, addr = %backend.addr, error = %e, "cannot connect from this host; not trying other backends");
                attempts.push((backend.name.clone(), e));
                break;
            }
            Err(e) if e.after_hello() => {
                pool.stats.backend_failure();
                backend.counters.failure(e.reason());
                hello_failures += 1;
                // Found only now, on a failure: the prefix routing counts
                // this client as (a PROXY listener's declared source).
                let client = pool.prefix(origin.client.ip()).to_bytes();
                let verdict = backend.hello_refused(&pool.clock, t.down_hold, client);
                // A client can provoke these at will: rate-limited.
                if pool.decision_log.allow() {
                    let next = if hello_failures < HELLO_FAILURES {
                        "trying the next, if any"
                    } else {
                        "closing the client's connection"
                    };
                    match verdict {
                        HelloRefusal::MarkedDown => {
                            warn!(backend = %backend.name, addr = %backend.addr, peer = %origin.client, error = %e,
                            "backend failed the hellos of two client prefixes within down_hold: marked down; {next}")
                        }
                        HelloRefusal::Suspect => {
                            warn!(backend = %backend.name, addr = %backend.addr, peer = %origin.client, error = %e,
                            "backend failed this client's hello; not marked down unless another client's fails too; {next}")
                        }
                    }
                }
                attempts.push((backend.name.clone(), e));
            }
            Err(e) => {
                pool.stats.backend_failure();
                backend.counters.failure(e.reason());
                // A refusal or a connect timeout says the backend is down:
                // no client's hello reached it.
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
    origin: &Origin,
    connect_timeout: Duration,
    first_byte_timeout: Option<Duration>,
) -> Result<(TcpStream, Vec<u8>), AttemptError> {
    // Each candidate's own setting: a failover may move from a backend
    // that wants a header to one that does not.
    let first = proxy_out::header_then(backend.send_proxy(), origin, hello);
    let (mut stream, deferred) = open(backend).map_err(AttemptError::connect_failed)?;
    send_first(&stream, &first, deferred, connect_timeout).await?;
    let Some(first_byte_timeout) = first_byte_timeout else {
        return Ok((stream, Vec::new()));
    };
    // Capacity, not zeroed length: read_buf fills it without a memset.
    let mut first = Vec::with_capacity(16 * 1024);
    match tokio::time::timeout(first_byte_timeout, stream.read_buf(&mut first)).await {
        Ok(Ok(0)) => Err(AttemptError::Closed),
        Ok(Ok(n)) => {
            debug!(backend = %backend.name, bytes = n, "backend answered");
            Ok((stream, first))
        }
        Ok(Err(e)) => Err(AttemptError::Reset(e)),
        Err(_) => Err(AttemptError::Silent),
    }
}

/// A socket connecting to the backend, with TCP_NODELAY, registered with
/// the runtime. The connect is left in progress: `send_first` learns its
/// outcome from the first send, with no `getsockopt(SO_ERROR)` of its own
/// (but for a deferred connect, below, whose first send succeeds before
/// the backend has answered).
///
/// With the backend's `tcp_fastopen`, the socket has `TCP_FASTOPEN_CONNECT`
/// first. Without a cookie from the backend yet, the connect sends a SYN
/// that asks for one; with a cookie, it sends nothing and returns at once
/// (the second value, `deferred`): the first send then carries the SYN and
/// the bytes together.
fn open(backend: &Backend) -> io::Result<(TcpStream, bool)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = backend.addr;
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    // Set before the connect, as on an accepted socket: a relay forwards
    // records as they come and must not wait on Nagle's algorithm.
    socket.set_nodelay(true)?;
    let fast_open = backend.tcp_fastopen() && fast_open_connect(&socket, backend);
    let deferred = match socket.connect(&addr.into()) {
        Ok(()) => fast_open,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => false,
        Err(e) => return Err(e),
    };
    Ok((
        TcpStream::from_std(std::net::TcpStream::from(socket))?,
        deferred,
    ))
}

/// Sets `TCP_FASTOPEN_CONNECT`; false where the kernel refuses it (too old,
/// or client TFO off in `net.ipv4.tcp_fastopen`), said once per backend.
/// The connection then goes ahead without it: Fast Open only saves time.
fn fast_open_connect(socket: &socket2::Socket, backend: &Backend) -> bool {
    use nix::sys::socket::{setsockopt, sockopt::TcpFastOpenConnect};
    match setsockopt(socket, TcpFastOpenConnect, &true) {
        Ok(()) => true,
        Err(e) => {
            if backend.fast_open_refused_first() {
                warn!(backend = %backend.name, addr = %backend.addr, error = %e, "tcp_fastopen: this host's kernel refuses TCP_FASTOPEN_CONNECT; connecting without Fast Open (client TFO needs Linux 4.11 and bit 1 of net.ipv4.tcp_fastopen)");
            }
            false
        }
    }
}

/// Sends the first bytes on a connection still being made. They are sent
/// at once, without waiting to learn that the connect completed (on a
/// near backend it usually has, and then no wake-up is spent on it); a
/// connect still in progress says so with `EAGAIN`, and only then is its
/// completion waited for, within `connect_timeout`. A failed connect is
/// reported by the send, as the connect's error.
///
/// A `deferred` connect (Fast Open with a cookie) has sent no SYN yet: the
/// first send sends it, carrying the bytes, and succeeds before the
/// backend has answered. The answer to that SYN is then waited for within
/// `connect_timeout`, so that a refusal or a silent backend is reported as
/// it is without Fast Open, not later as a backend that closed or never
/// answered the hello.
async fn send_first(
    stream: &TcpStream,
    mut data: &[u8],
    deferred: bool,
    connect_timeout: Duration,
) -> Result<(), AttemptError> {
    use rustix::net::SendFlags;
    let mut connected = false;
    let mut waited = false;
    while !data.is_empty() {
        match rustix::net::send(stream, data, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(AttemptError::Closed),
            Ok(n) => {
                // `send` never reports more than it was given.
                data = data.get(n..).unwrap_or_default();
                if deferred && !connected {
                    established(stream, connect_timeout).await?;
                }
                connected = true;
            }
            // A deferred connect whose SYN left without the bytes (the
            // kernel could not attach them): a plain connect in progress.
            Err(rustix::io::Errno::INPROGRESS) if deferred && !connected => {
                established(stream, connect_timeout).await?;
                connected = true;
            }
            Err(rustix::io::Errno::AGAIN) if !connected && !waited => {
                // Still connecting: wait for it, once, within the connect
                // timeout (a refused connect wakes this up too).
                match tokio::time::timeout(connect_timeout, stream.writable()).await {
                    Ok(Ok(())) => waited = true,
                    Ok(Err(e)) => return Err(AttemptError::connect_failed(e)),
                    Err(_) => return Err(AttemptError::ConnectTimeout),
                }
            }
            Err(rustix::io::Errno::AGAIN) => {
                // Connected, and the send buffer is full (a hello larger
                // than it): wait for room, within the connect timeout too,
                // so that a backend that accepts and never reads cannot
                // hold the connection.
                connected = true;
                match tokio::time::timeout(connect_timeout, stream.writable()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(AttemptError::Reset(e)),
                    Err(_) => return Err(AttemptError::Silent),
                }
                // Clears the readiness the full buffer left stale.
                let _ = stream.try_io(tokio::io::Interest::WRITABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
            Err(e) if !connected => return Err(AttemptError::connect_failed(e.into())),
            Err(e) => return Err(AttemptError::Reset(e.into())),
        }
    }
    Ok(())
}

/// Waits, within `connect_timeout`, for the backend to answer a SYN that
/// has left: the connection is established once the socket has a peer
/// (`getpeername` fails with `ENOTCONN` before the SYN-ACK and after a
/// failed connect, whose error `SO_ERROR` then holds).
///
/// The state is read after each wake-up rather than trusting readiness:
/// a socket whose connect was deferred reports itself writable before its
/// SYN has even left, and that stale readiness is cleared only by a check
/// that saw the connect still in progress, so the SYN-ACK's wake-up cannot
/// be lost. On a near backend the SYN-ACK is usually in before the send
/// returns, and the first check finds the connection made.
async fn established(stream: &TcpStream, connect_timeout: Duration) -> Result<(), AttemptError> {
    let check = || {
        if stream.peer_addr().is_ok() {
            return Ok(());
        }
        match stream.take_error()? {
            Some(e) => Err(e),
            None => Err(io::Error::from(io::ErrorKind::WouldBlock)),
        }
    };
    let waited = match check() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            tokio::time::timeout(
                connect_timeout,
                stream.async_io(tokio::io::Interest::WRITABLE, check),
            )
            .await
        }
        done => Ok(done),
    };
    match waited {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(AttemptError::connect_failed(e)),
        Err(_) => Err(AttemptError::ConnectTimeout),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_or_ports_stops_the_failover() {
        for errno in [rustix::io::Errno::MFILE, rustix::io::Errno::ADDRNOTAVAIL] {
            let e =
                AttemptError::connect_failed(io::Error::from_raw_os_error(errno.raw_os_error()));
            assert_eq!(e.fault(), Fault::Local, "{e}");
            assert!(!e.may_try_another());
        }
    }

    #[test]
    fn a_refused_or_unreachable_backend_lets_the_next_one_be_tried() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::HostUnreachable,
        ] {
            let e = AttemptError::connect_failed(io::Error::from(kind));
            assert!(matches!(e, AttemptError::Refused(_)), "{e}");
            assert!(e.may_try_another());
        }
        let refused = AttemptError::connect_failed(io::Error::from_raw_os_error(
            rustix::io::Errno::CONNREFUSED.raw_os_error(),
        ));
        assert_eq!(refused.fault(), Fault::Backend);
    }

    #[test]
    fn the_connect_error_says_whose_fault_it_was() {
        let name: Arc<str> = Arc::from("a");
        let backends = ConnectError {
            attempts: vec![
                (name.clone(), AttemptError::ConnectTimeout),
                (name.clone(), AttemptError::Silent),
            ],
        };
        assert_eq!(backends.fault(), Fault::Backend);
        let local = ConnectError {
            attempts: vec![
                (name.clone(), AttemptError::Full),
                (
                    name,
                    AttemptError::Local(io::Error::from_raw_os_error(
                        rustix::io::Errno::MFILE.raw_os_error(),
                    )),
                ),
            ],
        };
        assert_eq!(local.fault(), Fault::Local);
        assert!(
            local
                .to_string()
                .starts_with("cannot open a connection to a on this host")
        );
    }
}
