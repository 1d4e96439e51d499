//! A table split into shards, each behind its own lock, each a segmented
//! LRU, and the walks a state file write and load take over it: the
//! affinity table ([`MemoryStore`](super::MemoryStore)) and the client
//! index ([`ClientIndex`](super::clients::ClientIndex)) are both one.
//!
//! A plain LRU lets a flood of entries that are never used again (one-hit
//! full handshakes from many addresses) push out every entry idle longer
//! than the flood, sticky sessions in use included. So each shard is a
//! segmented LRU ([`Slru`]): a new entry enters a probation segment; a hit
//! moves it to a protected segment (80 % of the shard); the protected
//! segment's overflow goes back to probation's most recent end; and room
//! is made at probation's least recent end. A flood of one-hit entries
//! then only ever displaces other entries without hits.
//!
//! The owner picks a key's shard (a table key's own bytes, a client
//! prefix's keyed hash); one connection takes one shard's lock per key.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use super::{KeyedState, keyed_state, lock};

/// Shards a state file write copies together (see [`interleave`]).
pub(crate) const WALKED_TOGETHER: usize = 4;

/// Most shards: enough that threads rarely meet on one lock.
const MAX_SHARDS: usize = 128;

/// Fewest entries a shard is given (unless the whole table is smaller):
/// room for a protected segment of 51 beside a probation segment of 13.
/// Smaller shards would leave a hot session's shard with no room to
/// protect it, and a table of 200 split 15 ways held 203 entries.
const MIN_PER_SHARD: usize = 64;

/// The protected segment's share of a shard, in percent (Caffeine's).
const PROTECTED_PERCENT: usize = 80;

/// How to split a table of `total` entries: each shard's capacity, summing
/// to exactly `total` (a table never holds more than its size).
///
/// A shard's hash index has a power-of-two number of slots and holds at
/// most 7/8 of them, so a shard capacity just past such a boundary pays for
/// almost twice the slots it uses. So the number of shards is the one that
/// keeps every shard within 7/8 of a power of two (at most
/// [`MAX_SHARDS`]), and the total is split evenly among them: 1,000,000
/// entries become 70 shards of 14,285 or 14,286 (each within 14,336).
/// A table too small for that many shards of [`MIN_PER_SHARD`] gets fewer:
/// 200 entries are 2 shards of 100.
pub(crate) fn layout(total: usize) -> Vec<usize> {
    let total = total.max(1);
    let mut slots = 128usize;
    let shards = loop {
        let per_shard = slots / 8 * 7;
        let shards = total.div_ceil(per_shard);
        if shards <= MAX_SHARDS {
            break shards;
        }
        slots *= 2;
    };
    let shards = shards.min(total / MIN_PER_SHARD).max(1);
    let (base, extra) = (total / shards, total % shards);
    (0..shards).map(|i| base + usize::from(i < extra)).collect()
}

/// Shards of one table; their capacities sum to the table's.
#[derive(Debug)]
pub(crate) struct Shards<K: Hash + Eq, V> {
    shards: Vec<Mutex<Slru<K, V>>>,
}

impl<K: Hash + Eq + Clone, V> Shards<K, V> {
    /// A table of `capacity` entries (at least one), split by [`layout`];
    /// each shard with its own keyed hasher.
    pub(crate) fn new(capacity: usize) -> Self {
        Shards {
            shards: layout(capacity)
                .into_iter()
                .map(|c| Mutex::new(Slru::new(c)))
                .collect(),
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.shards.len()
    }

    /// Shard `i`, locked; the owner's shard choice keeps `i` below
    /// [`count`] (and it is taken modulo the count all the same).
    ///
    /// [`count`]: Shards::count
    #[allow(clippy::indexing_slicing)] // `i % len` is below `len`, which `new` keeps at least 1
    pub(crate) fn lock(&self, i: usize) -> MutexGuard<'_, Slru<K, V>> {
        lock(&self.shards[i % self.shards.len()])
    }

