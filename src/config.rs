//! Runtime configuration of one router: what it listens on, its backends,
//! how it balances, and every budget and timeout.
//!
//! The quick command-line form (`--listen/--backend`) builds this directly
//! and the TOML file ([`crate::config_file`]) loads into the same types, so
//! the router itself never knows where its settings came from.
//!
//! Every rule a configuration must follow is written once, in
//! [`Config::validate`], and reported as a [`ConfigError`] that names the
//! offending setting by its [`ConfigPath`]: the file loader turns that path
//! into FILE:LINE:COLUMN, the quick form into the flag, and code that builds
//! a `Config` itself gets the path. Only what a source alone can get wrong
//! (TOML syntax, a missing required key) is checked outside.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
}

impl BackendConfig {
    pub fn new(name: &str, addr: SocketAddr) -> Self {
        BackendConfig {
            name: name.to_string(),
            addr,
            weight: DEFAULT_WEIGHT,
            max_connections: None,
        }
    }
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

impl std::str::FromStr for Balance {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "roundrobin" | "round-robin" => Ok(Balance::RoundRobin),
            "weighted-roundrobin" | "weighted-round-robin" => Ok(Balance::WeightedRoundRobin),
            "least-connections" | "leastconn" => Ok(Balance::LeastConnections),
            "source-hash" | "source" => Ok(Balance::SourceHash),
            other => Err(ValueError::UnknownBalancer(other.to_string())),
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
        AffinityConfig {
            inactivity_timeout: Duration::from_secs(30 * 60),
            absolute_max: None,
            table_size: 1_000_000,
            correlation_window: Duration::from_secs(30 * 60),
            nat_threshold: 4,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            clients_tracked: 1_000_000,
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
        Timeouts {
            hello: Duration::from_secs(5),
            connect: Duration::from_secs(3),
            first_byte: Duration::from_secs(5),
            idle: Duration::from_secs(600),
            down_hold: Duration::from_secs(10),
        }
    }
}

/// Connection-count limits of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections from one client prefix still delivering their hello.
    pub max_inspecting_per_ip: u32,
    /// Bytes a client may send before its ClientHello must be complete.
    pub max_hello_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_inspecting_per_ip: 64,
            max_hello_bytes: 16 * 1024,
        }
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
            inspect: true,
        }
    }
}

/// An IP network in CIDR notation, e.g. `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.len))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ValueError::NotANetwork(s.to_string());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(l.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        Ok(Cidr { addr, len })
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

/// A whole router: its listeners and the pools they route to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    pub pools: Vec<PoolConfig>,
}

impl Config {
    /// One listener in front of one pool named `default`: the quick
    /// command-line form.
    pub fn single(listen: SocketAddr, backends: Vec<BackendConfig>) -> Self {
        Config {
            listeners: vec![ListenerConfig::new(listen, "default")],
            pools: vec![PoolConfig::new("default", backends)],
        }
    }

    pub fn pool_mut(&mut self, name: &str) -> Option<&mut PoolConfig> {
        self.pools.iter_mut().find(|p| p.name == name)
    }
}

// ---------------------------------------------------------------------------
// Where a setting lives.

/// Where a setting lives in a [`Config`]: which listener, pool or backend
/// (by position, since a name may itself be the mistake) and which key.
/// Each source of settings maps it back to what the operator wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigPath {
    /// The configuration as a whole (e.g. it has no listener).
    Root,
    Listener(usize, ListenerKey),
    Pool(usize, PoolKey),
    Backend {
        pool: usize,
        backend: usize,
        key: BackendKey,
    },
}

/// A key of a listener; `Section` is the listener itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKey {
    Section,
    Name,
    Bind,
    ProxyProtocol,
    /// The n-th network of `proxy_trusted`.
    ProxyTrusted(usize),
    DefaultPool,
    /// The pattern of the n-th SNI rule.
    SniPattern(usize),
    /// The pool of the n-th SNI rule.
    SniPool(usize),
    NonTls,
    MaxConnections,
    MaxInspectingPerIp,
    MaxHelloBytes,
}

