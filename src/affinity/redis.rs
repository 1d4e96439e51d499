//! The affinity table shared by several router instances through one
//! Redis server or a Redis Cluster, with this process's [`MemoryStore`]
//! in front of it as a near cache.
//!
//! Routing stays synchronous and reads only the near cache. What reaches
//! Redis, and how:
//! - Writes (entries learned, key-name steps, client records, TTL
//!   refreshes) go into a bounded queue and are sent in pipelined batches
//!   by a background task within [`FLUSH`]; a full queue drops the write
//!   and counts it, so a slow Redis never slows a connection.
//! - A hello offering keys this process does not know waits for one
//!   pipelined round trip (every key it offers, and its client's record),
//!   at most `lookup_budget`; a late answer still fills the near cache for
//!   the client's next connection.
//! - In a cluster a pipeline may only name keys of one hash slot (the
//!   redis crate routes a pipeline by its first key and refuses the
//!   rest), so lookups and write batches are split by slot ([`groups`])
//!   and the parts sent at once: each node's part shares that node's one
//!   multiplexed connection, so a lookup still costs one round trip, to
//!   every shard in parallel.
//! - The Lua scripts go by hash: each connection loads them when it is
//!   made (`SCRIPT LOAD`, which a cluster client sends to every node) and
//!   writes run them with `EVALSHA`. A write a server answers `NOSCRIPT`
//!   (scripts flushed, a node new to the cluster) did not run: the scripts
//!   are loaded again on that server and that write alone sent once more. Nothing else is
//!   ever sent twice, by us or by the cluster client (no retries): a write
//!   without an answer may have run, and a second `INCR` would count a
//!   session twice.
//! - Redis down, slow or unreachable, at start or later: nothing waits for
//!   it. A keeper task connects in the background with back-off; until it
//!   has, lookups fail at once and writes are dropped, all counted.
//!
//! What Redis holds, per pool (every command names one key, so a Redis
//! Cluster holds the same keys, spread by slot; a `prefix` with a `{hash
//! tag}` would put them all on one node):
//! - `{prefix}{pool}:e:{hex}` — an entry (session ID, ticket or PSK
//!   identity; its 16-byte [`Key`] digest already folds the kind in):
//!   `2:{state bits}:{learned at, Unix seconds}:{version}:{cipher}:{backend}`
//!   with the session's protocol version and cipher suite (`1:{state
//!   bits}:{learned at}:{backend}` when not known, as every value before
//!   they were kept: still read), expiring after the pool's
//!   `affinity.timeout`, refreshed when used.
//! - `{prefix}{pool}:n:{hex}` — a ticket key name's state, the `1:` form,
//!   changed only by the [`CONFIRM_NAME`] and [`REJECT_NAME`] scripts so
//!   that two instances' confirmations add up instead of overwriting.
//! - `{prefix}{pool}:c:{address}` — a client prefix's last confirmed
//!   connection: `1:{at}:{tls12 0|1}:{fingerprint}:{backend}`, expiring
//!   after the correlation window.
//! - `{prefix}{pool}:s:{address}` — the prefix's new sessions, counted by
//!   every instance with the [`COUNT_SESSION`] script, for NAT detection;
//!   expiring a correlation window after the first.
//!
//! The store's work runs on a thread and runtime of its own
//! (`stickytls-store`): the router's worker threads each run their own
//! runtime, and the connection to Redis must outlive none of them.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{info, warn};

use super::clients::{ClientIndex, ClientPrefix, Confirmed};
use super::memory::MemoryStore;
use super::{
    AffinityStore, Binding, Key, KeyState, Lookup, NameStep, Peeked, Prefetch, SavedEntry, Session,
    StoreStatus, lock, next_key_name_state,
};
use crate::backend::BackendName;
use crate::config::{StoreConfig, StoreKind};
use crate::metrics::{
    STORE_CORRUPT_VALUES, STORE_ERRORS, STORE_LOOKUPS, STORE_UP, STORE_WRITES, STORE_WRITES_DROPPED,
};

/// A write waits at most this long for others to share its round trip.
pub(crate) const FLUSH: Duration = Duration::from_millis(10);
/// Most commands in one pipelined write.
const MAX_BATCH: usize = 512;
/// Lookups queued for the store's thread at most; beyond that a lookup is
/// an error at once rather than a wait.
const MAX_LOOKUPS_QUEUED: usize = 4096;
/// Reconnection back-off, doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// Longest backend name a value may carry (the config allows any name, but
/// one longer than this is not shared).
pub(crate) const MAX_BACKEND: usize = 255;
/// Longest value read: anything longer is not ours.
pub(crate) const MAX_VALUE: usize = 320;

/// One step of a key name's state on confirmation, applied atomically in
/// Redis: the same rules as [`next_key_name_state`] (and checked against
/// it by the integration tests). `KEYS[1]` the name; `ARGV` backend, tag,
/// now, TTL in ms. A value that is not a key-name state is replaced.
pub const CONFIRM_NAME: &str = r#"
local S = 8192
local owner, bits, at = ARGV[1], S + tonumber(ARGV[2]), ARGV[3]
local v = redis.call('GET', KEYS[1])
if v then
  local b, a, cur = string.match(v, '^1:(%d+):(%d+):(.+)$')
  if b then
    b = tonumber(b)
    local state, tag = math.floor(b / S), b % S
    if state >= 1 and state <= 4 then
      at = a
      if cur ~= ARGV[1] then
        owner, bits = cur, 3 * S
      elseif state == 1 and tag ~= tonumber(ARGV[2]) then
        owner, bits = cur, 2 * S
      elseif state == 4 then
        owner, bits = cur, S + tonumber(ARGV[2])
      else
        owner, bits = cur, b
      end
    end
  end
end
redis.call('SET', KEYS[1], '1:' .. string.format('%d', bits) .. ':' .. at .. ':' .. owner, 'PX', ARGV[4])
return bits
"#;

/// A rejection of a key name by a backend, applied atomically: only a name
/// of that backend, and never a shared one. `KEYS[1]` the name; `ARGV`
/// backend, TTL in ms. An instance sends it only on its own evidence that
/// the backend rotated past the name ([`super::rotation::KeyNameLog`]),
/// never for a refusal alone.
pub const REJECT_NAME: &str = r#"
local S = 8192
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local b, a, cur = string.match(v, '^1:(%d+):(%d+):(.+)$')
if not b or cur ~= ARGV[1] then return 0 end
local state = math.floor(tonumber(b) / S)
if state < 1 or state > 4 or state == 3 then return 0 end
redis.call('SET', KEYS[1], '1:' .. string.format('%d', 4 * S) .. ':' .. a .. ':' .. cur, 'PX', ARGV[2])
return 1
"#;

/// One more new session from a client prefix, counted across instances:
/// the count NAT detection reads, kept for the correlation window from the
/// first session it counts. `KEYS[1]` the counter; `ARGV[1]` its TTL in ms.
pub(crate) const COUNT_SESSION: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

/// The scripts as the writer runs them, by their SHA-1.
#[derive(Debug)]
struct Scripts {
    confirm: redis::Script,
    reject: redis::Script,
    count: redis::Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    confirm: redis::Script::new(CONFIRM_NAME),
    reject: redis::Script::new(REJECT_NAME),
    count: redis::Script::new(COUNT_SESSION),
});

