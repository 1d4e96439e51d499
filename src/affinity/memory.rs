//! The in-process affinity store: segmented LRU shards behind mutexes
//! (see [`super::shards`]: entries with hits are kept against floods of
//! one-hit entries).
//!
//! The table is split into shards chosen by the key's first eight bytes
//! (keys are SHA-256 digests, so shards fill evenly); a lookup holds one
//! shard's lock for a few hundred nanoseconds.
//! An entry is 16 bytes of key and 16 of value; backend names are interned
//! to a 2-byte index so entries do not each carry a pointer.

use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::names::Interner;
use super::shards::{Segment, Shards, Slru};
use super::{AffinityStore, Binding, Key, KeyState, Peeked, SavedEntry, Session};
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
    /// Entries pushed out by the size bound: a table too small for its
    /// traffic (or flooded) shows here before it shows as lost
    /// stickiness.
    evictions: AtomicU64,
}

impl MemoryStore {
    pub fn new(cfg: MemoryStoreConfig, clock: Clock) -> Self {
        let inactivity = secs(cfg.inactivity).max(1);
        let absolute_max = cfg.absolute_max.map(secs);
        MemoryStore {
            shards: Shards::new(cfg.capacity),
            names: Interner::default(),
            clock,
            origin: inactivity.max(absolute_max.unwrap_or(0)).min(u32::MAX / 2),
            inactivity,
            absolute_max,
            evictions: AtomicU64::new(0),
        }
    }

    /// Binds `key` in `segment` (see [`AffinityStore::put`] and
    /// [`AffinityStore::put_hit`]).
    fn put_in(&self, key: Key, binding: &Binding, segment: Segment) {
        let now = self.now();
        let e = self.entry(binding, now, now);
        let pushed_out = self.shard(&key).push(key, e, segment);
        // `push` also returns the old value of the same key, replaced.
        if pushed_out.is_some_and(|(k, _)| k != key) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The clock in the entries' seconds.
    fn now(&self) -> u32 {
        self.clock.now_secs().saturating_add(self.origin)
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Slru<Key, Entry>> {
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

    /// In probation, until a hit (a present key keeps its segment).
    fn put(&self, key: Key, binding: Binding) {
        self.put_in(key, &binding, Segment::Probation);
    }

    /// In the protected segment at once.
    fn put_hit(&self, key: Key, binding: Binding) {
        self.put_in(key, &binding, Segment::Protected);
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
    ///
    /// Each shard's probation segment comes first, then its protected
    /// one, each least recently used first, so that a restore rebuilds
    /// both. The segment is not in the entry: a restore reads an entry hit
    /// since it was put (`idle < age`) as protected. A protected entry not
    /// hit since it was put (put as the continuation of a session that
    /// was) is saved a second older than it is, so that it reads so too:
    /// the only cost, that it reaches an absolute maximum a second early.
    fn save(&self, visit: &mut dyn FnMut(&[SavedEntry])) -> Vec<BackendName> {
        self.shards.save(
            || self.now(),
            |now, key, e, segment| {
                let idle = now.saturating_sub(e.touched);
                let age = match segment {
                    Segment::Protected => now.saturating_sub(e.created).max(idle.saturating_add(1)),
                    Segment::Probation => now.saturating_sub(e.created),
                };
                (!self.expired(e, now)).then(|| SavedEntry {
                    key: *key,
                    backend: e.backend,
                    state: KeyState::from_bits(e.state),
                    session: e.session(),
                    idle,
                    age,
                })
            },
            visit,
        );
        // Read after the walk: names are only ever added, so every index
        // handed out above is in it.
        self.names.all()
    }

    /// Each shard filled in one go (see `Shards::restore`); entries hit
    /// since they were put (`idle < age`, see `save`) go back protected,
    /// the others in probation.
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
                let segment = if saved.idle < saved.age {
                    Segment::Protected
                } else {
                    Segment::Probation
                };
                (!expired).then_some((saved.key, e, segment))
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
    use crate::affinity::shards::layout;
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
        assert_eq!(s.len(), 1000, "exactly the table's size");
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

    fn session(i: u32) -> Key {
        Key::new(KeyKind::SessionId, &i.to_le_bytes())
    }

    /// 2,000 entries put once and never used again.
    fn one_hit_flood(s: &MemoryStore) {
        for i in 1_000_000..1_002_000u32 {
            s.put(session(i), owned("flood"));
        }
    }

    #[test]
    fn a_one_hit_flood_leaves_entries_hit_or_put_as_hits() {
        let s = store(200, 600, None);
        for i in 0..20 {
            s.put(session(i), owned("a"));
            assert!(s.get(&session(i)).is_some());
        }
        for i in 20..40 {
            s.put_hit(session(i), owned("b"));
        }
        for i in 40..60 {
            s.put(session(i), owned("c"));
        }
        one_hit_flood(&s);
        assert_eq!(s.len(), 200, "never more than the table's size");
        assert_eq!(s.evictions(), 60 + 2_000 - 200);
        for i in 0..40 {
            let b = s.peek(&session(i)).map(|p| p.binding.backend);
            assert_eq!(b.as_deref(), Some(if i < 20 { "a" } else { "b" }), "{i}");
        }
        for i in 40..60 {
            assert!(s.peek(&session(i)).is_none(), "{i} had no hit");
        }
    }

    #[test]
    fn a_restored_table_keeps_its_protected_entries_protected() {
        let s = store(200, 600, None);
        for i in 0..20 {
            s.put(session(i), owned("hit"));
            s.get(&session(i));
            s.put_hit(session(20 + i), owned("put as hit"));
            s.put(session(40 + i), owned("never hit"));
        }
        let mut saved = Vec::new();
        let names = s.save(&mut |batch| saved.extend_from_slice(batch));
        assert_eq!(saved.len(), 60);
        // Each shard: its probation entries first, then its protected.
        let never_hit = |e: &SavedEntry| names[usize::from(e.backend)].as_ref() == "never hit";
        let shards = layout(200).len();
        let shard_of = |e: &SavedEntry| s.shard_index(&e.key);
        for shard in 0..shards {
            let order: Vec<bool> = saved
                .iter()
                .filter(|e| shard_of(e) == shard)
                .map(never_hit)
                .collect();
            assert!(order.windows(2).all(|w| w[0] || !w[1]), "{order:?}");
        }

        let fresh = store(200, 600, None);
        assert_eq!(fresh.restore(&names, &saved), 60);
        one_hit_flood(&fresh);
        for i in 0..40 {
            assert!(fresh.peek(&session(i)).is_some(), "{i} was protected");
        }
        for i in 40..60 {
            assert!(fresh.peek(&session(i)).is_none(), "{i} was not");
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
