//! Upgrading the real binary with a takeover socket: a second `stickytls
//! run` with the same `[state] takeover_socket` receives the running one's
//! listening sockets and affinity state, serves them with a different
//! number of worker threads, and the first one drains and exits 0. Under
//! continuous TLS load no connection is refused or fails, an established
//! connection on the old process finishes its exchange, and sessions
//! learned by the old process resume on their issuing backends through the
//! new one, from addresses the balancer sends elsewhere.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::router_process::{RouterProcess, scratch};
use common::traffic::{continuous_load, source_hash, tls12};
use common::*;
use stickytls_peers::backend::RunningBackend;
use stickytls_peers::client::Writes;

const NAMES: [&str; 3] = ["a", "b", "c"];

fn config(dir: &Path, farm: &[RunningBackend]) -> std::path::PathBuf {
    let backends: Vec<String> = farm
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }}", b.name(), b.addr()))
        .collect();
    let text = format!(
        "shutdown_timeout = \"20s\"\n\n[state]\ntakeover_socket = \"{}\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\n[pool.web]\nbalance = \"source-hash\"\nbackends = [{}]\n\n[pool.web.health]\ncheck = \"none\"\n",
        dir.join("takeover.sock").display(),
        backends.join(", ")
    );
    let path = dir.join("stickytls.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn args(config: &Path, threads: u32) -> Vec<String> {
    vec![
        "--config".into(),
        config.display().to_string(),
        "--threads".into(),
        threads.to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_refuses_nothing_and_keeps_every_session() {
    let farm = rustls_backends(3, |_| {}).await;
    let dir = scratch("upgrade");
    let file = config(&dir, &farm);
    let mut old = RouterProcess::start(&args(&file, 2), &dir.join("old.log")).await;
    let addr = old.addr;

    // Sessions the old process learns: TLS 1.2 IDs and tickets.
    let mut sessions = Vec::new();
    for i in 0..12u8 {
        let c = tls12(i % 2 == 1);
        let r = c
            .connect(addr, Some(IpAddr::from([127, 1, 0, 10 + i])))
            .await
            .unwrap();
        assert!(!r.server_resumed);
        sessions.push((c, r.backend));
    }
    // An established connection on the old process, across the upgrade.
    let held_client = tls12(false);
    let mut held = held_client
        .open(addr, Some(IpAddr::from([127, 1, 1, 1])), Writes::Whole)
        .await
        .unwrap();
    let held_on = held.ask().await.unwrap().backend;

    let stop = Arc::new(AtomicBool::new(false));
    let loader = continuous_load(addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new process, with another thread count, takes over.
    let mut new = RouterProcess::start(&args(&file, 3), &dir.join("new.log")).await;
    assert_eq!(new.addr, addr, "the new process serves the same sockets");
    new.wait_for_log("affinity state taken over").await;
    old.wait_for_log("taken over:").await;

    // The held connection finishes its exchange on the old process, which
    // then exits 0.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(old.running(), "the open connection holds the old process");
    assert_eq!(held.ask().await.unwrap().backend, held_on);
    held.close().await.unwrap();
    let status = old.wait().await;
    assert!(
        status.success(),
        "the old process exits 0: {status}\n{}",
        old.log()
    );
    new.wait_for_log("takeover complete").await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (made, failed) = loader.await.unwrap();
    eprintln!("upgrade under load: {made} connections made, {failed} failed");
    assert_eq!(failed, 0, "connections lost in the upgrade ({made} made)");
    assert!(made >= 4, "the load ran across the upgrade: {made}");

    // Sessions learned by the old process resume on their issuers through
    // the new one, from addresses source-hash sends elsewhere.
    let mut host = 0u8;
    for (c, issuer) in &sessions {
        let ip = loop {
            host = host.checked_add(1).expect("enough addresses");
            let ip = IpAddr::from([127, 2, 0, host]);
            if source_hash(ip, &[("a", 1), ("b", 1), ("c", 1)]) != issuer.as_str() {
                break ip;
            }
        };
        let r = c.connect(addr, Some(ip)).await.unwrap();
        assert_eq!(&r.backend, issuer, "the session's owner");
        assert!(r.server_resumed, "resumed on {issuer}");
    }

    // And the new process can be upgraded in turn.
    let mut third = RouterProcess::start(&args(&file, 1), &dir.join("third.log")).await;
    assert_eq!(third.addr, addr);
    let status = new.wait().await;
    assert!(status.success(), "{status}\n{}", new.log());
    let r = tls12(false)
        .connect(addr, Some(IpAddr::from([127, 4, 0, 1])))
        .await
        .unwrap();
    assert!(NAMES.contains(&r.backend.as_str()));
    third.terminate();
    assert!(third.wait().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_running_router_the_takeover_socket_only_starts_listening() {
    let farm = rustls_backends(1, |_| {}).await;
    let dir = scratch("upgrade-first");
    // A stale socket file from a process that is gone.
    std::fs::write(dir.join("takeover.sock"), b"").unwrap();
    let file = config(&dir, &farm);
    let router = RouterProcess::start(&args(&file, 1), &dir.join("r.log")).await;
    let r = tls12(false)
        .connect(router.addr, Some(ip(5)))
        .await
        .unwrap();
    assert_eq!(r.backend, "a");
    assert!(!router.log().contains("taking over"), "{}", router.log());
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(dir.join("takeover.sock")).unwrap();
    assert!(meta.file_type().is_socket(), "the stale file was replaced");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

/// systemd's side of the notification protocol: the datagrams a service
/// sends to `NOTIFY_SOCKET`.
struct NotifySocket {
    socket: Arc<std::os::unix::net::UnixDatagram>,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        NotifySocket {
            socket: Arc::new(socket),
            path,
        }
    }

    /// The next datagram (bounded: a hang fails the test).
    async fn next(&self) -> String {
        let socket = self.socket.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 512];
            let n = socket.recv(&mut buf).expect("a notification within 60 s");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .await
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_starts_the_new_binary_which_becomes_the_main_process() {
    let farm = rustls_backends(3, |_| {}).await;
    let dir = scratch("upgrade-usr2");
    let file = config(&dir, &farm);
    let notify = NotifySocket::bind(&dir);
    let notify_path = notify.path.display().to_string();
    let mut old = RouterProcess::start_with_env(
        &args(&file, 2),
        &dir.join("old.log"),
        &[("NOTIFY_SOCKET", notify_path.as_str())],
    )
    .await;
    assert_eq!(notify.next().await, "READY=1");
    let c = tls12(false);
    let first = c
        .connect(old.addr, Some(IpAddr::from([127, 1, 0, 1])))
        .await
        .unwrap();

    old.signal(rustix::process::Signal::USR2);
    let main = notify.next().await;
    let pid: u32 = main
        .strip_prefix("MAINPID=")
        .and_then(|rest| rest.strip_suffix("\nREADY=1"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("MAINPID=<pid>\\nREADY=1, not {main:?}"));
    assert_ne!(pid, old.pid(), "the new process names itself");
    let status = old.wait().await;
    assert!(status.success(), "{status}\n{}", old.log());

    // The new process serves the same port and knows the session.
    let again = c
        .connect(old.addr, Some(IpAddr::from([127, 1, 0, 1])))
        .await
        .unwrap();
    assert!(again.server_resumed);
    assert_eq!(again.backend, first.backend);

    let new = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(new, rustix::process::Signal::TERM).unwrap();
    assert_eq!(notify.next().await, "STOPPING=1");
    let mut gone = false;
    for _ in 0..500 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the new process stops on SIGTERM");
}