/// `EVALSHA` of `script` on the one key `key`; the caller adds the
/// arguments.
fn evalsha(script: &redis::Script, key: &str) -> redis::Cmd {
    let mut c = redis::cmd("EVALSHA");
    c.arg(script.get_hash()).arg(1).arg(key);
    c
}

/// Why a value read from Redis was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    TooLong,
    /// Not `1:` or `2:` and the fields this version writes.
    Form,
    /// A field out of its range (state bits, backend name).
    Field,
    /// An entry's value under a key name, or the reverse.
    WrongClass,
}

/// An entry with its session known: `2:{bits}:{at}:{version}:{cipher}:
/// {backend}`; a key name, or an entry whose session is not known:
/// `1:{bits}:{at}:{backend}` (the form the key-name scripts read and
/// write, and every value before sessions were kept). `None` when the
/// backend name is too long to share.
pub fn encode_binding(b: &Binding, learned_at: u64) -> Option<String> {
    let bits = b.state.to_bits();
    let backend = &b.backend;
    valid_backend(backend).then(|| match b.session {
        s if s.is_known() && b.state == KeyState::Owned => {
            format!("2:{bits}:{learned_at}:{}:{}:{backend}", s.version, s.cipher)
        }
        _ => format!("1:{bits}:{learned_at}:{backend}"),
    })
}

/// The binding and its learned-at time in a value; `name` says which
/// class of key it was read under (key names are never `Owned`, entries
/// always are).
pub fn decode_binding(v: &[u8], name: bool) -> Result<(Binding, u64), Corrupt> {
    if v.len() > MAX_VALUE {
        return Err(Corrupt::TooLong);
    }
    let text = std::str::from_utf8(v).map_err(|_| Corrupt::Form)?;
    let (form, rest) = text.split_once(':').ok_or(Corrupt::Form)?;
    let mut f = rest.splitn(if form == "2" { 5 } else { 3 }, ':');
    let (bits, at) = (f.next(), f.next());
    let session = match form {
        "1" => Session::UNKNOWN,
        "2" => Session {
            version: f.next().and_then(digits).ok_or(Corrupt::Form)?,
            cipher: f.next().and_then(digits).ok_or(Corrupt::Form)?,
        },
        _ => return Err(Corrupt::Form),
    };
    let (Some(bits), Some(at), Some(backend)) = (bits, at, f.next()) else {
        return Err(Corrupt::Form);
    };
    let bits: u16 = digits(bits).ok_or(Corrupt::Form)?;
    let at: u64 = digits(at).ok_or(Corrupt::Form)?;
    let state = KeyState::from_bits(bits);
    if state.to_bits() != bits || !valid_backend(backend) {
        return Err(Corrupt::Field);
    }
    if (state == KeyState::Owned) == name || (session.is_known() && name) {
        return Err(Corrupt::WrongClass);
    }
    Ok((
        Binding {
            backend: Arc::from(backend),
            state,
            session,
        },
        at,
    ))
}

/// `1:{at}:{tls12}:{fingerprint}:{backend}`.
pub(crate) fn encode_client(c: &Confirmed, at: u64) -> Option<String> {
    valid_backend(&c.backend).then(|| {
        format!(
            "1:{at}:{}:{}:{}",
            u8::from(c.tls12),
            c.fingerprint,
            c.backend
        )
    })
}

/// A count of new sessions, as `INCR` leaves it: decimal digits, at most
/// the twenty of a 64-bit count (one past `u32` is still a count, not a
/// corrupt value: it saturates).
pub(crate) fn decode_count(v: &[u8]) -> Result<u32, Corrupt> {
    if v.is_empty() || v.len() > 20 {
        return Err(Corrupt::Form);
    }
    if !v.iter().all(u8::is_ascii_digit) {
        return Err(Corrupt::Form);
    }
    let s = std::str::from_utf8(v).map_err(|_| Corrupt::Form)?;
    Ok(s.parse::<u64>()
        .map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32))
}

/// A client record and its time.
pub(crate) fn decode_client(v: &[u8]) -> Result<(Confirmed, u64), Corrupt> {
    if v.len() > MAX_VALUE {
        return Err(Corrupt::TooLong);
    }
    let text = std::str::from_utf8(v).map_err(|_| Corrupt::Form)?;
    let mut f = text.splitn(5, ':');
    let (Some("1"), Some(at), Some(tls12), Some(fp), Some(backend)) =
        (f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return Err(Corrupt::Form);
    };
    let at: u64 = digits(at).ok_or(Corrupt::Form)?;
    let fingerprint: u32 = digits(fp).ok_or(Corrupt::Form)?;
    let tls12 = match tls12 {
        "0" => false,
        "1" => true,
        _ => return Err(Corrupt::Field),
    };
    if !valid_backend(backend) {
        return Err(Corrupt::Field);
    }
    Ok((
        Confirmed {
            backend: Arc::from(backend),
            tls12,
            fingerprint,
            new_session: false,
        },
        at,
    ))
}

/// Decimal digits only (`u64::from_str` also takes a `+`).
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn valid_backend(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_BACKEND && !name.chars().any(char::is_control)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `url`'s connection details, with `password` (from the file or the
/// environment: validation refuses one in the URL beside it) put in.
fn with_password(url: &str, password: Option<&str>) -> redis::RedisResult<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    Ok(match password {
        Some(p) => {
            let settings = info.redis_settings().clone().set_password(p);
            info.set_redis_settings(settings)
        }
        None => info,
    })
}

/// The Redis key of an entry (`class` `e`) or key name (`n`) of a pool.
pub(crate) fn redis_key(prefix: &str, pool: &str, class: char, key: &Key) -> String {
    format!("{prefix}{pool}:{class}:{}", hex::encode(key.as_bytes()))
}

/// The Redis key of a client prefix's record (`class` `c`) or of its count
/// of new sessions (`s`).
pub(crate) fn client_key(prefix: &str, pool: &str, client: &ClientPrefix) -> String {
    client_class_key(prefix, pool, 'c', client)
}

fn client_class_key(prefix: &str, pool: &str, class: char, client: &ClientPrefix) -> String {
    let addr: IpAddr = client.addr();
    format!("{prefix}{pool}:{class}:{addr}")
}

/// One write, as the background task sends it.
#[derive(Debug)]
enum Write {
    Set {
        key: String,
        value: String,
        ttl: u64,
    },
    /// An operator's removal (the admin API).
    Del {
        key: String,
    },
    Touch {
        key: String,
        ttl: u64,
    },
    Confirm {
        key: String,
        backend: BackendName,
        tag: u16,
        ttl: u64,
    },
    Reject {
        key: String,
        backend: BackendName,
        ttl: u64,
    },
    /// One more new session from a client prefix ([`COUNT_SESSION`]).
    Count {
        key: String,
        ttl: u64,
    },
}

