//! Runtime configuration of one router: what it listens on, its backends,
//! how it balances, and every budget and timeout.
//!
//! The quick command-line form ([`quick`]) builds this directly and the
//! TOML file ([`file`](mod@file)) is read into the same types, so the router itself
//! never knows where its settings came from. Each setting is described
//! once, in [`settings`]: its key, type, default, range, flag and whether
//! a reload applies it.
//!
//! Every rule a configuration must follow is written once, in
//! [`Config::validate`], and reported as a [`ConfigError`] that names the
//! offending setting by its [`ConfigPath`]: the file loader turns that path
//! into FILE:LINE:COLUMN, the quick form into the flag, and code that builds
//! a `Config` itself gets the path. Only what a source alone can get wrong
//! (TOML syntax, a missing required key) is checked outside.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

mod error;
pub mod file;
mod path;
pub mod quick;
pub mod settings;
mod validate;

pub(crate) use error::{ConfigError, ConfigErrors, Rule, ValueError};
pub(crate) use path::{
    AdminKey, AffinityKey, BackendKey, ConfigPath, HealthKey, ListenerKey, LogKey, PoolKey,
    ProcessKey, StoreKey, TimeoutKey,
};
use settings::{duration_default as dur, int_default as int};

/// `as_str` and `FromStr` of a setting's enum, from one list of the names
/// the file and the flags use (the first is the one `as_str` gives).
macro_rules! names {
    ($t:ident, $unknown:ident, { $($v:ident = $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $name),+ }
            }
        }
        impl std::str::FromStr for $t {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                match s {
                    $($name $(| $alias)* => Ok($t::$v),)+
                    other => Err(ValueError::$unknown(other.to_string())),
                }
            }
        }
    };
}

names!(SendProxy, UnknownSendProxy, { Off = "off", V1 = "v1", V2 = "v2" });
names!(Balance, UnknownBalancer, {
    RoundRobin = "roundrobin" | "round-robin",
    WeightedRoundRobin = "weighted-roundrobin" | "weighted-round-robin",
    LeastConnections = "least-connections" | "leastconn",
    SourceHash = "source-hash" | "source",
});
names!(HealthCheck, UnknownHealthCheck, { Tcp = "tcp", Tls = "tls", None = "none" });
names!(StoreKind, UnknownStoreKind, { Memory = "memory", Redis = "redis", RedisCluster = "redis-cluster" });
names!(LogFormat, UnknownLogFormat, { Text = "text", Json = "json" });

/// One backend server, known by a name that stays stable across reloads:
/// the affinity table stores names, never addresses or indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub name: String,
    pub addr: SocketAddr,
    /// Relative share for weighted balancers; 0 takes no new clients.
    pub weight: u32,
    /// Most connections open to it at once; `None` for no limit.
    pub max_connections: Option<u32>,
    /// The PROXY protocol header written before the client's bytes, so the
    /// backend sees the client's address instead of the router's. The
    /// file's pool-level `send_proxy` is already applied here: a backend
    /// never needs its pool's configuration to know what to send.
    pub send_proxy: SendProxy,
    /// Connect with `TCP_FASTOPEN_CONNECT`: once the backend has given this
    /// host a Fast Open cookie, the ClientHello (and PROXY header) travel
    /// in the SYN, saving the backend a round trip before it can answer.
    /// Off by default: only for backends that enable TFO themselves.
    pub tcp_fastopen: bool,
}

impl BackendConfig {
    pub fn new(name: &str, addr: SocketAddr) -> Self {
        BackendConfig {
            name: name.to_string(),
            addr,
            weight: int(ConfigPath::Backend {
                pool: 0,
                backend: 0,
                key: BackendKey::Weight,
            }),
            max_connections: None,
            send_proxy: SendProxy::Off,
            tcp_fastopen: false,
        }
    }
}

