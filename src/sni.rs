//! Picking a listener's pool by SNI: an exact host name first, then a
//! `*.suffix` wildcard covering exactly one label, else the default pool.
//! Matching is case-insensitive and ignores a trailing dot, as DNS does.

use std::collections::HashMap;

/// Host name (or wildcard suffix) → index of a pool.
#[derive(Debug, Default)]
pub(crate) struct SniMap {
    exact: HashMap<String, usize>,
    /// `*.example.com` is stored as `example.com`.
    wildcard: HashMap<String, usize>,
}

/// Lowercases and drops one trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl SniMap {
    /// Adds a rule; a later rule for the same pattern replaces an earlier.
    pub fn insert(&mut self, pattern: &str, pool: usize) {
        match pattern.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(normalize(suffix), pool),
            None => self.exact.insert(normalize(pattern), pool),
        };
    }

    /// The pool for `sni`, if a rule matches. `sni` is the raw host_name
    /// bytes from the ClientHello; non-UTF-8 names match nothing.
    pub fn lookup(&self, sni: &[u8]) -> Option<usize> {
        let name = normalize(std::str::from_utf8(sni).ok()?);
        if let Some(&p) = self.exact.get(&name) {
            return Some(p);
        }
        // A wildcard covers exactly one label: strip the first and look the
        // rest up, so `*.example.com` matches `a.example.com` but neither
        // `example.com` nor `a.b.example.com`.
        let (_, rest) = name.split_once('.')?;
        self.wildcard.get(rest).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label() {
        let mut m = SniMap::default();
        m.insert("*.example.com", 1);
        m.insert("api.example.com", 2);
        assert_eq!(m.lookup(b"api.example.com"), Some(2));
        assert_eq!(m.lookup(b"www.example.com"), Some(1));
        assert_eq!(m.lookup(b"example.com"), None);
        assert_eq!(m.lookup(b"a.b.example.com"), None);
    }

    #[test]
    fn matching_ignores_case_and_a_trailing_dot() {
        let mut m = SniMap::default();
        m.insert("API.Example.com", 2);
        m.insert("*.Example.COM.", 1);
        assert_eq!(m.lookup(b"api.example.COM."), Some(2));
        assert_eq!(m.lookup(b"WWW.EXAMPLE.COM"), Some(1));
        assert_eq!(m.lookup(b"\xff.example.com"), None);
    }
}
