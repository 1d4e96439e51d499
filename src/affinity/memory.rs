//! The in-process affinity store: LRU shards behind mutexes.
//!
//! `lru::LruCache` is not thread-safe, so the table is split into shards
//! chosen by the key's first eight bytes (keys are SHA-256 digests, so
//! shards fill evenly); a lookup holds one shard's lock for a few hundred
//! nanoseconds.
//! An entry is 16 bytes of key and 16 of value; backend names are interned
//! to a 2-byte index so entries do not each carry a pointer.

use std::num::NonZeroUsize;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lru::LruCache;

use super::names::Interner;
use super::shards::Shards;
use super::{AffinityStore, Binding, Key, KeyState, KeyedState, Peeked, SavedEntry, Session};
use crate::backend::BackendName;
use crate::clock::{Clock, secs};

/// One table value, kept small: it is stored once per entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Clock seconds of the last hit: inactivity expiry.
    touched: u32,
    /// Clock seconds of the last `put`: absolute expiry.
    created: u32,
    backend: u16,
    /// [`KeyState::to_bits`].
    state: u16,
    /// [`Session`]'s version and cipher suite (zero: unknown).
    version: u16,
    cipher: u16,
}

impl Entry {
    fn session(&self) -> Session {
        Session {
            version: self.version,
            cipher: self.cipher,
        }
    }
}

/// Settings of a [`MemoryStore`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryStoreConfig {
    pub capacity: usize,
    pub inactivity: Duration,
    pub absolute_max: Option<Duration>,
}

/// Most shards: enough that threads rarely meet on one lock.
const MAX_SHARDS: usize = 128;

/// How to split a table of `total` entries: `(shards, entries per shard)`.
///
/// A shard's hash index has a power-of-two number of slots and holds at
/// most 7/8 of them, so a shard capacity just past such a boundary pays for
/// almost twice the slots it uses (at 1,000,000 entries in 64 equal shards:
/// 35 bytes of index per entry instead of 19, beside the 64 of the entry).
/// So each shard gets exactly 7/8 of a power of two, and the number of
/// shards (not a power of two) makes up the total: 1,000,000 entries become
/// 70 shards of 14,336 (1,003,520).
pub(crate) fn layout(total: usize) -> (usize, usize) {
    let total = total.max(1);
    let mut slots = 8usize;
    loop {
        let per_shard = slots / 8 * 7;
        let shards = total.div_ceil(per_shard);
        if shards <= MAX_SHARDS {
            return (shards, per_shard);
        }
        slots *= 2;
    }
}

#[derive(Debug)]
pub struct MemoryStore {
    shards: Shards<Key, Entry>,
    /// Interned backend names; an entry's `backend` indexes them.
    names: Interner,
    clock: Clock,
    /// Added to the clock's seconds in every timestamp, so that an entry
    /// restored from a state file can be older than the process (its
    /// timestamp is then still a positive number): the longest lifetime an
    /// entry can have.
    origin: u32,
    inactivity: u32,
    absolute_max: Option<u32>,
    /// Entries pushed out by the LRU bound: a table too small for its
    /// traffic shows here before it shows as lost stickiness.
    evictions: AtomicU64,
}

impl MemoryStore {
    pub fn new(cfg: MemoryStoreConfig, clock: Clock) -> Self {
        let (shards, per_shard) = layout(cfg.capacity);
        let per_shard = NonZeroUsize::new(per_shard).unwrap_or(NonZeroUsize::MIN);
        let inactivity = secs(cfg.inactivity).max(1);
        let absolute_max = cfg.absolute_max.map(secs);
        MemoryStore {
            shards: Shards::new(shards, per_shard),
            names: Interner::default(),
            clock,
            origin: inactivity.max(absolute_max.unwrap_or(0)).min(u32::MAX / 2),
            inactivity,
            absolute_max,
            evictions: AtomicU64::new(0),
        }
    }

    /// The clock in the entries' seconds.
    fn now(&self) -> u32 {
        self.clock.now_secs().saturating_add(self.origin)
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, LruCache<Key, Entry, KeyedState>> {
        self.shards.lock(self.shard_index(key))
    }

    fn shard_index(&self, key: &Key) -> usize {
        // Keys are SHA-256 digests: any eight of their bytes are uniform.
        let mut head = [0u8; 8];
        head.copy_from_slice(&key.as_bytes()[..8]);
        (u64::from_le_bytes(head) % self.shards.count() as u64) as usize
    }

    fn expired(&self, e: &Entry, now: u32) -> bool {
        now.saturating_sub(e.touched) >= self.inactivity
            || self
                .absolute_max
                .is_some_and(|max| now.saturating_sub(e.created) >= max)
    }

    fn entry(&self, binding: &Binding, now: u32, created: u32) -> Entry {
        Entry {
            touched: now,
            created,
            backend: self.names.intern(&binding.backend),
            state: binding.state.to_bits(),
            version: binding.session.version,
            cipher: binding.session.cipher,
        }
    }

    fn binding(&self, e: &Entry) -> Option<Binding> {
        Some(Binding {
            backend: self.names.name(e.backend)?,
            state: KeyState::from_bits(e.state),
            session: e.session(),
        })
    }
}

impl AffinityStore for MemoryStore {
    fn get(&self, key: &Key) -> Option<Binding> {
        let now = self.now();
        let found = {
            let mut shard = self.shard(key);
            match shard.get_mut(key) {
                Some(e) if self.expired(e, now) => {
                    shard.pop(key);
                    None
                }
                Some(e) => {
                    e.touched = now;
                    Some(*e)
                }
                None => None,
            }
        }?;
        self.binding(&found)
    }