/// Which PROXY protocol header a backend is sent (`send_proxy`). A backend
/// that expects one closes connections without it, and one that does not
/// reads the header as garbage, so this must match the backend's own
/// setting (HAProxy's `accept-proxy`, nginx's `proxy_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendProxy {
    /// No header: the backend sees the router's address.
    #[default]
    Off,
    /// The text header (`PROXY TCP4 ...\r\n`): addresses only.
    V1,
    /// The binary header, with the routing decision in TLVs
    /// (docs/operations.md, "PROXY protocol to backends").
    V2,
}

/// How a client with no affinity is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// Smooth weighted round robin (nginx's): each backend gets its weight's
    /// share, interleaved rather than in bursts.
    WeightedRoundRobin,
    /// The backend with the fewest open connections relative to its weight.
    LeastConnections,
    /// Weighted rendezvous hashing of the client address (docs/routing.md):
    /// every router instance with the same backends agrees, without sharing
    /// state.
    SourceHash,
}

/// How a pool's backends are probed between connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheck {
    /// A TCP connect within the timeout passes.
    Tcp,
    /// A ClientHello answered by a ServerHello within the timeout passes.
    Tls,
    /// No probes: only failed connection attempts mark a backend down.
    None,
}

/// Active health checks of a pool (`[pool.NAME.health]`): every backend is
/// probed each `interval`; `fall` failed probes in a row mark it down,
/// `rise` passed probes in a row mark it up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub check: HealthCheck,
    /// Time between two probes of one backend.
    pub interval: Duration,
    /// Bound on one probe, connect included; at most `interval`.
    pub timeout: Duration,
    /// Passed probes in a row that bring a down backend back.
    pub rise: u32,
    /// Failed probes in a row that mark an up backend down.
    pub fall: u32,
    /// The server name the TLS check sends; none sends no SNI.
    pub sni: Option<String>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        let at = |k| ConfigPath::Pool(0, PoolKey::Health(k));
        HealthConfig {
            check: HealthCheck::Tcp,
            interval: dur(at(HealthKey::Interval)),
            timeout: dur(at(HealthKey::Timeout)),
            rise: int(at(HealthKey::Rise)),
            fall: int(at(HealthKey::Fall)),
            sni: None,
        }
    }
}

/// Affinity settings of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffinityConfig {
    /// An entry unused this long is forgotten (refreshed on every hit).
    pub inactivity_timeout: Duration,
    /// Optional hard cap on an entry's age, hits or not.
    pub absolute_max: Option<Duration>,
    /// Most entries kept; the least recently used go first.
    pub table_size: usize,
    /// How long a client IP's last confirmed connection is used to re-bind
    /// its unknown sessions and to pin its fresh ones.
    pub correlation_window: Duration,
    /// More than this many new sessions from one IP prefix within the
    /// correlation window mark it shared (NAT, proxy).
    pub nat_threshold: u32,
    /// Prefix lengths that define "one client address".
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Most client prefixes tracked for correlation.
    pub clients_tracked: usize,
}

impl Default for AffinityConfig {
    fn default() -> Self {
        let at = |k| ConfigPath::Pool(0, PoolKey::Affinity(k));
        AffinityConfig {
            inactivity_timeout: dur(at(AffinityKey::Timeout)),
            absolute_max: None,
            table_size: int(at(AffinityKey::TableSize)),
            correlation_window: dur(at(AffinityKey::CorrelationWindow)),
            nat_threshold: int(at(AffinityKey::NatThreshold)),
            ipv4_prefix: int(at(AffinityKey::Ipv4Prefix)),
            ipv6_prefix: int(at(AffinityKey::Ipv6Prefix)),
            clients_tracked: int(at(AffinityKey::ClientsTracked)),
        }
    }
}

/// Every timeout a connection can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Whole time allowed for the client to deliver its ClientHello.
    pub hello: Duration,
    /// Per backend connection attempt.
    pub connect: Duration,
    /// How long a backend may stay silent after receiving the hello before
    /// the next candidate is tried.
    pub first_byte: Duration,
    /// No bytes either way for this long closes the connection.
    pub idle: Duration,
    /// How long a backend that refused or timed out is skipped.
    pub down_hold: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let at = |k| dur(ConfigPath::Pool(0, PoolKey::Timeout(k)));
        Timeouts {
            hello: at(TimeoutKey::Hello),
            connect: at(TimeoutKey::Connect),
            first_byte: at(TimeoutKey::FirstByte),
            idle: at(TimeoutKey::Idle),
            down_hold: at(TimeoutKey::DownHold),
        }
    }
}

