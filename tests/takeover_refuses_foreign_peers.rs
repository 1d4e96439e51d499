//! A new router trusts nothing it is handed on the takeover socket: a fake
//! "old router" listening on the path hands over a pipe, a TCP socket that
//! is not listening, a listener on another address, or announces 4 GiB of
//! state and trickles it, or a state under the cap that it trickles; or it
//! runs as another user. Each of the checks
//! refuses on its own (every other part of each fake's conversation is
//! what a real router says). In every case the new router logs why, starts
//! on a socket of its own at its configured address, serves TLS there
//! within 10 s of its start, and never grows past 200 MB. And a running
//! router hands nothing to a process of another user that reaches its
//! takeover socket.

mod common;

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::router_process::{RouterProcess, scratch};
use common::traffic::tls12;
use common::*;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketAddrUnix, SocketType,
};
use sha2::{Digest, Sha256};
use stickytls_peers::backend::RunningBackend;

/// The acceptance bound: a refusal takes milliseconds.
const SERVING_WITHIN: Duration = Duration::from_secs(10);
const RSS_LIMIT_KB: u64 = 200 * 1024;
/// Where the fake peer of another user is told its socket's path.
const FAKE_PEER_PATH: &str = "STICKYTLS_TEST_FAKE_PEER_PATH";
const NOBODY: u32 = 65534;

/// What the fake old router hands over.
#[derive(Debug, Clone, Copy)]
enum Hand {
    Pipe,
    NotListening,
    OtherAddress,
    HugeState,
    /// A state of an allowed length, a byte every half second.
    TrickledState,
    /// Nothing wrong but who it is (it runs as another user).
    Honest,
}

/// A free port on 127.0.0.1 (free when asked: the router binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, farm: &[RunningBackend], listen: SocketAddr) -> PathBuf {
    let backends: Vec<String> = farm
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }}", b.name(), b.addr()))
        .collect();
    let text = format!(
        "[state]\ntakeover_socket = \"{}\"\n\n[[listener]]\nbind = \"{listen}\"\ndefault_pool = \"web\"\n\n[pool.web]\nbackends = [{}]\n\n[pool.web.health]\ncheck = \"none\"\n",
        dir.join("peer").join("takeover.sock").display(),
        backends.join(", ")
    );
    let path = dir.join("stickytls.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A valid state file with no pool, in the format of `src/state.rs`.
fn empty_state() -> Vec<u8> {
    let mut out = b"STKYSTAT".to_vec();
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&4u64.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

fn send(conn: &OwnedFd, data: &[u8], fds: &[BorrowedFd<'_>]) {
    let msg = SendAncillaryMessage::ScmRights(fds);
    let mut space = vec![MaybeUninit::uninit(); msg.size()];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(msg));
    }
    // The new router may have hung up already: that is its refusal.
    let _ = rustix::net::sendmsg(
        conn,
        &[IoSlice::new(data)],
        &mut control,
        SendFlags::NOSIGNAL,
    );
}

fn recv(conn: &OwnedFd) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        conn,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::empty(),
    )
    .map(|r| r.bytes)
    .unwrap_or(0);
    buf.truncate(got);
    buf
}

/// Listens on `path` as a router's takeover socket does.
fn listen_at(path: &Path) -> OwnedFd {
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::bind(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
    rustix::net::listen(&fd, 4).unwrap();
    fd
}

/// A TCP socket bound to `addr` with SO_REUSEPORT, as the router's own.
fn tcp(addr: SocketAddr, listening: bool) -> socket2::Socket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&addr.into()).unwrap();
    if listening {
        s.listen(16).unwrap();
    }
    s
}

