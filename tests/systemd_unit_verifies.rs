//! `contrib/stickytls.service` as systemd reads it: `systemd-analyze
//! verify` (scripts/test installs it where missing) accepts it without a
//! single warning, once its `/usr/bin/stickytls` names the binary built
//! here; its commands parse as this binary's commands; and its stop
//! timeout leaves room for the default drain.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const UNIT: &str = include_str!("../contrib/stickytls.service");
const BIN: &str = env!("CARGO_BIN_EXE_stickytls");

fn settings(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_analyze_verifies_the_unit_without_a_warning() {
    let dir = std::env::temp_dir().join(format!("stickytls-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("stickytls.service");
    std::fs::write(&unit, UNIT.replace("/usr/bin/stickytls", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze is installed (scripts/test installs the systemd package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_units_commands_are_this_binarys() {
    for key in ["ExecStartPre", "ExecStart", "ExecReload"] {
        for command in settings(key) {
            let words: Vec<&str> = command.split_whitespace().collect();
            assert_eq!(words.first(), Some(&"/usr/bin/stickytls"), "{key}");
            // Parsing only: the file and the admin endpoint need not exist.
            // `--help` after the subcommand's arguments makes clap check
            // them and print help, exit 0, when they are valid.
            let mut args: Vec<&str> = words[1..].to_vec();
            args.push("--help");
            let out = Command::new(BIN).args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "{key}={command}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_eq!(settings("Type"), ["notify"]);
    assert_eq!(settings("NotifyAccess"), ["all"]);
    assert_eq!(settings("KillMode"), ["mixed"]);
}

#[test]
fn systemd_waits_longer_than_the_default_drain() {
    let stop = settings("TimeoutStopSec");
    let secs: u64 = stop[0].parse().expect("TimeoutStopSec in seconds");
    let drain = stickytls::config::Lifecycle::default().shutdown_timeout;
    assert!(Duration::from_secs(secs) > drain, "{secs}s <= {drain:?}");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib/stickytls.service")
            .exists()
    );
}