/// Connection-count limits of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections from one client prefix at once; `None` is the default,
    /// half of `max_connections` ([`Limits::connections_per_client`]).
    pub max_connections_per_client: Option<usize>,
    /// Connections from one client prefix still delivering their hello.
    pub max_inspecting_per_ip: u32,
    /// Bytes a client may send before its ClientHello must be complete.
    pub max_hello_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let at = |k| ConfigPath::Listener(0, k);
        Limits {
            max_connections: int(at(ListenerKey::MaxConnections)),
            max_connections_per_client: None,
            max_inspecting_per_ip: int(at(ListenerKey::MaxInspectingPerIp)),
            max_hello_bytes: int(at(ListenerKey::MaxHelloBytes)),
        }
    }
}

impl Limits {
    /// The most connections one client prefix may hold at once:
    /// `max_connections_per_client`, or by default half of
    /// `max_connections`, rounded up (so that a listener of one slot still
    /// serves its one client).
    pub fn connections_per_client(&self) -> usize {
        self.max_connections_per_client
            .unwrap_or(self.max_connections.div_ceil(2))
    }
}

/// A pool: backends, how to balance over them, and their affinity and
/// timeout settings. Affinity never crosses pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub backends: Vec<BackendConfig>,
    pub balance: Balance,
    pub affinity: AffinityConfig,
    pub timeouts: Timeouts,
    /// Active health checks of the backends.
    pub health: HealthConfig,
    /// Inspect handshakes and keep affinity. Off, connections are forwarded
    /// by the balancer alone (still reading the hello for SNI).
    pub inspect: bool,
}

impl PoolConfig {
    pub fn new(name: &str, backends: Vec<BackendConfig>) -> Self {
        PoolConfig {
            name: name.to_string(),
            backends,
            balance: Balance::RoundRobin,
            affinity: AffinityConfig::default(),
            timeouts: Timeouts::default(),
            health: HealthConfig::default(),
            inspect: true,
        }
    }
}

/// An IP network in CIDR notation, e.g. `10.0.0.0/8` or `::1/128`; a
/// bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl Cidr {
    /// Whether `ip` is inside, an IPv4-mapped IPv6 address as its IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::str::FromStr for Cidr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let net = match s.parse::<IpAddr>() {
            Ok(addr) => Ok(addr.into()),
            Err(_) => s.parse::<ipnet::IpNet>(),
        };
        net.map(Cidr)
            .map_err(|_| ValueError::NotANetwork(s.to_string()))
    }
}

/// What a listener does with a connection that does not start with TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonTls {
    /// Close it (counted and logged).
    Reject,
    /// Forward it, unmodified, to this pool's balancer.
    Pool(String),
}

/// One SNI rule: an exact host name or `*.suffix`, and its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRoute {
    pub pattern: String,
    pub pool: String,
}

/// A listening address and how it picks a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    /// Require a PROXY protocol (v1 or v2) header from trusted peers.
    pub proxy_protocol: bool,
    /// Peers allowed to send a PROXY header; others are closed.
    pub proxy_trusted: Vec<Cidr>,
    pub sni: Vec<SniRoute>,
    pub default_pool: String,
    pub non_tls: NonTls,
    pub limits: Limits,
}

impl ListenerConfig {
    pub fn new(bind: SocketAddr, default_pool: &str) -> Self {
        ListenerConfig {
            name: "default".to_string(),
            bind,
            proxy_protocol: false,
            proxy_trusted: Vec::new(),
            sni: Vec::new(),
            default_pool: default_pool.to_string(),
            non_tls: NonTls::Reject,
            limits: Limits::default(),
        }
    }
}