/// The fake old router: answers the first process that connects to `path`
/// with `hand`, then holds the connection until the process hangs up. Its
/// own copies of what it hands over are closed once sent.
fn fake_old_router(listener: OwnedFd, hand: Hand, listen: SocketAddr) {
    let conn = rustix::net::accept(&listener).unwrap();
    assert_eq!(recv(&conn), b"TAKEOVER 1");
    let line = format!("LISTENER {listen} {listen}");
    match hand {
        Hand::Pipe => {
            let (read, _write) = rustix::pipe::pipe().unwrap();
            send(&conn, line.as_bytes(), &[read.as_fd()]);
        }
        Hand::NotListening => {
            let s = tcp(listen, false);
            send(&conn, line.as_bytes(), &[s.as_fd()]);
        }
        Hand::OtherAddress => {
            let s = tcp("127.0.0.1:0".parse().unwrap(), true);
            send(&conn, line.as_bytes(), &[s.as_fd()]);
        }
        Hand::HugeState | Hand::TrickledState => {
            let s = tcp(listen, true);
            send(&conn, line.as_bytes(), &[s.as_fd()]);
            drop(s);
            let announced: &[u8] = match hand {
                Hand::HugeState => b"STATE 4294967296",
                _ => b"STATE 1000000",
            };
            send(&conn, announced, &[]);
            // One byte every half second, until the new router hangs up.
            let mut shut = 0;
            while shut < 2 {
                std::thread::sleep(Duration::from_millis(500));
                if rustix::net::send(&conn, &[0], SendFlags::NOSIGNAL).is_err() {
                    shut += 1;
                }
            }
            return;
        }
        Hand::Honest => {}
    }
    let state = empty_state();
    send(&conn, format!("STATE {}", state.len()).as_bytes(), &[]);
    send(&conn, &state, &[]);
    send(&conn, b"SENT", &[]);
    // READY, or the new router's close.
    let _ = recv(&conn);
    let _ = recv(&conn);
}

/// Peak resident memory of process `pid`, in kB (VmHWM).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Starts a new router against a fake peer started by `start_peer` (given
/// the socket's path), and checks what every case must show; `why` is
/// what its log must say.
async fn new_router_refuses(name: &str, why: &str, start_peer: impl FnOnce(&Path, SocketAddr)) {
    let farm = rustls_backends(1, |_| {}).await;
    let dir = scratch(name);
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let file = config(&dir, &farm, listen);
    let peer_dir = dir.join("peer");
    std::fs::create_dir_all(&peer_dir).unwrap();
    let path = peer_dir.join("takeover.sock");
    start_peer(&path, listen);

    let started = Instant::now();
    let args = vec!["--config".to_string(), file.display().to_string()];
    let mut router = RouterProcess::start(&args, &dir.join("new.log")).await;
    let r = tls12(false).connect(listen, Some(ip(7))).await;
    let took = started.elapsed();
    let log = router.log();
    assert!(r.is_ok(), "no TLS on {listen}: {r:?}\n{log}");
    assert_eq!(router.addr, listen, "serves its own socket:\n{log}");
    assert!(
        took < SERVING_WITHIN,
        "served {took:?} after its start\n{log}"
    );
    let line = router
        .wait_for_log("no takeover, starting on new sockets")
        .await;
    assert!(line.contains(why), "the log says why ({why:?}): {line}");
    assert!(
        !log.contains("affinity state taken over"),
        "nothing of the peer's is taken:\n{log}"
    );
    let peak = peak_rss_kb(router.pid());
    assert!(peak < RSS_LIMIT_KB, "peak RSS {peak} kB\n{log}");
    eprintln!("{name}: served after {took:?}, peak RSS {peak} kB; {line}");
    router.terminate();
    router.wait().await;
}