    /// Entries in all shards.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Hands `visit` the entries `copy` makes, one shard at a time, in the
    /// order a restore rebuilds the shard from: its probation segment,
    /// then its protected one, each least recently used first (see
    /// [`Slru::walk`]). A shard's lock is held only while it is copied;
    /// [`WALKED_TOGETHER`] shards are locked and copied at a time (see
    /// [`interleave`]); `now` is read once they are locked and given to
    /// `copy`, which leaves out what it returns `None` for.
    pub(crate) fn save<S>(
        &self,
        now: impl Fn() -> u32,
        mut copy: impl FnMut(u32, &K, &V, Segment) -> Option<S>,
        visit: &mut dyn FnMut(&[S]),
    ) {
        let mut batches: Vec<Vec<S>> = (0..WALKED_TOGETHER).map(|_| Vec::new()).collect();
        for group in self.shards.chunks(WALKED_TOGETHER) {
            {
                let shards: Vec<_> = group.iter().map(lock).collect();
                let now = now();
                for (batch, shard) in batches.iter_mut().zip(&shards) {
                    batch.clear();
                    batch.reserve(shard.len());
                }
                let mut walks: Vec<_> = shards.iter().map(|s| s.walk()).collect();
                interleave(&mut walks, |i, (key, value, segment)| {
                    // `i` is a walk's place in `group`, at most
                    // `WALKED_TOGETHER` long: every walk has its batch.
                    if let (Some(saved), Some(batch)) =
                        (copy(now, key, value, segment), batches.get_mut(i))
                    {
                        batch.push(saved);
                    }
                });
            }
            for batch in batches.iter().take(group.len()) {
                visit(batch);
            }
        }
    }

    /// Puts back what `make` makes of each of `saved`, given in the order
    /// [`save`](Shards::save) gives them, into the shard `shard_of` names
    /// and the segment `make` names; `make` returns `None` for what is not
    /// to be put. Returns how many were put.
    ///
    /// The saved items are sorted by shard first (their indexes: the items
    /// stay where they are), and each shard is then filled in one go: one
    /// lock and one run through its memory per shard instead of one of
    /// each per item (a state file can hold a million; this runs before
    /// the router routes, so a shard's lock held for its whole share is
    /// held from nobody).
    pub(crate) fn restore<S>(
        &self,
        saved: &[S],
        shard_of: impl Fn(&S) -> usize,
        mut make: impl FnMut(&S) -> Option<(K, V, Segment)>,
    ) -> usize {
        let shard_of: Vec<usize> = saved.iter().map(shard_of).collect();
        let mut put = 0;
        for (shard, run) in by_shard(self.count(), &shard_of, (0..saved.len()).collect()) {
            let mut shard = self.lock(shard);
            for item in run.into_iter().filter_map(|i| saved.get(i)) {
                if let Some((key, value, segment)) = make(item) {
                    shard.push(key, value, segment);
                    put += 1;
                }
            }
        }
        put
    }
}

/// Which segment of a shard an entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Entries not hit since they were put: where room is made.
    Probation,
    /// Entries hit since they were put, or put as the continuation of a
    /// session that was (a ticket renewed on resumption): only the
    /// segment's overflow leaves it, back to probation.
    Protected,
}

/// No node: the end of a list.
const NIL: u32 = u32::MAX;

/// One entry and its place in its segment's recency list.
#[derive(Debug)]
struct Node<K, V> {
    key: K,
    value: V,
    /// Towards the most recently used end; [`NIL`] at it.
    newer: u32,
    /// Towards the least recently used end; [`NIL`] at it.
    older: u32,
    segment: Segment,
}

/// The two ends of one segment's recency list, and its length.
#[derive(Debug, Clone, Copy)]
struct Ends {
    newest: u32,
    oldest: u32,
    len: usize,
}

impl Ends {
    const EMPTY: Ends = Ends {
        newest: NIL,
        oldest: NIL,
        len: 0,
    };
}

