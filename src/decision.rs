//! The vocabulary of a routing decision, shared by the stages that make
//! one, the counters that count them and the record kept of each: which
//! rule chose ([`Rule`]), and what is remembered afterwards
//! ([`DecisionRecord`]). No state lives here; the recent decisions are
//! kept per pool (`pool::PoolState::recent_decisions`).
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

    /// The name for display: a client may send bytes that are not UTF-8
    /// (or a cut may fall inside a character); those show as U+FFFD.
    pub fn as_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl std::fmt::Debug for Sni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_keeps_a_bounded_prefix() {
        assert_eq!(Sni::new(b"example.com").as_bytes(), b"example.com");
        let long = [b'a'; 300];
        assert_eq!(Sni::new(&long).as_bytes(), &long[..Sni::MAX]);
        assert_eq!(Sni::new(b"\xffx").as_str_lossy(), "\u{fffd}x");
    }

    #[test]
    fn only_rule_one_has_a_key_kind() {
        assert_eq!(Rule::Key(KeyKind::Ticket).key_kind(), Some(KeyKind::Ticket));
        assert_eq!(Rule::Rebind.key_kind(), None);
        assert_eq!(Rule::Balancer.key_kind(), None);
    }
}