/// A key of a pool; `Section` is the pool itself, known by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKey {
    Section,
    Balance,
    Backends,
    Affinity(AffinityKey),
    Timeout(TimeoutKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AffinityKey {
    Timeout,
    AbsoluteMax,
    TableSize,
    CorrelationWindow,
    NatThreshold,
    Ipv4Prefix,
    Ipv6Prefix,
    ClientsTracked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKey {
    Hello,
    Connect,
    FirstByte,
    Idle,
    DownHold,
}

/// A key of a backend; `Entry` is the backend itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKey {
    Entry,
    Name,
    Address,
    Weight,
    MaxConnections,
}

impl ConfigPath {
    /// The enclosing place: a key's section, a section's configuration.
    /// A source that cannot locate a path locates its nearest parent.
    pub fn parent(&self) -> Option<ConfigPath> {
        match *self {
            ConfigPath::Root => None,
            ConfigPath::Listener(_, ListenerKey::Section)
            | ConfigPath::Pool(_, PoolKey::Section) => Some(ConfigPath::Root),
            ConfigPath::Listener(l, _) => Some(ConfigPath::Listener(l, ListenerKey::Section)),
            ConfigPath::Pool(p, _) => Some(ConfigPath::Pool(p, PoolKey::Section)),
            ConfigPath::Backend {
                pool,
                key: BackendKey::Entry,
                ..
            } => Some(ConfigPath::Pool(pool, PoolKey::Backends)),
            ConfigPath::Backend { pool, backend, .. } => Some(ConfigPath::Backend {
                pool,
                backend,
                key: BackendKey::Entry,
            }),
        }
    }

    /// Whether this is `place` or lies inside it.
    pub fn is_within(&self, place: &ConfigPath) -> bool {
        let mut p = Some(*self);
        while let Some(here) = p {
            if here == *place {
                return true;
            }
            p = here.parent();
        }
        false
    }

    /// The setting's name as the file spells it (and docs/configuration.md
    /// documents it), used in every message about it.
    pub fn key(&self) -> &'static str {
        match self {
            ConfigPath::Root => "configuration",
            ConfigPath::Listener(_, k) => match k {
                ListenerKey::Section => "listener",
                ListenerKey::Name => "name",
                ListenerKey::Bind => "bind",
                ListenerKey::ProxyProtocol => "proxy_protocol",
                ListenerKey::ProxyTrusted(_) => "proxy_trusted",
                ListenerKey::DefaultPool => "default_pool",
                ListenerKey::SniPattern(_) | ListenerKey::SniPool(_) => "sni",
                ListenerKey::NonTls => "non_tls",
                ListenerKey::MaxConnections => "max_connections",
                ListenerKey::MaxInspectingPerIp => "max_inspecting_per_ip",
                ListenerKey::MaxHelloBytes => "max_hello_bytes",
            },
            ConfigPath::Pool(_, k) => match k {
                PoolKey::Section => "pool",
                PoolKey::Balance => "balance",
                PoolKey::Backends => "backends",
                PoolKey::Affinity(a) => match a {
                    AffinityKey::Timeout => "affinity.timeout",
                    AffinityKey::AbsoluteMax => "affinity.absolute_max",
                    AffinityKey::TableSize => "affinity.table_size",
                    AffinityKey::CorrelationWindow => "affinity.correlation_window",
                    AffinityKey::NatThreshold => "affinity.nat_threshold",
                    AffinityKey::Ipv4Prefix => "affinity.ipv4_prefix",
                    AffinityKey::Ipv6Prefix => "affinity.ipv6_prefix",
                    AffinityKey::ClientsTracked => "affinity.clients_tracked",
                },
                PoolKey::Timeout(t) => match t {
                    TimeoutKey::Hello => "timeouts.hello",
                    TimeoutKey::Connect => "timeouts.connect",
                    TimeoutKey::FirstByte => "timeouts.first_byte",
                    TimeoutKey::Idle => "timeouts.idle",
                    TimeoutKey::DownHold => "timeouts.down_hold",
                },
            },
            ConfigPath::Backend { key, .. } => match key {
                BackendKey::Entry => "backend",
                BackendKey::Name => "name",
                BackendKey::Address => "address",
                BackendKey::Weight => "weight",
                BackendKey::MaxConnections => "max_connections",
            },
        }
    }

    /// The values an integer setting allows, and its default; `None` for
    /// a setting that is not an integer. Validation and every message
    /// about the setting read it here.
    pub fn int_range(&self) -> Option<IntRange> {
        let limits = Limits::default();
        let affinity = AffinityConfig::default();
        let any = usize::MAX as i128;
        let u32_max = i128::from(u32::MAX);
        let range = |min, max, default: Option<i128>| IntRange { min, max, default };
        let size = |d: usize| Some(d as i128);
        Some(match self {
            ConfigPath::Listener(_, ListenerKey::MaxConnections) => {
                range(1, any, size(limits.max_connections))
            }
            ConfigPath::Listener(_, ListenerKey::MaxInspectingPerIp) => {
                range(1, u32_max, Some(limits.max_inspecting_per_ip.into()))
            }
            ConfigPath::Listener(_, ListenerKey::MaxHelloBytes) => {
                range(MIN_HELLO_BYTES as i128, any, size(limits.max_hello_bytes))
            }
            ConfigPath::Backend {
                key: BackendKey::Weight,
                ..
            } => range(0, u32_max, Some(DEFAULT_WEIGHT.into())),
            ConfigPath::Backend {
                key: BackendKey::MaxConnections,
                ..
            } => range(1, u32_max, None),
            ConfigPath::Pool(_, PoolKey::Affinity(a)) => match a {
                AffinityKey::TableSize => range(1, any, size(affinity.table_size)),
                AffinityKey::ClientsTracked => range(1, any, size(affinity.clients_tracked)),
                AffinityKey::NatThreshold => range(0, u32_max, Some(affinity.nat_threshold.into())),
                AffinityKey::Ipv4Prefix => range(1, 32, Some(affinity.ipv4_prefix.into())),
                AffinityKey::Ipv6Prefix => range(1, 128, Some(affinity.ipv6_prefix.into())),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// A duration setting's default, the example its messages suggest.
    pub fn default_duration(&self) -> Option<Duration> {
        let t = Timeouts::default();
        let a = AffinityConfig::default();
        match self {
            ConfigPath::Pool(_, PoolKey::Timeout(k)) => Some(match k {
                TimeoutKey::Hello => t.hello,
                TimeoutKey::Connect => t.connect,
                TimeoutKey::FirstByte => t.first_byte,
                TimeoutKey::Idle => t.idle,
                TimeoutKey::DownHold => t.down_hold,
            }),
            ConfigPath::Pool(_, PoolKey::Affinity(AffinityKey::Timeout)) => {
                Some(a.inactivity_timeout)
            }
            ConfigPath::Pool(_, PoolKey::Affinity(AffinityKey::CorrelationWindow)) => {
                Some(a.correlation_window)
            }
            ConfigPath::Pool(_, PoolKey::Affinity(AffinityKey::AbsoluteMax)) => {
                Some(a.inactivity_timeout)
            }
            _ => None,
        }
    }
}

/// Where in a `Config` built by code, e.g. `pools[0].timeouts.idle` or
/// `listeners[1].sni[0]`.
impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigPath::Root => f.write_str("config"),
            ConfigPath::Listener(l, ListenerKey::Section) => write!(f, "listeners[{l}]"),
            ConfigPath::Listener(l, ListenerKey::ProxyTrusted(i)) => {
                write!(f, "listeners[{l}].proxy_trusted[{i}]")
            }
            ConfigPath::Listener(l, ListenerKey::SniPattern(i) | ListenerKey::SniPool(i)) => {
                write!(f, "listeners[{l}].sni[{i}]")
            }
            ConfigPath::Listener(l, _) => write!(f, "listeners[{l}].{}", self.key()),
            ConfigPath::Pool(p, PoolKey::Section) => write!(f, "pools[{p}]"),
            ConfigPath::Pool(p, _) => write!(f, "pools[{p}].{}", self.key()),
            ConfigPath::Backend {
                pool,
                backend,
                key: BackendKey::Entry,
            } => write!(f, "pools[{pool}].backends[{backend}]"),
            ConfigPath::Backend { pool, backend, .. } => {
                write!(f, "pools[{pool}].backends[{backend}].{}", self.key())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// What can be wrong.

/// The values an integer setting allows. Wide enough for both the file's
/// i64 and the runtime's usize, so one comparison serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    pub min: i128,
    pub max: i128,
    /// What an absent setting means; `None` for no limit.
    pub default: Option<i128>,
}

/// A backend's share when none is given.
pub const DEFAULT_WEIGHT: u32 = 1;

/// The smallest hello byte budget: ordinary ClientHellos are a few hundred
/// bytes (about 1.5 KB with a post-quantum key share).
pub const MIN_HELLO_BYTES: usize = 512;

/// A text value that does not parse, from a flag or a file. Alone it
/// describes the text; inside a [`ConfigError`] the setting's name and
/// default are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    NotAnAddress(String),
    NotANetwork(String),
    NotADuration(String),
    DurationTooLong(String),
    UnknownBalancer(String),
    /// The quick form's `--backend` is not `NAME=IP:PORT`.
    NotABackend(String),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_value_error(f, self, None)
    }
}

impl std::error::Error for ValueError {}

/// One rule a configuration breaks, at the setting that breaks it. Every
/// one is the operator's to fix; none can be retried around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: ConfigPath,
    pub rule: Rule,
}

/// The rules, one variant each, with what the message needs to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A value given as text does not parse.
    Value(ValueError),
    /// An integer outside [`ConfigPath::int_range`].
    OutOfRange {
        value: i128,
    },
    /// A timeout of zero would fail every connection or forget every entry.
    Zero,
    AbsoluteMaxBelowTimeout {
        max: Duration,
        timeout: Duration,
    },
    NoListener,
    NoPool,
    /// A listener, pool or backend name is empty.
    EmptyName,
    DuplicateListenerName {
        name: String,
        first: usize,
    },
    DuplicateBind {
        addr: SocketAddr,
        first_name: String,
        first: usize,
    },
    DuplicatePoolName {
        name: String,
    },
    DuplicateBackendName {
        name: String,
        pool: String,
        first: usize,
    },
    NoBackends {
        pool: String,
    },
    AllWeightsZero {
        pool: String,
    },
    /// A reference to a pool no section defines; `defined` offers the
    /// names that are.
    UndefinedPool {
        referrer: String,
        name: String,
        defined: Vec<String>,
    },
    BadSniPattern {
        pattern: String,
    },
    DuplicateSniPattern {
        pattern: String,
        first_pattern: String,
        first: usize,
    },
    ProxyWithoutTrusted,
}

