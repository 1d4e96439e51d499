//! The affinity table: which backend owns which TLS session key.
//!
//! Everything the router knows about sessions goes through the small
//! [`AffinityStore`] interface, so that a store shared by several router
//! instances stands in for the in-process [`MemoryStore`] without the
//! routing or learning code changing: [`redis::RedisStore`] keeps a
//! `MemoryStore` in front of a Redis server as a near cache.
//!
//! Keys are 16-byte digests of (kind, bytes): tickets can be kilobytes, and a
//! digest keeps every entry the same small size. The digest is SHA-256, not
//! a keyed hash, because every instance and every restart must compute the
//! same key for the same ticket; the maps that hold these keys still use a
//! randomly keyed hasher ([`KeyedState`]), so chosen keys cannot degrade
//! them (HashDoS).
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

pub mod clients;
pub mod memory;
mod names;
pub mod redis;
pub mod rotation;
mod shards;

use sha2::{Digest, Sha256};

use crate::backend::BackendName;
pub use crate::inspect::KeyKind;
use clients::{ClientIndex, ClientPrefix, Confirmed};
pub use memory::MemoryStore;

/// The hasher of the maps a connection touches that are keyed by what
/// clients choose (table keys, client prefixes): foldhash, keyed per
/// process and per map from the OS's random source, never fixed. It costs
/// a tenth of SipHash's instructions per key: a resumed connection hashes
/// about eight such keys (docs/performance.md, "Levers tried for the
/// per-connection cost"). foldhash's own `RandomState` seeds from address
/// layout and the time only; these seeds come from std's `RandomState`,
/// whose keys the OS draws.
pub(crate) type KeyedState = foldhash::fast::SeedableRandomState;

/// A [`KeyedState`] with a fresh per-map seed and the process's shared one.
pub(crate) fn keyed_state() -> KeyedState {
    static SHARED: std::sync::OnceLock<foldhash::SharedSeed> = std::sync::OnceLock::new();
    let shared = SHARED.get_or_init(|| foldhash::SharedSeed::from_u64(os_random()));
    KeyedState::with_seed(os_random(), shared)
}

/// 64 random bits: a SipHash of nothing under a fresh std `RandomState`,
/// whose keys come from the OS (each later one on a thread differs by one
/// in a key, which SipHash turns into an unrelated output).
fn os_random() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(())
}

/// Locks one of this layer's mutexes (an LRU shard, the Redis link),
/// taking the guard back from a poisoned lock. Poisoning follows a panic
/// in another holder, but no holder runs code that can panic halfway
/// through a change to what the lock guards (an LRU operation on keys of
/// plain bytes, a swap of an `Option`), so the data is whole; and one
/// panicked task must not make every later lookup panic too.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A key of the affinity table: the digest of a session ID, ticket, PSK
/// identity or ticket key name, with its kind folded in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 16]);

impl Key {
    /// The table key for `bytes` of the given kind.
    pub fn new(kind: KeyKind, bytes: &[u8]) -> Key {
        let mut h = Sha256::new();
        h.update([kind as u8]);
        h.update(bytes);
        let d: [u8; 32] = h.finalize().into();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        Key(k)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Key {
        Key(bytes)
    }

    /// A short tag of this key ([`TAG_BITS`] bits), used to tell two keys
    /// apart cheaply. Two distinct keys share a tag one time in 8,192; a
    /// narrower tag (it was 7 bits) left a key name unroutable after two
    /// confirmations often enough to be seen.
    pub fn tag(&self) -> u16 {
        u16::from_le_bytes([self.0[14], self.0[15]]) & TAG_MASK
    }

    /// The first bytes in hex, for logs.
    pub fn short_hex(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.short_hex())
    }
}

/// What a ticket key name is known for. Ordinary keys (session IDs,
/// tickets, identities) are always [`KeyState::Owned`].
///
/// A key name is only a hint: many servers start every ticket of one key
/// with the same 16 bytes, but some use random IVs and a farm may share one
/// key. So a name becomes a route only after two distinct tickets with it
/// were confirmed on the same backend, is never routed on once seen on two
/// backends, and is not routed to a backend that rejected it after
/// rotating to a newer key (docs/routing.md, "Key names").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// A session key owned by the backend.
    Owned,
    /// One ticket with this name was confirmed on the backend; `tag` (its
    /// key's [`Key::tag`]) tells the next one apart.
    Candidate { tag: u16 },
    /// Two distinct tickets with this name were confirmed on the backend.
    Routable,
    /// Confirmed on two backends: a farm-wide ticket key, never routed on.
    Shared,
    /// The backend rejected a resumption under this name after it had
    /// confirmed a newer one: it rotated its ticket key.
    Rejected,
}