/// A fake old router of this test's own user, on a thread.
fn same_user(hand: Hand) -> impl FnOnce(&Path, SocketAddr) {
    move |path, listen| {
        let listener = listen_at(path);
        std::thread::spawn(move || fake_old_router(listener, hand, listen));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_is_not_taken_as_a_listener() {
    new_router_refuses("takeover-pipe", "is not a socket", same_user(Hand::Pipe)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_does_not_listen_is_not_taken() {
    new_router_refuses(
        "takeover-not-listening",
        "is not listening",
        same_user(Hand::NotListening),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_another_address_is_not_taken() {
    new_router_refuses(
        "takeover-other-address",
        "listens on 127.0.0.1:",
        same_user(Hand::OtherAddress),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_over_the_cap_is_refused_before_it_is_read() {
    new_router_refuses(
        "takeover-huge-state",
        "announced 4294967296 bytes of state, over the",
        same_user(Hand::HugeState),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_trickles_in_is_given_up_on() {
    new_router_refuses(
        "takeover-trickle",
        "did not finish handing over within 6s",
        same_user(Hand::TrickledState),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_user_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running the fake peer as another user (nobody) needs root");
        return;
    }
    let mut child = None;
    new_router_refuses(
        "takeover-other-user",
        &format!("runs as uid {NOBODY}, neither root nor"),
        |path, _| {
            let dir = path.parent().unwrap();
            std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
            // This test binary, as nobody, running only the entry point
            // below.
            use std::os::unix::process::CommandExt;
            let c = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "fake_old_router_of_another_user", "--ignored"])
                .env(FAKE_PEER_PATH, path)
                .uid(NOBODY)
                .gid(NOBODY)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            child = Some(c);
            let started = Instant::now();
            while !path.exists() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the fake peer listens"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        },
    )
    .await;
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Not a test on its own: the fake old router that
/// `a_peer_of_another_user_is_refused` runs as another user (this test
/// binary, started again with this name and the path in the environment).
#[test]
#[ignore = "run by a_peer_of_another_user_is_refused as another user"]
fn fake_old_router_of_another_user() {
    let path = PathBuf::from(std::env::var_os(FAKE_PEER_PATH).expect("started by the test"));
    fake_old_router(
        listen_at(&path),
        Hand::Honest,
        "127.0.0.1:0".parse().unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_router_hands_nothing_to_another_user() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: running the fake new router as another user (nobody) needs root");
        return;
    }
    let farm = rustls_backends(1, |_| {}).await;
    let dir = scratch("takeover-old-side");
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let file = config(&dir, &farm, listen);
    std::fs::create_dir_all(dir.join("peer")).unwrap();
    let args = vec!["--config".to_string(), file.display().to_string()];
    let mut router = RouterProcess::start(&args, &dir.join("old.log")).await;
    // The file's mode is the first fence; opened here, the uid check is
    // the one left.
    let path = dir.join("peer").join("takeover.sock");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    use std::os::unix::process::CommandExt;
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fake_new_router_of_another_user", "--ignored"])
        .env(FAKE_PEER_PATH, &path)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the other user was handed something ({status})"
    );
    let line = router.wait_for_log("takeover not granted").await;
    assert!(
        line.contains(&format!("runs as uid {NOBODY}, neither root nor")),
        "{line}"
    );
    let r = tls12(false).connect(listen, Some(ip(8))).await;
    assert!(r.is_ok(), "still serves: {r:?}\n{}", router.log());
    router.terminate();
    assert!(router.wait().await.success());
}

/// Not a test on its own: the fake new router that
/// `the_running_router_hands_nothing_to_another_user` runs as another
/// user. Passes when the router at the path answers `TAKEOVER 1` by
/// hanging up.
#[test]
#[ignore = "run by the_running_router_hands_nothing_to_another_user as another user"]
fn fake_new_router_of_another_user() {
    let path = PathBuf::from(std::env::var_os(FAKE_PEER_PATH).expect("started by the test"));
    let conn = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::connect(&conn, &SocketAddrUnix::new(&path).unwrap()).unwrap();
    rustix::net::sockopt::set_socket_timeout(
        &conn,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(30)),
    )
    .unwrap();
    send(&conn, b"TAKEOVER 1", &[]);
    let got = recv(&conn);
    assert!(got.is_empty(), "handed {:?}", String::from_utf8_lossy(&got));
}
