//! Copying both ways once a backend answered, while the server's cleartext
//! flight (and, after a HelloRetryRequest, the client's second hello) passes
//! through the inspector. Bytes go on as they arrive: the inspector only
//! watches, it never holds anything back.
//!
//! Once a direction's handshake is encrypted it is a plain copy, decided
//! per direction; and once a plain copy fills its whole buffer in one read
//! (a bulk transfer, not a request/response exchange) it moves to
//! `splice(2)` through a pipe, so the bytes no longer cross into user
//! space. Short connections never pay for the pipe (two descriptors and
//! three system calls), like HAProxy's `splice-auto`.
//!
//! A half-close is passed on as a half-close (the other direction keeps
//! flowing; a pipe is drained first), a reset as a reset, and a connection
//! with no bytes either way for the idle timeout is closed.
//!
//! Closing costs packets, and on a short connection packets are most of a
//! proxy's CPU (each one runs the kernel's TCP path twice, once per
//! endpoint, and on loopback both run in the sender's time). So when the
//! last bytes of a direction arrive together with the peer's FIN, which is
//! how a server that closes after its response usually sends them, the
//! relay sends those bytes corked (`MSG_MORE`), so the FIN it passes on
//! leaves in the same segment; and the second direction to end is closed
//! by the socket's `close`, not by a `shutdown` first. A FIN alone is
//! known for the end without reading it (see [`read`]); a peer that may
//! have reset is read once more to tell which it was.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rustix::net::SendFlags;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::clock::Clock;
use crate::inspect::{Handshake, Status};

/// The user-space copy buffer of each direction.
const BUF: usize = 16 * 1024;
/// Bytes moved per splice call; the pipe is sized to hold them.
const SPLICE_CHUNK: usize = 256 * 1024;

/// Which side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// What a relay did: how it ended, and the bytes it passed each way
/// (whatever the end, for the connection's log line and the byte counters).
#[derive(Debug)]
pub(crate) struct Relayed {
    pub end: RelayEnd,
    /// Client to server (the relay's own; the caller adds the hello it
    /// replayed).
    pub to_server: u64,
    /// Server to client, the first bytes included.
    pub to_client: u64,
}

/// How a relayed connection ended.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// Both directions closed cleanly.
    Closed,
    /// No bytes either way for the idle timeout.
    Idle,
    /// `Side` reset (or failed); the other side should be reset too.
    Reset(Side),
}

/// What the relay reports about the server's cleartext flight, once.
pub(crate) trait OnServerFlight: Sync {
    /// The server side of the inspector finished (`Done`).
    fn done(&self, hs: &Handshake);
    /// The server side could not be read (malformed, alert, not TLS).
    fn unreadable(&self, status: &Status);
}

/// State both directions share.
struct Shared<'a> {
    /// The inspector while either direction still needs it; dropped (with
    /// its hello buffers) as soon as neither does, so a long-lived
    /// connection holds no handshake state (and, while idle, no copy
    /// buffer either: see [`pump`]).
    hs: Mutex<Option<Box<Handshake>>>,
    clock: &'a Clock,
    /// Clock millis of the last byte either way, for the idle timeout.
    last_activity: AtomicU64,
    flight: &'a dyn OnServerFlight,
    /// Set by the first direction to reach its end of stream.
    one_ended: AtomicBool,
    /// Bytes passed on, per direction, as they go: a reset or the idle
    /// timeout still leaves the count.
    to_server: AtomicU64,
    to_client: AtomicU64,
}

