//! Upgrading the binary without refusing a connection, the way HAProxy's
//! `-x` and Envoy's hot restart do: a running router listens on a Unix
//! socket (`[state] takeover_socket`, `--takeover-socket`); a new process
//! started with the same path connects to it, receives every listening
//! socket (SCM_RIGHTS) and a snapshot of the affinity state, starts serving
//! on those very sockets, and says so; the old process then drains as on
//! SIGTERM, and when its last connection has ended it sends what it
//! learned meanwhile and exits 0.
//!
//! Why pass the sockets rather than bind new ones beside them: with
//! `SO_REUSEPORT` each socket has its own queue of accepted-but-not-yet-
//! served connections, and closing a socket resets the connections queued
//! on it. A passed socket is the same socket, so its queue outlives the
//! old process. Every socket is passed (one per worker thread per
//! listener), and the new process serves them all whatever its own thread
//! count ([`crate::listen::ListenerSlot`]).
//!
//! The conversation, one `SOCK_SEQPACKET` message each (boundaries kept,
//! so a message and the descriptors that ride with it arrive together):
//!
//! ```text
//! new -> old   TAKEOVER 1
//! old -> new   LISTENER <configured address> <bound address>   + descriptors
//!              ... one per listener (several for one with many sockets)
//!              STATE <length>, then the state file's bytes in chunks
//!              SENT
//! new -> old   READY                       (the new process is accepting)
//! old -> new   STATE <length> + chunks      (after its drain: what it learned)
//!              DONE
//! ```
//!
//! The state travels in the state file's format ([`crate::state`]), with its
//! checksum, so it is checked like a file.
//!
//! Neither side trusts the other further than it must (docs/security.md,
//! "Takeover socket and state file"). The socket file is created mode 0600,
//! and each side also asks the kernel who the peer is (`SO_PEERCRED`) and
//! talks only to root or its own user. The new process wraps a received
//! descriptor as a listener only if it is a listening TCP socket bound
//! where its `LISTENER` line says (checked as it arrives, before any state
//! is read); it takes a state no longer than what its own configured tables
//! can hold ([`state::size_cap`]), read in chunks as they come; and the
//! whole hand-over must end within [`HANDOVER_DEADLINE`]. Any refusal is
//! logged with its reason, and the new process starts on sockets of its
//! own, as when no router answers on the path.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType,
};
use tracing::{info, warn};

use crate::reload::{Live, Pools};
use crate::state;

/// Largest message: a chunk of state, or a line and its descriptors.
const CHUNK: usize = 64 * 1024;
/// Descriptors per message, well under the kernel's SCM_MAX_FD (253).
const FDS_PER_MESSAGE: usize = 64;
/// How long either side waits for the other's next message during the
/// hand-over itself (not the old process's drain).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The new process's bound on the whole hand-over, from its connect to
/// `SENT`: whatever the peer does (a state that trickles in, a message
/// every 29 s), the new process serves, on sockets of its own if need be,
/// within this of its start plus its own set-up. A real router hands over
/// a full table of a million entries and a million clients in about a
/// second (docs/performance.md, "State file at scale").
pub(crate) const HANDOVER_DEADLINE: Duration = Duration::from_secs(6);
/// Most listening sockets the new process takes: a real router has one
/// per worker thread per listener.
const MAX_SOCKETS: usize = 4096;

/// Why a takeover could not happen. The new process then starts on its
/// own sockets; the old one goes on serving.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TakeoverError {
    /// A system call on the takeover socket (or a handed-over socket)
    /// failed; `what` this process was doing.
    #[error("cannot {0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    /// The other side said something this version does not expect.
    #[error("unexpected message: {0}")]
    Protocol(String),
    /// The other side is not one to hand sockets or state over to, or
    /// from: what it is or sent, and why that is refused.
    #[error("refused: {0}")]
    Refused(String),
}

fn io(what: &'static str) -> impl FnOnce(rustix::io::Errno) -> TakeoverError {
    move |e| TakeoverError::Io(what, e.into())
}

