//! `stickytls inspect`: what the handshake inspector sees in captured
//! bytes, as JSON. Offline: it reads files (or stdin), never the network.
//!
//! Each side's `status` is the one the router acts on (the inspector
//! crate's `report` module says how), and the exit code follows it. The
//! captured bytes are a client's: the JSON escapes every control
//! character in what it chose (SNI, ALPN) as `decision::text::json` does.

use std::io::Read;
use std::process::ExitCode;

use crate::decision::text;
use crate::inspect::{Limits, report::report};

/// `stickytls inspect`'s command line: one capture per direction.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Client -> server bytes ("-" for stdin).
    #[arg(value_name = "CLIENT_FILE")]
    client: String,
    /// Server -> client bytes ("-" for stdin).
    #[arg(value_name = "SERVER_FILE")]
    server: Option<String>,
    /// The files hold hex text (whitespace ignored) rather than raw bytes.
    #[arg(long)]
    hex: bool,
}

/// A capture that could not be read: the operator's file.
#[derive(Debug, thiserror::Error)]
enum InputError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not hex text: {source} (whitespace not counted)")]
    Hex {
        path: String,
        #[source]
        source: hex::FromHexError,
    },
}

/// Prints the inspector's report and says how the process exits: 0 when
/// every side given is complete, 1 otherwise (or when the report cannot
/// be written; a reader that closed the pipe is no failure), 2 when a file
/// cannot be read (printed on stderr).
pub fn cli(args: &Args) -> ExitCode {
    if args.client == "-" && args.server.as_deref() == Some("-") {
        super::print_err("stickytls inspect: only one of CLIENT_FILE and SERVER_FILE can be stdin");
        return ExitCode::from(super::USAGE);
    }
    let read = |path: &str| read(path, args.hex);
    let sides = read(&args.client).and_then(|client| {
        let server = args.server.as_deref().map(read).transpose()?;
        Ok((client, server))
    });
    let (client, server) = match sides {
        Ok(sides) => sides,
        Err(e) => {
            super::print_err(&format!(
                "stickytls inspect: {}",
                text::escape(&e.to_string())
            ));
            return ExitCode::from(super::USAGE);
        }
    };
    let (json, complete) = report(&client, server.as_deref(), Limits::default());
    let mut out = text::json(&serde_json::to_string_pretty(&json).unwrap_or_default()).into_owned();
    out.push('\n');
    if let Err(code) = super::print("inspect", &out) {
        return code;
    }
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The bytes at `path` ("-": stdin), decoded from hex text with `hex`.
fn read(path: &str, hex: bool) -> Result<Vec<u8>, InputError> {
    let mut raw = Vec::new();
    let res = if path == "-" {
        std::io::stdin().read_to_end(&mut raw).map(|_| ())
    } else {
        std::fs::read(path).map(|b| raw = b)
    };
    res.map_err(|source| InputError::Read {
        path: path.to_string(),
        source,
    })?;
    if !hex {
        return Ok(raw);
    }
    from_hex(&raw).map_err(|source| InputError::Hex {
        path: path.to_string(),
        source,
    })
}

/// Hex text to bytes, ignoring whitespace (captures are often wrapped or
/// grouped).
fn from_hex(text: &[u8]) -> Result<Vec<u8>, hex::FromHexError> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_text_decodes_across_whitespace_and_refuses_what_is_not_hex() {
        assert_eq!(
            from_hex(b"16 03\n01\t00 2a\n").unwrap(),
            [0x16, 3, 1, 0, 0x2a]
        );
        assert_eq!(from_hex(b"").unwrap(), Vec::<u8>::new());
        assert_eq!(from_hex(b"160"), Err(hex::FromHexError::OddLength));
        assert!(matches!(
            from_hex(b"16 zz"),
            Err(hex::FromHexError::InvalidHexCharacter { c: 'z', .. })
        ));
    }
}