impl Shared<'_> {
    fn sent(&self, src_side: Side, n: usize) {
        let counter = match src_side {
            Side::Client => &self.to_server,
            Side::Server => &self.to_client,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn touch(&self) {
        self.last_activity
            .store(self.clock.now_ms(), Ordering::Relaxed);
    }

    /// Passes `src`'s end of stream on to `dst`. The first direction to end
    /// half-closes; the second leaves the FIN to the `close` that follows
    /// at once (both directions are done, so the relay returns and the
    /// sockets are dropped), one system call fewer. The receive queues are
    /// empty by then (each direction read to its end), so that close sends
    /// a FIN, not a reset.
    fn end_of_stream(&self, dst: &TcpStream) {
        if !self.one_ended.swap(true, Ordering::AcqRel) {
            half_close(dst);
        }
    }

    /// Shows client bytes to the inspector; false once it needs no more.
    fn watch_client(&self, data: &[u8]) -> bool {
        // Poisoned only by a panic while feeding the inspector, which would
        // end both directions (one task); were it seen, the inspector may be
        // half-fed: stop learning from this connection, relay on.
        let Ok(mut guard) = self.hs.lock() else {
            return false;
        };
        match guard.as_mut() {
            Some(h) if h.wants_client() => {
                // A broken second hello is the backend's to reject; the
                // router has nothing to learn from it either way.
                let _ = h.feed_client(data);
                true
            }
            _ => false,
        }
    }

    /// Shows server bytes to the inspector; false once it needs no more.
    fn watch_server(&self, data: &[u8]) -> bool {
        // Poisoned: as in `watch_client`.
        let Ok(mut guard) = self.hs.lock() else {
            return false;
        };
        let Some(h) = guard.as_mut() else {
            return false;
        };
        let more = match h.feed_server(data) {
            Status::NeedMore => true,
            Status::Done => {
                self.flight.done(h);
                false
            }
            other => {
                self.flight.unreadable(&other);
                false
            }
        };
        if !more && !h.wants_client() {
            *guard = None;
        }
        more
    }
}

/// Relays until both directions are closed, a side resets, or the idle
/// timeout passes. `first_bytes` were already read from the server; they
/// are freed once passed on. With no handshake to watch it is a plain copy
/// from the start.
pub(crate) async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    hs: Option<Box<Handshake>>,
    first_bytes: Vec<u8>,
    idle: Duration,
    clock: &Clock,
    flight: &dyn OnServerFlight,
) -> Relayed {
    let inspect = hs.is_some();
    let shared = Shared {
        hs: Mutex::new(hs),
        clock,
        last_activity: AtomicU64::new(clock.now_ms()),
        flight,
        one_ended: AtomicBool::new(false),
        to_server: AtomicU64::new(0),
        to_client: AtomicU64::new(0),
    };
    let (client, server) = (&*client, &*server);
    let sh = &shared;

    let to_server = pump(client, server, Side::Client, Vec::new(), sh, move |d| {
        inspect && sh.watch_client(d)
    });
    let to_client = pump(server, client, Side::Server, first_bytes, sh, move |d| {
        inspect && sh.watch_server(d)
    });

    let watchdog = async {
        let idle_ms = idle.as_millis() as u64;
        loop {
            let since = clock
                .now_ms()
                .saturating_sub(shared.last_activity.load(Ordering::Relaxed));
            if since >= idle_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(idle_ms - since)).await;
        }
    };

    let end = tokio::select! {
        r = async { tokio::try_join!(to_server, to_client) } => match r {
            Ok(_) => RelayEnd::Closed,
            Err((side, _)) => RelayEnd::Reset(side),
        },
        _ = watchdog => RelayEnd::Idle,
    };
    Relayed {
        end,
        to_server: shared.to_server.load(Ordering::Relaxed),
        to_client: shared.to_client.load(Ordering::Relaxed),
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

/// One direction: `src` to `dst`, `pending` first. `watch` sees every byte
/// while it returns true. Ends at `src`'s end of stream, after half-closing
/// `dst`. Errors say which side failed.
///
/// The copy buffer is held only while bytes are in flight: it is taken
/// once `src` is readable and given back as soon as a read has drained
/// `src` and its bytes are passed on. Most of an established connection's
/// life is spent waiting (a keep-alive between requests, a push channel),
/// and a buffer held through the wait is memory a thousand idle
/// connections pay for doing nothing, as HAProxy's pooled buffers avoid.
/// The allocator's thread cache keeps the 16 KiB for the next burst, so
/// taking it again costs no system call.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    src_side: Side,
    pending: Vec<u8>,
    shared: &Shared<'_>,
    mut watch: impl FnMut(&[u8]) -> bool,
) -> Result<(), (Side, io::Error)> {
    let dst_side = other(src_side);
    let mut watching = true;
    if !pending.is_empty() {
        shared.touch();
        watching = watch(&pending);
        write_all(dst, &pending, SendFlags::empty())
            .await
            .map_err(|e| (dst_side, e))?;
        shared.sent(src_side, pending.len());
    }
    drop(pending);
    // Empty until `read` finds `src` readable; see above.
    let mut buf = Vec::new();
    let mut splice = true;
    loop {
        let (n, peer_end) = read(src, &mut buf).await.map_err(|e| (src_side, e))?;
        if n == 0 {
            shared.end_of_stream(dst);
            return Ok(());
        }
        shared.touch();
        // The peer's end came with these bytes: let our FIN ride in the
        // same segment as the data. After a FIN alone these bytes were the
        // last; otherwise read the end of stream (or the reset) now, into
        // the buffer's spare room, so any straggler is kept.
        let last = match peer_end {
            PeerEnd::Open => Ok(false),
            PeerEnd::Fin => Ok(true),
            PeerEnd::Closed => match src.try_read_buf(&mut buf) {
                Ok(0) => Ok(true),
                Ok(_) => Ok(false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            },
        };
        let data = &buf[..];
        if watching {
            watching = watch(data);
        }
        let at_end = matches!(last, Ok(true));
        let flags = if at_end {
            SendFlags::MORE
        } else {
            SendFlags::empty()
        };
        write_all(dst, data, flags)
            .await
            .map_err(|e| (dst_side, e))?;
        shared.sent(src_side, data.len());
        if at_end {
            shared.end_of_stream(dst);
            return Ok(());
        }
        // A reset behind the last bytes: they were passed on, now the reset.
        last.map_err(|e| (src_side, e))?;
        if n < BUF {
            // `src` is drained: wait for its next bytes without a buffer.
            buf = Vec::new();
        } else if splice && !watching {
            // A full buffer in one read: bulk. Hand the rest to the kernel.
            match splice_pump(src, dst, src_side, shared).await {
                Ok(()) => return Ok(()),
                // No pipe to be had: this loop goes on copying.
                Err(SpliceError::Unsupported) => splice = false,
                Err(SpliceError::Io(side, e)) => return Err((side, e)),
            }
        }
    }
}

enum SpliceError {
    /// No pipe could be made (descriptor limit): fall back to copying.
    Unsupported,
    Io(Side, io::Error),
}

/// Moves bytes socket → pipe → socket until `src` ends, draining the pipe
/// before passing the half-close on.
async fn splice_pump(
    src: &TcpStream,
    dst: &TcpStream,
    src_side: Side,
    shared: &Shared<'_>,
) -> Result<(), SpliceError> {
    let (pipe_r, pipe_w): (OwnedFd, OwnedFd) =
        rustix::pipe::pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)
            .map_err(|_| SpliceError::Unsupported)?;
    // A larger pipe means fewer calls per byte; the default 64 KiB still
    // works if the system refuses.
    let _ = rustix::pipe::fcntl_setpipe_size(&pipe_w, SPLICE_CHUNK);
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let dst_side = other(src_side);
    loop {
        let n = loop {
            src.readable()
                .await
                .map_err(|e| SpliceError::Io(src_side, e))?;
            match src.try_io(Interest::READABLE, || {
                rustix::pipe::splice(src, None, &pipe_w, None, SPLICE_CHUNK, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(SpliceError::Io(src_side, e)),
            }
        };
        if n == 0 {
            shared.end_of_stream(dst);
            return Ok(());
        }
        shared.touch();
        let mut in_pipe = n;
        while in_pipe > 0 {
            dst.writable()
                .await
                .map_err(|e| SpliceError::Io(dst_side, e))?;
            match dst.try_io(Interest::WRITABLE, || {
                rustix::pipe::splice(&pipe_r, None, dst, None, in_pipe, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(0) => return Err(SpliceError::Io(dst_side, io::ErrorKind::WriteZero.into())),
                Ok(m) => {
                    in_pipe -= m;
                    shared.sent(src_side, m);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(SpliceError::Io(dst_side, e)),
            }
        }
    }
}

/// What a short read knew of the peer's end of its stream, from the
/// readiness seen before the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerEnd {
    /// Nothing: more may come.
    Open,
    /// The peer's FIN had come (`EPOLLRDHUP`) and the socket was not
    /// otherwise closed: the bytes read were the last. The kernel takes a
    /// FIN in only once every byte before it is queued, so a read that
    /// returned less than it had room for took all the peer sent, and the
    /// next read could only be the end of stream; it is not made.
    Fin,
    /// The peer's end came with an error (`EPOLLERR`): a reset, whose
    /// next read says so.
    Closed,
}

/// Reads into `buf`'s capacity, replacing its contents; an empty `buf`
/// gets its `BUF` bytes only once `s` is readable. Also says, for a short
/// read, what was known of the peer's end of stream before it.
async fn read(s: &TcpStream, buf: &mut Vec<u8>) -> io::Result<(usize, PeerEnd)> {
    buf.clear();
    loop {
        // ERROR too, to tell a reset from a FIN (it wakes no more often:
        // a reset is readable as well).
        let ready = s.ready(Interest::READABLE | Interest::ERROR).await?;
        // Capacity, not zeroed length: reads fill spare capacity, so
        // nothing is ever memset (zeroing three 16 KiB buffers was a third
        // of the instructions of a short connection).
        buf.reserve_exact(BUF);
        match s.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Ok(n) if n > 0 && n < buf.capacity() => {
                // A short read drained the socket's receive queue (epoll is
                // edge-triggered, so new data raises readiness again): clear
                // readiness now instead of learning it from an EAGAIN read,
                // one system call per read saved. Tokio's own poll_read does
                // the same.
                let _ = s.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
                let end = if !ready.is_read_closed() {
                    PeerEnd::Open
                } else if ready.is_error() {
                    PeerEnd::Closed
                } else {
                    PeerEnd::Fin
                };
                return Ok((n, end));
            }
            r => return r.map(|n| (n, PeerEnd::Open)),
        }
    }
}

/// Writes all of `data`. With `SendFlags::MORE` the kernel holds the last
/// segment back for the FIN the caller sends next to join.
async fn write_all(s: &TcpStream, mut data: &[u8], flags: SendFlags) -> io::Result<()> {
    while !data.is_empty() {
        s.writable().await?;
        match s.try_io(Interest::WRITABLE, || {
            rustix::net::send(s, data, flags | SendFlags::NOSIGNAL).map_err(io::Error::from)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            // `send` never reports more than it was given.
            Ok(n) => data = data.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Passes an end of stream on. Failure means the peer is already gone,
/// which the other direction will see for itself.
fn half_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(Shutdown::Write);
}