/// A whole router: its listeners and the pools they route to. The default
/// has neither, and every other setting at its default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    pub pools: Vec<PoolConfig>,
    /// How the process stops and what it keeps across a restart.
    pub lifecycle: Lifecycle,
    /// The admin endpoint (metrics, API); off when `None`.
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    /// Where the affinity tables live: in this process, or shared with
    /// other instances through Redis.
    pub store: StoreConfig,
}

/// `[store]`'s `kind`: where learned sessions are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// Each process keeps its own tables.
    #[default]
    Memory,
    /// A single Redis server shared by several router instances, with the
    /// in-process table in front of it as a near cache.
    Redis,
    /// A Redis Cluster, found from its seed nodes, in the same role.
    RedisCluster,
}

impl StoreKind {
    /// Whether the tables are shared through Redis (either kind).
    pub fn is_redis(self) -> bool {
        self != StoreKind::Memory
    }
}

/// The `[store]` section (quick form: `--store`, `--store-lookup-budget`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// `redis://HOST:PORT/DB` (or `rediss://`, with the `store-tls`
    /// feature): the server for `redis`, which uses the first; the seed
    /// nodes for `redis-cluster`, which learns the others from them.
    pub urls: Vec<String>,
    /// With `rediss://`: the CA certificates (PEM) the store's certificate
    /// must chain to, instead of the system's roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// A file holding the store's password (one line; a final newline is
    /// not part of it), so the password stays out of the URL, the command
    /// line and the configuration file. Read when the store is started.
    /// Without it, `STICKYTLS_STORE_PASSWORD` in the environment is used
    /// when set; a URL's own password (`redis://user:pass@...`) is refused
    /// beside either ([`StoreConfig::password`]).
    pub password_file: Option<std::path::PathBuf>,
    /// Put before every Redis key, so several deployments can share one
    /// server without seeing each other's sessions.
    pub prefix: String,
    /// How long a connection waits for Redis when its hello offers a key
    /// this process does not know; then it is routed by local state and
    /// the balancer, and a late answer serves the next connection.
    pub lookup_budget: Duration,
    /// How long any one Redis request may take before the server is
    /// counted unreachable and reconnected (a partition shows as silence).
    pub timeout: Duration,
    /// Writes waiting to be sent at most; beyond that they are dropped and
    /// counted, so a slow Redis never holds memory or connections up.
    pub queue: usize,
}

impl StoreConfig {
    pub const PREFIX: &'static str = "stickytls:";
    pub const LOOKUP_BUDGET: Duration = Duration::from_millis(2);
    pub const TIMEOUT: Duration = Duration::from_millis(500);
    pub const QUEUE: usize = 65_536;
    /// Longest `prefix`: keys stay small and bounded.
    pub const MAX_PREFIX: usize = 64;

    /// The environment variable a store password may come from.
    pub const PASSWORD_ENV: &'static str = "STICKYTLS_STORE_PASSWORD";
    /// Longest password file read: a password, not a file of anything.
    pub const MAX_PASSWORD_FILE: u64 = 4096;

    /// The password given outside the URLs: `password_file`'s content
    /// (without a final newline), else [`StoreConfig::PASSWORD_ENV`] when
    /// set and not empty, else `None` (a URL may carry its own). Read each
    /// time, so a rotated file takes effect at the next start.
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.password_file {
            return read_password_file(path).map(Some);
        }
        Ok(std::env::var(Self::PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty()))
    }

    /// A Redis store at `url` with every other setting at its default.
    pub fn redis(url: &str) -> Self {
        StoreConfig {
            kind: StoreKind::Redis,
            urls: vec![url.to_string()],
            ..StoreConfig::default()
        }
    }

    /// A Redis Cluster found from `seeds`, every other setting at its
    /// default.
    pub fn redis_cluster<S: AsRef<str>>(seeds: &[S]) -> Self {
        StoreConfig {
            kind: StoreKind::RedisCluster,
            urls: seeds.iter().map(|s| s.as_ref().to_string()).collect(),
            ..StoreConfig::default()
        }
    }

    /// The quick form's `--store`: `redis://HOST:PORT/DB` for one server,
    /// `redis-cluster://HOST:PORT,HOST:PORT,...` for a cluster's seed
    /// nodes (`rediss://`, `rediss-cluster://` with TLS).
    pub fn from_flag(text: &str) -> Self {
        for (scheme, each) in [
            ("redis-cluster://", "redis://"),
            ("rediss-cluster://", "rediss://"),
        ] {
            if let Some(nodes) = text.strip_prefix(scheme) {
                let seeds: Vec<String> = nodes
                    .split(',')
                    .map(|n| format!("{each}{}", n.trim()))
                    .collect();
                return StoreConfig::redis_cluster(&seeds);
            }
        }
        StoreConfig::redis(text)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Memory,
            urls: Vec::new(),
            tls_ca_file: None,
            password_file: None,
            prefix: Self::PREFIX.to_string(),
            lookup_budget: Self::LOOKUP_BUDGET,
            timeout: Self::TIMEOUT,
            queue: Self::QUEUE,
        }
    }
}

