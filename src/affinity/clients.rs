//! The per-client correlation index: what each client address prefix did
//! recently, so a session the router never saw (renegotiated inside the
//! encrypted channel, re-issued after a cache rotation) can be re-bound to
//! where that client's state lives, and so an address shared by many
//! clients (NAT, proxy) is recognised and its fresh clients spread out.
//!
//! The index is sharded as the affinity table is, with the same admission
//! (see [`super::shards`]): a prefix seen on a second connection is
//! protected, so a flood from thousands of one-connection addresses
//! cycles through probation and leaves the records of clients that come
//! back (and a NAT address's count of new sessions) in place.

use std::net::IpAddr;
use std::sync::MutexGuard;
use std::time::Duration;

use super::names::Interner;
use super::shards::{Segment, Shards, Slru};
use super::{KeyedState, keyed_state};
use crate::backend::BackendName;
use crate::clock::{Clock, secs};
use ipnet::IpNet;

/// Recent confirmed connections remembered per prefix: enough to find the
/// same client software again behind a shared address.
pub(crate) const RECENT: usize = 6;

/// A client address reduced to the prefix that stands for one client
/// (/32 for IPv4 and /64 for IPv6 by default): the network, its host bits
/// zero. The prefixes of one pool all have the pool's lengths, so two of
/// them are equal when their networks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPrefix(IpNet);

/// One write of the network's bits and its family, where the derived hash
/// would walk `IpNet`'s variant, each address byte and the length: every
/// connection hashes its prefix two or three times (the hello-stage count,
/// the client index). Equal prefixes hash alike: a pool's prefixes of one
/// family all have the same length.
impl std::hash::Hash for ClientPrefix {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (family, bits) = self.family_bits();
        state.write_u128(bits);
        state.write_u8(family);
    }
}

impl ClientPrefix {
    /// `ip`'s prefix of `v4_len` or `v6_len` bits (longer ones are cut to
    /// the address's width); an IPv4-mapped IPv6 address is its IPv4 client.
    pub fn new(ip: IpAddr, v4_len: u8, v6_len: u8) -> ClientPrefix {
        let ip = ip.to_canonical();
        let len = match ip {
            IpAddr::V4(_) => v4_len.min(32),
            IpAddr::V6(_) => v6_len.min(128),
        };
        // The length is within the address's width, so `new` cannot fail.
        let net = IpNet::new(ip, len).unwrap_or_else(|_| IpNet::from(ip));
        ClientPrefix(net.trunc())
    }

    /// The prefix as an address (the bits past its length are zero).
    pub fn addr(&self) -> IpAddr {
        self.0.network()
    }

    /// Bytes for hashing (source-hash balancing): 4 or 6, then the network
    /// as a big-endian 128-bit number. Part of the rendezvous hash every
    /// instance must compute alike: never change it.
    pub fn to_bytes(self) -> [u8; 17] {
        let (family, bits) = self.family_bits();
        let mut out = [0u8; 17];
        out[0] = family;
        out[1..].copy_from_slice(&bits.to_be_bytes());
        out
    }

