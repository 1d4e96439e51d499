//! The vocabulary of a routing decision, shared by the stages that make
//! one, the counters that count them and the record kept of each: which
//! rule chose ([`Rule`]), and what is remembered afterwards
//! ([`DecisionRecord`]). No state lives here; the recent decisions are
//! kept per pool (`pool::PoolState::recent_decisions`). [`text`] is how a
//! client's SNI (and any other string a client chose) is printed.
//!
//! Its own module because both the counters (`stats`) and the pool state
//! need it while the pool state holds the counters: kept anywhere else it
//! would tie them into an import cycle.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::backend::BackendName;
use crate::inspect::KeyKind;

/// Which rule placed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Rule 1: a known key.
    Key(KeyKind),
    /// Rule 2: an unknown session re-bound by client address.
    Rebind,
    /// Rule 3: a fresh client kept on its address's recent backend.
    SourceIp,
    /// Rule 4: the balancer.
    Balancer,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Key(_) => "key",
            Rule::Rebind => "rebind",
            Rule::SourceIp => "source_ip",
            Rule::Balancer => "balancer",
        }
    }

    /// The kind of key that decided, for rule 1.
    pub fn key_kind(self) -> Option<KeyKind> {
        match self {
            Rule::Key(kind) => Some(kind),
            _ => None,
        }
    }
}

/// Why one connection reached the backend it reached: what `stickytls
/// demo` prints and what an operator asking for a pool's recent decisions
/// gets. Every field is fixed-size or shared, so recording one allocates
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// When the backend was reached (wall time, as an operator reads it).
    pub time: SystemTime,
    /// The client's address (after any PROXY header) and port.
    pub client: SocketAddr,
    /// The server name the client asked for, cut to [`Sni::MAX`] bytes.
    pub sni: Option<Sni>,
    /// The backend actually connected to (after failover).
    pub backend: BackendName,
    /// The rule that chose: `key`, `rebind`, `source_ip` or `balancer`.
    pub rule: &'static str,
    /// For rule 1, the kind of key that was known.
    pub key_kind: Option<KeyKind>,
    /// The rule's reason, e.g. "session ID known".
    pub reason: &'static str,
}

/// A server name as the client sent it, kept inline and bounded: a record
/// must not hold (or allocate for) up to 64 KiB of what a client chose.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sni {
    len: u8,
    bytes: [u8; Sni::MAX],
}

impl Sni {
    /// Bytes kept: longer than almost every real host name, and an operator
    /// recognises a name from its start.
    pub const MAX: usize = 64;

    /// The first [`Sni::MAX`] bytes of `name`.
    pub fn new(name: &[u8]) -> Sni {
        let kept = &name[..name.len().min(Sni::MAX)];
        let mut bytes = [0; Sni::MAX];
        bytes[..kept.len()].copy_from_slice(kept);
        Sni {
            len: kept.len() as u8,
            bytes,
        }
    }

    /// The bytes kept, exactly as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The name as data (the admin API's JSON): a client may send bytes
    /// that are not UTF-8 (or a cut may fall inside a character); those
    /// show as U+FFFD. Not for a terminal: see [`Sni::escaped`].
    pub fn as_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }

    /// The name for a terminal or a log line, through [`text::escape_bytes`].
    pub fn escaped(&self) -> std::borrow::Cow<'_, str> {
        text::escape_bytes(self.as_bytes())
    }
}

/// Client-chosen text made safe to print: what a client sends (its SNI,
/// its ALPN names, and every other string it chose) must not reach an
/// operator's terminal as control characters, which a terminal obeys (ESC
/// starts colour changes, cursor moves, title and clipboard writes; CR
/// rewrites the line; BEL rings). One escaping, written once, for every
/// place that prints such text: `stickytls ctl`'s tables and messages,
/// `stickytls inspect`'s report and the per-connection log line.
///
/// The escapes are unambiguous (a backslash is written doubled), so the
/// bytes sent can be read back from what is printed:
///
/// | what | written as |
/// |---|---|
/// | a C0 control (below 0x20, CR, LF and TAB included) or DEL (0x7f) | `\x1b`, `\x0d`, `\x7f` |
/// | a C1 control (U+0080 to U+009F, which some terminals obey too) | `\u{9b}` |
/// | a backslash | `\\` |
/// | a byte that is not UTF-8 (only [`escape_bytes`](text::escape_bytes)) | `\xff` |
/// | anything else | itself |
///
/// JSON output is escaped by [`text::json`] instead, which keeps it JSON.
pub(crate) mod text {
    use std::borrow::Cow;
    use std::fmt::Write as _;

