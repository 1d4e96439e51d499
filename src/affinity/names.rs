//! Interned backend names: tables store a 2-byte index instead of a name
//! or pointer in every entry.

use std::sync::RwLock;

use crate::backend::BackendName;

#[derive(Debug, Default)]
pub struct Interner {
    /// Names are never removed, so an index stays valid for the process,
    /// across reloads that drop or reorder backends.
    names: RwLock<Vec<BackendName>>,
}

impl Interner {
    pub fn intern(&self, name: &BackendName) -> u16 {
        if let Some(i) = self.names.read().unwrap().iter().position(|n| n == name) {
            return i as u16;
        }
        let mut names = self.names.write().unwrap();
        if let Some(i) = names.iter().position(|n| n == name) {
            return i as u16;
        }
        // 65535 distinct backend names in one process is not a deployment;
        // saturate rather than alias an existing name.
        let i = names.len().min(usize::from(u16::MAX));
        if i < usize::from(u16::MAX) {
            names.push(name.clone());
        }
        i as u16
    }

    /// Every name, at its index.
    pub fn all(&self) -> Vec<BackendName> {
        self.names.read().unwrap().clone()
    }

    pub fn name(&self, i: u16) -> Option<BackendName> {
        self.names.read().unwrap().get(usize::from(i)).cloned()
    }
}