/// Checks a Redis URL's form without connecting: `redis://`, or
/// `rediss://` (TLS) in a build with the `store-tls` feature.
pub(crate) fn parse_redis_url(s: &str) -> Result<String, ValueError> {
    let bad = || ValueError::NotARedisUrl(s.to_string());
    if s.starts_with("rediss://") {
        if !cfg!(feature = "store-tls") {
            return Err(ValueError::StoreTlsNotBuilt(s.to_string()));
        }
    } else if !s.starts_with("redis://") {
        return Err(bad());
    }
    redis::Client::open(s).map_err(|_| bad())?;
    Ok(s.to_string())
}

/// A password file's first line; what is wrong with it otherwise, in
/// words for an operator.
fn read_password_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut text = String::new();
    file.take(StoreConfig::MAX_PASSWORD_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if text.len() as u64 > StoreConfig::MAX_PASSWORD_FILE {
        return Err(format!(
            "{shown} is longer than {} bytes; it should hold the password only",
            StoreConfig::MAX_PASSWORD_FILE
        ));
    }
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(format!(
            "{shown} is empty; write the store's password in it"
        ));
    }
    if password.contains(['\n', '\r']) {
        return Err(format!(
            "{shown} has more than one line; it should hold the password only"
        ));
    }
    Ok(password.to_string())
}

/// Whether a Redis URL carries a password of its own.
pub(crate) fn url_has_password(url: &str) -> bool {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .is_ok_and(|i| i.redis_settings().password().is_some())
}

/// How long a stop waits for open connections, and the state file that
/// carries the tables across a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// After SIGTERM or SIGINT, open connections may finish for this long;
    /// then the rest are closed. Zero closes them at once.
    pub shutdown_timeout: Duration,
    /// `None`: nothing is kept across a restart.
    pub state: Option<StateConfig>,
    /// The Unix socket a running router hands its listening sockets and
    /// state over on, to a new process started with the same path
    /// ([`crate::takeover`]); `None`: no takeover.
    pub takeover_socket: Option<PathBuf>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            shutdown_timeout: dur(ConfigPath::Process(ProcessKey::ShutdownTimeout)),
            state: None,
            takeover_socket: None,
        }
    }
}

/// The `[admin]` section: where the endpoint listens and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// A bearer token every write must carry (and every read with
    /// `token_for_reads`). Required when `bind` is not a loopback address.
    pub token: Option<String>,
    pub token_for_reads: bool,
    /// Host names (or IP addresses) a request without the token may name
    /// in its `Host`, besides the address the endpoint was reached at,
    /// `localhost`, `127.0.0.1` and `[::1]`; a web page that points its
    /// own DNS name at the endpoint is refused (`crate::admin::guard`).
    pub allowed_hosts: Vec<String>,
}

impl AdminConfig {
    /// An endpoint on `bind` without a token.
    pub fn new(bind: SocketAddr) -> Self {
        AdminConfig {
            bind,
            token: None,
            token_for_reads: false,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Shortest admin token accepted: guessing must not be practical.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// The `[log]` section: how lines are written, and how many per-connection
/// lines a second at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// Per-connection lines (and closes before routing) logged per second
    /// at most; the rest are dropped and counted. 0 turns them off.
    pub connections_per_second: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            connections_per_second: int(ConfigPath::Log(LogKey::ConnectionsPerSecond)),
        }
    }
}