    /// Whether `c` is written as an escape.
    fn needs_escape(c: char) -> bool {
        c.is_control() || c == '\\'
    }

    fn push_escaped(out: &mut String, s: &str) {
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }

    /// `s` with every control character and backslash escaped; borrowed
    /// when there is none (every real host name).
    pub(crate) fn escape(s: &str) -> Cow<'_, str> {
        if !s.chars().any(needs_escape) {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len() + 16);
        push_escaped(&mut out, s);
        Cow::Owned(out)
    }

    /// Bytes as a client sent them, as [`escape`] writes text, with each
    /// byte that is not part of a UTF-8 character written `\xNN` (rather
    /// than U+FFFD, which would hide what was sent).
    pub(crate) fn escape_bytes(b: &[u8]) -> Cow<'_, str> {
        if let Ok(s) = std::str::from_utf8(b) {
            return escape(s);
        }
        let mut out = String::with_capacity(b.len() * 2);
        for chunk in b.utf8_chunks() {
            push_escaped(&mut out, chunk.valid());
            for byte in chunk.invalid() {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
        Cow::Owned(out)
    }

    /// JSON text (as serde_json writes it) with DEL and the C1 controls
    /// written as `\u00NN` escapes too. serde_json escapes the C0 controls
    /// itself but writes those raw; outside its strings JSON text holds
    /// none, so every one replaced is inside a string, and the JSON means
    /// the same.
    pub(crate) fn json(s: &str) -> Cow<'_, str> {
        let raw = |c: char| c.is_control() && c != '\n';
        if !s.chars().any(raw) {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len() + 16);
        for c in s.chars() {
            if raw(c) {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }
}

impl std::fmt::Debug for Sni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str_lossy())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn sni_keeps_a_bounded_prefix() {
        assert_eq!(Sni::new(b"example.com").as_bytes(), b"example.com");
        let long = [b'a'; 300];
        assert_eq!(Sni::new(&long).as_bytes(), &long[..Sni::MAX]);
        assert_eq!(Sni::new(b"\xffx").as_str_lossy(), "\u{fffd}x");
        assert_eq!(Sni::new(b"\xffx\x1b").escaped(), "\\xffx\\x1b");
        assert_eq!(Sni::new(b"example.com").escaped(), "example.com");
    }

    #[test]
    fn escaped_text_holds_no_control_and_says_what_was_sent() {
        let sent = "a\x1b]0;t\x07\r\n\t\x00\x7f\u{9b}\\x1b é.example";
        let shown = text::escape(sent);
        assert_eq!(
            shown,
            "a\\x1b]0;t\\x07\\x0d\\x0a\\x09\\x00\\x7f\\u{9b}\\\\x1b é.example"
        );
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(matches!(text::escape("www.example.com"), Cow::Borrowed(_)));
        // Every byte value: nothing below 0x20, no DEL, no C1 gets through.
        let all: Vec<u8> = (0..=255).collect();
        let shown = text::escape_bytes(&all);
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.starts_with("\\x00\\x01"), "{shown}");
        assert!(shown.contains("|}~\\x7f\\x80\\x81"), "{shown}");
        assert!(shown.ends_with("\\xfe\\xff"), "{shown}");
        assert_eq!(text::escape_bytes(b"ok\xc2\x9bok\xc3"), "ok\\u{9b}ok\\xc3");
    }

    #[test]
    fn json_keeps_its_meaning_with_del_and_c1_escaped() {
        let v = serde_json::json!({ "sni": "a\x1b\x7f\u{9b}\\b", "n": 1 });
        let raw = serde_json::to_string_pretty(&v).unwrap();
        assert!(raw.contains('\x7f'), "serde_json writes DEL raw: {raw:?}");
        let safe = text::json(&raw);
        assert!(
            !safe.chars().any(|c| c.is_control() && c != '\n'),
            "{safe:?}"
        );
        assert!(safe.contains("\\u001b") && safe.contains("\\u007f") && safe.contains("\\u009b"));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn only_rule_one_has_a_key_kind() {
        assert_eq!(Rule::Key(KeyKind::Ticket).key_kind(), Some(KeyKind::Ticket));
        assert_eq!(Rule::Rebind.key_kind(), None);
        assert_eq!(Rule::Balancer.key_kind(), None);
    }
}
