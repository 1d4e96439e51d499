//! Which ticket key names each backend confirmed lately, and in what
//! order: the evidence that a backend rotated its ticket key.
//!
//! A key name is the first 16 bytes of every ticket a backend issues, so
//! every client holding one ticket knows it, and can offer `name ||
//! garbage` to make the owner answer with a full handshake. Such a refusal
//! proves nothing. What no client can forge is a confirmation: a ticket or
//! identity accepted by the backend (or issued by it in a TLS 1.2
//! NewSessionTicket), read from the server's reply. So a name loses its
//! routing only when its backend refuses it after confirming a *newer*
//! name: one it confirmed more recently than this one, and that first
//! appeared after this one did (docs/routing.md, "Key names").
//!
//! Kept in process memory, a few names per backend, striped by backend
//! name so that a confirmation locks only its backend's stripe; the log is
//! touched only when a connection confirms a named ticket or a backend
//! refuses one, never to route. Ticket-key discovery (the router fetching
//! each backend's tickets itself) can feed [`KeyNameLog::confirmed`] the
//! same evidence.

use std::sync::Mutex;

use super::{Key, lock};
use crate::backend::BackendName;

/// Names remembered per backend: the current key, the one before it (the
/// one a rotating server still decrypts) and a little history.
const NAMES_PER_BACKEND: usize = 4;
/// Stripes of the log: backends of one pool rarely share one.
const STRIPES: usize = 16;
/// Most names one stripe holds, whatever the number of backends that hash
/// to it (backend names come from the configuration, but reloads can add
/// new ones for the life of the process).
const MAX_PER_STRIPE: usize = 64;

/// Per backend, the last few key names it confirmed.
#[derive(Debug, Default)]
pub struct KeyNameLog {
    stripes: [Mutex<Stripe>; STRIPES],
}

#[derive(Debug, Default)]
struct Stripe {
    /// Orders the events of this stripe's backends (comparisons are only
    /// ever between names of one backend, so one counter per stripe does).
    seq: u64,
    seen: Vec<Seen>,
}

/// One name confirmed on one backend.
#[derive(Debug, Clone)]
struct Seen {
    backend: BackendName,
    name: Key,
    /// When this process first saw the backend confirm it.
    first: u64,
    /// When it last did.
    last: u64,
}

impl KeyNameLog {
    fn stripe(&self, backend: &BackendName) -> std::sync::MutexGuard<'_, Stripe> {
        // Backend names come from the configuration, not from clients: a
        // fixed-key hash spreads them well enough.
        use std::hash::BuildHasher;
        let h = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default()
            .hash_one(backend.as_bytes());
        let i = (h % STRIPES as u64) as usize;
        // `i < STRIPES`: always some stripe; the first one otherwise.
        lock(self.stripes.get(i).unwrap_or(&self.stripes[0]))
    }

    /// `backend` confirmed a ticket or identity whose key name is `name`.
    pub fn confirmed(&self, backend: &BackendName, name: Key) {
        let mut s = self.stripe(backend);
        s.seq += 1;
        let now = s.seq;
        if let Some(e) = s
            .seen
            .iter_mut()
            .find(|e| e.name == name && &e.backend == backend)
        {
            e.last = now;
            return;
        }
        s.seen.push(Seen {
            backend: backend.clone(),
            name,
            first: now,
            last: now,
        });
        let mine = s.seen.iter().filter(|e| &e.backend == backend).count();
        if mine > NAMES_PER_BACKEND {
            forget_stalest(&mut s.seen, |e| &e.backend == backend);
        }
        if s.seen.len() > MAX_PER_STRIPE {
            forget_stalest(&mut s.seen, |_| true);
        }
    }

    /// Whether `backend` rotated away from `name`: the name it confirmed
    /// last is another, which first appeared after `name` did. A name this
    /// process never saw `backend` confirm (learned before a restart, from
    /// another instance, or older than the names kept) counts as older
    /// than every name it did see. No name confirmed at all: no evidence.
    pub fn rotated_past(&self, backend: &BackendName, name: Key) -> bool {
        let s = self.stripe(backend);
        let mine = || s.seen.iter().filter(|e| &e.backend == backend);
        let Some(latest) = mine().max_by_key(|e| e.last) else {
            return false;
        };
        if latest.name == name {
            return false;
        }
        match mine().find(|e| e.name == name) {
            Some(this) => latest.first > this.first,
            None => true,
        }
    }
}

/// Removes the least recently confirmed of the entries `which` selects.
fn forget_stalest(seen: &mut Vec<Seen>, which: impl Fn(&Seen) -> bool) {
    let stalest = seen
        .iter()
        .enumerate()
        .filter(|(_, e)| which(e))
        .min_by_key(|(_, e)| e.last)
        .map(|(i, _)| i);
    if let Some(i) = stalest {
        seen.swap_remove(i);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use crate::inspect::KeyKind;
    use std::sync::Arc;

    fn name(n: &str) -> Key {
        Key::new(KeyKind::TicketKeyName, n.as_bytes())
    }

    #[test]
    fn no_confirmation_or_only_this_name_is_no_evidence() {
        let log = KeyNameLog::default();
        let a: BackendName = Arc::from("a");
        assert!(!log.rotated_past(&a, name("old")));
        log.confirmed(&a, name("old"));
        assert!(!log.rotated_past(&a, name("old")));
        // Another backend's new name says nothing of this one.
        log.confirmed(&Arc::from("b"), name("new"));
        assert!(!log.rotated_past(&a, name("old")));
    }

    #[test]
    fn a_newer_name_confirmed_last_is_a_rotation() {
        let log = KeyNameLog::default();
        let a: BackendName = Arc::from("a");
        log.confirmed(&a, name("old"));
        log.confirmed(&a, name("new"));
        assert!(log.rotated_past(&a, name("old")));
        assert!(!log.rotated_past(&a, name("new")));
        // The old name accepted again (a server that still decrypts it):
        // not a rotation back, and never evidence against the newer name.
        log.confirmed(&a, name("old"));
        assert!(!log.rotated_past(&a, name("old")));
        assert!(!log.rotated_past(&a, name("new")));
    }

    #[test]
    fn a_name_never_seen_here_counts_as_older_than_any_seen() {
        let log = KeyNameLog::default();
        let a: BackendName = Arc::from("a");
        log.confirmed(&a, name("after a restart"));
        assert!(log.rotated_past(&a, name("from the state file")));
    }

    #[test]
    fn each_backend_keeps_its_last_few_names() {
        let log = KeyNameLog::default();
        let a: BackendName = Arc::from("a");
        for i in 0..10 {
            log.confirmed(&a, name(&i.to_string()));
        }
        let s = log.stripe(&a);
        assert_eq!(s.seen.len(), NAMES_PER_BACKEND);
        assert!(s.seen.iter().all(|e| e.first > 6));
        drop(s);
        for i in 0..200 {
            log.confirmed(&Arc::from(format!("b{i}").as_str()), name("x"));
        }
        for s in &log.stripes {
            assert!(lock(s).seen.len() <= MAX_PER_STRIPE);
        }
    }
}