impl ConfigError {
    fn new(path: ConfigPath, rule: Rule) -> Self {
        ConfigError { path, rule }
    }

    /// The places this error depends on: its own, and the first of two
    /// duplicates or the other side of a comparison. A source that could
    /// not read one of them drops the error rather than guess.
    pub fn places(&self) -> impl Iterator<Item = ConfigPath> {
        let other = match &self.rule {
            Rule::DuplicateListenerName { first, .. } => {
                Some(ConfigPath::Listener(*first, ListenerKey::Name))
            }
            Rule::DuplicateBind { first, .. } => {
                Some(ConfigPath::Listener(*first, ListenerKey::Bind))
            }
            Rule::DuplicateSniPattern { first, .. } => match self.path {
                ConfigPath::Listener(l, _) => {
                    Some(ConfigPath::Listener(l, ListenerKey::SniPattern(*first)))
                }
                _ => None,
            },
            Rule::DuplicateBackendName { first, .. } => match self.path {
                ConfigPath::Backend { pool, .. } => Some(ConfigPath::Backend {
                    pool,
                    backend: *first,
                    key: BackendKey::Name,
                }),
                _ => None,
            },
            Rule::AbsoluteMaxBelowTimeout { .. } => match self.path {
                ConfigPath::Pool(p, _) => {
                    Some(ConfigPath::Pool(p, PoolKey::Affinity(AffinityKey::Timeout)))
                }
                _ => None,
            },
            _ => None,
        };
        std::iter::once(self.path).chain(other)
    }