    /// 4 or 6, and the network as a 128-bit number.
    fn family_bits(self) -> (u8, u128) {
        match self.0.network() {
            IpAddr::V4(v4) => (4, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (6, u128::from(v6)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    at: u32,
    /// Hash of the resumption-stable fingerprint (JA4 without PSK, early
    /// data, padding, GREASE) of the connection's ClientHello.
    fingerprint: u32,
    backend: u16,
    tls12: bool,
}

#[derive(Debug, Clone, Default)]
struct Record {
    /// Ring of recent confirmed connections, newest at `head - 1`.
    recent: [Recent; RECENT],
    head: u8,
    len: u8,
    /// New sessions counted in two half-window buckets: a sliding window
    /// in four bytes instead of a timestamp per session.
    bucket_start: u32,
    previous: u16,
    current: u16,
}

impl Record {
    fn roll(&mut self, now: u32, half: u32) {
        let elapsed = now.saturating_sub(self.bucket_start);
        if elapsed >= 2 * half {
            self.previous = 0;
            self.current = 0;
            self.bucket_start = now;
        } else if elapsed >= half {
            self.previous = self.current;
            self.current = 0;
            self.bucket_start = self.bucket_start.saturating_add(half);
        }
    }

    fn newest_first(&self) -> impl DoubleEndedIterator<Item = &Recent> {
        let head = usize::from(self.head);
        // Taken modulo `RECENT`, every index is in the ring: `get` finds.
        (1..=usize::from(self.len))
            .filter_map(move |i| self.recent.get((head + RECENT - i) % RECENT))
    }
}

/// What the index knows about one client prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientView {
    /// The backend of the most recent confirmed connection in the window,
    /// and whether it was TLS <= 1.2.
    pub last: Option<(BackendName, bool)>,
    /// The backend of the most recent confirmed connection in the window
    /// with the same fingerprint.
    pub same_fingerprint: Option<BackendName>,
    /// More than the NAT threshold of new sessions within the window.
    pub shared: bool,
    /// New sessions counted in the window.
    pub new_sessions: u32,
}

/// What the index holds for one client prefix, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSummary {
    /// The most recent confirmed connection within the window.
    pub last: Option<LastConnection>,
    /// More than the NAT threshold of new sessions within the window.
    pub shared: bool,
    pub new_sessions: u32,
}

/// A prefix's most recent confirmed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastConnection {
    pub backend: BackendName,
    /// TLS <= 1.2: an unknown session ID from this prefix is a resumption.
    pub tls12: bool,
    pub age: Duration,
    /// Until it leaves the correlation window.
    pub expires_in: Duration,
}

/// One connection the server confirmed, as recorded for its client.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub backend: BackendName,
    pub tls12: bool,
    pub fingerprint: u32,
    /// A full handshake: a session the client did not have before.
    pub new_session: bool,
}

/// One client prefix's record as a state file keeps it, times as ages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedClient {
    pub prefix: ClientPrefix,
    /// Recent confirmed connections, oldest first, at most [`RECENT`].
    pub recent: SavedRecents,
    /// Seconds since the current new-session bucket started.
    pub bucket_age: u32,
    /// New sessions in the previous and the current half-window.
    pub previous: u16,
    pub current: u16,
}

/// The recent connections of a [`SavedClient`], at most [`RECENT`], kept
/// inline: a state file holds up to a million clients, and a heap
/// allocation for each one's few connections (and its free) cost more than
/// everything else in writing or loading them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SavedRecents {
    /// Slots past `len` are unused (and kept at their default).
    items: [SavedRecent; RECENT],
    len: u8,
}

