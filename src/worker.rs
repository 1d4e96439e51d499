//! State kept per worker thread, so that what every connection updates
//! (weighted round-robin turns, recent decisions) is never one lock that
//! all threads take.
//!
//! `stickytls run` serves on one single-threaded runtime per worker thread
//! (`listen::run_on_threads`), and a connection lives on one thread from
//! accept to close. Each worker thread sets its index here once; a
//! [`PerThread`] value then gives every thread its own slot. A slot is
//! behind a mutex only because Rust needs one to share it at all: on worker
//! threads each slot has a single writer, so its lock is never contended,
//! and it stays on that thread's cache lines. Code that serves from any
//! other thread (`Router::run` on a caller's runtime: tests, the demo)
//! shares slot 0, where the mutex is what keeps it correct.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

/// Slots per [`PerThread`]: more worker threads than this share slots
/// (index modulo `SLOTS`), which stays correct and only costs contention.
pub(crate) const SLOTS: usize = 64;

thread_local! {
    /// This thread's slot; 0 for threads that are not worker threads.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker thread `index` (from 0): called once
/// by each worker thread before it serves.
pub(crate) fn set_index(index: usize) {
    INDEX.with(|i| i.set(index % SLOTS));
}

/// The current thread's slot.
pub(crate) fn index() -> usize {
    INDEX.with(Cell::get)
}

/// One `T` per worker thread.
#[derive(Debug)]
pub(crate) struct PerThread<T> {
    slots: Box<[Padded<Mutex<T>>]>,
}

/// Keeps a value on cache lines of its own, so that two threads writing
/// neighbouring values (their own slots, two lock shards) do not invalidate
/// each other's (128 bytes: the unit adjacent-line prefetchers pull in on
/// x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T: Default> Default for PerThread<T> {
    fn default() -> Self {
        PerThread {
            slots: (0..SLOTS).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> PerThread<T> {
    /// The current thread's slot.
    pub fn mine(&self) -> MutexGuard<'_, T> {
        lock(&self.slots[index()].0)
    }

    /// Every slot in turn, for readers that want the whole picture (the
    /// demo, a stats page). Each lock is held only while `f` runs.
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        for slot in self.slots.iter() {
            f(&lock(&slot.0));
        }
    }
}

/// A poisoned slot only means a panic elsewhere mid-update; what it holds
/// (turns, a record ring) is still usable, and the router keeps serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_thread_writes_its_own_slot() {
        let counts: std::sync::Arc<PerThread<u32>> = Default::default();
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    set_index(i);
                    for _ in 0..=i {
                        *counts.mine() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut seen = Vec::new();
        counts.for_each(|n| seen.push(*n));
        assert_eq!(&seen[..4], [1, 2, 3, 0]);
    }

    #[test]
    fn indices_past_the_slots_wrap() {
        std::thread::spawn(|| {
            set_index(SLOTS + 2);
            assert_eq!(index(), 2);
        })
        .join()
        .unwrap();
        assert_eq!(index(), 0, "a thread that never set an index uses slot 0");
    }
}