// ---------------------------------------------------------------------------
// The new process's side.

/// What a new process received from the one it takes over from.
#[derive(Debug)]
pub(crate) struct Inherited {
    /// Listening sockets by the configured address they were bound for.
    pub sockets: HashMap<SocketAddr, Vec<std::net::TcpListener>>,
    /// The old process's affinity state, in the state file's format.
    pub state: Vec<u8>,
    /// The old process's id, for the log.
    pub from_pid: Option<u32>,
    /// The most state taken from it, in bytes, now and after its drain.
    state_cap: u64,
    pub(crate) conn: OwnedFd,
}

/// Connects to a running router at `path` and receives its sockets and
/// state, no more than `state_cap` bytes of it ([`state::size_cap`] of this
/// process's configuration). `Ok(None)`: nobody listens there (no file, or
/// a stale one), so this process starts on its own; so it does on an error,
/// which says what was refused and why.
pub(crate) fn take_over(path: &Path, state_cap: u64) -> Result<Option<Inherited>, TakeoverError> {
    let conn = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)
        .map_err(io("open a Unix socket"))?;
    let addr = SocketAddrUnix::new(path).map_err(io("use the takeover socket's path"))?;
    // A connect to a listener whose backlog is full waits, as long as the
    // send timeout allows.
    rustix::net::sockopt::set_socket_timeout(
        &conn,
        rustix::net::sockopt::Timeout::Send,
        Some(HANDOVER_DEADLINE),
    )
    .map_err(io("set the takeover socket's timeout"))?;
    match rustix::net::connect(&conn, &addr) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::CONNREFUSED) => return Ok(None),
        Err(e) => {
            return Err(TakeoverError::Io(
                "connect to the takeover socket",
                e.into(),
            ));
        }
    }
    let from_pid = check_peer(&conn, "the process at the takeover socket")?;
    let deadline = Deadline(std::time::Instant::now() + HANDOVER_DEADLINE);
    set_timeout(&conn, Some(STEP_TIMEOUT))?;
    send(&conn, b"TAKEOVER 1", &[])?;
    let mut sockets: HashMap<SocketAddr, Vec<std::net::TcpListener>> = HashMap::new();
    let mut taken = 0usize;
    let state = loop {
        let (line, fds) = recv_by(&conn, deadline)?;
        let text = String::from_utf8_lossy(&line);
        let mut words = text.split(' ');
        match words.next() {
            Some("LISTENER") => {
                let bind = parse_addr(words.next(), &text)?;
                let bound = parse_addr(words.next(), &text)?;
                if fds.is_empty() {
                    return Err(TakeoverError::Protocol(format!("{text} (no socket)")));
                }
                taken += fds.len();
                if taken > MAX_SOCKETS {
                    return Err(TakeoverError::Refused(format!(
                        "more than {MAX_SOCKETS} sockets handed over"
                    )));
                }
                for fd in fds {
                    check_listener(&fd, bind, bound)?;
                    sockets
                        .entry(bind)
                        .or_default()
                        .push(std::net::TcpListener::from(fd));
                }
            }
            Some("STATE") => break recv_state(&conn, &text, state_cap, Some(deadline))?,
            _ => return Err(TakeoverError::Protocol(text.into_owned())),
        }
    };
    let (line, _) = recv_by(&conn, deadline)?;
    if line != b"SENT" {
        return Err(TakeoverError::Protocol(
            String::from_utf8_lossy(&line).into_owned(),
        ));
    }
    for socks in sockets.values() {
        for s in socks {
            s.set_nonblocking(true)
                .map_err(|e| TakeoverError::Io("use a handed-over socket", e))?;
        }
    }
    Ok(Some(Inherited {
        sockets,
        state,
        from_pid,
        state_cap,
        conn,
    }))
}

