//! Sorts a fuzz corpus by what the differential target concluded about
//! each input, to find the disagreements where tls-parser is the one that
//! is wrong (ours rejects a message it accepts) and keep one input each:
//!
//! ```text
//! cargo run -p stickytls-inspect --features differential \
//!     --example differential_verdicts -- fuzz/corpus/differential
//! ```
//!
//! Prints, for every verdict but agreement, how many inputs reached it and
//! the path of the smallest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use stickytls_inspect::fuzzing::differential::{Verdict, verdict};

fn main() -> std::io::Result<()> {
    let mut by_verdict: BTreeMap<String, (usize, usize, PathBuf)> = BTreeMap::new();
    let mut total = 0;
    for dir in std::env::args().skip(1) {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let data = std::fs::read(&path)?;
            total += 1;
            let key = match verdict(&data) {
                Verdict::Agree | Verdict::NotCompared => continue,
                Verdict::OursStricter(why) => format!("type {}: ours stricter: {why}", data[0]),
                Verdict::TlsParserFault(why) => format!("type {}: tls-parser: {why}", data[0]),
                Verdict::Disagree(why) => format!("DISAGREE: {why}"),
            };
            let slot = by_verdict
                .entry(key)
                .or_insert((0, usize::MAX, path.clone()));
            slot.0 += 1;
            if data.len() < slot.1 {
                (slot.1, slot.2) = (data.len(), path);
            }
        }
    }
    println!("{total} inputs");
    for (key, (n, len, path)) in by_verdict {
        println!("{n:>6}  {key}  (smallest: {len} bytes, {})", path.display());
    }
    Ok(())
}