/// One lookup for the store's thread.
#[derive(Debug)]
struct Request {
    /// The Redis keys asked for, in one pipeline.
    keys: Vec<String>,
    /// What each answer, in `keys`' order, fills.
    targets: Vec<Target>,
    /// The pool's near cache and client index, filled from the answer.
    local: Arc<MemoryStore>,
    clients: Arc<ClientIndex>,
    /// The pool's configured backends ([`Lookup::backends`]).
    backends: Arc<[BackendName]>,
    /// Client records older than this are not used.
    window: Duration,
    /// To the connection waiting, if it still is.
    reply: oneshot::Sender<Outcome>,
}

/// What one value of a lookup's answer is for.
#[derive(Debug, Clone, Copy)]
enum Target {
    Entry(Key),
    Name(Key),
    Client(ClientPrefix),
    /// The prefix's count of new sessions ([`COUNT_SESSION`]).
    Sessions(ClientPrefix),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Hit,
    Miss,
    Error,
}

/// The counters behind [`StoreStatus`] and the `stickytls_store_*` series.
#[derive(Debug, Default)]
struct Counters {
    /// Connected now.
    up: AtomicBool,
    hit: AtomicU64,
    miss: AtomicU64,
    timeout: AtomicU64,
    lookup_error: AtomicU64,
    corrupt: AtomicU64,
    errors_connect: AtomicU64,
    errors_lookup: AtomicU64,
    errors_write: AtomicU64,
    writes: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn lookup(&self, result: &'static str) {
        let c = match result {
            "hit" => &self.hit,
            "miss" => &self.miss,
            "timeout" => &self.timeout,
            _ => &self.lookup_error,
        };
        c.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(STORE_LOOKUPS, "result" => result).increment(1);
    }

    fn error(&self, op: &'static str) {
        let c = match op {
            "connect" => &self.errors_connect,
            "lookup" => &self.errors_lookup,
            _ => &self.errors_write,
        };
        c.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(STORE_ERRORS, "op" => op).increment(1);
    }

    fn written(&self, n: u64) {
        self.writes.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(STORE_WRITES).increment(n);
    }

    fn corrupt(&self) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(STORE_CORRUPT_VALUES).increment(1);
    }

    fn dropped(&self, n: u64, reason: &'static str) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(STORE_WRITES_DROPPED, "reason" => reason).increment(n);
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        metrics::gauge!(STORE_UP).set(if up { 1.0 } else { 0.0 });
    }
}

/// Where the store's connection comes from.
enum StoreClient {
    Single(redis::Client),
    /// The cluster's seed nodes; the rest are learned from them.
    Cluster(redis::cluster::ClusterClient),
}

impl std::fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreClient::Single(_) => "StoreClient::Single",
            StoreClient::Cluster(_) => "StoreClient::Cluster",
        })
    }
}

impl StoreClient {
    /// The client for `config`'s URLs; `None` (logged) when they cannot
    /// make one, which validation has already refused.
    fn new(config: &StoreConfig) -> Option<StoreClient> {
        let certs = tls_certificates(config)?;
        let password = config
            .password()
            .map_err(
                |e| warn!(error = %e, "shared store password not usable; routing on local state"),
            )
            .ok()?;
        let made = match config.kind {
            StoreKind::RedisCluster => {
                let b = redis::cluster::ClusterClientBuilder::new(config.urls.clone())
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout)
                    // A request that fails is counted and dropped here, never
                    // retried by the crate: a pipeline whose connection
                    // broke may have run, and sent again would count a
                    // session twice. The next connection asks again; a
                    // MOVED still refreshes the crate's slot map.
                    .retries(0);
                let b = match &password {
                    Some(p) => b.password(p.clone()),
                    None => b,
                };
                #[cfg(feature = "store-tls")]
                let b = match certs {
                    Some(c) => b.certs(c),
                    None => b,
                };
                #[cfg(not(feature = "store-tls"))]
                let _ = certs;
                b.build().map(StoreClient::Cluster)
            }
            _ => {
                let url = config.urls.first()?.as_str();
                let info = with_password(url, password.as_deref());
                #[cfg(feature = "store-tls")]
                let client = match certs {
                    Some(c) => info.and_then(|i| redis::Client::build_with_tls(i, c)),
                    None => info.and_then(redis::Client::open),
                };
                #[cfg(not(feature = "store-tls"))]
                let client = info.and_then(redis::Client::open);
                client.map(StoreClient::Single)
            }
        };
        made.map_err(|e| warn!(error = %e, "shared store not usable; routing on local state"))
            .ok()
    }

    async fn connect(&self, timeout: Duration) -> Option<Conn> {
        let attempt = async {
            match self {
                StoreClient::Single(c) => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout));
                    c.get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Conn::Single)
                }
                StoreClient::Cluster(c) => c.get_async_connection().await.map(Conn::Cluster),
            }
        };
        tokio::time::timeout(timeout, attempt).await.ok()?.ok()
    }
}

/// The CA certificates `store.tls_ca_file` names, for a `rediss://` store:
/// `Some(None)` without one (the system's roots); `None` (logged) when the
/// file cannot be read.
#[cfg(feature = "store-tls")]
fn tls_certificates(config: &StoreConfig) -> Option<Option<redis::TlsCertificates>> {
    let Some(path) = &config.tls_ca_file else {
        return Some(None);
    };
    match std::fs::read(path) {
        Ok(pem) => Some(Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        })),
        Err(e) => {
            warn!(error = %e, file = %path.display(), "store.tls_ca_file unreadable: the shared store is not used; routing on local state");
            None
        }
    }
}

/// Without TLS there are no certificates to read.
#[cfg(not(feature = "store-tls"))]
fn tls_certificates(_config: &StoreConfig) -> Option<Option<()>> {
    Some(None)
}

/// A working connection to one server or to a cluster: both take the
/// same pipelines, a cluster only those of one slot.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Loads every script (`SCRIPT LOAD`): on the server; in a cluster, on
    /// the node that holds `key`'s slot, or with no key on every node.
    /// Each load is bounded by `timeout`; the error is `None` for a
    /// timeout.
    async fn load_scripts(
        &mut self,
        key: Option<&str>,
        timeout: Duration,
    ) -> Result<(), Option<redis::RedisError>> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        for code in [CONFIRM_NAME, REJECT_NAME, COUNT_SESSION] {
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(code);
            let answer = match (&mut *self, key) {
                (Conn::Cluster(c), Some(key)) => {
                    let node = Route::with_key(key, SlotAddr::Master);
                    let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(node));
                    tokio::time::timeout(timeout, c.route_command(load, to))
                        .await
                        .map(|a| a.map(drop))
                }
                // A cluster client sends SCRIPT LOAD to every node.
                (conn, _) => tokio::time::timeout(timeout, load.query_async::<()>(conn)).await,
            };
            match answer {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Some(e)),
                Err(_) => return Err(None),
            }
        }
        Ok(())
    }

    /// `keys` split into the groups one pipeline each may carry: all of
    /// them on one server; one group per hash slot in a cluster. Each
    /// group lists indexes into `keys`, in order.
    fn groups<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Vec<usize>> {
        match self {
            Conn::Single(_) => vec![(0..keys.len()).collect()],
            Conn::Cluster(_) => groups(keys),
        }
    }
}