    /// What is wrong, then `; ` and what to change. `elsewhere` describes
    /// another place the message refers to (a file says "the listener at
    /// line 2").
    pub fn message(&self, elsewhere: &dyn Fn(ConfigPath) -> String) -> String {
        struct Message<'a>(&'a ConfigError, &'a dyn Fn(ConfigPath) -> String);
        impl fmt::Display for Message<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_message(f, self.1)
            }
        }
        Message(self, elsewhere).to_string()
    }

    fn write_message(
        &self,
        f: &mut fmt::Formatter<'_>,
        elsewhere: &dyn Fn(ConfigPath) -> String,
    ) -> fmt::Result {
        let key = self.path.key();
        match &self.rule {
            Rule::Value(v) => write_value_error(f, v, Some(&self.path)),
            Rule::OutOfRange { value } => {
                let IntRange { min, max, default } = self.path.int_range().unwrap_or(IntRange {
                    min: 0,
                    max: i128::MAX,
                    default: None,
                });
                let default = default.map_or("no limit".to_string(), |d| d.to_string());
                match self.path {
                    ConfigPath::Pool(_, PoolKey::Affinity(AffinityKey::Ipv4Prefix | AffinityKey::Ipv6Prefix)) => write!(
                        f,
                        "{key} is {value}, but a prefix length is {min} to {max} bits; use {max} for one address per client"
                    ),
                    ConfigPath::Listener(_, ListenerKey::MaxHelloBytes) if *value < min => write!(
                        f,
                        "{key} {value} would reject ordinary ClientHellos; set it to {min} or more (default {default})"
                    ),
                    ConfigPath::Backend { key: BackendKey::MaxConnections, .. } if *value < min => write!(
                        f,
                        "{key} is {value}, so this backend could never be used; raise it or remove the line for no limit"
                    ),
                    _ if *value < min => write!(
                        f,
                        "{key} is {value}; set it to {min} or more (default {default})"
                    ),
                    _ => write!(
                        f,
                        "{key} is {value}, too large; set it to {max} or less (default {default})"
                    ),
                }
            }
            Rule::Zero => write!(
                f,
                "{key} is zero, which would fail every connection or forget every entry at once; set it above zero, e.g. \"{}\"",
                format_duration(self.path.default_duration().unwrap_or(Duration::from_secs(1)))
            ),
            Rule::AbsoluteMaxBelowTimeout { max, timeout } => write!(
                f,
                "affinity.absolute_max ({}) is shorter than affinity.timeout ({}), so entries would expire before they go idle; raise it or remove it",
                format_duration(*max),
                format_duration(*timeout)
            ),
            Rule::NoListener => f.write_str(
                "no [[listener]] section, so nothing would accept connections; add one with `bind` and `default_pool`",
            ),
            Rule::NoPool => f.write_str(
                "no [pool.NAME] section, so there is nowhere to send connections; add one with `backends`",
            ),
            Rule::EmptyName => match self.path {
                ConfigPath::Listener(..) => f.write_str(
                    "listener name is empty; give it a name or remove the `name` line",
                ),
                ConfigPath::Pool(..) => {
                    f.write_str("pool name is empty; give the pool a name, as in [pool.web]")
                }
                _ => f.write_str(
                    "backend name is empty; give it a name that stays stable across reloads",
                ),
            },
            Rule::DuplicateListenerName { name, first } => write!(
                f,
                "listener name `{name}` is already used by {}; give each listener its own name",
                elsewhere(ConfigPath::Listener(*first, ListenerKey::Name))
            ),
            Rule::DuplicateBind { addr, first_name, .. } => write!(
                f,
                "bind address {addr} is already used by listener `{first_name}`; give each listener its own address or port"
            ),
            Rule::DuplicatePoolName { name } => write!(
                f,
                "pool name `{name}` is used twice; give each pool its own name"
            ),
            Rule::DuplicateBackendName { name, pool, .. } => write!(
                f,
                "backend name `{name}` is used twice in pool `{pool}`; names identify backends in the affinity table, so give each its own"
            ),
            Rule::NoBackends { pool } => write!(
                f,
                "pool `{pool}` has no backends; add at least one {{ name = \"...\", address = \"IP:PORT\" }}"
            ),
            Rule::AllWeightsZero { pool } => write!(
                f,
                "every backend of pool `{pool}` has weight 0, so no client could be placed; give at least one a weight above 0"
            ),
            Rule::UndefinedPool {
                referrer,
                name,
                defined,
            } => {
                write!(f, "{referrer} names pool `{name}`, which is not defined; ")?;
                if matches!(self.path, ConfigPath::Listener(_, ListenerKey::NonTls)) {
                    f.write_str("write \"reject\", ")?;
                }
                write!(f, "add a [pool.{name}] section")?;
                if defined.is_empty() {
                    Ok(())
                } else {
                    write!(f, " or use one of: {}", defined.join(", "))
                }
            }
            Rule::BadSniPattern { pattern } => write!(
                f,
                "SNI pattern `{pattern}` is not a host name or `*.` followed by one; write e.g. \"api.example.com\" or \"*.example.com\" (a wildcard covers exactly one leading label)"
            ),
            Rule::DuplicateSniPattern {
                pattern,
                first_pattern,
                ..
            } => write!(
                f,
                "SNI pattern `{pattern}` is the same name as `{first_pattern}` (matching ignores case and a trailing dot); keep one of them"
            ),
            Rule::ProxyWithoutTrusted => f.write_str(
                "proxy_protocol is on but proxy_trusted is empty, so every connection would be closed; list the proxies' networks in proxy_trusted, e.g. proxy_trusted = [\"10.0.0.0/8\"]",
            ),
        }
    }
}

