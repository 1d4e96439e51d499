//! `stickytls run` with stderr redirected to a file writes plain text: no
//! ANSI escape sequences, which a log file would otherwise be full of.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Only stops a hang: the router logs its start at once.
const START_TIMEOUT: Duration = Duration::from_secs(60);

const ESC: u8 = 0x1b;

#[test]
fn run_logs_to_a_file_without_escape_codes() {
    let dir = std::env::temp_dir().join(format!("stickytls-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stderr.log");
    let log = std::fs::File::create(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stickytls"))
        .args(["run", "--listen", "127.0.0.1:0", "--threads", "1"])
        .args(["--backend", "a=127.0.0.1:9"])
        // Info and above, coloured by level on a terminal; and nothing
        // inherited that would turn colour off for another reason.
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start stickytls run");

    let started = Instant::now();
    let logged = loop {
        let text = std::fs::read(&path).unwrap();
        if text.windows(17).any(|w| w == b"stickytls routing") {
            break text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "stickytls run exited ({status}):\n{}",
                String::from_utf8_lossy(&text)
            );
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stickytls run logged no start within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        !logged.contains(&ESC),
        "escape codes in a log file:\n{}",
        String::from_utf8_lossy(&logged).escape_debug()
    );
    assert!(
        logged.windows(4).any(|w| w == b"INFO"),
        "the level is still written, as plain text"
    );
}