/// A segmented LRU of at most `capacity` entries (see the module docs).
///
/// The entries live in one vector, linked by index into two recency
/// lists, and a keyed hash map finds a key's index: one allocation per
/// shard, made up front, instead of one per entry (an entry of the
/// affinity table is 40 bytes here, and 20 in the index). A removed entry's
/// place is filled with the last one, so the vector stays dense.
#[derive(Debug)]
pub(crate) struct Slru<K, V> {
    index: HashMap<K, u32, KeyedState>,
    nodes: Vec<Node<K, V>>,
    probation: Ends,
    protected: Ends,
    /// At least 1, and below [`NIL`].
    capacity: usize,
    /// Below `capacity`, so a full shard always has probation entries to
    /// make room with.
    protected_capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Slru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        Slru {
            index: HashMap::with_capacity_and_hasher(capacity, keyed_state()),
            nodes: Vec::with_capacity(capacity),
            probation: Ends::EMPTY,
            protected: Ends::EMPTY,
            capacity,
            protected_capacity: capacity * PROTECTED_PERCENT / 100,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `key`'s value, counted as a hit: the entry moves to the protected
    /// segment's most recent end.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.index.get(key)?;
        self.hit(i);
        self.node_mut(i).map(|n| &mut n.value)
    }

    /// `key`'s value, without counting a hit.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        let i = *self.index.get(key)?;
        self.node(i).map(|n| &n.value)
    }

    /// `key`'s value to change, without counting a hit.
    pub(crate) fn peek_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.index.get(key)?;
        self.node_mut(i).map(|n| &mut n.value)
    }

    /// Puts `key` at the most recent end of `segment` (a present key keeps
    /// the protected segment if it is there, and takes its new value).
    /// Returns what was pushed out to make room, or the key's old value
    /// (as `lru`'s `push`).
    pub(crate) fn push(&mut self, key: K, value: V, segment: Segment) -> Option<(K, V)> {
        if let Some(&i) = self.index.get(&key) {
            let node = self.node_mut(i)?;
            let old = std::mem::replace(&mut node.value, value);
            let segment = match segment {
                Segment::Protected => Segment::Protected,
                Segment::Probation => node.segment,
            };
            self.relink(i, segment);
            return Some((key, old));
        }
        self.insert(key, value, segment).1
    }

    /// `key`'s value, counted as a hit, or `make`'s, put in probation.
    /// `None` only if the shard's lists were broken.
    pub(crate) fn get_or_insert_mut(&mut self, key: K, make: impl FnOnce() -> V) -> Option<&mut V> {
        let i = match self.index.get(&key) {
            Some(&i) => {
                self.hit(i);
                i
            }
            None => self.insert(key, make(), Segment::Probation).0?,
        };
        self.node_mut(i).map(|n| &mut n.value)
    }

    /// Removes `key`; its value.
    pub(crate) fn pop(&mut self, key: &K) -> Option<V> {
        let i = self.index.remove(key)?;
        if i as usize >= self.nodes.len() {
            return None;
        }
        self.unlink(i);
        let removed = self.nodes.swap_remove(i as usize);
        // The last node moved into `i`: what pointed at it points at `i`.
        if let Some(moved) = self.nodes.get(i as usize) {
            let (newer, older, segment) = (moved.newer, moved.older, moved.segment);
            if let Some(slot) = self.index.get_mut(&moved.key) {
                *slot = i;
            }
            match self.node_mut(newer) {
                Some(n) => n.older = i,
                None => self.ends_mut(segment).newest = i,
            }
            match self.node_mut(older) {
                Some(n) => n.newer = i,
                None => self.ends_mut(segment).oldest = i,
            }
        }
        Some(removed.value)
    }

    /// Every entry with its segment, in the order that rebuilds the shard
    /// when put back one by one: probation least recently used first, then
    /// the protected segment the same way.
    pub(crate) fn walk(&self) -> impl Iterator<Item = (&K, &V, Segment)> {
        self.oldest_first(Segment::Probation)
            .chain(self.oldest_first(Segment::Protected))
            .map(|n| (&n.key, &n.value, n.segment))
    }

    fn oldest_first(&self, segment: Segment) -> impl Iterator<Item = &Node<K, V>> {
        let mut at = self.ends(segment).oldest;
        std::iter::from_fn(move || {
            let n = self.node(at)?;
            at = n.newer;
            Some(n)
        })
        // A list is never longer than the shard (were it ever broken into
        // a loop, the walk still ends).
        .take(self.nodes.len())
    }

    /// Puts a key not present; its index, and what was pushed out.
    fn insert(&mut self, key: K, value: V, segment: Segment) -> (Option<u32>, Option<(K, V)>) {
        if self.nodes.len() < self.capacity {
            let i = self.nodes.len() as u32;
            self.nodes.push(Node {
                key: key.clone(),
                value,
                newer: NIL,
                older: NIL,
                segment,
            });
            self.index.insert(key, i);
            self.link(i, segment);
            self.demote_overflow();
            return (Some(i), None);
        }
        // Full: the oldest entry of probation (never empty when full, as
        // the protected segment is smaller than the shard) gives its place.
        let victim = match self.probation.len {
            0 => self.protected.oldest,
            _ => self.probation.oldest,
        };
        self.unlink(victim);
        let Some(node) = self.node_mut(victim) else {
            return (None, None);
        };
        let old_key = std::mem::replace(&mut node.key, key.clone());
        let old_value = std::mem::replace(&mut node.value, value);
        self.index.remove(&old_key);
        self.index.insert(key, victim);
        self.link(victim, segment);
        self.demote_overflow();
        (Some(victim), Some((old_key, old_value)))
    }

    /// A hit on entry `i`: to the protected segment's most recent end.
    fn hit(&mut self, i: u32) {
        if self.protected.newest != i {
            self.relink(i, Segment::Protected);
        }
    }

    /// Moves entry `i` to the most recent end of `segment`.
    fn relink(&mut self, i: u32, segment: Segment) {
        self.unlink(i);
        self.link(i, segment);
        if segment == Segment::Protected {
            self.demote_overflow();
        }
    }

    /// The protected segment's least recently used entries past its
    /// capacity go to probation's most recent end: they had a hit, so
    /// they are the last of probation to go.
    fn demote_overflow(&mut self) {
        while self.protected.len > self.protected_capacity {
            let oldest = self.protected.oldest;
            if self.node(oldest).is_none() {
                return;
            }
            self.unlink(oldest);
            self.link(oldest, Segment::Probation);
        }
    }

    /// Takes entry `i` out of its segment's list.
    fn unlink(&mut self, i: u32) {
        let Some(n) = self.node(i) else { return };
        let (newer, older, segment) = (n.newer, n.older, n.segment);
        match self.node_mut(newer) {
            Some(n) => n.older = older,
            None => self.ends_mut(segment).newest = older,
        }
        match self.node_mut(older) {
            Some(n) => n.newer = newer,
            None => self.ends_mut(segment).oldest = newer,
        }
        let ends = self.ends_mut(segment);
        ends.len = ends.len.saturating_sub(1);
    }

    /// Puts entry `i`, out of every list, at the most recent end of
    /// `segment`.
    fn link(&mut self, i: u32, segment: Segment) {
        let newest = self.ends(segment).newest;
        let Some(n) = self.node_mut(i) else { return };
        n.newer = NIL;
        n.older = newest;
        n.segment = segment;
        match self.node_mut(newest) {
            Some(n) => n.newer = i,
            None => self.ends_mut(segment).oldest = i,
        }
        let ends = self.ends_mut(segment);
        ends.newest = i;
        ends.len += 1;
    }

    fn node(&self, i: u32) -> Option<&Node<K, V>> {
        self.nodes.get(i as usize)
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node<K, V>> {
        self.nodes.get_mut(i as usize)
    }

    fn ends(&self, segment: Segment) -> &Ends {
        match segment {
            Segment::Probation => &self.probation,
            Segment::Protected => &self.protected,
        }
    }

    fn ends_mut(&mut self, segment: Segment) -> &mut Ends {
        match segment {
            Segment::Probation => &mut self.probation,
            Segment::Protected => &mut self.protected,
        }
    }
}

