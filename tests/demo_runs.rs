//! `stickytls demo` end to end: the real binary, and `run_demo` in process.
//!
//! Both need the real inspector: against the contract skeleton every
//! connection through the router fails, and so do these tests.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stickytls::client::demo::{Tally, run_demo};

/// The demo finishes in a few seconds; this only stops a hang.
const DEMO_TIMEOUT: Duration = Duration::from_secs(90);

/// One connection line of the demo's output.
#[derive(Debug)]
struct Line {
    resume: bool,
    backend: Option<String>,
    resumed: bool,
    rule: Option<String>,
}

impl Line {
    /// `  conn 2  from 127.0.0.11 resume -> backend b  resumed yes  rule key  session ID known`
    fn parse(text: &str) -> Option<Line> {
        let (left, right) = text.split_once(" -> ")?;
        let resume = left.split_whitespace().last()? == "resume";
        let words: Vec<&str> = right.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .map(|w| w.to_string())
        };
        Some(Line {
            resume,
            backend: after("backend"),
            resumed: after("resumed").as_deref() == Some("yes"),
            rule: after("rule"),
        })
    }
}

/// The output split into sections by their `== title ==` headers.
fn sections(output: &str) -> Vec<(String, Vec<Line>)> {
    let mut out: Vec<(String, Vec<Line>)> = Vec::new();
    for text in output.lines() {
        if let Some(title) = text.strip_prefix("== ").and_then(|t| t.strip_suffix(" ==")) {
            out.push((title.to_string(), Vec::new()));
        } else if let (Some(line), Some(last)) = (Line::parse(text), out.last_mut()) {
            last.1.push(line);
        }
    }
    out
}

fn section<'a>(all: &'a [(String, Vec<Line>)], prefix: &str, mode: &str) -> &'a [Line] {
    let title = all
        .iter()
        .find(|(t, _)| t.starts_with(prefix) && t.ends_with(&format!("({mode})")))
        .unwrap_or_else(|| panic!("no section {prefix} ({mode})"));
    &title.1
}

fn run_binary() -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stickytls"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stickytls demo");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEMO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stickytls demo did not finish within {DEMO_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = reader.join().unwrap().unwrap();
    let errors = err_reader.join().unwrap();
    assert!(
        status.success(),
        "stickytls demo failed ({status}):\n{output}\n--- stderr ---\n{errors}"
    );
    output
}

#[test]
fn demo_binary_shows_every_resumption_on_its_backend_and_round_robin_missing() {
    let output = run_binary();
    let all = sections(&output);

    for scenario in ["1.", "2.", "3.", "4."] {
        let lines = section(&all, scenario, "stickytls");
        assert!(
            lines.iter().any(|l| l.resume),
            "{scenario} made no resumption:\n{output}"
        );
        let backends: BTreeSet<_> = lines
            .iter()
            .map(|l| l.backend.clone().expect("connected"))
            .collect();
        assert_eq!(
            backends.len(),
            1,
            "{scenario}: one client's connections all stay on one backend:\n{output}"
        );
        for l in lines.iter().filter(|l| l.resume) {
            assert!(
                l.resumed,
                "{scenario}: a resumption was not resumed: {l:?}\n{output}"
            );
        }
    }

    // Scenario 3's last three connections come from an address with no
    // history, so only the learned ticket key name can have placed them.
    let psk = section(&all, "3.", "stickytls");
    for l in &psk[psk.len() - 3..] {
        assert_eq!(l.rule.as_deref(), Some("key"), "{l:?}\n{output}");
    }
    // Scenario 4's third connection offers the forgotten session ID.
    let forgotten = section(&all, "4.", "stickytls");
    assert_eq!(forgotten[2].rule.as_deref(), Some("rebind"), "{output}");

    let nat = section(&all, "5.", "stickytls");
    let fresh: BTreeSet<_> = nat
        .iter()
        .filter(|l| !l.resume)
        .filter_map(|l| l.backend.clone())
        .collect();
    assert!(
        fresh.len() >= 2,
        "fresh clients behind one address reached only {fresh:?}:\n{output}"
    );
    assert!(
        nat.iter().filter(|l| l.resume).all(|l| l.resumed),
        "{output}"
    );

    for scenario in ["1.", "2.", "3.", "4.", "5."] {
        let lines = section(&all, scenario, "round robin");
        let misses = lines.iter().filter(|l| l.resume && !l.resumed).count();
        assert!(
            misses > 0,
            "{scenario}: round robin should bounce resumptions to backends without the session:\n{output}"
        );
    }
    assert!(output.contains("== Summary"), "{output}");
}

fn assert_all_resumed_on_owner(title: &str, t: &Tally) {
    assert!(t.attempts() > 0, "{title}: no resumption attempted");
    assert_eq!(t.errors(), 0, "{title}: {t:#?}");
    assert_eq!(t.resumed(), t.attempts(), "{title}: {t:#?}");
    assert_eq!(t.on_owner(), t.attempts(), "{title}: {t:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_demo_resumes_everything_with_stickytls_and_little_with_round_robin() {
    let mut out = Vec::new();
    let summary = tokio::time::timeout(DEMO_TIMEOUT, run_demo(&mut out))
        .await
        .expect("demo finished")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(summary.scenarios.len(), 5, "{text}");
    for s in &summary.scenarios {
        assert_all_resumed_on_owner(s.title, &s.sticky);
        assert_eq!(s.round_robin.errors(), 0, "{}: {text}", s.title);
        assert!(
            s.round_robin.resumed() < s.round_robin.attempts(),
            "{}: round robin resumed {}/{}\n{text}",
            s.title,
            s.round_robin.resumed(),
            s.round_robin.attempts()
        );
    }
    let nat = &summary.scenarios[4];
    assert!(nat.sticky.fresh_backends().len() >= 2, "{text}");
}
