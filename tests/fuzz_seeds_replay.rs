//! Replays every fuzz seed and every crash regression through the entry
//! points the fuzz targets call, so the ordinary test suite holds what the
//! fuzzer proved, without a fuzzer or a nightly toolchain.

use std::path::{Path, PathBuf};

use stickytls::inspect::{ClientHello, Handshake, Limits, Status, fuzzing};

/// A fuzz target's entry point.
type Entry = fn(&[u8]);

/// Each fuzz target's name and entry point.
const TARGETS: [(&str, Entry); 3] = [
    ("client_stream", fuzzing::client_stream),
    ("server_stream", fuzzing::server_stream),
    ("inspect_whole", fuzzing::whole),
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

/// A target whose regression folder is empty would make this pass while
/// checking nothing, so every target must have at least one input.
#[test]
fn every_crash_regression_keeps_the_fuzz_properties() {
    for (target, n) in replay("regressions") {
        assert!(n >= 1, "no regression inputs for {target}");
    }
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
    }
    assert!(scenarios >= 11, "only {scenarios} captured pairs");
}
