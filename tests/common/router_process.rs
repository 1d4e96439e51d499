//! The real `stickytls` binary as a child process, for what only a process
//! shows: signals, exit codes, restarts. Its log goes to a file the test
//! reads; every wait is bounded so that a hang fails the test instead of
//! stalling it (the bounds are far above what any step takes).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Only stops a hang.
const BOUND: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RouterProcess {
    child: Child,
    log: PathBuf,
    /// The listener's address, read from the start log line.
    pub addr: SocketAddr,
}

impl RouterProcess {
    /// Starts `stickytls run ARGS`, logging to `log`, and waits until it
    /// routes.
    pub async fn start(args: &[String], log: &Path) -> RouterProcess {
        Self::start_with_env(args, log, &[]).await
    }

    /// [`RouterProcess::start`] with more environment variables.
    pub async fn start_with_env(
        args: &[String],
        log: &Path,
        env: &[(&str, &str)],
    ) -> RouterProcess {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stickytls"))
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start stickytls run");
        let mut p = RouterProcess {
            child,
            log: log.to_path_buf(),
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = p.wait_for_log("stickytls routing").await;
        let listen = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))
            .expect("the start line names the listener");
        p.addr = listen.parse().unwrap();
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub async fn wait_for_log(&mut self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("stickytls exited ({status}) before logging {needle:?}:\n{log}");
            }
            assert!(
                started.elapsed() < BOUND,
                "no {needle:?} in the log within {BOUND:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) {
        kill_process(Pid::from_child(&self.child), sig).expect("signal the router");
    }

    pub fn terminate(&self) {
        self.signal(Signal::TERM);
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > BOUND {
                let _ = self.child.kill();
                panic!("stickytls did not exit within {BOUND:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh directory for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stickytls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