/// `keys`' indexes grouped by hash slot, groups in the order of their
/// first key.
fn groups<K: AsRef<[u8]>>(keys: &[K]) -> Vec<Vec<usize>> {
    let mut slots: Vec<Slot> = Vec::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let slot = Slot::for_key(k);
        match slots.iter().position(|s| *s == slot) {
            // `slots` and `out` grow together: `g` is in both.
            Some(g) => {
                if let Some(group) = out.get_mut(g) {
                    group.push(i);
                }
            }
            None => {
                slots.push(slot);
                out.push(vec![i]);
            }
        }
    }
    out
}

/// The connection to Redis as the store's tasks share it: present while
/// it works; a failed request takes it away and wakes the keeper.
#[derive(Debug, Default)]
struct Link {
    /// Taken only on the store's thread, for a clone: never on the
    /// connection path.
    conn: Mutex<Option<Conn>>,
    /// Wakes the keeper to reconnect.
    broken: Notify,
}

impl Link {
    fn get(&self) -> Option<Conn> {
        lock(&self.conn).clone()
    }

    fn broken(&self, counters: &Counters) {
        if lock(&self.conn).take().is_some() {
            counters.set_up(false);
            warn!("shared store unreachable: routing on local state until it is back");
        }
        self.broken.notify_one();
    }
}

/// The connection to one Redis server and the background thread that
/// uses it, shared by every pool's [`RedisStore`] of a router.
#[derive(Debug)]
pub(crate) struct RedisLink {
    /// The key prefix and the lookup budget, read on every connection.
    config: StoreConfig,
    /// To the writer task: bounded, so a slow Redis costs dropped writes,
    /// never memory or a wait.
    writes: mpsc::Sender<Write>,
    /// To the store's thread, which runs each lookup as a task of its own
    /// (a late answer still fills the near cache).
    lookups: mpsc::Sender<Request>,
    /// Shared with the store's thread, which counts what it sees.
    counters: Arc<Counters>,
}

impl RedisLink {
    /// Starts the store's thread; it connects in the background, so this
    /// returns at once whether or not Redis answers. The thread ends when
    /// the last store using this link is dropped.
    pub fn start(config: &StoreConfig) -> Arc<RedisLink> {
        let (writes, write_rx) = mpsc::channel(config.queue.max(1));
        let (lookups, lookup_rx) = mpsc::channel(MAX_LOOKUPS_QUEUED);
        let counters = Arc::new(Counters::default());
        counters.set_up(false);
        let client = StoreClient::new(config);
        let (c, timeout) = (counters.clone(), config.timeout);
        let spawned = crate::runtime::spawn("stickytls-store".into(), move || {
            run(client, timeout, c, write_rx, lookup_rx)
        });
        if let Err(e) = spawned {
            // The channels' receivers are gone: every write and lookup
            // then fails at once, counted.
            warn!(error = %e, "shared store not started: no thread or runtime; routing on local state");
        }
        Arc::new(RedisLink {
            config: config.clone(),
            writes,
            lookups,
            counters,
        })
    }

    fn send(&self, w: Write) {
        match self.writes.try_send(w) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.counters.dropped(1, "queue_full"),
            Err(mpsc::error::TrySendError::Closed(_)) => self.counters.dropped(1, "stopped"),
        }
    }

    fn status(&self) -> StoreStatus {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStatus {
            kind: self.config.kind.as_str(),
            up: c.up.load(Ordering::Relaxed),
            lookups_hit: n(&c.hit),
            lookups_miss: n(&c.miss),
            lookups_timeout: n(&c.timeout),
            lookups_error: n(&c.lookup_error),
            corrupt_values: n(&c.corrupt),
            errors_connect: n(&c.errors_connect),
            errors_lookup: n(&c.errors_lookup),
            errors_write: n(&c.errors_write),
            writes: n(&c.writes),
            writes_dropped: n(&c.dropped),
        }
    }
}

/// The store's thread: the keeper, the writer and the lookups, until the
/// last store is dropped.
async fn run(
    client: Option<StoreClient>,
    timeout: Duration,
    counters: Arc<Counters>,
    writes: mpsc::Receiver<Write>,
    mut lookups: mpsc::Receiver<Request>,
) {
    let link = Arc::new(Link::default());
    if let Some(client) = client {
        tokio::spawn(keep_connected(
            client,
            timeout,
            link.clone(),
            counters.clone(),
        ));
    }
    let writer = tokio::spawn(write_behind(
        writes,
        timeout,
        link.clone(),
        counters.clone(),
    ));
    while let Some(req) = lookups.recv().await {
        tokio::spawn(lookup(req, timeout, link.clone(), counters.clone()));
    }
    let _ = writer.await;
}

/// Connects, and reconnects whenever a request finds the connection
/// broken, backing off while Redis does not answer.
async fn keep_connected(
    client: StoreClient,
    timeout: Duration,
    link: Arc<Link>,
    counters: Arc<Counters>,
) {
    let mut backoff = BACKOFF.0;
    loop {
        if link.get().is_none() {
            match client.connect(timeout).await {
                Some(mut conn) => {
                    // Ahead of the first write. Not loaded (a cluster node
                    // down, Redis refusing): the connection still serves,
                    // and a write that meets NOSCRIPT loads them again.
                    if let Err(e) = conn.load_scripts(None, timeout).await {
                        let e = e.map_or_else(|| "timed out".to_string(), |e| e.to_string());
                        warn!(error = %e, "shared store: scripts not loaded on connecting; loaded again by the first write that needs them");
                    }
                    *lock(&link.conn) = Some(conn);
                    counters.set_up(true);
                    backoff = BACKOFF.0;
                    info!("shared store connected");
                }
                None => {
                    counters.error("connect");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                    continue;
                }
            }
        }
        link.broken.notified().await;
    }
}

/// Sends queued writes in pipelined batches: the first write of a batch
/// waits at most [`FLUSH`] for company. In a cluster a batch goes out as
/// one pipeline per slot, all at once.
async fn write_behind(
    mut rx: mpsc::Receiver<Write>,
    timeout: Duration,
    link: Arc<Link>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut touched = std::collections::HashSet::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let flush_at = tokio::time::Instant::now() + FLUSH;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(flush_at, rx.recv()).await {
                Ok(Some(w)) => batch.push(w),
                _ => break,
            }
        }
        let Some(conn) = link.get() else {
            counters.dropped(batch.len() as u64, "store_down");
            batch.clear();
            continue;
        };
        touched.clear();
        let (keys, mut cmds): (Vec<String>, Vec<Option<redis::Cmd>>) = batch
            .drain(..)
            // Several uses of one entry in a batch: one refresh.
            .filter(|w| match w {
                Write::Touch { key, .. } => touched.insert(key.clone()),
                _ => true,
            })
            .map(|w| {
                let (key, cmd) = command(w);
                (key, Some(cmd))
            })
            .unzip();
        let mut sent = Vec::new();
        for group in conn.groups(&keys) {
            let mut pipe = redis::pipe();
            // Each write's own answer: a NOSCRIPT is told apart.
            pipe.ignore_errors();
            for &i in &group {
                // Each index is in exactly one group (and within `cmds`).
                if let Some(cmd) = cmds.get_mut(i).and_then(Option::take) {
                    pipe.add_command(cmd);
                }
            }
            let n = pipe.len() as u64;
            // The group's slot: where the scripts are loaded again.
            let key = group
                .first()
                .and_then(|&i| keys.get(i))
                .cloned()
                .unwrap_or_default();
            let conn = conn.clone();
            sent.push((n, tokio::spawn(send_writes(conn, pipe, key, timeout))));
        }
        for (n, answer) in sent {
            // A task lost is a write without an answer.
            let sent = answer.await.unwrap_or_else(|_| Sent {
                unanswered: Some((n, None)),
                ..Sent::default()
            });
            counters.written(sent.applied);
            if sent.refused > 0 {
                // Redis answered: the connection is fine.
                counters.error("write");
                counters.dropped(sent.refused, "error");
            }
            if let Some((n, error)) = sent.unanswered {
                failed("write", error.as_ref(), &link, &counters);
                counters.dropped(n, if error.is_some() { "error" } else { "timeout" });
            }
        }
    }
}

