//! The state file: what the router has learned (the affinity tables with
//! their ticket key-name states, and the client index) carried across a
//! restart.
//!
//! It is written atomically (a temporary file, fsync, rename, fsync of the
//! directory) every `interval` and at shutdown, on a blocking thread, a
//! few table shards at a time so routing never waits for more than those
//! shards' copy. It is read once, at start, and parsed whole into memory before
//! anything is applied: a file that is missing starts empty, and one that
//! is unreadable, truncated, corrupt or of another format or version is
//! reported in one log line and ignored, never half-loaded.
//!
//! Times are kept as ages with the wall-clock time of the write, since the
//! router's own clock starts again at zero: at load each age grows by the
//! wall-clock time since the write, and what has expired is dropped.
//! Backends are kept by name and mapped back through each pool's backends,
//! so entries of a backend no longer configured are dropped.
//!
//! # Format (version 2), big-endian
//!
//! ```text
//! magic       "STKYSTAT"            8 bytes
//! version     u16                   2
//! written_at  u64                   Unix seconds of the write
//! body_len    u64
//! body        [u8; body_len]
//! checksum    [u8; 32]              SHA-256 of everything before it
//!
//! body:     pools u32, Pool * pools
//! Pool:     name Str, backends u16, Str * backends,
//!           entries u32, Entry * entries, clients u32, Client * clients
//! Str:      len u16, UTF-8 [u8; len]
//! Entry:    key [u8; 16], backend u16, state u16, idle u32, age u32,
//!           version u16, cipher u16     (the session's; 0 0: unknown)
//! Client:   family u8 (4 | 6), address [u8; 4 | 16], bucket_age u32,
//!           previous u16, current u16, recent u8 (<= 6), Recent * recent
//! Recent:   age u32, fingerprint u32, backend u16, tls12 u8 (0 | 1)
//! ```
//! `backend` fields index the pool's `backends`; entries and clients are
//! least recently used first. Version 1 (before the session's version and
//! cipher suite were kept) is read too: its entries end after `age`, and
//! their session is unknown.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::affinity::clients::{RECENT, SavedClient, SavedRecent, SavedRecents};
use crate::affinity::{Key, KeyState, SavedEntry, Session};
use crate::backend::BackendName;
use crate::pool::PoolState;

pub(crate) const MAGIC: &[u8; 8] = b"STKYSTAT";
pub(crate) const VERSION: u16 = 2;
/// magic, version, written_at, body_len.
const HEADER: usize = 8 + 2 + 8 + 8;
const CHECKSUM: usize = 32;
const ENTRY: usize = ENTRY_V1 + 2 + 2;
/// An entry of a version 1 file, without its session.
const ENTRY_V1: usize = 16 + 2 + 2 + 4 + 4;
/// The smallest client record (IPv4, no recent connection).
const MIN_CLIENT: usize = 1 + 4 + 4 + 2 + 2 + 1;
/// A client's recent connection.
const RECENT_LEN: usize = 4 + 4 + 2 + 1;
/// The longest client record (IPv6, every recent connection).
const MAX_CLIENT: usize = MIN_CLIENT + 12 + RECENT * RECENT_LEN;
/// Room for a pool's name and backend names in [`size_cap`]: the names a
/// table has interned (every backend it has routed to since the start,
/// reloads included) are far fewer and shorter.
const NAMES_ROOM: u64 = 1 << 20;
/// The least [`size_cap`] allows, for small tables.
pub const MIN_SIZE_CAP: u64 = 16 << 20;
/// Mode of a written state file: it holds client addresses, which are no
/// other local user's business.
const FILE_MODE: u32 = 0o600;

/// Why a state file was not loaded or not written. Each message says what
/// was found and that the router starts (or goes on) without it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read or written.
    #[error("cannot {0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    /// No bytes at all.
    #[error("the file is empty")]
    Empty,
    /// Does not start with the magic: not a stickytls state file.
    #[error("not a stickytls state file (wrong magic)")]
    Foreign,
    /// A state file of a version this build does not read.
    #[error("state file version {0}, but this build reads versions 1 to {VERSION}")]
    Version(u16),
    /// Shorter than its header says.
    #[error("truncated: {found} bytes where the header promises {expected}")]
    Truncated { expected: u64, found: u64 },
    /// The checksum does not match: the bytes changed after the write.
    #[error("corrupt: the checksum does not match")]
    Checksum,
    /// The checksum matches but the body does not parse: what part.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// Larger than the configured tables can fill ([`size_cap`]): not
    /// read, so that a file (or a takeover's state) cannot make the router
    /// allocate beyond what its own configuration allows.
    #[error(
        "too large: {size} bytes, over the {cap} bytes this configuration's tables can hold \
         when full (table_size and clients_tracked); a file written with larger tables loads \
         once they are configured again"
    )]
    TooLarge { size: u64, cap: u64 },
}

/// The most bytes a state file (or a takeover's state) may have for
/// `pools`: what their tables and client indexes hold when full (each
/// entry [`ENTRY`] bytes, each client at most [`MAX_CLIENT`]), a sixteenth
/// more for shards that fill unevenly, room for names, and never under
/// [`MIN_SIZE_CAP`]. At the default sizes (1,000,000 entries and clients)
/// it is about 125 MB; a real file is smaller, since clients rarely hold
/// six recent connections from IPv6 addresses.
pub fn size_cap(pools: &[crate::config::PoolConfig]) -> u64 {
    let records = |n: usize, each: usize| {
        let n = n as u64;
        n.saturating_add(n / 16)
            .saturating_add(1024)
            .saturating_mul(each as u64)
    };
    let pools: u64 = pools
        .iter()
        .map(|p| {
            NAMES_ROOM
                .saturating_add(records(p.affinity.table_size, ENTRY))
                .saturating_add(records(p.affinity.clients_tracked, MAX_CLIENT))
        })
        .fold(0u64, u64::saturating_add);
    pools
        .saturating_add((HEADER + CHECKSUM + 4) as u64)
        .max(MIN_SIZE_CAP)
}

/// A state file as parsed: everything it holds, before any of it is
/// applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Wall-clock time of the write, Unix seconds.
    pub written_at: u64,
    pub pools: Vec<SavedPool>,
}

/// One pool's part of a state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPool {
    pub name: String,
    /// What the entries' and clients' `backend` indexes name.
    pub backends: Vec<String>,
    /// Least recently used first.
    pub entries: Vec<SavedEntry>,
    pub clients: SavedClients,
}