/// The peer's process id if it runs as root or as this process's user;
/// otherwise a refusal. Anyone who can reach the socket file could
/// otherwise hand this process sockets and state, or take this process's
/// (the file's mode 0600 is a second fence, which root, and a directory's
/// careless permissions, pass).
fn check_peer(conn: &OwnedFd, who: &str) -> Result<Option<u32>, TakeoverError> {
    let cred = rustix::net::sockopt::socket_peercred(conn)
        .map_err(io("ask the kernel who the takeover socket's peer is"))?;
    let ours = rustix::process::geteuid();
    if !cred.uid.is_root() && cred.uid != ours {
        return Err(TakeoverError::Refused(format!(
            "{who} (pid {}) runs as uid {}, neither root nor this process's uid {}",
            cred.pid.as_raw_nonzero(),
            cred.uid.as_raw(),
            ours.as_raw()
        )));
    }
    Ok(Some(cred.pid.as_raw_nonzero().get() as u32))
}

/// Refuses `fd` unless it is a listening TCP socket bound at `bound`, which
/// must be `bind`'s address (and port, unless `bind` asks for any): the
/// router serves whatever it wraps as a listener, so a pipe, a connection
/// or a socket of someone else's address must never become one.
fn check_listener(fd: &OwnedFd, bind: SocketAddr, bound: SocketAddr) -> Result<(), TakeoverError> {
    use rustix::net::sockopt;
    let refuse = |why: String| {
        TakeoverError::Refused(format!("the descriptor handed over for {bind} {why}"))
    };
    match sockopt::socket_type(fd) {
        Ok(SocketType::STREAM) => {}
        Ok(other) => return Err(refuse(format!("is not a stream socket ({other:?})"))),
        Err(rustix::io::Errno::NOTSOCK) => {
            return Err(refuse("is not a socket (a pipe or a file)".into()));
        }
        Err(e) => return Err(refuse(format!("cannot be inspected: {e}"))),
    }
    let family =
        sockopt::socket_domain(fd).map_err(|e| refuse(format!("cannot be inspected: {e}")))?;
    let tcp =
        sockopt::socket_protocol(fd).map_err(|e| refuse(format!("cannot be inspected: {e}")))?;
    let want = if bind.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    if family != want || tcp != Some(rustix::net::ipproto::TCP) {
        return Err(refuse(format!("is not a TCP socket of {bind}'s family")));
    }
    if !sockopt::socket_acceptconn(fd).map_err(|e| refuse(format!("cannot be inspected: {e}")))? {
        return Err(refuse("is not listening (SO_ACCEPTCONN is off)".into()));
    }
    let local = rustix::net::getsockname(fd)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok())
        .ok_or_else(|| refuse("has no address".into()))?;
    let port_ok = bind.port() == 0 || local.port() == bind.port();
    if local.ip() != bind.ip()
        || !port_ok
        || local.ip() != bound.ip()
        || local.port() != bound.port()
    {
        return Err(refuse(format!("listens on {local}, not on {bound}")));
    }
    Ok(())
}

impl Inherited {
    /// Tells the old process that this one is accepting on the sockets, so
    /// it may stop; then, on a thread of its own, waits for the state the
    /// old process learned while it drained and puts in `pools` what this
    /// process has not learned itself since. Finally listens on `path` for
    /// the next takeover, which `handed` then receives (see [`listen`]).
    pub fn ready(
        self,
        live: Arc<Live>,
        path: &Path,
        handed: tokio::sync::mpsc::Sender<Handoff>,
    ) -> Result<(), TakeoverError> {
        send(&self.conn, b"READY", &[])?;
        let conn = self.conn;
        let from = self.from_pid;
        let cap = self.state_cap;
        let ours = live.clone();
        std::thread::Builder::new()
            .name("stickytls-takeover".into())
            .spawn(move || {
                // The old process's drain lasts up to its shutdown_timeout:
                // no step timeout here; its exit ends the wait.
                let _ = set_timeout(&conn, None);
                match final_state(&conn, cap) {
                    Ok(bytes) => match merge(&bytes, &ours.pools()) {
                        Ok(n) => info!(from_pid = ?from, entries = n, "takeover complete: the old process drained and handed over what it learned meanwhile"),
                        Err(e) => warn!(from_pid = ?from, "the old process's last state is not usable: {e}"),
                    },
                    Err(e) => warn!(from_pid = ?from, "no last state from the old process: {e}"),
                }
                drop(conn);
            })
            .map_err(|e| TakeoverError::Io("start the takeover thread", e))?;
        listen(path, live, handed)
    }
}