/// Groups `items` by shard (`shard_of[i]` is item `i`'s, below `shards`),
/// each group in the order given: a bulk restore then takes each shard's
/// lock once and fills its memory in one run, instead of jumping between
/// shards item by item. Yields only shards that get something.
fn by_shard<T>(
    shards: usize,
    shard_of: &[usize],
    items: Vec<T>,
) -> impl Iterator<Item = (usize, Vec<T>)> {
    let shards = shards.max(1);
    // `s % shards` is below both vectors' length: every `get` finds.
    let mut counts = vec![0usize; shards];
    for &s in shard_of {
        if let Some(count) = counts.get_mut(s % shards) {
            *count += 1;
        }
    }
    let mut groups: Vec<Vec<T>> = counts.into_iter().map(Vec::with_capacity).collect();
    for (item, &s) in items.into_iter().zip(shard_of) {
        if let Some(group) = groups.get_mut(s % shards) {
            group.push(item);
        }
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
}

/// Steps several walks in turn, one item from each, handing `f` the
/// walk's position and the item, until all have ended.
///
/// A walk of an LRU shard follows one pointer per entry, each load waiting
/// for the one before: at a million entries scattered over the heap, that
/// is a cache and TLB miss per entry. Walks of different shards do not
/// depend on one another, so stepping a few in turn keeps several misses
/// in flight at once (a state file write copies the tables 2–3 times
/// faster so). The price is holding those few shards' locks together.
///
/// Each round takes the next item of every walk before handing any to
/// `f`: the steps are then a few instructions apart, close enough for the
/// processor to overlap their misses, where `f`'s work in between would
/// keep them apart.
fn interleave<I: Iterator>(walks: &mut [I], mut f: impl FnMut(usize, I::Item)) {
    let mut round = Vec::with_capacity(walks.len());
    loop {
        round.extend(
            walks
                .iter_mut()
                .enumerate()
                .filter_map(|(i, walk)| Some((i, walk.next()?))),
        );
        if round.is_empty() {
            return;
        }
        for (i, item) in round.drain(..) {
            f(i, item);
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;

    impl<K: Hash + Eq + Clone + std::fmt::Debug, V> Slru<K, V> {
        /// The lists, the index and the counts agree.
        fn check(&self) {
            assert!(self.len() <= self.capacity);
            assert!(self.protected.len <= self.protected_capacity);
            assert_eq!(self.index.len(), self.nodes.len());
            assert_eq!(self.probation.len + self.protected.len, self.nodes.len());
            let walked: Vec<_> = self.walk().collect();
            assert_eq!(walked.len(), self.nodes.len());
            for (k, _, segment) in walked {
                let i = self.index[k];
                assert_eq!(self.nodes[i as usize].segment, segment, "{k:?}");
            }
            for segment in [Segment::Probation, Segment::Protected] {
                let newest_first = {
                    let mut at = self.ends(segment).newest;
                    let mut n = 0;
                    while let Some(node) = self.node(at) {
                        at = node.older;
                        n += 1;
                    }
                    n
                };
                assert_eq!(newest_first, self.ends(segment).len);
            }
        }

        fn protected_len(&self) -> usize {
            self.protected.len
        }

        fn keys(&self, segment: Segment) -> Vec<K> {
            self.walk()
                .filter(|(_, _, s)| *s == segment)
                .map(|(k, _, _)| k.clone())
                .collect()
        }
    }

    #[test]
    fn a_one_hit_flood_leaves_every_entry_with_a_hit() {
        let mut s: Slru<u32, u32> = Slru::new(100);
        for k in 0..50 {
            s.push(k, k, Segment::Probation);
        }
        for k in 0..20 {
            assert_eq!(s.get_mut(&k), Some(&mut { k }));
        }
        s.push(30, 31, Segment::Protected);
        for k in 1000..20_000 {
            s.push(k, k, Segment::Probation);
        }
        s.check();
        assert_eq!(s.len(), 100);
        for k in (0..20).chain([30]) {
            assert!(
                s.peek(&k).is_some(),
                "{k} was hit, or put as one, and stays"
            );
        }
        assert_eq!(s.peek(&30), Some(&31));
        for k in (20..30).chain(31..50) {
            assert!(s.peek(&k).is_none(), "{k} was never hit");
        }
    }

    #[test]
    fn a_hit_promotes_and_the_protected_overflow_goes_back_to_probations_newest_end() {
        // 10 entries, 8 of them protected at most.
        let mut s: Slru<u32, ()> = Slru::new(10);
        for k in 0..10 {
            s.push(k, (), Segment::Probation);
        }
        for k in 0..9 {
            s.get_mut(&k).unwrap();
        }
        s.check();
        assert_eq!(s.protected_len(), 8);
        assert_eq!(s.keys(Segment::Protected), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(s.keys(Segment::Probation), [9, 0], "0 demoted, newest");
        // Room is made at probation's oldest end: 9, then the demoted 0.
        assert_eq!(s.push(100, (), Segment::Probation), Some((9, ())));
        assert_eq!(s.push(101, (), Segment::Probation), Some((0, ())));
        // A peek is no hit; a hit on a protected entry makes it newest.
        s.peek(&100).unwrap();
        s.get_mut(&1).unwrap();
        assert_eq!(s.keys(Segment::Protected), [2, 3, 4, 5, 6, 7, 8, 1]);
        assert_eq!(s.keys(Segment::Probation), [100, 101]);
        s.check();
    }

    #[test]
    fn a_put_again_keeps_its_segment_or_promotes_and_replaces_the_value() {
        let mut s: Slru<u32, u32> = Slru::new(10);
        s.push(1, 10, Segment::Probation);
        s.push(2, 20, Segment::Probation);
        s.push(3, 30, Segment::Protected);
        assert_eq!(s.push(3, 31, Segment::Probation), Some((3, 30)));
        assert_eq!(s.push(1, 11, Segment::Probation), Some((1, 10)));
        assert_eq!(s.keys(Segment::Probation), [2, 1], "1 is newest");
        assert_eq!(s.keys(Segment::Protected), [3], "3 stays protected");
        s.push(2, 21, Segment::Protected);
        assert_eq!(s.keys(Segment::Protected), [3, 2]);
        assert_eq!(
            (s.peek(&1), s.peek(&2), s.peek(&3)),
            (Some(&11), Some(&21), Some(&31))
        );
        s.check();
    }

    #[test]
    fn removals_keep_the_lists_whole_through_any_mix_of_operations() {
        let mut s: Slru<u32, u32> = Slru::new(20);
        let mut x = 12345u32;
        for step in 0..20_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let key = (x >> 16) % 40;
            match (x >> 8) % 6 {
                0 | 1 => drop(s.push(key, step, Segment::Probation)),
                2 => drop(s.push(key, step, Segment::Protected)),
                3 => drop(s.get_mut(&key)),
                4 => drop(s.pop(&key)),
                _ => drop(s.get_or_insert_mut(key, || step)),
            }
            if step % 97 == 0 {
                s.check();
            }
        }
        s.check();
        let mut s: Slru<u32, u32> = Slru::new(3);
        s.push(1, 1, Segment::Probation);
        assert_eq!(s.pop(&1), Some(1));
        assert_eq!(s.pop(&1), None);
        s.check();
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_table_holds_exactly_its_size_in_shards_of_at_least_64() {
        assert_eq!(layout(200), [100, 100]);
        assert_eq!(layout(7), [7]);
        assert_eq!(layout(127), [127]);
        let big = layout(1_000_000);
        assert_eq!(big.len(), 70);
        assert!(big.iter().all(|&c| c == 14_285 || c == 14_286));
        assert_eq!(layout(10_000_000).len(), 88);
        for total in [
            1usize, 63, 64, 129, 200, 1_000, 50_000, 1_000_000, 3_000_000,
        ] {
            let shards = layout(total);
            assert_eq!(shards.iter().sum::<usize>(), total, "{total}");
            assert!(shards.len() <= MAX_SHARDS);
            assert!(shards.len() == 1 || shards.iter().all(|&c| c >= MIN_PER_SHARD));
            // Each fills its hash index up to 7/8 of a power of two, no
            // further (tables of more than one shard).
            let largest = *shards.iter().max().unwrap();
            assert!(shards.len() == 1 || largest <= largest.next_power_of_two() / 8 * 7);
        }
        let table: Shards<u32, ()> = Shards::new(200);
        for k in 0..10_000u32 {
            table
                .lock(k as usize % table.count())
                .push(k, (), Segment::Probation);
            assert!(table.len() <= 200);
        }
        assert_eq!(table.len(), 200);
    }

    #[test]
    fn by_shard_groups_items_keeping_their_order_within_a_shard() {
        let items = vec!['a', 'b', 'c', 'd', 'e'];
        let shard_of = [2, 0, 2, 0, 1];
        let groups: Vec<(usize, Vec<char>)> = by_shard(4, &shard_of, items).collect();
        assert_eq!(
            groups,
            [(0, vec!['b', 'd']), (1, vec!['e']), (2, vec!['a', 'c'])]
        );
    }

    #[test]
    fn interleave_takes_one_item_of_each_walk_in_turn_to_the_end_of_all() {
        let mut walks = [
            vec![1, 2, 3].into_iter(),
            vec![].into_iter(),
            vec![4].into_iter(),
        ];
        let mut seen = Vec::new();
        interleave(&mut walks, |i, x| seen.push((i, x)));
        assert_eq!(seen, [(0, 1), (2, 4), (0, 2), (0, 3)]);
    }

    #[test]
    fn a_save_restored_gives_back_probation_then_protected_each_oldest_first() {
        // Two shards of 64 (51 protected each at most).
        let table: Shards<u32, u32> = Shards::new(128);
        assert_eq!(table.count(), 2);
        let shard_of = |k: &u32| *k as usize % 2;
        let put = |k: u32, segment| table.lock(shard_of(&k)).push(k, k * 10, segment);
        // Shard 1: 1, 3, 5 in probation; 5 hit, then 7 put protected.
        for k in [1, 3, 5] {
            put(k, Segment::Probation);
        }
        table.lock(1).get_mut(&5).unwrap();
        put(7, Segment::Protected);
        put(2, Segment::Probation);
        put(4, Segment::Probation);
        let mut saved = Vec::new();
        let mut batches = 0;
        table.save(
            || 0,
            |_, &k, &v, segment| (k != 4).then_some((k, v, segment)),
            &mut |batch| {
                batches += 1;
                saved.extend_from_slice(batch);
            },
        );
        assert_eq!(batches, 2, "one batch per shard");
        use Segment::{Probation as Pb, Protected as Pt};
        assert_eq!(
            saved,
            [
                (2, 20, Pb),
                (1, 10, Pb),
                (3, 30, Pb),
                (5, 50, Pt),
                (7, 70, Pt)
            ]
        );

        let fresh: Shards<u32, u32> = Shards::new(128);
        let put = fresh.restore(
            &saved,
            |(k, _, _)| shard_of(k),
            |&(k, v, segment)| (k != 3).then_some((k, v + 1, segment)),
        );
        assert_eq!((put, fresh.len()), (4, 4));
        let shard = fresh.lock(1);
        assert_eq!(shard.keys(Pb), [1]);
        assert_eq!(shard.keys(Pt), [5, 7]);
        assert_eq!(shard.peek(&7), Some(&71));
    }
}