/// A pool's client records as the file has them, checked when the file
/// was decoded and decoded again, a batch at a time, when applied: a
/// decoded record ([`SavedClient`], its recent connections inline) is
/// about 100 bytes where the file's smallest is 14, so decoding them all
/// at once would make a file's size grow sevenfold in memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SavedClients {
    /// The records, least recently used first, every one whole and with
    /// its backend indexes below `backends`.
    bytes: Vec<u8>,
    len: usize,
    /// How many backend names the records' indexes point into.
    backends: usize,
}

impl SavedClients {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records, decoded one by one.
    pub fn iter(&self) -> impl Iterator<Item = SavedClient> + '_ {
        let mut r = Reader { rest: &self.bytes };
        // Checked at decode: an error cannot happen, and would end the
        // walk rather than panic.
        std::iter::from_fn(move || {
            (!r.rest.is_empty())
                .then(|| decode_client(&mut r, self.backends).ok())
                .flatten()
        })
    }
}

/// Client records decoded at once when a state is applied: some 7 MB.
const CLIENT_BATCH: usize = 1 << 16;

/// What a load put back, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Entries put back (a table configured smaller than the file keeps
    /// the most recently used of them).
    pub entries: usize,
    /// Entries whose lifetime ran out, counting the time since the write.
    pub expired: usize,
    /// Entries of backends or pools no longer configured.
    pub dropped: usize,
    pub clients: usize,
    /// Seconds between the write and the load.
    pub age: u64,
}

/// What a write produced, for its log line.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub entries: usize,
    pub clients: usize,
    pub bytes: usize,
    pub took: Duration,
    /// Of `took`, copying the tables out and encoding them; the rest is
    /// the file system's (writing, fsync, rename).
    pub encoding: Duration,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------
// Writing.

/// The state of `pools` in the file format, with `now` as the write time:
/// the file's bytes, and how many entries and clients they hold.
/// Walks one shard at a time; the encoding happens outside the locks.
pub(crate) fn encode(pools: &[Arc<PoolState>], now: SystemTime) -> (Vec<u8>, usize, usize) {
    let e = encode_parts(pools, now);
    (e.parts.concat(), e.entries, e.clients)
}

/// An encoded state file in the pieces it was built in; concatenated, they
/// are the file. A million entries and clients make some 75 MB: kept
/// apart, they are written out and checksummed where they were built
/// instead of being copied into one buffer first.
struct Encoded {
    parts: Vec<Vec<u8>>,
    entries: usize,
    clients: usize,
}

impl Encoded {
    fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }
}

/// [`encode`], in pieces: the header (its length known last), then for
/// each pool its names, its entries and its clients, then the checksum.
/// Each piece is sized from the table's length before the walk, so it is
/// not reallocated (and copied) as it grows.
fn encode_parts(pools: &[Arc<PoolState>], now: SystemTime) -> Encoded {
    let mut parts = Vec::with_capacity(2 + 4 * pools.len());
    let (mut entries, mut clients) = (0, 0);
    let mut head = Vec::new();
    put_u32(&mut head, pools.len());
    for pool in pools {
        put_str(&mut head, &pool.config.name);
        let (table, table_count, table_names) = encode_table(pool);
        // One name list for both, the table's first: the client index has
        // its own interner, so its indexes follow the table's.
        let shift = u16::try_from(table_names.len()).unwrap_or(u16::MAX);
        let (index, index_count, index_names) = encode_clients(pool, shift);
        put_u16(&mut head, table_names.len() + index_names.len());
        for n in table_names.iter().chain(&index_names) {
            put_str(&mut head, n);
        }
        put_u32(&mut head, table_count);
        parts.push(std::mem::take(&mut head));
        parts.push(table);
        put_u32(&mut head, index_count);
        parts.push(std::mem::take(&mut head));
        parts.push(index);
        entries += table_count;
        clients += index_count;
    }
    parts.push(head);
    let body_len: usize = parts.iter().map(Vec::len).sum();
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_be_bytes());
    header.extend_from_slice(&unix_secs(now).to_be_bytes());
    header.extend_from_slice(&(body_len as u64).to_be_bytes());
    parts.insert(0, header);
    let mut sum = Sha256::new();
    for p in &parts {
        sum.update(p);
    }
    parts.push(sum.finalize().to_vec());
    Encoded {
        parts,
        entries,
        clients,
    }
}

/// A pool's table entries in the file format, how many, and the backend
/// names their indexes point into.
fn encode_table(pool: &PoolState) -> (Vec<u8>, usize, Vec<BackendName>) {
    let mut table = Vec::with_capacity(pool.table.len() * ENTRY);
    let mut count = 0usize;
    let names = pool.table.save(&mut |batch| {
        table.reserve(batch.len() * ENTRY);
        for e in batch {
            table.extend_from_slice(&encode_entry(e));
        }
        count += batch.len();
    });
    (table, count, names)
}

/// A pool's client records in the file format, their backend indexes
/// moved up by `shift`; how many, and the backend names the indexes (before
/// the shift) point into.
fn encode_clients(pool: &PoolState, shift: u16) -> (Vec<u8>, usize, Vec<BackendName>) {
    // The longest record (IPv6, every recent connection): the pages of a
    // reservation are only ever touched where written.
    let longest = MIN_CLIENT + 12 + RECENT * RECENT_LEN;
    let mut index = Vec::with_capacity(pool.clients.len() * longest);
    let mut count = 0usize;
    let names = pool.clients.save(&mut |batch| {
        for c in batch {
            encode_client(&mut index, c, shift);
        }
        count += batch.len();
    });
    (index, count, names)
}

/// An entry record, built whole so that the buffer's length is checked
/// once per entry rather than once per field.
pub(crate) fn encode_entry(e: &SavedEntry) -> [u8; ENTRY] {
    let mut out = [0u8; ENTRY];
    let fields: [&[u8]; 7] = [
        e.key.as_bytes(),
        &e.backend.to_be_bytes(),
        &e.state.to_bits().to_be_bytes(),
        &e.idle.to_be_bytes(),
        &e.age.to_be_bytes(),
        &e.session.version.to_be_bytes(),
        &e.session.cipher.to_be_bytes(),
    ];
    let mut rest = out.as_mut_slice();
    for f in fields {
        let (head, tail) = rest.split_at_mut(f.len());
        head.copy_from_slice(f);
        rest = tail;
    }
    out
}

