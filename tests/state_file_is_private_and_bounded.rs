//! The state file keeps client addresses from other local users and
//! cannot be turned against the router: it is written mode 0600 whatever
//! the umask, through a temporary file that is never a symbolic link
//! someone planted (a link at the predictable name, or left by a crashed
//! writer, is removed, and its target stays untouched); and a file larger
//! than the configured tables can fill is refused, with a message that
//! says so, before it is read: the router starts empty and serves.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::router_process::scratch;
use common::traffic::tls12;
use common::*;
use rustix::process::{Pid, Signal, kill_process};
use stickytls_peers::backend::RunningBackend;

/// Only stops a hang.
const BOUND: Duration = Duration::from_secs(60);
/// The state file's cap for small tables (`state::MIN_SIZE_CAP`).
const MIN_SIZE_CAP: u64 = 16 << 20;

fn config(dir: &Path, farm: &[RunningBackend]) -> PathBuf {
    let backends: Vec<String> = farm
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }}", b.name(), b.addr()))
        .collect();
    let text = format!(
        "[state]\nfile = \"{}\"\ninterval = \"1h\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\n[pool.web]\nbackends = [{}]\n\n[pool.web.affinity]\ntable_size = 1000\nclients_tracked = 1000\n\n[pool.web.health]\ncheck = \"none\"\n",
        dir.join("state").display(),
        backends.join(", ")
    );
    let path = dir.join("stickytls.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `stickytls run --config CONFIG` under umask 022 (through `sh`, which
/// sets it and execs the router: the pid is the router's), logging to
/// `log`; returns once it routes, with its listening address.
fn start(config: &Path, log: &Path) -> (Child, std::net::SocketAddr) {
    let child = Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" run --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_stickytls"))
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let line = wait_for_log(log, "stickytls routing");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .expect("the start line names the listener")
        .parse()
        .unwrap();
    (child, addr)
}

fn wait_for_log(log: &Path, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            started.elapsed() < BOUND,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then the exit (with the state written at the stop).
fn stop(mut child: Child) {
    kill_process(Pid::from_child(&child), Signal::TERM).unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < BOUND, "the router stops");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_file_is_written_mode_0600_under_umask_022() {
    let farm = rustls_backends(1, |_| {}).await;
    let dir = scratch("state-private");
    let file = config(&dir, &farm);
    let (child, addr) = start(&file, &dir.join("r.log"));
    // Something learned, so that the file holds a session.
    tls12(false).connect(addr, Some(ip(9))).await.unwrap();
    stop(child);
    let log = std::fs::read_to_string(dir.join("r.log")).unwrap();
    assert!(log.contains("state written"), "{log}");
    let mode = std::fs::metadata(dir.join("state"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_the_temporary_path_is_not_followed() {
    let farm = rustls_backends(1, |_| {}).await;
    let dir = scratch("state-symlink");
    let file = config(&dir, &farm);
    let target = dir.join("someone-elses-file");
    std::fs::write(&target, b"untouched").unwrap();
    // A crashed writer's temporary file, a link, under the name of a
    // process that no longer runs.
    let gone = (1_000_000u32..)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let stale = dir.join(format!("state.{gone}.tmp"));
    std::os::unix::fs::symlink(&target, &stale).unwrap();

    let (child, _) = start(&file, &dir.join("r.log"));
    // The name the router writes through next.
    let next = dir.join(format!("state.{}.tmp", child.id()));
    std::os::unix::fs::symlink(&target, &next).unwrap();
    stop(child);

    let log = std::fs::read_to_string(dir.join("r.log")).unwrap();
    assert!(log.contains("state written"), "{log}");
    assert_eq!(std::fs::read(&target).unwrap(), b"untouched", "{log}");
    let meta = std::fs::symlink_metadata(dir.join("state")).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the state file is a file of its own"
    );
    assert_ne!(meta.ino(), std::fs::metadata(&target).unwrap().ino());
    assert!(
        std::fs::symlink_metadata(&stale).is_err(),
        "the stale temporary link is removed: {log}"
    );
    assert!(
        std::fs::symlink_metadata(&next).is_err(),
        "no temporary file is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_state_file_is_refused_and_the_router_serves() {
    let farm = rustls_backends(1, |_| {}).await;
    let dir = scratch("state-oversized");
    let file = config(&dir, &farm);
    // The magic, then more than the small tables' cap.
    let size = MIN_SIZE_CAP + (1 << 20);
    let mut bytes = b"STKYSTAT".to_vec();
    bytes.resize(size as usize, 0x5a);
    std::fs::write(dir.join("state"), &bytes).unwrap();

    let (child, addr) = start(&file, &dir.join("r.log"));
    let line = wait_for_log(&dir.join("r.log"), "state file ignored");
    assert!(
        line.contains(&format!(
            "starting with empty tables: too large: {size} bytes, over the {MIN_SIZE_CAP} bytes"
        )),
        "{line}"
    );
    let r = tls12(false).connect(addr, Some(ip(9))).await.unwrap();
    assert_eq!(r.backend, "a");
    stop(child);
}