/// How one pipeline of writes ended.
#[derive(Debug, Default)]
struct Sent {
    /// Writes Redis applied.
    applied: u64,
    /// Writes Redis answered with an error: not applied.
    refused: u64,
    /// Writes whose request failed or went unanswered within the timeout
    /// (with the error, `None` for the timeout): not applied, or not known
    /// to be.
    unanswered: Option<(u64, Option<redis::RedisError>)>,
}

impl Sent {
    fn count(&mut self, answer: &redis::Value) {
        match answer {
            redis::Value::ServerError(_) => self.refused += 1,
            _ => self.applied += 1,
        }
    }
}

/// Sends one pipeline of writes (built with `ignore_errors`, so each has
/// its own answer), all of the slot of `key` in a cluster. Those a server
/// answered NOSCRIPT did not run: the scripts are loaded on that server
/// and those writes alone sent once more, once. Nothing else is sent
/// again: a write without an answer may have run.
async fn send_writes(
    mut conn: Conn,
    pipe: redis::Pipeline,
    key: String,
    timeout: Duration,
) -> Sent {
    let mut sent = Sent::default();
    let answers = match ask(&mut conn, &pipe, timeout).await {
        Ok(answers) => answers,
        Err(error) => {
            sent.unanswered = Some((pipe.len() as u64, error));
            return sent;
        }
    };
    let mut retry = redis::pipe();
    retry.ignore_errors();
    for (cmd, answer) in pipe.cmd_iter().zip(&answers) {
        if no_script(answer) {
            retry.add_command(cmd.clone());
        } else {
            sent.count(answer);
        }
    }
    if retry.is_empty() {
        return sent;
    }
    let n = retry.len() as u64;
    if let Err(error) = conn.load_scripts(Some(&key), timeout).await {
        // Not sent again: they did not run, and Redis refused the scripts
        // or did not answer.
        match error {
            Some(e) if server_said_no(&e) => sent.refused += n,
            error => sent.unanswered = Some((n, error)),
        }
        return sent;
    }
    match ask(&mut conn, &retry, timeout).await {
        Ok(answers) => answers.iter().for_each(|a| sent.count(a)),
        Err(error) => sent.unanswered = Some((n, error)),
    }
    sent
}

/// `pipe`'s answers, one per command, within `timeout`; the error is
/// `None` for a timeout.
async fn ask(
    conn: &mut Conn,
    pipe: &redis::Pipeline,
    timeout: Duration,
) -> Result<Vec<redis::Value>, Option<redis::RedisError>> {
    match tokio::time::timeout(timeout, pipe.query_async::<Vec<redis::Value>>(conn)).await {
        Ok(Ok(answers)) if answers.len() == pipe.len() => Ok(answers),
        Ok(Ok(_)) => Err(Some(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "not one answer per write",
        )))),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// A server's answer that the script is not loaded there: it did not run.
fn no_script(answer: &redis::Value) -> bool {
    matches!(answer, redis::Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript))
}

/// A write's key (which routes it in a cluster) and its command.
fn command(w: Write) -> (String, redis::Cmd) {
    match w {
        Write::Set { key, value, ttl } => {
            let mut c = redis::cmd("SET");
            c.arg(&key).arg(value).arg("PX").arg(ttl);
            (key, c)
        }
        Write::Del { key } => {
            let mut c = redis::cmd("DEL");
            c.arg(&key);
            (key, c)
        }
        Write::Touch { key, ttl } => {
            let mut c = redis::cmd("PEXPIRE");
            c.arg(&key).arg(ttl);
            (key, c)
        }
        Write::Confirm {
            key,
            backend,
            tag,
            ttl,
        } => {
            let mut c = evalsha(&SCRIPTS.confirm, &key);
            c.arg(&*backend).arg(tag).arg(unix_now()).arg(ttl);
            (key, c)
        }
        Write::Reject { key, backend, ttl } => {
            let mut c = evalsha(&SCRIPTS.reject, &key);
            c.arg(&*backend).arg(ttl);
            (key, c)
        }
        Write::Count { key, ttl } => {
            let mut c = evalsha(&SCRIPTS.count, &key);
            c.arg(ttl);
            (key, c)
        }
    }
}

/// An error Redis answered with (the connection itself is fine).
fn server_said_no(e: &redis::RedisError) -> bool {
    !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error())
}

/// Counts a failed `op` request, and takes the connection away for the
/// keeper to remake unless Redis itself answered the error (`error` is
/// `None` for a timeout or a lost task: the connection is suspect).
fn failed(op: &'static str, error: Option<&redis::RedisError>, link: &Link, counters: &Counters) {
    counters.error(op);
    if !error.is_some_and(server_said_no) {
        link.broken(counters);
    }
}