pub(crate) fn put_u16(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// A string of at most `u16::MAX` bytes (names are far shorter; a longer
/// one is cut at a character boundary rather than written wrong).
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let s = s.get(..end).unwrap_or("");
    put_u16(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A client record; `shift` is added to its backend indexes.
pub(crate) fn encode_client(out: &mut Vec<u8>, c: &SavedClient, shift: u16) {
    match c.prefix.addr() {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&c.bucket_age.to_be_bytes());
    out.extend_from_slice(&c.previous.to_be_bytes());
    out.extend_from_slice(&c.current.to_be_bytes());
    let recent = c.recent.get(c.recent.len().saturating_sub(RECENT)..);
    let recent = recent.unwrap_or_default();
    out.push(recent.len() as u8);
    for r in recent {
        out.extend_from_slice(&r.age.to_be_bytes());
        out.extend_from_slice(&r.fingerprint.to_be_bytes());
        out.extend_from_slice(&r.backend.saturating_add(shift).to_be_bytes());
        out.push(u8::from(r.tls12));
    }
}

// ---------------------------------------------------------------------------
// Reading.

/// A bounded cursor: every read checks what is left, so a length that
/// points past the end is an error, never a panic or a huge allocation.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], StateError> {
        if n > self.rest.len() {
            return Err(StateError::Malformed(what));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], StateError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, StateError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, StateError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, StateError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn str(&mut self, what: &'static str) -> Result<String, StateError> {
        let n = self.u16(what)?;
        let bytes = self.take(usize::from(n), what)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| StateError::Malformed(what))
    }

    /// A count of items each at least `min` bytes long, checked against
    /// what is left before anything is allocated for them.
    fn count(&mut self, min: usize, what: &'static str) -> Result<usize, StateError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min) > self.rest.len() {
            return Err(StateError::Malformed(what));
        }
        Ok(n)
    }
}

/// What decoding may allocate besides the input: twice the body's size and
/// this much. A real file needs about 1.2 times its entries' bytes (a
/// decoded entry is a little larger than its record) and its clients'
/// bytes once ([`SavedClients`]); only pool and backend names cost more
/// than their bytes, and a real file has few.
const DECODE_SLACK: usize = 1 << 20;

/// Counts what decoding allocates against a budget set by the input's
/// size, so that no arrangement of records (a million empty pools, names
/// of no bytes) makes memory grow faster than the file.
struct Budget {
    left: usize,
}

impl Budget {
    /// Takes room for `n` values of `T`, or says the file is malformed.
    fn take<T>(&mut self, n: usize, what: &'static str) -> Result<(), StateError> {
        let bytes = n.saturating_mul(std::mem::size_of::<T>().max(1));
        self.left = self
            .left
            .checked_sub(bytes)
            .ok_or(StateError::Malformed(what))?;
        Ok(())
    }
}

/// Parses a whole state file. Nothing in `bytes` can make this panic or
/// allocate more than twice the file's size and 1 MiB ([`DECODE_SLACK`])
/// besides the file itself.
pub(crate) fn decode(bytes: &[u8]) -> Result<Saved, StateError> {
    if bytes.is_empty() {
        return Err(StateError::Empty);
    }
    let found = bytes.len() as u64;
    // A few bytes of the magic are a truncated file; others are not ours.
    if !MAGIC.starts_with(bytes.get(..MAGIC.len()).unwrap_or(bytes)) {
        return Err(StateError::Foreign);
    }
    if bytes.len() < HEADER {
        return Err(StateError::Truncated {
            expected: HEADER as u64,
            found,
        });
    }
    let mut header = Reader { rest: bytes };
    header.take(MAGIC.len(), "magic")?;
    let version = header.u16("version")?;
    if !(1..=VERSION).contains(&version) {
        return Err(StateError::Version(version));
    }
    let written_at = u64::from_be_bytes(header.array("time")?);
    let body_len = u64::from_be_bytes(header.array("length")?);
    let total = (HEADER as u64)
        .saturating_add(body_len)
        .saturating_add(CHECKSUM as u64);
    if found < total {
        return Err(StateError::Truncated {
            expected: total,
            found,
        });
    }
    if found > total {
        return Err(StateError::Malformed("bytes after the checksum"));
    }
    let body_end = HEADER + body_len as usize;
    let (signed, sum) = bytes.split_at(body_end);
    if Sha256::digest(signed).as_slice() != sum {
        return Err(StateError::Checksum);
    }
    let mut r = Reader {
        rest: signed.get(HEADER..).unwrap_or_default(),
    };
    let mut budget = Budget {
        left: r.rest.len().saturating_mul(2).saturating_add(DECODE_SLACK),
    };
    let n = r.count(2 + 2 + 4 + 4, "pool count")?;
    budget.take::<SavedPool>(n, "pool count")?;
    let mut pools = Vec::with_capacity(n);
    for _ in 0..n {
        pools.push(decode_pool(&mut r, version, &mut budget)?);
    }
    if !r.rest.is_empty() {
        return Err(StateError::Malformed("bytes after the last pool"));
    }
    Ok(Saved { written_at, pools })
}

fn decode_pool(
    r: &mut Reader<'_>,
    version: u16,
    budget: &mut Budget,
) -> Result<SavedPool, StateError> {
    let name = r.str("pool name")?;
    budget.take::<u8>(name.len(), "pool name")?;
    let n = r.u16("backend count")?;
    // Each name takes at least its 2-byte length: a count past what is
    // left is refused before it sizes anything.
    if usize::from(n) * 2 > r.rest.len() {
        return Err(StateError::Malformed("backend count"));
    }
    budget.take::<String>(usize::from(n), "backend count")?;
    let mut backends = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let b = r.str("backend name")?;
        budget.take::<u8>(b.len(), "backend name")?;
        backends.push(b);
    }
    let backend = |b: u16, what| {
        if usize::from(b) < backends.len() {
            Ok(b)
        } else {
            Err(StateError::Malformed(what))
        }
    };
    let size = if version == 1 { ENTRY_V1 } else { ENTRY };
    let n = r.count(size, "entry count")?;
    budget.take::<SavedEntry>(n, "entry count")?;
    let mut entries = Vec::with_capacity(n);
    // `count` checked that they are all there: take them at once and
    // read each fixed-size record with its own cursor.
    let all = r.take(n.saturating_mul(size), "entry count")?;
    for record in all.chunks_exact(size) {
        let mut e = Reader { rest: record };
        let key = Key::from_bytes(e.array("entry key")?);
        let b = backend(e.u16("entry")?, "an entry's backend index")?;
        let bits = e.u16("entry")?;
        let state = KeyState::from_bits(bits);
        if state.to_bits() != bits {
            return Err(StateError::Malformed("an entry's key state"));
        }
        let (idle, age) = (e.u32("entry")?, e.u32("entry")?);
        let session = if version == 1 {
            Session::UNKNOWN
        } else {
            Session {
                version: e.u16("entry")?,
                cipher: e.u16("entry")?,
            }
        };
        entries.push(SavedEntry {
            key,
            backend: b,
            state,
            session,
            idle,
            age,
        });
    }
    let n = r.count(MIN_CLIENT, "client count")?;
    // Checked here, kept as bytes (see `SavedClients`).
    let records = r.rest;
    for _ in 0..n {
        decode_client(r, backends.len())?;
    }
    let bytes = records
        .get(..records.len() - r.rest.len())
        .unwrap_or_default();
    budget.take::<u8>(bytes.len(), "client count")?;
    let clients = SavedClients {
        bytes: bytes.to_vec(),
        len: n,
        backends: backends.len(),
    };
    Ok(SavedPool {
        name,
        backends,
        entries,
        clients,
    })
}