/// `pools[0].timeouts.idle: timeouts.idle is zero, ...`: for a `Config`
/// built by code, where the path is the only location there is.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        self.write_message(f, &|p| p.to_string())
    }
}

impl std::error::Error for ConfigError {}

/// One message for a value that does not parse, with the setting's name
/// and default when it is known.
fn write_value_error(
    f: &mut fmt::Formatter<'_>,
    e: &ValueError,
    path: Option<&ConfigPath>,
) -> fmt::Result {
    let example = path
        .and_then(ConfigPath::default_duration)
        .map_or_else(|| "30s".to_string(), format_duration);
    let named = |f: &mut fmt::Formatter<'_>| match path {
        Some(p) => write!(f, "{} ", p.key()),
        None => Ok(()),
    };
    match e {
        ValueError::NotAnAddress(text) => {
            let example = match path {
                Some(ConfigPath::Listener(_, ListenerKey::Bind)) => {
                    "\"0.0.0.0:443\" or \"[::]:443\""
                }
                _ => "\"10.0.1.1:443\" or \"[2001:db8::1]:443\"",
            };
            write!(
                f,
                "`{text}` is not an IP:PORT address; write e.g. {example} (host names are not resolved)"
            )
        }
        ValueError::NotANetwork(text) => write!(
            f,
            "`{text}` is not a network in CIDR notation; write e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or a single address"
        ),
        ValueError::NotADuration(text) => {
            named(f)?;
            write!(
                f,
                "`{text}` is not a duration; write a number and a unit (ms, s, m, h or d), e.g. \"{example}\""
            )
        }
        ValueError::DurationTooLong(text) => {
            named(f)?;
            write!(
                f,
                "`{text}` is too long to count; write a shorter duration, e.g. \"{example}\""
            )
        }
        ValueError::UnknownBalancer(text) => write!(
            f,
            "unknown balancer `{text}`; use \"roundrobin\", \"weighted-roundrobin\", \"least-connections\" or \"source-hash\""
        ),
        ValueError::NotABackend(text) => write!(
            f,
            "backend `{text}` is not NAME=IP:PORT; write e.g. web1=10.0.1.1:443"
        ),
    }
}

