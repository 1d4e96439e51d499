//! Interned backend names: tables store a 2-byte index instead of a name
//! or pointer in every entry.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::backend::BackendName;

/// Every table write interns a name and every hit reads one back, from
/// every worker thread: the list is read without a lock (even a read
/// lock's shared counter is a cache line every thread writes). A name
/// new to the process, which only a configuration can bring, copies the
/// list under `adding`.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    /// Names are never removed, so an index stays valid for the process,
    /// across reloads that drop or reorder backends.
    names: ArcSwap<Vec<BackendName>>,
    /// Held while a name is added, so two threads adding at once cannot
    /// both publish a list missing the other's name.
    adding: Mutex<()>,
}

impl Interner {
    pub fn intern(&self, name: &BackendName) -> u16 {
        if let Some(i) = self.names.load().iter().position(|n| n == name) {
            return i as u16;
        }
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let names = self.names.load_full();
        if let Some(i) = names.iter().position(|n| n == name) {
            return i as u16;
        }
        // 65535 distinct backend names in one process is not a deployment;
        // saturate rather than alias an existing name.
        let i = names.len().min(usize::from(u16::MAX));
        if i < usize::from(u16::MAX) {
            let mut more = Vec::with_capacity(names.len() + 1);
            more.extend(names.iter().cloned());
            more.push(name.clone());
            self.names.store(Arc::new(more));
        }
        i as u16
    }

    /// Every name, at its index.
    pub fn all(&self) -> Vec<BackendName> {
        self.names.load().as_ref().clone()
    }

    pub fn name(&self, i: u16) -> Option<BackendName> {
        self.names.load().get(usize::from(i)).cloned()
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;

    fn name(s: &str) -> BackendName {
        BackendName::from(s)
    }

    #[test]
    fn a_name_keeps_its_index_and_reads_back() {
        let names = Interner::default();
        let a = names.intern(&name("a"));
        let b = names.intern(&name("b"));
        assert_ne!(a, b);
        assert_eq!(names.intern(&name("a")), a);
        assert_eq!(names.name(b), Some(name("b")));
        assert_eq!(names.name(7), None);
        assert_eq!(names.all(), vec![name("a"), name("b")]);
    }

    #[test]
    fn threads_adding_at_once_agree_on_every_index() {
        let names = Interner::default();
        let seen: Vec<Vec<u16>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|t| {
                    let names = &names;
                    s.spawn(move || {
                        // Each thread adds the names in its own order.
                        (0..50)
                            .map(|i| names.intern(&name(&format!("b{}", (i * (t + 1)) % 50))))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert_eq!(names.all().len(), 50, "no name added twice, none lost");
        for (t, indices) in seen.iter().enumerate() {
            for (i, &index) in indices.iter().enumerate() {
                let expected = name(&format!("b{}", (i * (t + 1)) % 50));
                assert_eq!(names.name(index), Some(expected));
            }
        }
    }
}