/// Bits of a [`Key::tag`]: with the state's three, a state fits in a `u16`.
pub(crate) const TAG_BITS: u32 = 13;
const TAG_MASK: u16 = (1 << TAG_BITS) - 1;

impl KeyState {
    /// The state in 16 bits (three for the kind, thirteen for a tag), the
    /// form a table entry keeps.
    pub fn to_bits(self) -> u16 {
        let (state, tag) = match self {
            KeyState::Owned => (0, 0),
            KeyState::Candidate { tag } => (1, tag & TAG_MASK),
            KeyState::Routable => (2, 0),
            KeyState::Shared => (3, 0),
            KeyState::Rejected => (4, 0),
        };
        state << TAG_BITS | tag
    }

    /// The inverse of [`to_bits`](KeyState::to_bits); unknown kinds read as
    /// [`KeyState::Owned`] (so a reader of stored bits checks
    /// `from_bits(b).to_bits() == b`).
    pub fn from_bits(bits: u16) -> KeyState {
        match bits >> TAG_BITS {
            1 => KeyState::Candidate {
                tag: bits & TAG_MASK,
            },
            2 => KeyState::Routable,
            3 => KeyState::Shared,
            4 => KeyState::Rejected,
            _ => KeyState::Owned,
        }
    }
}

/// A table value: the owner backend, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub backend: BackendName,
    pub state: KeyState,
    /// The session's protocol version and cipher suite, for a session ID,
    /// ticket or identity: what decides whether a later full handshake on
    /// the owner could have resumed it ([`Session::could_resume`]).
    pub session: Session,
}

impl Binding {
    /// A session key owned by `backend`.
    pub fn owned(backend: BackendName, session: Session) -> Binding {
        Binding {
            backend,
            state: KeyState::Owned,
            session,
        }
    }

    /// A ticket key name's state (names carry no session).
    pub fn name(backend: BackendName, state: KeyState) -> Binding {
        Binding {
            backend,
            state,
            session: Session::UNKNOWN,
        }
    }
}

/// The protocol version and cipher suite of a session, as the ServerHello
/// that created or confirmed it chose them (RFC 8446 4.1.3: a resumption
/// keeps both, or for TLS 1.3 at least the hash). Zero for "not known":
/// key names, and entries stored by a build that did not keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Session {
    pub version: u16,
    pub cipher: u16,
}

impl Session {
    pub const UNKNOWN: Session = Session {
        version: 0,
        cipher: 0,
    };

    pub fn is_known(self) -> bool {
        self != Session::UNKNOWN
    }

    /// Whether a handshake whose ServerHello chose `version` and `cipher`
    /// could have resumed this session: the same version and cipher suite.
    /// A full handshake that could not have (a TLS 1.3 answer to a hello
    /// carrying a TLS 1.2 session ID, a TLS 1.2 hello without the session's
    /// suite) says nothing of whether the owner still holds the session.
    /// An unknown session answers yes: what every entry got before the
    /// session was kept.
    pub fn could_resume(self, version: u16, cipher: u16) -> bool {
        !self.is_known() || (self.version == version && self.cipher == cipher)
    }
}

/// One table entry as a state file keeps it: its lifetimes as ages, which
/// mean the same after a restart, where the clock's readings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedEntry {
    pub key: Key,
    /// Index into the backend names that go with the entries (those
    /// [`AffinityStore::save`] returns, or those given to `restore`).
    pub backend: u16,
    pub state: KeyState,
    pub session: Session,
    /// Seconds since the entry's last hit (inactivity expiry).
    pub idle: u32,
    /// Seconds since it was put (absolute expiry).
    pub age: u32,
}