/// One client record, its backend indexes below `backends`.
fn decode_client(r: &mut Reader<'_>, backends: usize) -> Result<SavedClient, StateError> {
    let backend = |b: u16| {
        if usize::from(b) < backends {
            Ok(b)
        } else {
            Err(StateError::Malformed("a client's backend index"))
        }
    };
    let addr = match r.u8("client")? {
        4 => IpAddr::from(r.array::<4>("client address")?),
        6 => IpAddr::from(r.array::<16>("client address")?),
        _ => return Err(StateError::Malformed("a client's address family")),
    };
    let bucket_age = r.u32("client")?;
    let previous = r.u16("client")?;
    let current = r.u16("client")?;
    let k = r.u8("client")?;
    if usize::from(k) > RECENT {
        return Err(StateError::Malformed("a client's recent connections"));
    }
    let mut recent = SavedRecents::default();
    for _ in 0..k {
        let age = r.u32("recent connection")?;
        let fingerprint = r.u32("recent connection")?;
        let b = backend(r.u16("recent connection")?)?;
        let tls12 = match r.u8("recent connection")? {
            0 => false,
            1 => true,
            _ => return Err(StateError::Malformed("a recent connection's version")),
        };
        // At most `RECENT`, checked above: never refused.
        recent.push(SavedRecent {
            age,
            fingerprint,
            backend: b,
            tls12,
        });
    }
    Ok(SavedClient {
        // Re-masked by the pool it is applied to.
        prefix: crate::affinity::clients::ClientPrefix::new(addr, 32, 128),
        recent,
        bucket_age,
        previous,
        current,
    })
}

// ---------------------------------------------------------------------------
// Applying.