pub(crate) fn final_state(conn: &OwnedFd, cap: u64) -> Result<Vec<u8>, TakeoverError> {
    let (line, _) = recv(conn)?;
    let text = String::from_utf8_lossy(&line).into_owned();
    if !text.starts_with("STATE ") {
        return Err(TakeoverError::Protocol(text));
    }
    let bytes = recv_state(conn, &text, cap, None)?;
    let (line, _) = recv(conn)?;
    if line != b"DONE" {
        return Err(TakeoverError::Protocol(
            String::from_utf8_lossy(&line).into_owned(),
        ));
    }
    Ok(bytes)
}

/// Applies a snapshot, keeping every entry this process already has: what
/// it learned itself is newer than the old process's copy.
fn merge(bytes: &[u8], pools: &Pools) -> Result<usize, state::StateError> {
    let mut saved = state::decode(bytes)?;
    for sp in &mut saved.pools {
        if let Some(pool) = pools.iter().find(|p| p.config.name == sp.name) {
            sp.entries.retain(|e| pool.table.peek(&e.key).is_none());
        }
    }
    Ok(state::apply(saved, pools, SystemTime::now()).entries)
}

/// Applies the snapshot received at the hand-over, before serving.
pub(crate) fn restore(
    inherited: &Inherited,
    pools: &Pools,
) -> Result<state::Restored, state::StateError> {
    let saved = state::decode(&inherited.state)?;
    Ok(state::apply(saved, pools, SystemTime::now()))
}

// ---------------------------------------------------------------------------
// The running process's side.

/// A takeover the running process agreed to: the new process serves, this
/// one drains, then sends what it learned meanwhile with [`Handoff::finish`].
#[derive(Debug)]
pub(crate) struct Handoff {
    conn: OwnedFd,
    pools: tokio::sync::watch::Receiver<Pools>,
    /// The new process's id, for the log.
    pub to_pid: Option<u32>,
}

impl Handoff {
    /// Sends the state as it is now, then `DONE`. Blocking.
    pub fn finish(self) -> Result<(), TakeoverError> {
        let pools = self.pools.borrow().clone();
        send_state(&self.conn, &pools)?;
        send(&self.conn, b"DONE", &[])
    }
}

/// Listens on `path` (replacing a stale socket file) and hands over to the
/// first new process that asks. Returns at once; the hand-over happens on
/// a thread of its own, and `handed` receives it when the new process is
/// serving: the caller then stops as on SIGTERM.
pub(crate) fn listen(
    path: &Path,
    live: Arc<Live>,
    handed: tokio::sync::mpsc::Sender<Handoff>,
) -> Result<(), TakeoverError> {
    let listener = bind(path)?;
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("stickytls-takeover".into())
        .spawn(move || {
            loop {
                let conn = match rustix::net::accept(&listener) {
                    Ok(c) => c,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "takeover socket failed; upgrades need a restart");
                        return;
                    }
                };
                let to_pid = match check_peer(&conn, "a process asking to take over") {
                    Ok(pid) => pid,
                    Err(e) => {
                        warn!(path = %path.display(), "takeover not granted, this process goes on serving: {e}");
                        continue;
                    }
                };
                match hand_over(&conn, &live) {
                    Ok((sockets, entries)) => {
                        info!(to_pid = ?to_pid, sockets, entries, "taken over: the new process serves on this process's sockets; draining");
                        let handoff = Handoff {
                            conn,
                            pools: live.watch_pools(),
                            to_pid,
                        };
                        let _ = handed.blocking_send(handoff);
                        // Only one new process takes over; it listens on
                        // the path from now on.
                        return;
                    }
                    Err(e) => {
                        warn!(to_pid = ?to_pid, "takeover abandoned, this process goes on serving: {e}");
                    }
                }
            }
        })
        .map_err(|e| TakeoverError::Io("start the takeover thread", e))?;
    Ok(())
}