/// One pipelined round trip for a hello's keys (in a cluster, one per
/// slot, all at once); fills the near cache and the client index with
/// what is valid, whenever it arrives. A part that fails costs only its
/// own keys: what the other shards answered is still used.
async fn lookup(req: Request, timeout: Duration, link: Arc<Link>, counters: Arc<Counters>) {
    let Some(conn) = link.get() else {
        let _ = req.reply.send(Outcome::Error);
        return;
    };
    let groups = conn.groups(&req.keys);
    let mut asked = Vec::with_capacity(groups.len());
    for group in groups {
        let mut pipe = redis::pipe();
        // A group's indexes are within `req.keys`.
        // GETRANGE, not GET: a value longer than any we write (someone
        // else's, or planted) comes back cut at one byte past the bound,
        // so the reply this process buffers is bounded too; the decoder
        // then refuses it as too long, and counts it.
        for key in group.iter().filter_map(|&i| req.keys.get(i)) {
            pipe.cmd("GETRANGE").arg(key).arg(0).arg(MAX_VALUE);
        }
        let mut conn = conn.clone();
        let answer = tokio::spawn(async move {
            tokio::time::timeout(timeout, pipe.query_async::<Vec<Option<Vec<u8>>>>(&mut conn)).await
        });
        asked.push((group, answer));
    }
    let mut values: Vec<Option<Vec<u8>>> = vec![None; req.keys.len()];
    let mut any_failed = false;
    for (group, answer) in asked {
        match answer.await {
            Ok(Ok(Ok(v))) if v.len() == group.len() => {
                // As many answers as keys asked, each index within `values`.
                for (i, value) in group.into_iter().zip(v) {
                    if let Some(slot) = values.get_mut(i) {
                        *slot = value;
                    }
                }
            }
            Ok(Ok(Ok(_))) => {
                counters.error("lookup");
                any_failed = true;
            }
            Ok(Ok(Err(e))) => {
                failed("lookup", Some(&e), &link, &counters);
                any_failed = true;
            }
            Ok(Err(_)) | Err(_) => {
                failed("lookup", None, &link, &counters);
                any_failed = true;
            }
        }
    }
    let mut found = false;
    let now = unix_now();
    // A value naming a backend this pool does not configure (removed by a
    // reload here, not yet added, or written by someone else) is a miss:
    // only configured names are ever interned, each as the pool's own
    // `Arc`.
    let configured = |name: &str| req.backends.iter().find(|b| &***b == name).cloned();
    for (target, value) in req.targets.iter().zip(values) {
        // GETRANGE answers an empty string for a missing key.
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        let used = match *target {
            Target::Entry(key) => decode_binding(&value, false).map(|(mut b, _)| {
                let Some(name) = configured(&b.backend) else {
                    return false;
                };
                b.backend = name;
                // Learned here meanwhile: ours is as new.
                if req.local.peek(&key).is_none() {
                    req.local.put(key, b);
                }
                true
            }),
            // The shared state of a name is the one that counts.
            Target::Name(key) => decode_binding(&value, true).map(|(mut b, _)| {
                let Some(name) = configured(&b.backend) else {
                    return false;
                };
                b.backend = name;
                req.local.put(key, b);
                true
            }),
            Target::Client(prefix) => decode_client(&value).map(|(mut c, at)| {
                let Some(name) = configured(&c.backend) else {
                    return false;
                };
                c.backend = name;
                let fresh = now.saturating_sub(at) < req.window.as_secs();
                if fresh && req.clients.peek(&prefix).is_none() {
                    req.clients.record(prefix, &c);
                }
                true
            }),
            // Every instance's new sessions from this prefix: NAT detection
            // here sees at least as many as the farm has.
            Target::Sessions(prefix) => decode_count(&value).map(|n| {
                req.clients.note_shared_sessions(prefix, n);
                true
            }),
        };
        match used {
            Ok(true) => found = true,
            Ok(false) => counters.corrupt(),
            Err(_) => counters.corrupt(),
        }
    }
    let outcome = match (found, any_failed) {
        (true, _) => Outcome::Hit,
        (false, true) => Outcome::Error,
        (false, false) => Outcome::Miss,
    };
    let _ = req.reply.send(outcome);
}

/// A pool's affinity table shared through Redis: a [`MemoryStore`] near
/// cache, written through to Redis behind the connection's back.
#[derive(Debug)]
pub(crate) struct RedisStore {
    local: Arc<MemoryStore>,
    link: Arc<RedisLink>,
    /// The pool's name, in every Redis key (affinity never crosses pools).
    pool: String,
    /// Entries and key names expire in Redis after the pool's
    /// `affinity.timeout` without use, as they do here.
    entry_ttl_ms: u64,
    /// Client records expire after the correlation window.
    client_window: Duration,
}

impl RedisStore {
    pub fn new(
        local: MemoryStore,
        link: Arc<RedisLink>,
        pool: &str,
        inactivity: Duration,
        correlation_window: Duration,
    ) -> RedisStore {
        RedisStore {
            local: Arc::new(local),
            link,
            pool: pool.to_string(),
            entry_ttl_ms: (inactivity.as_millis() as u64).max(1),
            client_window: correlation_window,
        }
    }

    fn key(&self, class: char, key: &Key) -> String {
        redis_key(&self.link.config.prefix, &self.pool, class, key)
    }

    fn class(state: KeyState) -> char {
        if state == KeyState::Owned { 'e' } else { 'n' }
    }

    fn share(&self, key: &Key, binding: &Binding) {
        if let Some(value) = encode_binding(binding, unix_now()) {
            self.link.send(Write::Set {
                key: self.key(Self::class(binding.state), key),
                value,
                ttl: self.entry_ttl_ms,
            });
        }
    }

    /// Whether the near cache already decides for these keys: an entry,
    /// or a key name settled (routable, shared or rejected) is known.
    fn known_here(&self, lookup: &Lookup) -> bool {
        lookup.keys.iter().any(|k| self.local.peek(k).is_some())
            || lookup.names.iter().any(|n| {
                self.local.peek(n).is_some_and(|p| {
                    !matches!(
                        p.binding.state,
                        KeyState::Candidate { .. } | KeyState::Owned
                    )
                })
            })
    }
}

impl AffinityStore for RedisStore {
    fn get(&self, key: &Key) -> Option<Binding> {
        let b = self.local.get(key)?;
        self.link.send(Write::Touch {
            key: self.key(Self::class(b.state), key),
            ttl: self.entry_ttl_ms,
        });
        Some(b)
    }

    fn put(&self, key: Key, binding: Binding) {
        self.share(&key, &binding);
        self.local.put(key, binding);
    }

    fn update(&self, key: &Key, binding: Binding) -> bool {
        let updated = self.local.update(key, binding.clone());
        if updated {
            self.share(key, &binding);
        }
        updated
    }

    /// Here only: entries are removed when this instance finds them naming
    /// a backend it does not have (another instance may), or when their
    /// owner lost the session (a new entry replaces it); in Redis they
    /// expire.
    fn remove(&self, key: &Key) {
        self.local.remove(key);
    }

    /// Here and in Redis, under either class (the admin API does not say
    /// whether the key is an entry or a key name).
    fn forget(&self, key: &Key) {
        self.local.remove(key);
        for class in ['e', 'n'] {
            self.link.send(Write::Del {
                key: self.key(class, key),
            });
        }
    }

    fn peek(&self, key: &Key) -> Option<Peeked> {
        self.local.peek(key)
    }

    fn len(&self) -> usize {
        self.local.len()
    }

    fn save(&self, visit: &mut dyn FnMut(&[SavedEntry])) -> Vec<BackendName> {
        self.local.save(visit)
    }

    fn restore(&self, names: &[BackendName], entries: &[SavedEntry]) -> usize {
        self.local.restore(names, entries)
    }

    fn evictions(&self) -> u64 {
        self.local.evictions()
    }

    fn confirm_key_name(&self, name: Key, backend: &BackendName, tag: u16) -> NameStep {
        let before = self.local.get(&name);
        let after = next_key_name_state(before.as_ref(), backend, tag);
        if before.is_none() || !self.local.update(&name, after.clone()) {
            self.local.put(name, after.clone());
        }
        if valid_backend(backend) {
            self.link.send(Write::Confirm {
                key: self.key('n', &name),
                backend: backend.clone(),
                tag,
                ttl: self.entry_ttl_ms,
            });
        }
        NameStep { before, after }
    }

    fn reject_key_name(&self, name: &Key, backend: &BackendName) {
        if let Some(b) = self.local.get(name) {
            if &b.backend == backend && b.state != KeyState::Shared {
                self.local
                    .update(name, Binding::name(b.backend, KeyState::Rejected));
            }
        }
        if valid_backend(backend) {
            self.link.send(Write::Reject {
                key: self.key('n', name),
                backend: backend.clone(),
                ttl: self.entry_ttl_ms,
            });
        }
    }

