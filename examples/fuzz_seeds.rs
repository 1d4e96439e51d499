//! Writes the per-target fuzz seeds from the captured handshake pairs in
//! `fuzz/seeds/`, framed the way each fuzz target reads its input.
//!
//! ```text
//! cargo run --example fuzz_seeds          # after `cargo run --example capture`
//! ```
//!
//! `fuzz/seeds/<scenario>.client.bin` + `.server.bin` become
//! - `fuzz/seeds/client_stream/<scenario>.bin`: the client bytes as they are;
//! - `fuzz/seeds/server_stream/<scenario>.bin` and
//!   `fuzz/seeds/inspect_whole/<scenario>.bin`: both directions framed by
//!   `stickytls::inspect::fuzzing::frame` with limits byte 0 (the defaults);
//! - `fuzz/seeds/differential/<scenario>.<client|server>.<n>.bin`: each
//!   cleartext ClientHello, ServerHello and NewSessionTicket of either
//!   direction, as `fuzzing::cleartext_messages` cuts them.
//!
//! `tests/fuzz_seeds_replay.rs` checks that these files match the pairs, so
//! a stale seed fails the test suite.

use std::io;
use std::path::{Path, PathBuf};

use stickytls::inspect::fuzzing::{cleartext_messages, frame};

fn main() -> io::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for target in [
        "client_stream",
        "server_stream",
        "inspect_whole",
        "differential",
    ] {
        std::fs::create_dir_all(seeds.join(target))?;
    }
    for (scenario, client) in pairs(&seeds)? {
        let server = std::fs::read(seeds.join(format!("{scenario}.server.bin")))?;
        let client = std::fs::read(client)?;
        let framed = frame(0, &client, &server);
        let name = format!("{scenario}.bin");
        std::fs::write(seeds.join("client_stream").join(&name), &client)?;
        std::fs::write(seeds.join("server_stream").join(&name), &framed)?;
        std::fs::write(seeds.join("inspect_whole").join(&name), &framed)?;
        for (direction, stream) in [("client", &client), ("server", &server)] {
            for (n, msg) in cleartext_messages(stream).iter().enumerate() {
                let name = format!("{scenario}.{direction}.{n}.bin");
                std::fs::write(seeds.join("differential").join(name), msg)?;
            }
        }
        println!("{scenario}: {} framed bytes", framed.len());
    }
    Ok(())
}

/// Every `<scenario>.client.bin` in `dir` with its scenario name, sorted.
fn pairs(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(scenario) = name.strip_suffix(".client.bin") {
            out.push((scenario.to_string(), path.clone()));
        }
    }
    out.sort();
    Ok(out)
}