/// `[state]`: where the affinity tables, key-name states and client index
/// are written, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    pub file: PathBuf,
    /// Written this often while running, and once more at shutdown.
    pub interval: Duration,
}

impl StateConfig {
    /// The default interval.
    pub const INTERVAL: Duration = Duration::from_secs(60);

    pub fn new(file: PathBuf) -> Self {
        StateConfig {
            file,
            interval: Self::INTERVAL,
        }
    }
}

/// How log lines are written: `--log-format` and `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Config {
    /// One listener in front of one pool named `default`: the quick
    /// command-line form.
    pub fn single(listen: SocketAddr, backends: Vec<BackendConfig>) -> Self {
        Config {
            listeners: vec![ListenerConfig::new(listen, "default")],
            pools: vec![PoolConfig::new("default", backends)],
            ..Config::default()
        }
    }

    pub fn pool_mut(&mut self, name: &str) -> Option<&mut PoolConfig> {
        self.pools.iter_mut().find(|p| p.name == name)
    }
}

/// An SNI pattern: a host name, or `*.` and a host name (the wildcard
/// covers exactly one label).
pub(crate) fn is_sni_pattern(p: &str) -> bool {
    let name = p.strip_prefix("*.").unwrap_or(p);
    !name.is_empty()
        && name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The quick form's `--backend NAME=IP:PORT`.
impl std::str::FromStr for BackendConfig {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, addr) = s
            .split_once('=')
            .ok_or_else(|| ValueError::NotABackend(s.to_string()))?;
        Ok(BackendConfig::new(name, parse_address(addr)?))
    }
}

/// Parses `IP:PORT`; host names are not resolved.
pub(crate) fn parse_address(s: &str) -> Result<SocketAddr, ValueError> {
    s.parse()
        .map_err(|_| ValueError::NotAnAddress(s.to_string()))
}

/// Parses durations like `500ms`, `5s`, `30m`, `2h` (a bare number is seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let text = s;
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || ValueError::NotADuration(text.to_string());
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = |mul: u64| {
        n.checked_mul(mul)
            .map(Duration::from_secs)
            .ok_or_else(|| ValueError::DurationTooLong(text.to_string()))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => Err(bad()),
    }
}

