//! The command-line tools that are clients of a router, not part of one:
//! they talk to a running router from outside (or, for `inspect`, read
//! captured bytes), and nothing in the router depends on them.
//!
//! - [`ctl`]: `stickytls ctl`, the admin API's client.
//! - [`inspect`]: `stickytls inspect`, the handshake inspector on captured
//!   bytes.
//! - [`selftest`]: `stickytls selftest`, a client that checks a live router
//!   sends every resumption to its issuing backend (the default-on `demo`
//!   feature, which brings real TLS peers: the `stickytls-peers` crate).
//! - [`demo`]: `stickytls demo`, the router shown on real TLS, with those
//!   peers (the same feature; without it the router links neither rustls
//!   nor rcgen).
//!
//! Each has a `cli` function that does what its subcommand does, prints
//! the outcome and returns the exit code; the binary only parses the
//! command line.

use std::future::Future;
use std::io::{self, Write as _};
use std::process::ExitCode;

pub mod ctl;
#[cfg(feature = "demo")]
pub mod demo;
pub mod inspect;
#[cfg(feature = "demo")]
pub mod selftest;

/// Exit code for usage errors, as clap uses.
pub(crate) const USAGE: u8 = 2;

/// Runs `work` on a runtime of this thread: a client does one thing at a
/// time, and needs no worker threads for it. `Err` is the exit code when
/// there is no runtime (said on stderr, as `stickytls TOOL: ...`).
fn block_on<F: Future>(tool: &str, work: F) -> Result<F::Output, ExitCode> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Ok(rt.block_on(work)),
        Err(e) => {
            print_err(&format!("stickytls {tool}: cannot start the runtime: {e}"));
            Err(ExitCode::from(1))
        }
    }
}

/// Writes a tool's output on stdout. A reader that went away (`stickytls
/// inspect FILE | head -1`) has had all it wanted: that is a quiet end,
/// not an error (`println!` would panic on it). Any other failure to write
/// (a full disk) is said on stderr, as `stickytls TOOL: ...`, and the
/// process exits 1.
fn print(tool: &str, text: &str) -> Result<(), ExitCode> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            print_err(&format!("stickytls {tool}: cannot write the output: {e}"));
            Err(ExitCode::from(1))
        }
    }
}

/// Writes a line on stderr; a closed stderr is ignored (`eprintln!` would
/// panic on it).
fn print_err(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}
