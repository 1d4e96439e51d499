//! Replays every fuzz seed and every crash regression through the entry
//! points the fuzz targets call, so the ordinary test suite holds what the
//! fuzzer proved, without a fuzzer or a nightly toolchain.

use std::path::{Path, PathBuf};

use stickytls::inspect::{ClientHello, Handshake, Limits, Status, fuzzing};

/// A fuzz target's entry point.
type Entry = fn(&[u8]);

/// Each fuzz target's name and entry point.
const TARGETS: [(&str, Entry); 4] = [
    ("client_stream", fuzzing::client_stream),
    ("server_stream", fuzzing::server_stream),
    ("inspect_whole", fuzzing::whole),
    ("differential", fuzzing::differential::differential),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every regular file in `dir` except dot-files and READMEs, sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            !name.starts_with('.') && !name.ends_with(".md")
        })
        .collect();
    out.sort();
    out
}

/// Replays `fuzz/<folder>/<target>/*` through each target's entry point;
/// how many inputs each target got, in the order of [`TARGETS`].
fn replay(folder: &str) -> Vec<(&'static str, usize)> {
    let mut counts = Vec::new();
    for (target, entry) in TARGETS {
        let mut n = 0;
        for path in inputs(&fuzz_dir().join(folder).join(target)) {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{target} fails on {}", path.display());
            n += 1;
        }
        counts.push((target, n));
    }
    counts
}

#[test]
fn every_seed_keeps_the_fuzz_properties() {
    for (target, n) in replay("seeds") {
        assert!(n >= 11, "only {n} seeds for {target}");
    }
}

/// Every cleartext hello and ticket of every capture: tls-parser and ours
/// agree on each, not merely "do not disagree" (neither may reject a real
/// handshake).
#[test]
fn every_captured_message_agrees_with_tls_parser() {
    use fuzzing::differential::{Verdict, verdict};
    let mut n = 0;
    for path in inputs(&fuzz_dir().join("seeds").join("differential")) {
        let msg = std::fs::read(&path).unwrap();
        assert_eq!(verdict(&msg), Verdict::Agree, "{}", path.display());
        n += 1;
    }
    // 11 scenarios: 12 ClientHellos (one the second after a retry), 12
    // ServerHellos (one a HelloRetryRequest), two TLS 1.2 tickets.
    assert!(n >= 26, "only {n} messages");
}

/// A target whose regression folder is empty would make this pass while
/// checking nothing, so every target must have at least one input.
#[test]
fn every_crash_regression_keeps_the_fuzz_properties() {
    for (target, n) in replay("regressions") {
        assert!(n >= 1, "no regression inputs for {target}");
    }
}

/// Every kind of input where tls-parser is the one that is wrong (it
/// accepts what breaks a rule of the RFCs, or cannot read what it should)
/// keeps one input in `fuzz/tls-parser-wrong/`, listed in fuzz/README.md
/// and named `<message>--<our reason>.bin`: each must still be that
/// disagreement, for that reason.
#[test]
fn every_listed_tls_parser_fault_is_still_one() {
    use fuzzing::differential::{Verdict, verdict};
    let mut n = 0;
    for path in inputs(&fuzz_dir().join("tls-parser-wrong")) {
        let data = std::fs::read(&path).unwrap();
        let reason = match verdict(&data) {
            Verdict::OursStricter(why) | Verdict::TlsParserFault(why) => why,
            other => panic!("{}: {other:?}", path.display()),
        };
        let message = match data.first() {
            Some(1) => "client-hello",
            Some(2) => "server-hello",
            Some(4) => "new-session-ticket",
            other => panic!("{}: message type {other:?}", path.display()),
        };
        let slug = reason
            .to_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap();
        assert_eq!(name, format!("{message}--{slug}.bin"));
        n += 1;
    }
    assert!(n >= 20, "only {n} listed faults");
}

/// A hello the inspector keeps is read back from the offsets its one parse
/// recorded; on every captured hello that must give exactly what a fresh
/// parse of the kept bytes gives.
#[test]
fn every_captured_hello_reads_back_exactly_as_parsed() {
    let mut n = 0;
    for path in inputs(&fuzz_dir().join("seeds")) {
        if !path.to_string_lossy().ends_with(".client.bin") {
            continue;
        }
        let stream = std::fs::read(&path).unwrap();
        let mut h = Handshake::new(Limits::default());
        assert_eq!(h.feed_client(&stream), Status::Done, "{}", path.display());
        let kept = h.client_hello().unwrap();
        let parsed = ClientHello::parse(kept.body).unwrap();
        assert_eq!(
            format!("{kept:?}"),
            format!("{parsed:?}"),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n > 10, "only {n} captured hellos");
}

/// The per-target seeds are derived from the captured pairs
/// (`cargo run --example fuzz_seeds`); a stale one would fuzz an old
/// capture or the wrong framing.
#[test]
fn per_target_seeds_match_the_captured_pairs() {
    let seeds = fuzz_dir().join("seeds");
    let mut scenarios = 0;
    let mut messages_total = 0;
    for path in inputs(&seeds) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap();
        let Some(scenario) = name.strip_suffix(".client.bin") else {
            continue;
        };
        scenarios += 1;
        let client = std::fs::read(&path).unwrap();
        let server = std::fs::read(seeds.join(format!("{scenario}.server.bin"))).unwrap();
        let framed = fuzzing::frame(0, &client, &server);
        let read = |target: &str| {
            std::fs::read(seeds.join(target).join(format!("{scenario}.bin")))
                .unwrap_or_else(|e| panic!("{target}/{scenario}.bin: {e}"))
        };
        assert_eq!(read("client_stream"), client, "{scenario}");
        assert_eq!(read("server_stream"), framed, "{scenario}");
        assert_eq!(read("inspect_whole"), framed, "{scenario}");
        for (direction, stream) in [("client", &client), ("server", &server)] {
            let messages = fuzzing::cleartext_messages(stream);
            assert!(!messages.is_empty(), "{scenario}.{direction}");
            for (n, msg) in messages.iter().enumerate() {
                let file = format!("{scenario}.{direction}.{n}");
                let stored = std::fs::read(seeds.join("differential").join(format!("{file}.bin")))
                    .unwrap_or_else(|e| panic!("differential/{file}.bin: {e}"));
                assert_eq!(&stored, msg, "{file}");
                messages_total += 1;
            }
        }
    }
    assert!(scenarios >= 11, "only {scenarios} captured pairs");
    let stored = inputs(&seeds.join("differential")).len();
    assert_eq!(stored, messages_total, "stale files in seeds/differential");
}