impl SavedRecents {
    /// Appends `r`; `false` (and nothing kept) when [`RECENT`] are there.
    pub fn push(&mut self, r: SavedRecent) -> bool {
        match self.items.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = r;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Keeps the connections `keep` says yes to, in order; it may change
    /// them.
    pub fn retain_mut(&mut self, mut keep: impl FnMut(&mut SavedRecent) -> bool) {
        let mut kept = SavedRecents::default();
        for r in self.iter_mut() {
            if keep(r) {
                kept.push(*r);
            }
        }
        *self = kept;
    }
}

impl std::ops::Deref for SavedRecents {
    type Target = [SavedRecent];
    fn deref(&self) -> &[SavedRecent] {
        self.items.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl std::ops::DerefMut for SavedRecents {
    fn deref_mut(&mut self) -> &mut [SavedRecent] {
        self.items
            .get_mut(..usize::from(self.len))
            .unwrap_or_default()
    }
}

/// Equal when the connections are: unused slots do not count.
impl PartialEq for SavedRecents {
    fn eq(&self, other: &SavedRecents) -> bool {
        **self == **other
    }
}

impl Eq for SavedRecents {}

impl FromIterator<SavedRecent> for SavedRecents {
    /// The first [`RECENT`] of `iter`; the others are not kept.
    fn from_iter<I: IntoIterator<Item = SavedRecent>>(iter: I) -> SavedRecents {
        let mut out = SavedRecents::default();
        for r in iter.into_iter().take(RECENT) {
            out.push(r);
        }
        out
    }
}

/// One recent confirmed connection of a [`SavedClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SavedRecent {
    /// Seconds since the connection was confirmed.
    pub age: u32,
    pub fingerprint: u32,
    /// Index into the backend names that go with the records.
    pub backend: u16,
    pub tls12: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ClientIndexConfig {
    pub capacity: usize,
    pub window: Duration,
    pub nat_threshold: u32,
}

#[derive(Debug)]
pub struct ClientIndex {
    shards: Shards<ClientPrefix, Record>,
    names: Interner,
    clock: Clock,
    /// Added to the clock's seconds in every timestamp, so that a record
    /// restored from a state file can be older than the process: the
    /// window, the longest a record is used. It also keeps every
    /// timestamp above 0, which marks a forgotten slot.
    origin: u32,
    window: u32,
    nat_threshold: u32,
    /// Picks a shard; keyed per process so chosen addresses cannot pile
    /// into one shard.
    shard_hasher: KeyedState,
}

impl ClientIndex {
    pub fn new(cfg: ClientIndexConfig, clock: Clock) -> Self {
        let window = secs(cfg.window).max(2);
        ClientIndex {
            // Split as the affinity table is: a state file write, which
            // copies a few shards at once, holds each for a few
            // milliseconds even at a million clients.
            shards: Shards::new(cfg.capacity),
            names: Interner::default(),
            clock,
            origin: window.min(u32::MAX / 2),
            window,
            nat_threshold: cfg.nat_threshold,
            shard_hasher: keyed_state(),
        }
    }

    /// The clock in the records' seconds.
    fn now(&self) -> u32 {
        self.clock.now_secs().saturating_add(self.origin)
    }

    fn shard(&self, p: &ClientPrefix) -> MutexGuard<'_, Slru<ClientPrefix, Record>> {
        self.shards.lock(self.shard_index(p))
    }

    fn shard_index(&self, p: &ClientPrefix) -> usize {
        use std::hash::BuildHasher;
        (self.shard_hasher.hash_one(p) % self.shards.count() as u64) as usize
    }

    /// What is known about `prefix`; `fingerprint` selects `same_fingerprint`.
    pub fn view(&self, prefix: &ClientPrefix, fingerprint: u32) -> ClientView {
        let now = self.now();
        let mut shard = self.shard(prefix);
        let Some(rec) = shard.get_mut(prefix) else {
            return ClientView::default();
        };
        rec.roll(now, self.window / 2);
        let in_window = |r: &&Recent| r.at != 0 && now.saturating_sub(r.at) < self.window;
        let last = rec
            .newest_first()
            .find(in_window)
            .map(|r| (r.backend, r.tls12));
        let same = rec
            .newest_first()
            .filter(in_window)
            .find(|r| r.fingerprint == fingerprint)
            .map(|r| r.backend);
        let new_sessions = u32::from(rec.previous) + u32::from(rec.current);
        drop(shard);
        ClientView {
            last: last.and_then(|(b, tls12)| Some((self.names.name(b)?, tls12))),
            same_fingerprint: same.and_then(|b| self.names.name(b)),
            shared: new_sessions > self.nat_threshold,
            new_sessions,
        }
    }

    /// Records a connection the server confirmed.
    pub fn record(&self, prefix: ClientPrefix, c: &Confirmed) {
        let now = self.now();
        let backend = self.names.intern(&c.backend);
        let mut shard = self.shard(&prefix);
        let Some(rec) = shard.get_or_insert_mut(prefix, || Record {
            bucket_start: now,
            ..Record::default()
        }) else {
            return;
        };
        rec.roll(now, self.window / 2);
        if c.new_session {
            rec.current = rec.current.saturating_add(1);
        }
        let slot = usize::from(rec.head) % RECENT;
        // `at == 0` marks a forgotten slot. `slot` is below `RECENT`.
        if let Some(r) = rec.recent.get_mut(slot) {
            *r = Recent {
                at: now.max(1),
                fingerprint: c.fingerprint,
                backend,
                tls12: c.tls12,
            };
        }
        rec.head = ((slot + 1) % RECENT) as u8;
        rec.len = (usize::from(rec.len) + 1).min(RECENT) as u8;
    }

    /// Raises the prefix's count of new sessions in the window to `n`, the
    /// count other instances sharing a store report for it (their own
    /// sessions and ours): the local count may only be higher. Keeps a
    /// record for the prefix even with no connection of its own, so that
    /// NAT detection holds here before this instance has seen the address.
    pub fn note_shared_sessions(&self, prefix: ClientPrefix, n: u32) {
        let now = self.now();
        let mut shard = self.shard(&prefix);
        let Some(rec) = shard.get_or_insert_mut(prefix, || Record {
            bucket_start: now,
            ..Record::default()
        }) else {
            return;
        };
        rec.roll(now, self.window / 2);
        let known = u32::from(rec.previous) + u32::from(rec.current);
        if n > known {
            let more = n - u32::from(rec.previous);
            rec.current = u16::try_from(more).unwrap_or(u16::MAX);
        }
    }

    /// Forgets the prefix's recent connections to `backend` (it went away).
    pub fn forget_backend(&self, prefix: &ClientPrefix, backend: &BackendName) {
        let id = self.names.intern(backend);
        let mut shard = self.shard(prefix);
        if let Some(rec) = shard.peek_mut(prefix) {
            for r in rec.recent.iter_mut().filter(|r| r.backend == id) {
                r.at = 0;
                r.fingerprint = 0;
            }
        }
    }

    /// What the index holds for `prefix`, without refreshing it (the
    /// admin API's lookup).
    pub fn peek(&self, prefix: &ClientPrefix) -> Option<ClientSummary> {
        let now = self.now();
        let shard = self.shard(prefix);
        let rec = shard.peek(prefix)?;
        let newest = rec
            .newest_first()
            .find(|r| r.at != 0 && now.saturating_sub(r.at) < self.window)
            .copied();
        // The buckets as `view` would roll them now.
        let mut rolled = rec.clone();
        drop(shard);
        rolled.roll(now, self.window / 2);
        let new_sessions = u32::from(rolled.previous) + u32::from(rolled.current);
        let last = match newest {
            Some(r) => Some(LastConnection {
                backend: self.names.name(r.backend)?,
                tls12: r.tls12,
                age: Duration::from_secs(u64::from(now.saturating_sub(r.at))),
                expires_in: Duration::from_secs(u64::from(self.window - now.saturating_sub(r.at))),
            }),
            None => None,
        };
        Some(ClientSummary {
            last,
            shared: new_sessions > self.nat_threshold,
            new_sessions,
        })
    }

    /// Forgets everything about `prefix`; whether there was anything.
    pub fn forget(&self, prefix: &ClientPrefix) -> bool {
        self.shard(prefix).pop(prefix).is_some()
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Hands `visit` the records one shard at a time, each shard's
    /// probation segment then its protected one, each least recently used
    /// first, holding a shard's lock only while it is copied (a few shards
    /// at a time, see `Shards::save`); returns the backend names the
    /// records' `backend` indexes.
    pub fn save(&self, visit: &mut dyn FnMut(&[SavedClient])) -> Vec<BackendName> {
        self.shards.save(
            || self.now(),
            |now, prefix, rec, _| {
                let recent = rec
                    .newest_first()
                    .rev()
                    .filter(|r| r.at != 0 && now.saturating_sub(r.at) < self.window)
                    .map(|r| SavedRecent {
                        age: now.saturating_sub(r.at),
                        fingerprint: r.fingerprint,
                        backend: r.backend,
                        tls12: r.tls12,
                    })
                    .collect();
                Some(SavedClient {
                    prefix: *prefix,
                    recent,
                    bucket_age: now.saturating_sub(rec.bucket_start),
                    previous: rec.previous,
                    current: rec.current,
                })
            },
            visit,
        );
        self.names.all()
    }

    /// Puts saved records back, given least recently used first, with the
    /// ages they have now; `names[i]` is the backend `backend: i` means.
    /// Connections older than the window are skipped, and a record left
    /// with nothing in its window is not put. Returns how many were put.
    /// Each shard is filled in one go (see `Shards::restore`); a record of
    /// more than one connection (its prefix came back) goes back
    /// protected.
    pub fn restore(&self, names: &[BackendName], clients: &[SavedClient]) -> usize {
        let ids: Vec<u16> = names.iter().map(|n| self.names.intern(n)).collect();
        let now = self.now();
        let half = self.window / 2;
        self.shards.restore(
            clients,
            |saved| self.shard_index(&saved.prefix),
            |saved| {
                let mut rec = Record {
                    bucket_start: now.saturating_sub(saved.bucket_age),
                    previous: saved.previous,
                    current: saved.current,
                    ..Record::default()
                };
                rec.roll(now, half);
                let recent = saved
                    .recent
                    .iter()
                    .filter(|r| r.age < self.window)
                    .filter_map(|r| Some((r, *ids.get(usize::from(r.backend))?)));
                for ((r, backend), slot) in recent.zip(rec.recent.iter_mut()) {
                    *slot = Recent {
                        at: now.saturating_sub(r.age).max(1),
                        fingerprint: r.fingerprint,
                        backend,
                        tls12: r.tls12,
                    };
                    rec.len += 1;
                }
                rec.head = rec.len % RECENT as u8;
                let empty = rec.len == 0 && rec.previous == 0 && rec.current == 0;
                let segment = if rec.len > 1 {
                    Segment::Protected
                } else {
                    Segment::Probation
                };
                (!empty).then_some((saved.prefix, rec, segment))
            },
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use std::sync::Arc;

    /// An index on tokio's clock: the window tests run on a paused runtime
    /// and age entries with `tokio::time::advance`.
    fn index(threshold: u32) -> ClientIndex {
        let cfg = ClientIndexConfig {
            capacity: 1000,
            window: Duration::from_secs(600),
            nat_threshold: threshold,
        };
        ClientIndex::new(cfg, Clock::new())
    }

    fn confirmed(b: &str, fp: u32, new_session: bool) -> Confirmed {
        Confirmed {
            backend: Arc::from(b),
            tls12: true,
            fingerprint: fp,
            new_session,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn peek_shows_the_last_backend_and_forget_clears_the_prefix() {
        let idx = index(1);
        let p = ClientPrefix::new("10.0.0.1".parse().unwrap(), 32, 64);
        assert_eq!(idx.peek(&p), None);
        // Past second 0, which records as 1 (0 marks a forgotten slot).
        tokio::time::advance(Duration::from_secs(10)).await;
        idx.record(p, &confirmed("a", 1, true));
        tokio::time::advance(Duration::from_secs(100)).await;
        let s = idx.peek(&p).unwrap();
        let last = s.last.unwrap();
        assert_eq!(&*last.backend, "a");
        assert_eq!(last.age, Duration::from_secs(100));
        assert_eq!(last.expires_in, Duration::from_secs(500));
        assert!(!s.shared);
        idx.record(p, &confirmed("b", 2, true));
        let s = idx.peek(&p).unwrap();
        assert_eq!(&*s.last.unwrap().backend, "b");
        assert!(s.shared, "two new sessions are over a threshold of one");
        assert!(idx.forget(&p));
        assert_eq!(idx.peek(&p), None);
        assert!(!idx.forget(&p));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_one_connection_addresses_leaves_the_clients_that_came_back() {
        let idx = ClientIndex::new(
            ClientIndexConfig {
                capacity: 200,
                window: Duration::from_secs(600),
                nat_threshold: 4,
            },
            Clock::new(),
        );
        let prefix = |i: u32| ClientPrefix::new(IpAddr::from(i.to_be_bytes()), 32, 64);
        for i in 0..20 {
            for fp in 0..2 {
                idx.record(prefix(i), &confirmed("a", fp, true));
            }
        }
        for i in 1_000..6_000 {
            idx.record(prefix(i), &confirmed("b", 0, true));
            assert!(idx.len() <= 200);
        }
        assert_eq!(idx.len(), 200);
        for i in 0..20 {
            let s = idx.peek(&prefix(i)).expect("a prefix seen twice stays");
            assert_eq!(s.new_sessions, 2);
        }
    }

    #[test]
    fn saved_recents_hold_at_most_recent_and_compare_by_what_they_hold() {
        let r = |age| SavedRecent {
            age,
            fingerprint: age,
            backend: 0,
            tls12: false,
        };
        let mut full = SavedRecents::default();
        for age in 0..RECENT as u32 {
            assert!(full.push(r(age)));
        }
        assert!(!full.push(r(99)), "a seventh is refused");
        assert_eq!(full.len(), RECENT);
        let mut odd = full;
        odd.retain_mut(|x| x.age % 2 == 1);
        assert_eq!(odd.iter().map(|x| x.age).collect::<Vec<_>>(), [1, 3, 5]);
        let built: SavedRecents = [r(1), r(3), r(5)].into_iter().collect();
        assert_eq!(odd, built, "slots left behind by retain do not count");
        let many: SavedRecents = (0..10).map(r).collect();
        assert_eq!(many, full, "the first RECENT are kept");
    }

    #[test]
    fn prefixes_mask_ipv4_to_32_and_ipv6_to_64_bits() {
        let a = ClientPrefix::new("2001:db8::1".parse().unwrap(), 32, 64);
        let b = ClientPrefix::new("2001:db8::ffff:2".parse().unwrap(), 32, 64);
        let c = ClientPrefix::new("2001:db8:0:1::1".parse().unwrap(), 32, 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let x = ClientPrefix::new("10.0.0.1".parse().unwrap(), 32, 64);
        let y = ClientPrefix::new("::ffff:10.0.0.1".parse().unwrap(), 32, 64);
        assert_eq!(x, y, "IPv4-mapped IPv6 is the same client");
        let z = ClientPrefix::new("10.0.0.2".parse().unwrap(), 24, 64);
        assert_eq!(ClientPrefix::new("10.0.0.9".parse().unwrap(), 24, 64), z);
        assert_eq!(z.addr(), "10.0.0.0".parse::<IpAddr>().unwrap());
        let all = ClientPrefix::new("10.0.0.9".parse().unwrap(), 0, 0);
        assert_eq!(all.addr(), "0.0.0.0".parse::<IpAddr>().unwrap());
        let cut = ClientPrefix::new("2001:db8::1".parse().unwrap(), 32, 200);
        assert_eq!(cut.addr(), "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn prefix_bytes_for_the_source_hash_are_the_family_and_the_network() {
        // The rendezvous hash of every instance reads these bytes.
        let v4 = ClientPrefix::new("192.0.2.7".parse().unwrap(), 24, 64).to_bytes();
        let mut want = [0u8; 17];
        want[0] = 4;
        want[13..].copy_from_slice(&[192, 0, 2, 0]);
        assert_eq!(v4, want);
        let v6 = ClientPrefix::new("2001:db8::ffff:1".parse().unwrap(), 32, 64).to_bytes();
        let mut want = [0u8; 17];
        want[0] = 6;
        want[1..5].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(v6, want);
    }

    #[tokio::test(start_paused = true)]
    async fn most_recent_confirmed_connection_wins_and_expires_with_the_window() {
        let ix = index(4);
        let p = ClientPrefix::new("127.0.0.2".parse().unwrap(), 32, 64);
        ix.record(p, &confirmed("a", 1, true));
        ix.record(p, &confirmed("b", 2, false));
        let v = ix.view(&p, 1);
        assert_eq!(v.last.unwrap().0.as_ref(), "b");
        assert_eq!(v.same_fingerprint.unwrap().as_ref(), "a");
        tokio::time::advance(Duration::from_secs(601)).await;
        let v = ix.view(&p, 1);
        assert_eq!(v.last, None);
        assert_eq!(v.same_fingerprint, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_shared_by_other_instances_raises_the_local_one_never_lowers_it() {
        let ix = index(2);
        let p = ClientPrefix::new("192.0.2.7".parse().unwrap(), 32, 64);
        // Nothing seen here yet: the shared count alone marks it shared.
        ix.note_shared_sessions(p, 3);
        let v = ix.view(&p, 0);
        assert_eq!((v.new_sessions, v.shared, v.last), (3, true, None));
        // A lower count from the store leaves the local one as it is.
        for i in 0..2 {
            ix.record(p, &confirmed("a", i, true));
        }
        ix.note_shared_sessions(p, 1);
        assert_eq!(ix.view(&p, 0).new_sessions, 5);
        // A count past u16 saturates instead of wrapping.
        ix.note_shared_sessions(p, 1 << 20);
        assert_eq!(ix.view(&p, 0).new_sessions, u32::from(u16::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn more_new_sessions_than_the_threshold_mark_the_address_shared() {
        let ix = index(4);
        let p = ClientPrefix::new("127.0.0.3".parse().unwrap(), 32, 64);
        for i in 0..4 {
            ix.record(p, &confirmed("a", i, true));
            // Resumptions are not new sessions.
            ix.record(p, &confirmed("a", i, false));
        }
        assert!(!ix.view(&p, 0).shared);
        ix.record(p, &confirmed("a", 9, true));
        assert!(ix.view(&p, 0).shared);
        tokio::time::advance(Duration::from_secs(1300)).await;
        assert!(!ix.view(&p, 0).shared, "sessions age out of the window");
    }
}