    fn put(&self, key: Key, binding: Binding) {
        let now = self.now();
        let e = self.entry(&binding, now, now);
        let pushed_out = self.shard(&key).push(key, e);
        // `push` also returns the old value of the same key, replaced.
        if pushed_out.is_some_and(|(k, _)| k != key) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn update(&self, key: &Key, binding: Binding) -> bool {
        let now = self.now();
        let mut shard = self.shard(key);
        match shard.get_mut(key) {
            Some(e) if !self.expired(e, now) => {
                *e = self.entry(&binding, now, e.created);
                true
            }
            _ => false,
        }
    }

    fn remove(&self, key: &Key) {
        self.shard(key).pop(key);
    }

    fn peek(&self, key: &Key) -> Option<Peeked> {
        let now = self.now();
        let e = *self.shard(key).peek(key)?;
        if self.expired(&e, now) {
            return None;
        }
        let idle_left = self.inactivity - now.saturating_sub(e.touched);
        let left = match self.absolute_max {
            Some(max) => idle_left.min(max - now.saturating_sub(e.created)),
            None => idle_left,
        };
        Some(Peeked {
            binding: self.binding(&e)?,
            age: Duration::from_secs(u64::from(now.saturating_sub(e.created))),
            expires_in: Duration::from_secs(u64::from(left)),
        })
    }

    fn len(&self) -> usize {
        self.shards.len()
    }

    /// Copies a few shards at a time (see `Shards::save`): each copy of
    /// about 14,000 entries holds its shard for a few milliseconds.
    fn save(&self, visit: &mut dyn FnMut(&[SavedEntry])) -> Vec<BackendName> {
        self.shards.save(
            || self.now(),
            |now, key, e| {
                (!self.expired(e, now)).then(|| SavedEntry {
                    key: *key,
                    backend: e.backend,
                    state: KeyState::from_bits(e.state),
                    session: e.session(),
                    idle: now.saturating_sub(e.touched),
                    age: now.saturating_sub(e.created),
                })
            },
            visit,
        );
        // Read after the walk: names are only ever added, so every index
        // handed out above is in it.
        self.names.all()
    }

    /// Each shard filled in one go (see `Shards::restore`).
    fn restore(&self, names: &[BackendName], entries: &[SavedEntry]) -> usize {
        let ids: Vec<u16> = names.iter().map(|n| self.names.intern(n)).collect();
        let now = self.now();
        self.shards.restore(
            entries,
            |saved| self.shard_index(&saved.key),
            |saved| {
                let &backend = ids.get(usize::from(saved.backend))?;
                let e = Entry {
                    touched: now.saturating_sub(saved.idle),
                    created: now.saturating_sub(saved.age),
                    backend,
                    state: saved.state.to_bits(),
                    version: saved.session.version,
                    cipher: saved.session.cipher,
                };
                // Saturated timestamps only happen to ages past `origin`,
                // the longest lifetime, which this check then expires.
                let expired = saved.idle >= self.inactivity
                    || self.absolute_max.is_some_and(|max| saved.age >= max)
                    || self.expired(&e, now);
                (!expired).then_some((saved.key, e))
            },
        )
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use crate::inspect::KeyKind;
    use std::sync::Arc;

    /// A store on tokio's clock: the expiry tests run on a paused runtime
    /// and age entries with `tokio::time::advance`.
    fn store(capacity: usize, inactivity: u64, max: Option<u64>) -> MemoryStore {
        let cfg = MemoryStoreConfig {
            capacity,
            inactivity: Duration::from_secs(inactivity),
            absolute_max: max.map(Duration::from_secs),
        };
        MemoryStore::new(cfg, Clock::new())
    }

    fn owned(name: &str) -> Binding {
        Binding::owned(Arc::from(name), Session::UNKNOWN)
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_inactivity_and_hits_refresh_them() {
        let s = store(100, 60, None);
        let k = Key::new(KeyKind::SessionId, b"abc");
        s.put(k, owned("a"));
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(s.get(&k).unwrap().backend.as_ref(), "a");
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(s.get(&k).is_some(), "the hit 50 s ago refreshed the entry");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(s.get(&k).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn absolute_maximum_expires_entries_despite_hits() {
        let s = store(100, 60, Some(100));
        let k = Key::new(KeyKind::Ticket, b"t");
        s.put(k, owned("a"));
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(40)).await;
            let _ = s.get(&k);
        }
        assert!(
            s.get(&k).is_none(),
            "120 s old entry outlived the 100 s maximum"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn peek_reports_age_and_time_left_without_refreshing() {
        let s = store(100, 60, Some(100));
        let k = Key::new(KeyKind::Ticket, b"t");
        s.put(k, owned("a"));
        tokio::time::advance(Duration::from_secs(20)).await;
        let p = s.peek(&k).unwrap();
        assert_eq!(&*p.binding.backend, "a");
        assert_eq!(p.age, Duration::from_secs(20));
        assert_eq!(p.expires_in, Duration::from_secs(40));
        tokio::time::advance(Duration::from_secs(45)).await;
        assert!(s.peek(&k).is_none(), "peeking did not refresh the entry");
        assert!(s.get(&k).is_none());

        let k2 = Key::new(KeyKind::Ticket, b"t2");
        s.put(k2, owned("b"));
        for _ in 0..2 {
            tokio::time::advance(Duration::from_secs(40)).await;
            assert!(s.get(&k2).is_some());
        }
        assert_eq!(
            s.peek(&k2).unwrap().expires_in,
            Duration::from_secs(20),
            "the absolute maximum comes before inactivity"
        );
    }

    #[test]
    fn evictions_count_entries_pushed_out_not_replaced() {
        let s = store(7, 600, None);
        let (shards, per_shard) = layout(7);
        assert_eq!((shards, per_shard), (1, 7));
        for i in 0..7u32 {
            s.put(Key::new(KeyKind::SessionId, &i.to_le_bytes()), owned("a"));
        }
        s.put(
            Key::new(KeyKind::SessionId, &0u32.to_le_bytes()),
            owned("b"),
        );
        assert_eq!(s.evictions(), 0, "replacing a key evicts nothing");
        for i in 7..10u32 {
            s.put(Key::new(KeyKind::SessionId, &i.to_le_bytes()), owned("a"));
        }
        assert_eq!(s.evictions(), 3);
        assert_eq!(s.len(), 7);
    }

    #[test]
    fn table_is_bounded_and_evicts_least_recently_used() {
        let s = store(1000, 600, None);
        for i in 0..10_000u32 {
            s.put(Key::new(KeyKind::SessionId, &i.to_le_bytes()), owned("a"));
        }
        let (shards, per) = layout(1000);
        assert!(s.len() <= shards * per);
        let last = Key::new(KeyKind::SessionId, &9_999u32.to_le_bytes());
        assert!(s.get(&last).is_some());
    }

    #[test]
    fn a_restore_into_a_smaller_table_keeps_the_most_recently_used() {
        // One shard of 7: restored least recently used first, the last
        // seven given are what stays.
        let s = store(7, 600, None);
        let saved: Vec<SavedEntry> = (0..10u32)
            .map(|i| SavedEntry {
                key: Key::new(KeyKind::SessionId, &i.to_le_bytes()),
                backend: 0,
                state: KeyState::Owned,
                session: Session::UNKNOWN,
                idle: 100 - i,
                age: 100 - i,
            })
            .collect();
        assert_eq!(s.restore(&[Arc::from("a")], &saved), 10);
        assert_eq!(s.len(), 7);
        for (i, e) in saved.iter().enumerate() {
            assert_eq!(s.peek(&e.key).is_some(), i >= 3, "{i}");
        }
    }

    #[test]
    fn layout_fills_each_shards_hash_index_and_meets_the_size() {
        assert_eq!(layout(1_000_000), (70, 14_336));
        assert_eq!(layout(10_000_000), (88, 114_688));
        assert_eq!(layout(100), (15, 7));
        for total in [1usize, 1_000, 50_000, 1_000_000, 3_000_000] {
            let (shards, per) = layout(total);
            assert!(
                shards * per >= total && shards * per - total < per,
                "{total}"
            );
            assert!((per / 7 * 8).is_power_of_two());
        }
    }

    #[test]
    fn kinds_do_not_collide_and_states_round_trip() {
        let s = store(100, 600, None);
        let a = Key::new(KeyKind::SessionId, b"same");
        let b = Key::new(KeyKind::Ticket, b"same");
        assert_ne!(a, b);
        s.put(
            a,
            Binding::name(Arc::from("x"), KeyState::Candidate { tag: 7 }),
        );
        s.put(b, owned("y"));
        assert_eq!(s.get(&a).unwrap().state, KeyState::Candidate { tag: 7 });
        assert!(s.update(&a, Binding::name(Arc::from("x"), KeyState::Shared)));
        assert_eq!(s.get(&a).unwrap().state, KeyState::Shared);
        assert_eq!(s.get(&b).unwrap().backend.as_ref(), "y");
        s.remove(&b);
        assert!(s.get(&b).is_none());
    }
}