/// Puts a parsed state into `pools`, with every age grown by the time
/// between the write and `now`; pools and backends that are no longer
/// configured are dropped.
pub fn apply(saved: Saved, pools: &[Arc<PoolState>], now: SystemTime) -> Restored {
    // A clock stepped back since the write counts as no time passed.
    let age = unix_secs(now).saturating_sub(saved.written_at);
    let grow = u32::try_from(age).unwrap_or(u32::MAX);
    let mut out = Restored {
        age,
        ..Restored::default()
    };
    for sp in saved.pools {
        let Some(pool) = pools.iter().find(|p| p.config.name == sp.name) else {
            out.dropped += sp.entries.len();
            continue;
        };
        // File index → this pool's backend, by name; `None`: gone.
        let current: Vec<Option<BackendName>> = sp
            .backends
            .iter()
            .map(|n| pool.backends.by_name(n).map(|b| b.name.clone()))
            .collect();
        let names: Vec<BackendName> = current.iter().flatten().cloned().collect();
        let mut next = 0u16;
        let renumber: Vec<Option<u16>> = current
            .iter()
            .map(|c| {
                c.as_ref().map(|_| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let to_now = |b: u16| renumber.get(usize::from(b)).copied().flatten();

        let SavedPool {
            mut entries,
            clients,
            ..
        } = sp;
        let before = entries.len();
        entries.retain_mut(|e| match to_now(e.backend) {
            Some(b) => {
                e.backend = b;
                e.idle = e.idle.saturating_add(grow);
                e.age = e.age.saturating_add(grow);
                true
            }
            None => false,
        });
        out.dropped += before - entries.len();
        // Least recently used first, across shards, so that the table's
        // order (and what a smaller table evicts) is what it was.
        entries.sort_by_key(|e| std::cmp::Reverse(e.idle));
        let put = pool.table.restore(&names, &entries);
        out.entries += put;
        out.expired += entries.len() - put;

        // A batch at a time, in the file's order: the index keeps what it
        // would keep of them all at once.
        let mut all = clients.iter();
        let mut batch = Vec::with_capacity(clients.len().min(CLIENT_BATCH));
        loop {
            batch.clear();
            batch.extend(all.by_ref().take(CLIENT_BATCH));
            if batch.is_empty() {
                break;
            }
            for c in &mut batch {
                c.prefix = pool.prefix(c.prefix.addr());
                c.bucket_age = c.bucket_age.saturating_add(grow);
                c.recent.retain_mut(|r| match to_now(r.backend) {
                    Some(b) => {
                        r.backend = b;
                        r.age = r.age.saturating_add(grow);
                        true
                    }
                    None => false,
                });
            }
            out.clients += pool.clients.restore(&names, &batch);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Metrics.

/// Counts a write and, when it succeeded, what it took and held: a state
/// file that stops being written, or grows towards its time budget, shows
/// on a dashboard before a restart finds out.
fn record_write(result: &Result<Written, StateError>) {
    use crate::metrics as m;
    match result {
        Ok(w) => {
            metrics::counter!(m::STATE_WRITES, "result" => "ok").increment(1);
            metrics::histogram!(m::STATE_WRITE_SECONDS).record(w.took.as_secs_f64());
            metrics::gauge!(m::STATE_ENTRIES_WRITTEN).set(w.entries as f64);
            metrics::gauge!(m::STATE_CLIENTS_WRITTEN).set(w.clients as f64);
            metrics::gauge!(m::STATE_BYTES_WRITTEN).set(w.bytes as f64);
        }
        Err(_) => metrics::counter!(m::STATE_WRITES, "result" => "error").increment(1),
    }
}

/// Counts a load by `result` (ok, skipped, missing) and what it put back.
fn record_load(result: &'static str, restored: Option<&Restored>) {
    use crate::metrics as m;
    metrics::counter!(m::STATE_LOADS, "result" => result).increment(1);
    let r = restored.copied().unwrap_or_default();
    metrics::gauge!(m::STATE_ENTRIES_RESTORED).set(r.entries as f64);
    metrics::gauge!(m::STATE_CLIENTS_RESTORED).set(r.clients as f64);
}

// ---------------------------------------------------------------------------
// The file.

/// The state file of a running router.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Held by the blocking thread across a write, so that two writes (a
    /// periodic one and one at shutdown) never share the temporary file,
    /// even when the task that started one was dropped.
    writing: std::sync::Mutex<()>,
}

impl StateFile {
    pub fn new(path: PathBuf) -> Arc<StateFile> {
        Arc::new(StateFile {
            path,
            writing: std::sync::Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the file, refusing one over `cap` bytes before
    /// reading it (and one that grows past it while read); `Ok(None)` if it
    /// does not exist.
    pub fn read_within(&self, cap: u64) -> Result<Option<Saved>, StateError> {
        use std::io::Read;
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::Io("read the state file", e)),
        };
        let size = f
            .metadata()
            .map_err(|e| StateError::Io("read the state file", e))?
            .len();
        if size > cap {
            return Err(StateError::TooLarge { size, cap });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        f.take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| StateError::Io("read the state file", e))?;
        let size = bytes.len() as u64;
        if size > cap {
            return Err(StateError::TooLarge { size, cap });
        }
        decode(&bytes).map(Some)
    }

    /// [`StateFile::read_within`] with no cap but the address space: for
    /// tools reading a file they wrote themselves.
    pub fn read(&self) -> Result<Option<Saved>, StateError> {
        self.read_within(u64::MAX)
    }

    /// Loads the file into `pools`, logging one line whatever happens; the
    /// router starts in every case. A file larger than `pools` can hold
    /// ([`size_cap`]) is not read.
    pub fn restore(&self, pools: &[Arc<PoolState>]) -> Option<Restored> {
        let started = Instant::now();
        let file = self.path.display();
        let configs: Vec<_> = pools.iter().map(|p| p.config.clone()).collect();
        self.remove_stale_temporaries();
        match self.read_within(size_cap(&configs)) {
            Ok(Some(saved)) => {
                let r = apply(saved, pools, SystemTime::now());
                record_load("ok", Some(&r));
                info!(%file, entries = r.entries, expired = r.expired, dropped = r.dropped,
                    clients = r.clients, written_secs_ago = r.age,
                    took_ms = started.elapsed().as_millis() as u64,
                    "state restored: {} entries and {} clients; {} expired since the write, {} of backends or pools no longer configured",
                    r.entries, r.clients, r.expired, r.dropped);
                Some(r)
            }
            Ok(None) => {
                record_load("missing", None);
                info!(%file, "no state file yet: starting with empty tables");
                None
            }
            Err(e) => {
                record_load("skipped", None);
                warn!(%file, "state file ignored, starting with empty tables: {e}");
                None
            }
        }
    }

    /// Writes the state of `pools` on a blocking thread and logs the outcome.
    pub async fn write(self: &Arc<Self>, pools: &[Arc<PoolState>]) -> Result<Written, StateError> {
        let this = self.clone();
        let pools = pools.to_vec();
        let result = tokio::task::spawn_blocking(move || this.write_now(&pools))
            .await
            .unwrap_or_else(|e| Err(StateError::Io("finish the write", std::io::Error::other(e))));
        let file = self.path.display();
        match &result {
            Ok(w) => info!(%file, entries = w.entries, clients = w.clients, bytes = w.bytes,
                took_ms = w.took.as_millis() as u64, "state written"),
            Err(e) => warn!(%file, "state not written, the previous file stays: {e}"),
        }
        result
    }

    /// Encodes and writes atomically: a temporary file beside the target,
    /// fsync, rename over the target, fsync of the directory. A reader (the
    /// next start) sees the old file or the new one, never a mix.
    pub fn write_now(&self, pools: &[Arc<PoolState>]) -> Result<Written, StateError> {
        // A poisoned lock only means a panic in an earlier write, which
        // left at worst a temporary file that this one replaces.
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let encoded = encode_parts(pools, SystemTime::now());
        let encoding = started.elapsed();
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = self.temporary(std::process::id());
        let result = (|| {
            let mut f = create_private(&tmp)
                .map_err(|e| StateError::Io("create the temporary state file", e))?;
            for part in &encoded.parts {
                f.write_all(part)
                    .map_err(|e| StateError::Io("write the temporary state file", e))?;
            }
            f.sync_all()
                .map_err(|e| StateError::Io("fsync the temporary state file", e))?;
            std::fs::rename(&tmp, &self.path)
                .map_err(|e| StateError::Io("rename the state file into place", e))?;
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StateError::Io("fsync the state file's directory", e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        let took = started.elapsed();
        let result = result.map(|()| Written {
            entries: encoded.entries,
            clients: encoded.clients,
            bytes: encoded.len(),
            took,
            encoding,
        });
        record_write(&result);
        result
    }

    /// The temporary file a writer of process `pid` uses.
    fn temporary(&self, pid: u32) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{pid}.tmp"));
        self.path.with_file_name(name)
    }

    /// Removes the temporary files of writers that crashed mid-write
    /// (`<file>.<pid>.tmp` of a process that no longer runs): unlinked,
    /// which never follows a symbolic link.
    fn remove_stale_temporaries(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{}.", name.to_string_lossy());
        for entry in entries.flatten() {
            let file = entry.file_name();
            let pid = file
                .to_str()
                .and_then(|f| f.strip_prefix(&prefix))
                .and_then(|f| f.strip_suffix(".tmp"))
                .and_then(|p| p.parse::<u32>().ok());
            let Some(pid) = pid else { continue };
            let running = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
            if !running && std::fs::remove_file(entry.path()).is_ok() {
                info!(file = %entry.path().display(), "removed a temporary state file left by a writer that stopped mid-write");
            }
        }
    }
}

/// Creates `path` for writing, mode [`FILE_MODE`] whatever the umask: a
/// file left there (a crashed write of a process with the same id, as in a
/// container) is unlinked first, and the file is then created only if
/// nothing took its place meanwhile (O_EXCL), never through a symbolic link
/// (O_NOFOLLOW; O_EXCL alone already refuses one), so a link planted at the
/// predictable name cannot make the router write elsewhere.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(FILE_MODE)
        .open(path)?;
    // The umask can only take bits away from FILE_MODE; this states it.
    f.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use crate::affinity::clients::Confirmed;
    use crate::affinity::{Binding, KeyKind};
    use crate::config::{BackendConfig, PoolConfig};

    fn pool(name: &str, backends: &[&str]) -> Arc<PoolState> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut config = PoolConfig::new(
            name,
            backends
                .iter()
                .map(|b| BackendConfig::new(b, addr))
                .collect(),
        );
        config.affinity.inactivity_timeout = Duration::from_secs(600);
        config.affinity.correlation_window = Duration::from_secs(600);
        Arc::new(PoolState::for_test(config))
    }

    /// A TLS 1.2 session's version and cipher suite.
    const TLS12_SESSION: Session = Session {
        version: 0x0303,
        cipher: 0xc02f,
    };

    fn bind(pool: &PoolState, key: Key, backend: &str, state: KeyState) {
        let backend = pool.backends.by_name(backend).unwrap().name.clone();
        let session = if state == KeyState::Owned {
            TLS12_SESSION
        } else {
            Session::UNKNOWN
        };
        pool.table.put(
            key,
            Binding {
                backend,
                state,
                session,
            },
        );
    }

    fn key(i: u32) -> Key {
        Key::new(KeyKind::SessionId, &i.to_le_bytes())
    }

    fn learned() -> (Arc<PoolState>, Vec<u8>, SystemTime) {
        let p = pool("web", &["a", "b", "c"]);
        bind(&p, key(1), "a", KeyState::Owned);
        bind(&p, key(2), "b", KeyState::Routable);
        bind(&p, key(3), "c", KeyState::Candidate { tag: 77 });
        bind(&p, key(4), "b", KeyState::Shared);
        let client = p.prefix("192.0.2.7".parse().unwrap());
        p.clients.record(
            client,
            &Confirmed {
                backend: p.backends.by_name("c").unwrap().name.clone(),
                tls12: true,
                fingerprint: 42,
                new_session: true,
            },
        );
        let now = SystemTime::now();
        let (bytes, entries, clients) = encode(std::slice::from_ref(&p), now);
        assert_eq!((entries, clients), (4, 1));
        (p, bytes, now)
    }

    #[test]
    fn a_written_state_restores_entries_key_states_and_clients() {
        let (_, bytes, now) = learned();
        let fresh = pool("web", &["c", "b", "a"]);
        let r = apply(decode(&bytes).unwrap(), std::slice::from_ref(&fresh), now);
        assert_eq!((r.entries, r.expired, r.dropped, r.clients), (4, 0, 0, 1));
        let got = |i| {
            fresh
                .table
                .get(&key(i))
                .map(|b| (b.backend.to_string(), b.state))
        };
        assert_eq!(got(1), Some(("a".into(), KeyState::Owned)));
        let session = fresh.table.get(&key(1)).unwrap().session;
        assert_eq!(session, TLS12_SESSION, "the session's version and suite");
        assert_eq!(got(2), Some(("b".into(), KeyState::Routable)));
        assert_eq!(got(3), Some(("c".into(), KeyState::Candidate { tag: 77 })));
        assert_eq!(got(4), Some(("b".into(), KeyState::Shared)));
        let view = fresh
            .clients
            .view(&fresh.prefix("192.0.2.7".parse().unwrap()), 42);
        assert_eq!(
            view.last.map(|(b, tls12)| (b.to_string(), tls12)),
            Some(("c".into(), true))
        );
        assert_eq!(view.same_fingerprint.as_deref(), Some("c"));
        assert_eq!(view.new_sessions, 1);
    }

    /// A version 1 file, as the build before sessions were kept wrote it:
    /// each entry without its version and cipher suite.
    #[test]
    fn a_version_1_file_is_read_with_its_sessions_unknown() {
        let mut body = Vec::new();
        put_u32(&mut body, 1);
        put_str(&mut body, "web");
        put_u16(&mut body, 1);
        put_str(&mut body, "a");
        put_u32(&mut body, 2);
        for (i, state) in [(1, KeyState::Owned), (2, KeyState::Routable)] {
            body.extend_from_slice(key(i).as_bytes());
            body.extend_from_slice(&0u16.to_be_bytes());
            body.extend_from_slice(&state.to_bits().to_be_bytes());
            body.extend_from_slice(&5u32.to_be_bytes());
            body.extend_from_slice(&9u32.to_be_bytes());
        }
        put_u32(&mut body, 0);
        let saved = decode(&signed(&body, 1)).unwrap();
        let entries = &saved.pools[0].entries;
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (
                entries[0].state,
                entries[0].session,
                entries[0].idle,
                entries[0].age
            ),
            (KeyState::Owned, Session::UNKNOWN, 5, 9)
        );
        assert_eq!(entries[1].state, KeyState::Routable);
        // The same records read as version 2 are four bytes short each.
        assert!(decode(&signed(&body, 2)).is_err());
    }

    #[test]
    fn entries_of_removed_backends_and_pools_are_dropped() {
        let (_, bytes, now) = learned();
        let fewer = pool("web", &["a", "c"]);
        let other = pool("api", &["b"]);
        let r = apply(
            decode(&bytes).unwrap(),
            &[fewer.clone(), other.clone()],
            now,
        );
        assert_eq!((r.entries, r.dropped), (2, 2));
        assert!(fewer.table.get(&key(2)).is_none());
        assert!(other.table.is_empty(), "affinity never crosses pools");
        let r = apply(decode(&bytes).unwrap(), std::slice::from_ref(&other), now);
        assert_eq!((r.entries, r.dropped, r.clients), (0, 4, 0));
    }

    #[test]
    fn time_since_the_write_counts_against_each_lifetime() {
        let (_, bytes, now) = learned();
        let fresh = pool("web", &["a", "b", "c"]);
        // 599 s of the 600 s inactivity timeout have passed by wall clock.
        let r = apply(
            decode(&bytes).unwrap(),
            std::slice::from_ref(&fresh),
            now + Duration::from_secs(599),
        );
        assert_eq!(r.entries, 4);
        let late = pool("web", &["a", "b", "c"]);
        let r = apply(
            decode(&bytes).unwrap(),
            std::slice::from_ref(&late),
            now + Duration::from_secs(601),
        );
        assert_eq!((r.entries, r.expired, r.clients), (0, 4, 0));
        assert!(late.table.get(&key(1)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_entry_keeps_only_what_was_left_of_its_lifetime() {
        let (_, bytes, now) = learned();
        let fresh = pool("web", &["a", "b", "c"]);
        apply(
            decode(&bytes).unwrap(),
            std::slice::from_ref(&fresh),
            now + Duration::from_secs(500),
        );
        tokio::time::advance(Duration::from_secs(90)).await;
        assert!(fresh.table.get(&key(1)).is_some(), "590 s idle of 600");
        // The hit refreshed it: a full timeout from now.
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(fresh.table.get(&key(1)).is_some());
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(fresh.table.get(&key(1)).is_none());
        assert!(
            fresh.table.get(&key(2)).is_none(),
            "never hit since the restore"
        );
    }

    #[test]
    fn every_prefix_of_a_state_file_is_an_error_not_a_panic() {
        let (_, bytes, _) = learned();
        for n in 0..bytes.len() {
            let e = decode(&bytes[..n]).unwrap_err();
            assert!(
                matches!(e, StateError::Empty | StateError::Truncated { .. }),
                "{n}: {e}"
            );
        }
        assert!(decode(&bytes).is_ok());
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let (_, bytes, _) = learned();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "byte {i}");
        }
    }

    /// A body that passes the checksum (as a writer bug would produce) is
    /// still parsed with bounded lengths.
    fn signed(body: &[u8], version: u16) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(body);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    #[test]
    fn lengths_are_checked_against_what_is_there() {
        let huge_count = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&signed(&huge_count, VERSION)),
            Err(StateError::Malformed("pool count"))
        ));
        let mut bad_index = Vec::new();
        put_u32(&mut bad_index, 1);
        put_str(&mut bad_index, "web");
        put_u16(&mut bad_index, 1);
        put_str(&mut bad_index, "a");
        put_u32(&mut bad_index, 1);
        bad_index.extend_from_slice(&[0; 16]);
        bad_index.extend_from_slice(&1u16.to_be_bytes());
        bad_index.extend_from_slice(&[0; 14]);
        put_u32(&mut bad_index, 0);
        assert!(matches!(
            decode(&signed(&bad_index, VERSION)),
            Err(StateError::Malformed("an entry's backend index"))
        ));
        bad_index.push(0);
        assert!(matches!(
            decode(&signed(&bad_index, VERSION)),
            Err(StateError::Malformed(_))
        ));
        assert!(matches!(
            decode(&signed(&[0, 0, 0, 0], 3)),
            Err(StateError::Version(3))
        ));
        assert!(matches!(
            decode(&signed(&[0, 0, 0, 0], 0)),
            Err(StateError::Version(0))
        ));
        assert!(matches!(decode(&signed(&[0, 0, 0, 0], VERSION)), Ok(s) if s.pools.is_empty()));
        assert!(matches!(decode(b"STKY"), Err(StateError::Truncated { .. })));
        assert!(matches!(decode(b"PK\x03\x04"), Err(StateError::Foreign)));
    }

    /// What a decoded state holds on the heap, by its capacities.
    fn heap(saved: &Saved) -> usize {
        use std::mem::size_of;
        saved.pools.capacity() * size_of::<SavedPool>()
            + saved
                .pools
                .iter()
                .map(|p| {
                    p.name.capacity()
                        + p.backends.capacity() * size_of::<String>()
                        + p.backends.iter().map(String::capacity).sum::<usize>()
                        + p.entries.capacity() * size_of::<SavedEntry>()
                        + p.clients.bytes.capacity()
                })
                .sum::<usize>()
    }

    /// A pool named "web" with one backend, no entry, and `n` client
    /// records of the smallest kind (IPv4, no recent connection).
    fn smallest_clients(n: u32) -> Vec<u8> {
        let mut body = Vec::new();
        put_u32(&mut body, 1);
        put_str(&mut body, "web");
        put_u16(&mut body, 1);
        put_str(&mut body, "a");
        put_u32(&mut body, 0);
        put_u32(&mut body, n as usize);
        for i in 0..n {
            body.push(4);
            body.extend_from_slice(&i.to_be_bytes());
            body.extend_from_slice(&[0, 0, 0, 9, 0, 1, 0, 1, 0]);
        }
        body
    }

    #[test]
    fn decoding_allocates_at_most_twice_the_file() {
        // The smallest records cost the most per byte once decoded: a
        // client record is 14 bytes in the file and some 100 as a
        // `SavedClient`.
        let bytes = signed(&smallest_clients(100_000), VERSION);
        let saved = decode(&bytes).unwrap();
        assert_eq!(saved.pools[0].clients.len(), 100_000);
        let used = heap(&saved);
        assert!(
            used <= 2 * bytes.len() + DECODE_SLACK,
            "{used} bytes for a file of {}",
            bytes.len()
        );
        // And they all decode, into the pool they are applied to.
        let p = pool("web", &["a"]);
        let r = apply(saved, std::slice::from_ref(&p), SystemTime::UNIX_EPOCH);
        assert_eq!(r.clients, 100_000);
        assert_eq!(p.clients.len(), 100_000);
    }

    #[test]
    fn counts_past_what_the_bytes_hold_allocate_nothing() {
        // A header claiming 2^32 - 1 entries, or clients, with a short
        // body: refused before anything is reserved for them.
        for section in ["entry count", "client count"] {
            let mut body = Vec::new();
            put_u32(&mut body, 1);
            put_str(&mut body, "web");
            put_u16(&mut body, 0);
            if section == "client count" {
                put_u32(&mut body, 0);
            }
            body.extend_from_slice(&u32::MAX.to_be_bytes());
            body.extend_from_slice(&[0; 64]);
            assert!(
                matches!(decode(&signed(&body, VERSION)), Err(StateError::Malformed(s)) if s == section),
                "{section}"
            );
        }
        // Records that cost more decoded than their bytes (empty pools,
        // empty names) are bounded by the budget, not by their count.
        let mut pools = Vec::new();
        put_u32(&mut pools, 200_000);
        for _ in 0..200_000 {
            put_str(&mut pools, "");
            put_u16(&mut pools, 0);
            put_u32(&mut pools, 0);
            put_u32(&mut pools, 0);
        }
        assert!(matches!(
            decode(&signed(&pools, VERSION)),
            Err(StateError::Malformed("pool count"))
        ));
        let mut names = Vec::new();
        put_u32(&mut names, 1);
        put_str(&mut names, "web");
        put_u16(&mut names, usize::from(u16::MAX));
        for _ in 0..u16::MAX {
            put_str(&mut names, "");
        }
        put_u32(&mut names, 0);
        put_u32(&mut names, 0);
        assert!(matches!(
            decode(&signed(&names, VERSION)),
            Err(StateError::Malformed("backend count"))
        ));
    }

    #[test]
    fn size_cap_is_what_full_tables_hold() {
        let mut small = pool("web", &["a"]).config.clone();
        small.affinity.table_size = 1000;
        small.affinity.clients_tracked = 1000;
        assert_eq!(size_cap(std::slice::from_ref(&small)), MIN_SIZE_CAP);
        let mut big = small.clone();
        big.affinity.table_size = 1_000_000;
        big.affinity.clients_tracked = 1_000_000;
        let cap = size_cap(std::slice::from_ref(&big));
        // A full table and index written: within the cap.
        let full = (1_000_000 * (ENTRY + MAX_CLIENT)) as u64;
        assert!(cap > full && cap < full + full / 8 + (4 << 20), "{cap}");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_before_it_is_read() {
        let dir = std::env::temp_dir().join(format!("stickytls-state-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (_, bytes, _) = learned();
        std::fs::write(dir.join("state"), &bytes).unwrap();
        let file = StateFile::new(dir.join("state"));
        let cap = bytes.len() as u64 - 1;
        let e = file.read_within(cap).unwrap_err();
        assert!(
            matches!(e, StateError::TooLarge { size, cap: c } if size == cap + 1 && c == cap),
            "{e}"
        );
        assert!(e.to_string().starts_with("too large: "), "{e}");
        assert!(file.read_within(cap + 1).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unreadable_file_is_an_error_and_a_missing_one_is_not() {
        let dir = std::env::temp_dir().join(format!("stickytls-state-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A directory where the file should be: reading it fails.
        let e = StateFile::new(dir.clone()).read().unwrap_err();
        assert!(matches!(e, StateError::Io(..)), "{e}");
        assert!(
            e.to_string().starts_with("cannot read the state file: "),
            "{e}"
        );
        let missing = StateFile::new(dir.join("nothing-here"));
        assert!(missing.read().unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The metrics' values as the debugging recorder holds them, by name
    /// and labels (`name{k=v}`).
    fn metric_values(
        recorder: &metrics_util::debugging::DebuggingRecorder,
    ) -> std::collections::HashMap<String, f64> {
        use metrics_util::debugging::DebugValue;
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let name = if labels.is_empty() {
                    key.name().to_string()
                } else {
                    format!("{}{{{}}}", key.name(), labels.join(","))
                };
                let value = match value {
                    DebugValue::Counter(n) => n as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(h) => h.len() as f64,
                };
                (name, value)
            })
            .collect()
    }

    #[test]
    fn writes_are_counted_by_result_with_their_duration_and_size() {
        use crate::metrics as m;
        let dir =
            std::env::temp_dir().join(format!("stickytls-state-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (p, _, _) = learned();
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let (w, failed) = metrics::with_local_recorder(&recorder, || {
            let w = StateFile::new(dir.join("state"))
                .write_now(std::slice::from_ref(&p))
                .unwrap();
            // A directory that does not exist: the temporary file fails.
            let failed = StateFile::new(dir.join("missing").join("state"))
                .write_now(std::slice::from_ref(&p));
            (w, failed)
        });
        assert!(failed.is_err());
        let got = metric_values(&recorder);
        let ok = format!("{}{{result=ok}}", m::STATE_WRITES);
        let error = format!("{}{{result=error}}", m::STATE_WRITES);
        assert_eq!(got.get(&ok), Some(&1.0), "{got:?}");
        assert_eq!(got.get(&error), Some(&1.0), "{got:?}");
        assert_eq!(got.get(m::STATE_WRITE_SECONDS), Some(&1.0), "one sample");
        assert_eq!(got.get(m::STATE_ENTRIES_WRITTEN), Some(&4.0));
        assert_eq!(got.get(m::STATE_CLIENTS_WRITTEN), Some(&1.0));
        assert_eq!(got.get(m::STATE_BYTES_WRITTEN), Some(&(w.bytes as f64)));
        assert_eq!(
            w.bytes as u64,
            std::fs::metadata(dir.join("state")).unwrap().len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loads_are_counted_as_ok_missing_or_skipped_with_what_they_restored() {
        use crate::metrics as m;
        let dir =
            std::env::temp_dir().join(format!("stickytls-state-loads-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (_, bytes, _) = learned();
        let file = StateFile::new(dir.join("state"));
        let count = |result: &str| format!("{}{{result={result}}}", m::STATE_LOADS);

        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            assert!(file.restore(&[pool("web", &["a", "b", "c"])]).is_none());
        });
        let got = metric_values(&recorder);
        assert_eq!(got.get(&count("missing")), Some(&1.0), "{got:?}");
        assert_eq!(got.get(m::STATE_ENTRIES_RESTORED), Some(&0.0));

        std::fs::write(dir.join("state"), &bytes).unwrap();
        metrics::with_local_recorder(&recorder, || {
            let r = file.restore(&[pool("web", &["a", "b", "c"])]).unwrap();
            assert_eq!((r.entries, r.clients), (4, 1));
        });
        let got = metric_values(&recorder);
        assert_eq!(got.get(&count("ok")), Some(&1.0), "{got:?}");
        assert_eq!(got.get(m::STATE_ENTRIES_RESTORED), Some(&4.0));
        assert_eq!(got.get(m::STATE_CLIENTS_RESTORED), Some(&1.0));

        std::fs::write(dir.join("state"), &bytes[..bytes.len() - 1]).unwrap();
        metrics::with_local_recorder(&recorder, || {
            assert!(file.restore(&[pool("web", &["a", "b", "c"])]).is_none());
        });
        let got = metric_values(&recorder);
        assert_eq!(got.get(&count("skipped")), Some(&1.0), "{got:?}");
        assert_eq!(got.get(m::STATE_ENTRIES_RESTORED), Some(&0.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_table_of_many_shards_writes_and_restores_whole() {
        // Enough entries and clients for every shard of both, written in
        // groups of shards and restored shard by shard.
        let p = pool("web", &["a", "b", "c"]);
        let names = ["a", "b", "c"];
        for i in 0..3_000u32 {
            bind(&p, key(i), names[i as usize % 3], KeyState::Owned);
            let client = p.prefix(std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
            p.clients.record(
                client,
                &Confirmed {
                    backend: p
                        .backends
                        .by_name(names[(i as usize + 1) % 3])
                        .unwrap()
                        .name
                        .clone(),
                    tls12: i % 2 == 0,
                    fingerprint: i,
                    new_session: true,
                },
            );
        }
        let now = SystemTime::now();
        let (bytes, entries, clients) = encode(std::slice::from_ref(&p), now);
        let fresh = pool("web", &["c", "a", "b"]);
        let r = apply(decode(&bytes).unwrap(), std::slice::from_ref(&fresh), now);
        assert_eq!((r.entries, r.clients), (entries, clients));
        assert_eq!(fresh.table.len(), p.table.len());
        assert_eq!(fresh.clients.len(), p.clients.len());
        for i in (0..3_000u32).step_by(97) {
            let want = p.table.get(&key(i)).map(|b| b.backend.to_string());
            let got = fresh.table.get(&key(i)).map(|b| b.backend.to_string());
            assert_eq!(got, want, "{i}");
            let client = fresh.prefix(std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
            let view = fresh.clients.view(&client, i);
            assert_eq!(
                view.same_fingerprint.as_deref(),
                Some(names[(i as usize + 1) % 3]),
                "{i}"
            );
        }
        // Re-encoded after the round trip: the same records.
        let (again, _, _) = encode(std::slice::from_ref(&fresh), now);
        assert_eq!(again.len(), bytes.len());
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_file_is_left() {
        let dir = std::env::temp_dir().join(format!("stickytls-state-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (p, _, _) = learned();
        let file = StateFile::new(dir.join("state"));
        assert!(file.read().unwrap().is_none(), "missing: nothing to load");
        let w = file.write_now(std::slice::from_ref(&p)).unwrap();
        assert_eq!((w.entries, w.clients), (4, 1));
        bind(&p, key(5), "a", KeyState::Owned);
        file.write_now(std::slice::from_ref(&p)).unwrap();
        let saved = file.read().unwrap().unwrap();
        assert_eq!(saved.pools[0].entries.len(), 5);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["state"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