/// Sends the listening sockets and the state; waits for `READY`.
fn hand_over(conn: &OwnedFd, live: &Live) -> Result<(usize, usize), TakeoverError> {
    set_timeout(conn, Some(STEP_TIMEOUT))?;
    let (hello, _) = recv(conn)?;
    if hello != b"TAKEOVER 1" {
        return Err(TakeoverError::Protocol(
            String::from_utf8_lossy(&hello).into_owned(),
        ));
    }
    let mut sent = 0;
    for slot in live.listeners().iter() {
        let copies = slot
            .copies()
            .map_err(|e| TakeoverError::Io("copy a listening socket", e))?;
        let line = format!("LISTENER {} {}", slot.bind, slot.bound);
        for batch in copies.chunks(FDS_PER_MESSAGE) {
            let fds: Vec<_> = batch.iter().map(|s| s.as_fd()).collect();
            send(conn, line.as_bytes(), &fds)?;
            sent += batch.len();
        }
    }
    let entries = send_state(conn, &live.pools())?;
    send(conn, b"SENT", &[])?;
    let (ready, _) = recv(conn)?;
    if ready != b"READY" {
        return Err(TakeoverError::Protocol(
            String::from_utf8_lossy(&ready).into_owned(),
        ));
    }
    Ok((sent, entries))
}

fn send_state(conn: &OwnedFd, pools: &Pools) -> Result<usize, TakeoverError> {
    let (bytes, entries, _) = state::encode(pools, SystemTime::now());
    send(conn, format!("STATE {}", bytes.len()).as_bytes(), &[])?;
    for chunk in bytes.chunks(CHUNK) {
        send(conn, chunk, &[])?;
    }
    Ok(entries)
}