// ---------------------------------------------------------------------------
// The rules.

impl Config {
    /// Checks every rule and returns every error, so that one run shows
    /// the operator all there is to fix. The router runs only a `Config`
    /// this accepts.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        if self.listeners.is_empty() {
            errors.push(ConfigError::new(ConfigPath::Root, Rule::NoListener));
        }
        if self.pools.is_empty() {
            errors.push(ConfigError::new(ConfigPath::Root, Rule::NoPool));
        }
        let mut pool_names = std::collections::HashSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            let at = ConfigPath::Pool(i, PoolKey::Section);
            if p.name.trim().is_empty() {
                errors.push(ConfigError::new(at, Rule::EmptyName));
            } else if !pool_names.insert(p.name.as_str()) {
                let name = p.name.clone();
                errors.push(ConfigError::new(at, Rule::DuplicatePoolName { name }));
            }
            p.check(i, &mut errors);
        }
        let defined: Vec<String> = self.pools.iter().map(|p| p.name.clone()).collect();
        for (i, l) in self.listeners.iter().enumerate() {
            l.check(i, &self.listeners[..i], &defined, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

impl ListenerConfig {
    /// `earlier`: the listeners before this one, for names and addresses
    /// used twice.
    fn check(
        &self,
        l: usize,
        earlier: &[ListenerConfig],
        pools: &[String],
        errors: &mut Vec<ConfigError>,
    ) {
        let at = |key| ConfigPath::Listener(l, key);
        let mut push = |key, rule| errors.push(ConfigError::new(at(key), rule));
        if self.name.trim().is_empty() {
            push(ListenerKey::Name, Rule::EmptyName);
        } else if let Some(first) = earlier.iter().position(|e| e.name == self.name) {
            let name = self.name.clone();
            push(
                ListenerKey::Name,
                Rule::DuplicateListenerName { name, first },
            );
        }
        // Port 0 asks the system for any free port, so two never clash.
        if let Some(first) = earlier
            .iter()
            .position(|e| e.bind == self.bind && self.bind.port() != 0)
        {
            let rule = Rule::DuplicateBind {
                addr: self.bind,
                first_name: earlier[first].name.clone(),
                first,
            };
            push(ListenerKey::Bind, rule);
        }
        if self.proxy_protocol && self.proxy_trusted.is_empty() {
            push(ListenerKey::ProxyProtocol, Rule::ProxyWithoutTrusted);
        }
        let mut reference = |key, referrer: String, name: &str| {
            if !pools.iter().any(|p| p == name) {
                let rule = Rule::UndefinedPool {
                    referrer,
                    name: name.to_string(),
                    defined: pools.to_vec(),
                };
                errors.push(ConfigError::new(at(key), rule));
            }
        };
        reference(
            ListenerKey::DefaultPool,
            "default_pool".into(),
            &self.default_pool,
        );
        for (i, r) in self.sni.iter().enumerate() {
            reference(
                ListenerKey::SniPool(i),
                format!("SNI rule `{}`", r.pattern),
                &r.pool,
            );
        }
        if let NonTls::Pool(p) = &self.non_tls {
            reference(ListenerKey::NonTls, "non_tls".into(), p);
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, r) in self.sni.iter().enumerate() {
            let at = at(ListenerKey::SniPattern(i));
            if !is_sni_pattern(&r.pattern) {
                let pattern = r.pattern.clone();
                errors.push(ConfigError::new(at, Rule::BadSniPattern { pattern }));
                seen.push(String::new());
                continue;
            }
            // Matching ignores case and a trailing dot, so these two would
            // be one rule and the later would silently win.
            let normal = r.pattern.trim_end_matches('.').to_ascii_lowercase();
            if let Some(first) = seen.iter().position(|s| *s == normal) {
                let rule = Rule::DuplicateSniPattern {
                    pattern: r.pattern.clone(),
                    first_pattern: self.sni[first].pattern.clone(),
                    first,
                };
                errors.push(ConfigError::new(at, rule));
            }
            seen.push(normal);
        }
        let limits = &self.limits;
        for (key, value) in [
            (ListenerKey::MaxConnections, limits.max_connections as i128),
            (
                ListenerKey::MaxInspectingPerIp,
                limits.max_inspecting_per_ip.into(),
            ),
            (ListenerKey::MaxHelloBytes, limits.max_hello_bytes as i128),
        ] {
            check_range(at(key), value, errors);
        }
    }
}

impl PoolConfig {
    fn check(&self, p: usize, errors: &mut Vec<ConfigError>) {
        let pool = self.name.clone();
        if self.backends.is_empty() {
            let at = ConfigPath::Pool(p, PoolKey::Backends);
            errors.push(ConfigError::new(
                at,
                Rule::NoBackends { pool: pool.clone() },
            ));
        } else if self.backends.iter().all(|b| b.weight == 0) {
            let at = ConfigPath::Pool(p, PoolKey::Backends);
            errors.push(ConfigError::new(
                at,
                Rule::AllWeightsZero { pool: pool.clone() },
            ));
        }
        for (i, b) in self.backends.iter().enumerate() {
            let at = |key| ConfigPath::Backend {
                pool: p,
                backend: i,
                key,
            };
            if b.name.trim().is_empty() {
                errors.push(ConfigError::new(at(BackendKey::Name), Rule::EmptyName));
            } else if let Some(first) = self.backends[..i].iter().position(|e| e.name == b.name) {
                let rule = Rule::DuplicateBackendName {
                    name: b.name.clone(),
                    pool: pool.clone(),
                    first,
                };
                errors.push(ConfigError::new(at(BackendKey::Name), rule));
            }
            check_range(at(BackendKey::Weight), b.weight.into(), errors);
            if let Some(max) = b.max_connections {
                check_range(at(BackendKey::MaxConnections), max.into(), errors);
            }
        }

        let t = &self.timeouts;
        let a = &self.affinity;
        let at = |key| ConfigPath::Pool(p, key);
        for (key, d) in [
            (PoolKey::Timeout(TimeoutKey::Hello), t.hello),
            (PoolKey::Timeout(TimeoutKey::Connect), t.connect),
            (PoolKey::Timeout(TimeoutKey::FirstByte), t.first_byte),
            (PoolKey::Timeout(TimeoutKey::Idle), t.idle),
            (
                PoolKey::Affinity(AffinityKey::Timeout),
                a.inactivity_timeout,
            ),
            // The client index works in whole seconds: zero would not turn
            // correlation off.
            (
                PoolKey::Affinity(AffinityKey::CorrelationWindow),
                a.correlation_window,
            ),
        ] {
            if d.is_zero() {
                errors.push(ConfigError::new(at(key), Rule::Zero));
            }
        }
        if let Some(max) = a.absolute_max {
            if max < a.inactivity_timeout {
                let rule = Rule::AbsoluteMaxBelowTimeout {
                    max,
                    timeout: a.inactivity_timeout,
                };
                errors.push(ConfigError::new(
                    at(PoolKey::Affinity(AffinityKey::AbsoluteMax)),
                    rule,
                ));
            }
        }
        for (key, value) in [
            (AffinityKey::TableSize, a.table_size as i128),
            (AffinityKey::ClientsTracked, a.clients_tracked as i128),
            (AffinityKey::NatThreshold, a.nat_threshold.into()),
            (AffinityKey::Ipv4Prefix, a.ipv4_prefix.into()),
            (AffinityKey::Ipv6Prefix, a.ipv6_prefix.into()),
        ] {
            check_range(at(PoolKey::Affinity(key)), value, errors);
        }
    }
}

/// An integer setting against its [`ConfigPath::int_range`].
fn check_range(at: ConfigPath, value: i128, errors: &mut Vec<ConfigError>) {
    if let Some(r) = at.int_range() {
        if !(r.min..=r.max).contains(&value) {
            errors.push(ConfigError::new(at, Rule::OutOfRange { value }));
        }
    }
}

/// Every rule a configuration breaks, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// One per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// An SNI pattern: a host name, or `*.` and a host name (the wildcard
/// covers exactly one label).
pub fn is_sni_pattern(p: &str) -> bool {
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

/// Parses the quick form's `NAME=IP:PORT`.
pub fn parse_backend(s: &str) -> Result<BackendConfig, ValueError> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| ValueError::NotABackend(s.to_string()))?;
    let addr = parse_address(addr)?;
    Ok(BackendConfig::new(name, addr))
}

/// Parses `IP:PORT`; host names are not resolved.
pub fn parse_address(s: &str) -> Result<SocketAddr, ValueError> {
    s.parse()
        .map_err(|_| ValueError::NotAnAddress(s.to_string()))
}

/// Parses durations like `500ms`, `5s`, `30m`, `2h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
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
pub fn format_duration(d: Duration) -> String {
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
    fn backend_spec_needs_name_and_socket_address() {
        let b = parse_backend("a=127.0.0.1:9443").unwrap();
        assert_eq!(b.name, "a");
        assert!(parse_backend("127.0.0.1:9443").is_err());
        assert!(parse_backend("a=localhost").is_err());
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
        assert_eq!(h.len, 128);
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