/// A binding with its timings, read without refreshing it (the admin
/// API's lookup must not keep an entry alive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    pub binding: Binding,
    /// Since the entry was bound.
    pub age: std::time::Duration,
    /// Until it expires unless hit again (inactivity or absolute maximum,
    /// whichever comes first).
    pub expires_in: std::time::Duration,
}

/// The interface every affinity store implements.
///
/// Expiry (inactivity, refreshed by `get`; optional absolute maximum) and
/// the size bound are the store's business: a `get` never returns an
/// expired entry.
pub trait AffinityStore: Send + Sync + std::fmt::Debug {
    /// The binding of `key`, refreshing its inactivity timer.
    fn get(&self, key: &Key) -> Option<Binding>;
    /// Binds `key`, replacing any binding (and restarting its age).
    fn put(&self, key: Key, binding: Binding);
    /// Changes the binding of a present key without restarting its age.
    fn update(&self, key: &Key, binding: Binding) -> bool;
    fn remove(&self, key: &Key);
    /// Removes `key` everywhere the store keeps it: an operator's
    /// decision (the admin API), where [`AffinityStore::remove`] is this
    /// router's own finding and may not hold for other instances.
    fn forget(&self, key: &Key) {
        self.remove(key);
    }
    /// The binding of `key` and its timings, without refreshing it.
    fn peek(&self, key: &Key) -> Option<Peeked>;
    /// Entries currently held (expired ones may still be counted).
    fn len(&self) -> usize;
    /// Hands `visit` the live entries one batch at a time, each batch
    /// least recently used first, holding a batch's lock only while it is
    /// copied; returns the backend names the entries' `backend` indexes.
    /// A store that keeps nothing in this process (one shared by several
    /// routers) saves nothing.
    fn save(&self, visit: &mut dyn FnMut(&[SavedEntry])) -> Vec<BackendName> {
        let _ = visit;
        Vec::new()
    }
    /// Puts saved entries back, given least recently used first, with the
    /// ages they have now; `names[i]` is the backend `backend: i` means.
    /// Entries already expired by this store's rules are skipped. Returns
    /// how many were put.
    fn restore(&self, names: &[BackendName], entries: &[SavedEntry]) -> usize {
        let _ = (names, entries);
        0
    }
    /// Entries evicted so far to make room for new ones (not those that
    /// expired or were removed).
    fn evictions(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Advances ticket key name `name` after a ticket or identity with it
    /// (whose key's tag is `tag`) was confirmed on `backend`, by
    /// [`next_key_name_state`]. A shared store applies the same step to its
    /// shared copy atomically, so that confirmations seen by different
    /// instances add up, which writing the resulting state could not do.
    fn confirm_key_name(&self, name: Key, backend: &BackendName, tag: u16) -> NameStep {
        let before = self.get(&name);
        let after = next_key_name_state(before.as_ref(), backend, tag);
        if before.is_none() || !self.update(&name, after.clone()) {
            self.put(name, after.clone());
        }
        NameStep { before, after }
    }

    /// Marks key name `name` rejected by `backend` (a full handshake there
    /// for a ticket with it, after `backend` confirmed a newer name: the
    /// caller checks that evidence, [`rotation::KeyNameLog`]), unless it
    /// names another backend or is shared. As
    /// [`AffinityStore::confirm_key_name`], a step rather than a state.
    fn reject_key_name(&self, name: &Key, backend: &BackendName) {
        if let Some(b) = self.get(name) {
            if &b.backend == backend && b.state != KeyState::Shared {
                self.update(name, Binding::name(b.backend, KeyState::Rejected));
            }
        }
    }

    /// Tells a shared store about a client's confirmed connection, so that
    /// another instance can re-bind the client ([`ClientIndex`]). The
    /// in-process index is updated by the caller either way.
    fn share_client(&self, client: ClientPrefix, confirmed: &Confirmed) {
        let _ = (client, confirmed);
    }

    /// Whether this store shares its state with other processes: only
    /// then is a [`Lookup`] worth building for a connection.
    fn is_shared(&self) -> bool {
        false
    }

    /// For a store that keeps state elsewhere: a wait that fetches what
    /// `lookup` names into this process (the table and `lookup.clients`)
    /// before the connection is routed, bounded by the store's lookup
    /// budget. `None`: nothing to wait for (an in-process store, or every
    /// key is known here already).
    fn prefetch(&self, lookup: Lookup) -> Option<Prefetch> {
        let _ = lookup;
        None
    }

    /// The shared store's state and counters, for the admin API; `None`
    /// for an in-process store.
    fn status(&self) -> Option<StoreStatus> {
        None
    }
}

/// A key name's state before and after a confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameStep {
    pub before: Option<Binding>,
    pub after: Binding,
}