/// The state announced by `line` (`STATE <length>`), refused at once if the
/// length is over `cap`, then received chunk by chunk (by `deadline`, if
/// any). The length is the peer's word: nothing is allocated for it up
/// front, and a chunk that would run past it is an error.
fn recv_state(
    conn: &OwnedFd,
    line: &str,
    cap: u64,
    deadline: Option<Deadline>,
) -> Result<Vec<u8>, TakeoverError> {
    let len: u64 = line
        .strip_prefix("STATE ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| TakeoverError::Protocol(line.to_string()))?;
    if len > cap {
        return Err(TakeoverError::Refused(format!(
            "the running router announced {len} bytes of state, over the {cap} bytes \
             this configuration's tables can hold when full"
        )));
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    while bytes.len() < len {
        let (chunk, _) = match deadline {
            Some(d) => recv_by(conn, d)?,
            None => recv(conn)?,
        };
        if chunk.is_empty() || chunk.len() > len - bytes.len() {
            return Err(TakeoverError::Protocol(format!(
                "a state chunk of {} bytes where {} were left",
                chunk.len(),
                len - bytes.len()
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// When the new process gives up on the hand-over ([`HANDOVER_DEADLINE`]).
#[derive(Debug, Clone, Copy)]
struct Deadline(std::time::Instant);

/// [`recv`], waiting no later than `deadline`.
fn recv_by(conn: &OwnedFd, deadline: Deadline) -> Result<(Vec<u8>, Vec<OwnedFd>), TakeoverError> {
    let left = deadline
        .0
        .saturating_duration_since(std::time::Instant::now());
    let late = || {
        TakeoverError::Refused(format!(
            "the running router did not finish handing over within {HANDOVER_DEADLINE:?}"
        ))
    };
    if left.is_zero() {
        return Err(late());
    }
    set_timeout(conn, Some(left.min(STEP_TIMEOUT)))?;
    match recv(conn) {
        Err(TakeoverError::Io(_, e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) && std::time::Instant::now() >= deadline.0 =>
        {
            Err(late())
        }
        other => other,
    }
}

fn parse_addr(word: Option<&str>, line: &str) -> Result<SocketAddr, TakeoverError> {
    word.and_then(|w| w.parse().ok())
        .ok_or_else(|| TakeoverError::Protocol(line.to_string()))
}

pub(crate) fn bind(path: &Path) -> Result<OwnedFd, TakeoverError> {
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)
        .map_err(io("open a Unix socket"))?;
    let addr = SocketAddrUnix::new(path).map_err(io("use the takeover socket's path"))?;
    // A file left by a process that is gone (or the one this process took
    // over from, which no longer accepts on it).
    let _ = std::fs::remove_file(path);
    rustix::net::bind(&fd, &addr).map_err(io("listen on the takeover socket"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| TakeoverError::Io("restrict the takeover socket to this user", e))?;
    rustix::net::listen(&fd, 4).map_err(io("listen on the takeover socket"))?;
    Ok(fd)
}

fn set_timeout(conn: &OwnedFd, d: Option<Duration>) -> Result<(), TakeoverError> {
    rustix::net::sockopt::set_socket_timeout(conn, rustix::net::sockopt::Timeout::Recv, d)
        .map_err(io("set the takeover socket's timeout"))
}

pub(crate) fn send(
    conn: &OwnedFd,
    data: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<(), TakeoverError> {
    let msg = SendAncillaryMessage::ScmRights(fds);
    let mut space = vec![MaybeUninit::uninit(); msg.size()];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(msg) {
        return Err(TakeoverError::Protocol(
            "too many descriptors for one message".into(),
        ));
    }
    rustix::net::sendmsg(
        conn,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(io("send on the takeover socket"))?;
    Ok(())
}

/// One message and the descriptors that came with it. An empty message
/// with no descriptors is the peer's close.
pub(crate) fn recv(conn: &OwnedFd) -> Result<(Vec<u8>, Vec<OwnedFd>), TakeoverError> {
    let mut buf = vec![0u8; CHUNK];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        conn,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(io("receive on the takeover socket"))?;
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    buf.truncate(got.bytes.min(CHUNK));
    if buf.is_empty() && fds.is_empty() {
        return Err(TakeoverError::Io(
            "receive on the takeover socket",
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        ));
    }
    Ok((buf, fds))
}

// ---------------------------------------------------------------------------
// Starting the successor (SIGUSR2).

/// Starts the binary now installed at this process's path with this
/// process's arguments: the upgrade a service manager asks for with
/// SIGUSR2. The new process takes over through the takeover socket, tells
/// systemd it is the main process, and this one drains and exits. A
/// successor that fails before taking over is logged, and this process
/// goes on serving. Needs the takeover socket; without it there is nothing
/// to hand over on.
pub(crate) fn spawn_successor() -> std::io::Result<u32> {
    let exe = installed_exe()?;
    let mut child = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .stdin(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    info!(exe = %exe.display(), pid, "upgrade: started the new binary; it takes over through the takeover socket");
    std::thread::Builder::new()
        .name("stickytls-successor".into())
        .spawn(move || {
            // Reaped here if it ends while this process still runs: it
            // failed before (or instead of) taking over.
            if let Ok(status) = child.wait() {
                warn!(pid, %status, "the new process ended before this one stopped; this one goes on serving unless it already handed over");
            }
        })?;
    Ok(pid)
}

/// This process's executable as the file system has it now: when a
/// package upgrade replaced the file, `/proc/self/exe` names the deleted
/// old one, and the new binary is at the same path without the suffix.
fn installed_exe() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.as_os_str().to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => std::path::PathBuf::from(path),
        None => exe,
    })
}