    fn share_client(&self, client: ClientPrefix, confirmed: &Confirmed) {
        let ttl = (self.client_window.as_millis() as u64).max(1);
        if let Some(value) = encode_client(confirmed, unix_now()) {
            self.link.send(Write::Set {
                key: client_key(&self.link.config.prefix, &self.pool, &client),
                value,
                ttl,
            });
        }
        if confirmed.new_session {
            self.link.send(Write::Count {
                key: client_class_key(&self.link.config.prefix, &self.pool, 's', &client),
                ttl,
            });
        }
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn prefetch(&self, lookup: Lookup) -> Option<Prefetch> {
        if lookup.keys.is_empty() && lookup.names.is_empty() {
            return None;
        }
        if self.known_here(&lookup) {
            return None;
        }
        let mut keys = Vec::with_capacity(lookup.keys.len() + lookup.names.len() + 1);
        let mut targets = Vec::with_capacity(keys.capacity());
        for k in &lookup.keys {
            keys.push(self.key('e', k));
            targets.push(Target::Entry(*k));
        }
        for n in &lookup.names {
            keys.push(self.key('n', n));
            targets.push(Target::Name(*n));
        }
        keys.push(client_key(
            &self.link.config.prefix,
            &self.pool,
            &lookup.client,
        ));
        targets.push(Target::Client(lookup.client));
        keys.push(client_class_key(
            &self.link.config.prefix,
            &self.pool,
            's',
            &lookup.client,
        ));
        targets.push(Target::Sessions(lookup.client));
        let (reply, answer) = oneshot::channel();
        let req = Request {
            keys,
            targets,
            local: self.local.clone(),
            clients: lookup.clients,
            backends: lookup.backends,
            window: self.client_window,
            reply,
        };
        let counters = self.link.counters.clone();
        if self.link.lookups.try_send(req).is_err() {
            counters.lookup("error");
            return None;
        }
        let budget = self.link.config.lookup_budget;
        Some(Box::pin(async move {
            let result = match tokio::time::timeout(budget, answer).await {
                Ok(Ok(Outcome::Hit)) => "hit",
                Ok(Ok(Outcome::Miss)) => "miss",
                Ok(Ok(Outcome::Error) | Err(_)) => "error",
                Err(_) => "timeout",
            };
            counters.lookup(result);
        }))
    }

    fn status(&self) -> Option<StoreStatus> {
        Some(self.link.status())
    }
}

/// The shared store of a router: its one link to Redis, from which every
/// pool's table is made, at start and for a pool a reload adds.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    link: Arc<RedisLink>,
    clock: crate::clock::Clock,
}

impl Shared {
    /// A table for pool `p`: its own near cache in front of the link.
    pub fn store_for(&self, p: &crate::config::PoolConfig) -> Arc<dyn AffinityStore> {
        let a = &p.affinity;
        let local = MemoryStore::new(
            super::memory::MemoryStoreConfig {
                capacity: a.table_size,
                inactivity: a.inactivity_timeout,
                absolute_max: a.absolute_max,
            },
            self.clock.clone(),
        );
        Arc::new(RedisStore::new(
            local,
            self.link.clone(),
            &p.name,
            a.inactivity_timeout,
            a.correlation_window,
        ))
    }
}