/// The next state of a ticket key name known as `current` after a ticket
/// or identity with it (key tag `tag`) was confirmed on `backend`: a first
/// confirmation makes a candidate, a second with another tag on the same
/// backend makes it routable, one on another backend makes it shared
/// (kept under the first owner's name; a shared name routes nowhere). A
/// name its backend rejected and then accepts again is alive there after
/// all: it starts over as a candidate.
pub fn next_key_name_state(current: Option<&Binding>, backend: &BackendName, tag: u16) -> Binding {
    let (owner, state) = match current {
        None => (backend.clone(), KeyState::Candidate { tag }),
        Some(b) if &b.backend != backend => (b.backend.clone(), KeyState::Shared),
        Some(b) => match b.state {
            KeyState::Candidate { tag: first } if first != tag => {
                (b.backend.clone(), KeyState::Routable)
            }
            KeyState::Rejected => (b.backend.clone(), KeyState::Candidate { tag }),
            state => (b.backend.clone(), state),
        },
    };
    Binding::name(owner, state)
}

/// What a connection's hello offers, for [`AffinityStore::prefetch`].
#[derive(Debug, Clone)]
pub struct Lookup {
    /// Session IDs, tickets and PSK identities offered.
    pub keys: Vec<Key>,
    /// Their ticket key names.
    pub names: Vec<Key>,
    pub client: ClientPrefix,
    /// The pool's client index, which a client record found is put in.
    pub clients: std::sync::Arc<ClientIndex>,
    /// The pool's configured backends: a binding or client record naming
    /// any other is not taken in (anyone who can write to the store could
    /// otherwise fill this process's name interner, 65,535 names, with
    /// names that route nowhere).
    pub backends: std::sync::Arc<[BackendName]>,
}

/// The wait [`AffinityStore::prefetch`] returns: it never fails (the
/// outcome is counted by the store) and ends within the lookup budget.
pub(crate) type Prefetch = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A shared store's state, as the admin API and `/metrics` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStatus {
    pub kind: &'static str,
    /// Connected to the shared store now.
    pub up: bool,
    /// Lookups by outcome: `hit` (something found), `miss`, `timeout`
    /// (not answered within the budget), `error` (unreachable or failed).
    pub lookups_hit: u64,
    pub lookups_miss: u64,
    pub lookups_timeout: u64,
    pub lookups_error: u64,
    /// Values read that were not ours, not well formed, or naming a
    /// backend the pool does not configure (each a miss).
    pub corrupt_values: u64,
    /// Failed requests by operation.
    pub errors_connect: u64,
    pub errors_lookup: u64,
    pub errors_write: u64,
    /// Writes sent, and writes dropped (queue full, or the store down).
    pub writes: u64,
    pub writes_dropped: u64,
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn key_states_survive_their_sixteen_bit_form() {
        let key = Key::new(KeyKind::Ticket, b"a ticket");
        for state in [
            KeyState::Owned,
            KeyState::Candidate { tag: 0 },
            KeyState::Candidate { tag: key.tag() },
            KeyState::Candidate { tag: TAG_MASK },
            KeyState::Routable,
            KeyState::Shared,
            KeyState::Rejected,
        ] {
            assert_eq!(KeyState::from_bits(state.to_bits()), state);
        }
    }

    #[test]
    fn tags_of_distinct_keys_rarely_collide() {
        // Key names need two confirmations with different tags: count how
        // often consecutive keys share one over many keys.
        let keys: Vec<Key> = (0u32..20_000)
            .map(|i| Key::new(KeyKind::PskIdentity, &i.to_le_bytes()))
            .collect();
        let same = keys.windows(2).filter(|w| w[0].tag() == w[1].tag()).count();
        // Expected 20,000 / 8,192, about 2.4; a 7-bit tag gave about 156.
        assert!(same < 15, "{same} collisions");
        assert!(keys.iter().all(|k| k.tag() <= TAG_MASK));
    }
}
