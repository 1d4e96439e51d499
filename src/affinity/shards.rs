//! An LRU table split into shards, each behind its own lock, and the walks
//! a state file write and load take over it: the affinity table
//! ([`MemoryStore`](super::MemoryStore)) and the client index
//! ([`ClientIndex`](super::clients::ClientIndex)) are both one.
//!
//! `lru::LruCache` is not thread-safe, so each shard has a mutex; the
//! owner picks a key's shard (a table key's own bytes, a client prefix's
//! keyed hash).

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

use super::{KeyedState, keyed_state, lock};

/// Shards a state file write copies together (see [`interleave`]).
pub(crate) const WALKED_TOGETHER: usize = 4;

/// `count` LRU shards of `per_shard` entries each.
#[derive(Debug)]
pub(crate) struct Shards<K: Hash + Eq, V> {
    shards: Vec<Mutex<LruCache<K, V, KeyedState>>>,
}

impl<K: Hash + Eq, V> Shards<K, V> {
    /// At least one shard; each with its own keyed hasher.
    pub(crate) fn new(count: usize, per_shard: NonZeroUsize) -> Self {
        Shards {
            shards: (0..count.max(1))
                .map(|_| Mutex::new(LruCache::with_hasher(per_shard, keyed_state())))
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
    pub(crate) fn lock(&self, i: usize) -> MutexGuard<'_, LruCache<K, V, KeyedState>> {
        lock(&self.shards[i % self.shards.len()])
    }

    /// Entries in all shards.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Hands `visit` the entries `copy` makes, one shard at a time, each
    /// shard's least recently used first, holding a shard's lock only
    /// while it is copied. [`WALKED_TOGETHER`] shards are locked and
    /// copied at a time (see [`interleave`]); `now` is read once they are
    /// locked and given to `copy`, which leaves out what it returns `None`
    /// for.
    pub(crate) fn save<S>(
        &self,
        now: impl Fn() -> u32,
        mut copy: impl FnMut(u32, &K, &V) -> Option<S>,
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
                // `iter` goes from the most recently used.
                let mut walks: Vec<_> = shards.iter().map(|s| s.iter().rev()).collect();
                interleave(&mut walks, |i, (key, value)| {
                    // `i` is a walk's place in `group`, at most
                    // `WALKED_TOGETHER` long: every walk has its batch.
                    if let (Some(saved), Some(batch)) = (copy(now, key, value), batches.get_mut(i))
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

    /// Puts back what `make` makes of each of `saved`, given least
    /// recently used first, into the shard `shard_of` names; `make`
    /// returns `None` for what is not to be put. Returns how many were put.
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
        mut make: impl FnMut(&S) -> Option<(K, V)>,
    ) -> usize {
        let shard_of: Vec<usize> = saved.iter().map(shard_of).collect();
        let mut put = 0;
        for (shard, run) in by_shard(self.count(), &shard_of, (0..saved.len()).collect()) {
            let mut shard = self.lock(shard);
            for item in run.into_iter().filter_map(|i| saved.get(i)) {
                if let Some((key, value)) = make(item) {
                    shard.put(key, value);
                    put += 1;
                }
            }
        }
        put
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
    fn a_save_restored_gives_back_each_shard_least_recently_used_first() {
        let per = NonZeroUsize::new(3).unwrap();
        let table: Shards<u32, u32> = Shards::new(6, per);
        let shard_of = |k: &u32| *k as usize % 6;
        // Shard 1 overflows: 1 and 7 are pushed out by 13, 19, 25.
        for k in [1, 2, 7, 13, 19, 25, 8] {
            table.lock(shard_of(&k)).put(k, k * 10);
        }
        assert_eq!(table.len(), 5);
        let mut saved = Vec::new();
        let mut batches = 0;
        table.save(|| 0, |_, &k, &v| (k != 8).then_some((k, v)), &mut |batch| {
            batches += 1;
            saved.extend_from_slice(batch);
        });
        assert_eq!(batches, 6, "one batch per shard, empty ones too");
        assert_eq!(saved, [(13, 130), (19, 190), (25, 250), (2, 20)]);

        let fresh: Shards<u32, u32> = Shards::new(6, per);
        let put = fresh.restore(
            &saved,
            |(k, _)| shard_of(k),
            |&(k, v)| (k != 19).then_some((k, v + 1)),
        );
        assert_eq!((put, fresh.len()), (3, 3));
        let shard = fresh.lock(1);
        let order: Vec<_> = shard.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(order, [(25, 251), (13, 131)], "most recently used first");
    }
}