/// With `[store]` on Redis, starts the link and adds a table for every
/// pool of `config` that `stores` has none for; the link is returned so
/// that pools added later share it too. `None` with the in-process store.
pub(crate) fn stores_for(
    config: &crate::config::Config,
    clock: &crate::clock::Clock,
    stores: &mut std::collections::HashMap<String, Arc<dyn AffinityStore>>,
) -> Option<Shared> {
    if !config.store.kind.is_redis() {
        return None;
    }
    let shared = Shared {
        link: RedisLink::start(&config.store),
        clock: clock.clone(),
    };
    for p in &config.pools {
        stores
            .entry(p.name.clone())
            .or_insert_with(|| shared.store_for(p));
    }
    Some(shared)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use crate::affinity::clients::ClientIndexConfig;
    use crate::clock::Clock;

    /// A single-server store whose Redis is a port nothing listens on.
    fn unreachable_store() -> RedisStore {
        unreachable(|url| StoreConfig::redis(&format!("{url}/0")))
    }

    /// A store configured by `config` from the URL of a port nothing
    /// listens on, with a lookup budget longer than any test waits.
    fn unreachable(config: impl FnOnce(&str) -> StoreConfig) -> RedisStore {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = config(&format!("redis://127.0.0.1:{port}"));
        cfg.lookup_budget = Duration::from_secs(5);
        let local = MemoryStore::new(
            super::super::memory::MemoryStoreConfig {
                capacity: 100,
                inactivity: Duration::from_secs(60),
                absolute_max: None,
            },
            Clock::new(),
        );
        let link = RedisLink::start(&cfg);
        RedisStore::new(
            local,
            link,
            "p",
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    }

    fn lookup(keys: Vec<Key>) -> Lookup {
        Lookup {
            keys,
            names: Vec::new(),
            client: ClientPrefix::new("127.0.0.1".parse().unwrap(), 32, 64),
            clients: Arc::new(ClientIndex::new(
                ClientIndexConfig {
                    capacity: 10,
                    window: Duration::from_secs(60),
                    nat_threshold: 10,
                },
                Clock::new(),
            )),
            backends: Arc::from([Arc::from("a")]),
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_costs_no_wait_and_every_failure_is_counted() {
        let started = std::time::Instant::now();
        let store = unreachable_store();
        let key = Key::new(crate::affinity::KeyKind::SessionId, b"sid");
        store.put(key, binding("a", KeyState::Owned));
        assert_eq!(
            store.get(&key),
            Some(binding("a", KeyState::Owned)),
            "local state serves"
        );

        // Down: the lookup fails at once, well inside its 5 s budget.
        let other = Key::new(crate::affinity::KeyKind::SessionId, b"unknown here");
        let wait = store.prefetch(lookup(vec![other])).expect("a lookup");
        wait.await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = store.status().unwrap();
            if s.errors_connect > 0 && s.writes_dropped > 0 {
                assert!(!s.up);
                assert_eq!((s.lookups_error, s.lookups_hit, s.lookups_miss), (1, 0, 0));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn keys_known_here_ask_redis_nothing() {
        let store = unreachable_store();
        let key = Key::new(crate::affinity::KeyKind::Ticket, b"ticket");
        store.put(key, binding("a", KeyState::Owned));
        let other = Key::new(crate::affinity::KeyKind::SessionId, b"sid");
        assert!(store.prefetch(lookup(vec![other, key])).is_none());
        assert!(
            store.prefetch(lookup(Vec::new())).is_none(),
            "a hello with no keys"
        );
        // A key name still a candidate here may be routable elsewhere.
        let name = Key::new(crate::affinity::KeyKind::TicketKeyName, b"name");
        store.confirm_key_name(name, &Arc::from("a"), 1);
        let mut l = lookup(vec![other]);
        l.names = vec![name];
        assert!(store.prefetch(l).is_some());
    }

    fn binding(backend: &str, state: KeyState) -> Binding {
        Binding::name(Arc::from(backend), state)
    }

    #[test]
    fn bindings_survive_their_value_form() {
        for (state, name) in [
            (KeyState::Owned, false),
            (KeyState::Candidate { tag: 8191 }, true),
            (KeyState::Routable, true),
            (KeyState::Shared, true),
            (KeyState::Rejected, true),
        ] {
            let b = binding("web:1", state);
            let v = encode_binding(&b, 1_700_000_000).unwrap();
            assert!(v.starts_with("1:"), "{v}");
            assert_eq!(decode_binding(v.as_bytes(), name), Ok((b, 1_700_000_000)));
        }
        let tls12 = Session {
            version: 0x0303,
            cipher: 0xc02f,
        };
        let b = Binding::owned(Arc::from("web:1"), tls12);
        let v = encode_binding(&b, 7).unwrap();
        assert_eq!(v, "2:0:7:771:49199:web:1");
        assert_eq!(decode_binding(v.as_bytes(), false), Ok((b, 7)));
    }

    #[test]
    fn values_written_before_sessions_were_kept_read_as_unknown_sessions() {
        let (b, at) = decode_binding(b"1:0:1700000000:web1", false).unwrap();
        assert_eq!(b, Binding::owned(Arc::from("web1"), Session::UNKNOWN));
        assert_eq!(at, 1_700_000_000);
        // A session under a key name, a short or non-numeric session: not ours.
        for (v, want) in [
            (&b"2:16384:1:771:49199:web1"[..], Corrupt::WrongClass),
            (b"2:0:1:771:web1", Corrupt::Form),
            (b"2:0:1:771:x:web1", Corrupt::Form),
            (b"2:0:1:771:65536:web1", Corrupt::Form),
            (b"3:0:1:web1", Corrupt::Form),
        ] {
            let name = v.starts_with(b"2:16384");
            assert_eq!(decode_binding(v, name).map(|_| ()), Err(want), "{v:?}");
        }
    }

    #[test]
    fn session_counts_are_digits_and_saturate() {
        assert_eq!(decode_count(b"12"), Ok(12));
        assert_eq!(decode_count(b"99999999999999999999"), Ok(u32::MAX));
        for bad in [&b""[..], b"-1", b"1a", b" 1", &[b'1'; 21]] {
            assert_eq!(decode_count(bad), Err(Corrupt::Form), "{bad:?}");
        }
    }

    #[test]
    fn corrupt_or_foreign_values_are_refused_not_trusted() {
        let long = format!("1:0:1:{}", "b".repeat(MAX_VALUE));
        let cases: [(&[u8], bool, Corrupt); 11] = [
            (b"", false, Corrupt::Form),
            (b"garbage", false, Corrupt::Form),
            (b"2:0:1:web1", false, Corrupt::Form),
            (b"1:0:1", false, Corrupt::Form),
            (b"1:+0:1:web1", false, Corrupt::Form),
            (b"1:0:-1:web1", false, Corrupt::Form),
            (b"1:99999:1:web1", false, Corrupt::Form),
            (b"1:65535:1:web1", false, Corrupt::Field),
            (b"1:0:1:", false, Corrupt::Field),
            (b"1:0:1:web1", true, Corrupt::WrongClass),
            (b"1:16384:1:web1", false, Corrupt::WrongClass),
        ];
        for (v, name, want) in cases {
            assert_eq!(
                decode_binding(v, name).map(|_| ()),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        assert_eq!(
            decode_binding(long.as_bytes(), false).map(|_| ()),
            Err(Corrupt::TooLong)
        );
        assert_eq!(
            decode_binding(b"1:0:1:\xff\xfe", false).map(|_| ()),
            Err(Corrupt::Form)
        );
        assert_eq!(
            decode_binding(b"1:0:1:web\n1", false).map(|_| ()),
            Err(Corrupt::Field)
        );
    }

    #[test]
    fn a_backend_name_too_long_to_share_is_not_encoded() {
        let b = binding(&"x".repeat(MAX_BACKEND + 1), KeyState::Owned);
        assert_eq!(encode_binding(&b, 0), None);
    }

    #[test]
    fn client_records_survive_their_value_form_and_bad_ones_are_refused() {
        let c = Confirmed {
            backend: Arc::from("b2"),
            tls12: true,
            fingerprint: u32::MAX,
            new_session: true,
        };
        let v = encode_client(&c, 42).unwrap();
        let (back, at) = decode_client(v.as_bytes()).unwrap();
        assert_eq!(at, 42);
        assert_eq!(
            (back.backend.as_ref(), back.tls12, back.fingerprint),
            ("b2", true, u32::MAX)
        );
        assert!(
            !back.new_session,
            "a shared record never counts a session twice"
        );
        for bad in [
            &b"1:42:2:7:b2"[..],
            b"1:42:1:4294967296:b2",
            b"1:42:1:7:",
            b"1:42:1:7",
            b"0:42:1:7:b2",
        ] {
            assert!(
                decode_client(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn redis_keys_name_prefix_pool_class_and_the_whole_digest() {
        let key = Key::from_bytes([0xab; 16]);
        assert_eq!(
            redis_key("st:", "web", 'e', &key),
            format!("st:web:e:{}", "ab".repeat(16))
        );
        let v6 = ClientPrefix::new("2001:db8::1".parse().unwrap(), 32, 64);
        assert_eq!(client_key("st:", "web", &v6), "st:web:c:2001:db8::");
    }

    #[test]
    fn cluster_groups_are_one_per_hash_slot_in_the_order_of_first_keys() {
        let key = |n: u8| redis_key("st:", "web", 'e', &Key::from_bytes([n; 16]));
        let keys: Vec<String> = (0..40).map(key).collect();
        let g = groups(&keys);
        let mut seen: Vec<usize> = g.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..40).collect::<Vec<_>>(), "every key once");
        for group in &g {
            let slot = Slot::for_key(&keys[group[0]]);
            assert!(group.iter().all(|&i| Slot::for_key(&keys[i]) == slot));
            assert!(group.windows(2).all(|w| w[0] < w[1]), "in order");
        }
        assert!(g.windows(2).all(|w| w[0][0] < w[1][0]));
        assert!(g.len() > 30, "40 keys in {} slots", g.len());
        // A hash tag names one slot: every key of it in one group.
        let tagged = ["{t}a", "x", "{t}b", "{t}c"];
        assert_eq!(groups(&tagged), [vec![0, 2, 3], vec![1]]);
    }

    #[tokio::test]
    async fn an_unreachable_cluster_costs_no_wait_and_is_counted() {
        let store = unreachable(|url| StoreConfig::redis_cluster(&[url]));
        let started = std::time::Instant::now();
        let other = Key::new(crate::affinity::KeyKind::SessionId, b"unknown here");
        store.prefetch(lookup(vec![other])).expect("a lookup").await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = store.status().unwrap();
            if s.errors_connect > 0 {
                assert_eq!((s.kind, s.up), ("redis-cluster", false));
                assert_eq!(s.lookups_error, 1);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn the_scripts_state_unit_is_the_tag_width() {
        // The bits of `KeyState::to_bits` below the state.
        const STATE_UNIT: u32 = 1 << crate::affinity::TAG_BITS;
        assert!(CONFIRM_NAME.contains(&format!("local S = {STATE_UNIT}")));
        assert!(REJECT_NAME.contains(&format!("local S = {STATE_UNIT}")));
    }
}