/// The inverse of [`parse_duration`], for messages.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::path::IntRange;
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert_eq!(format_duration(Duration::from_secs(1800)), "30m");
    }

    #[test]
    fn send_proxy_names_parse_and_anything_else_is_refused() {
        for v in [SendProxy::Off, SendProxy::V1, SendProxy::V2] {
            assert_eq!(v.as_str().parse::<SendProxy>().unwrap(), v);
        }
        assert_eq!(
            "V2".parse::<SendProxy>().unwrap_err(),
            ValueError::UnknownSendProxy("V2".into())
        );
        assert_eq!(
            BackendConfig::new("a", "127.0.0.1:1".parse().unwrap()).send_proxy,
            SendProxy::Off,
            "a backend that was not told to expect a header gets none"
        );
    }

    #[test]
    fn backend_spec_needs_name_and_socket_address() {
        let b = "a=127.0.0.1:9443".parse::<BackendConfig>().unwrap();
        assert_eq!(b.name, "a");
        assert!("127.0.0.1:9443".parse::<BackendConfig>().is_err());
        assert!("a=localhost".parse::<BackendConfig>().is_err());
    }

    /// The rule each error breaks, for asserting without reading messages.
    fn rules(cfg: &Config) -> Vec<(ConfigPath, Rule)> {
        match cfg.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| (e.path, e.rule)).collect(),
        }
    }

    #[test]
    fn validation_names_the_setting_and_the_rule() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let b = |n: &str| BackendConfig::new(n, addr);
        let mut cfg = Config::single(addr, vec![b("a"), b("a")]);
        assert_eq!(
            rules(&cfg),
            [(
                ConfigPath::Backend {
                    pool: 0,
                    backend: 1,
                    key: BackendKey::Name
                },
                Rule::DuplicateBackendName {
                    name: "a".into(),
                    pool: "default".into(),
                    first: 0
                }
            )]
        );
        cfg.pools[0].backends = vec![b("a")];
        assert!(cfg.validate().is_ok());
        cfg.pools[0].affinity.absolute_max = Some(Duration::from_secs(1));
        assert!(matches!(
            rules(&cfg)[..],
            [(
                ConfigPath::Pool(0, PoolKey::Affinity(AffinityKey::AbsoluteMax)),
                Rule::AbsoluteMaxBelowTimeout { .. }
            )]
        ));
        cfg.pools[0].affinity.absolute_max = None;
        cfg.listeners[0].default_pool = "nope".into();
        assert!(matches!(
            &rules(&cfg)[..],
            [(ConfigPath::Listener(0, ListenerKey::DefaultPool), Rule::UndefinedPool { name, .. })]
                if name == "nope"
        ));
    }

    #[test]
    fn every_broken_rule_is_reported_not_only_the_first() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut cfg = Config::single(addr, vec![BackendConfig::new("", addr)]);
        cfg.pools[0].timeouts.idle = Duration::ZERO;
        cfg.listeners[0].limits.max_hello_bytes = 100;
        cfg.listeners[0].sni.push(SniRoute {
            pattern: "a.*.com".into(),
            pool: "default".into(),
        });
        let got: Vec<Rule> = rules(&cfg).into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            got,
            [
                Rule::EmptyName,
                Rule::Zero,
                Rule::BadSniPattern {
                    pattern: "a.*.com".into()
                },
                Rule::OutOfRange { value: 100 },
            ]
        );
    }

    #[test]
    fn listeners_on_port_zero_never_clash_but_on_one_port_do() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut cfg = Config::single(any, vec![BackendConfig::new("a", any)]);
        let mut second = ListenerConfig::new(any, "default");
        second.name = "second".into();
        cfg.listeners.push(second);
        assert!(cfg.validate().is_ok());
        let fixed: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        cfg.listeners[0].bind = fixed;
        cfg.listeners[1].bind = fixed;
        assert!(matches!(
            rules(&cfg)[..],
            [(
                ConfigPath::Listener(1, ListenerKey::Bind),
                Rule::DuplicateBind { first: 0, .. }
            )]
        ));
    }

    #[test]
    fn a_config_built_in_code_is_told_the_path_of_each_mistake() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut cfg = Config::single(addr, vec![BackendConfig::new("a", addr)]);
        cfg.pools[0].timeouts.connect = Duration::ZERO;
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "pools[0].timeouts.connect: timeouts.connect is zero, which would fail every connection or forget every entry at once; set it above zero, e.g. \"3s\""
        );
    }

    #[test]
    fn integer_ranges_come_from_one_table() {
        let prefix = ConfigPath::Pool(0, PoolKey::Affinity(AffinityKey::Ipv4Prefix));
        assert_eq!(
            prefix.int_range(),
            Some(IntRange {
                min: 1,
                max: 32,
                default: Some(32)
            })
        );
        let e = ConfigError::new(prefix, Rule::OutOfRange { value: 33 });
        assert_eq!(
            e.message(&|p| p.to_string()),
            "affinity.ipv4_prefix is 33, but a prefix length is 1 to 32 bits; use 32 for one address per client"
        );
    }

    #[test]
    fn cidrs_parse_and_match_both_families() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.1".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        let h: Cidr = "::1".parse().unwrap();
        assert_eq!(h.0.prefix_len(), 128);
        assert!(h.contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn sni_patterns_are_host_names_or_one_label_wildcards() {
        assert!(is_sni_pattern("api.example.com"));
        assert!(is_sni_pattern("*.example.com"));
        assert!(!is_sni_pattern("*"));
        assert!(!is_sni_pattern("a.*.com"));
        assert!(!is_sni_pattern("bad name"));
    }
}
