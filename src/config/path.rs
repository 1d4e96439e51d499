//! Where a setting lives in a [`Config`](super::Config), and what is known
//! about each setting: its name as the file spells it, the integers it
//! allows, its default. Every message and every rule reads them here.

use std::fmt;
use std::time::Duration;

use super::{AffinityConfig, HealthConfig, Limits, Timeouts};

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

/// Where a setting lives in a [`Config`](super::Config): which listener, pool or backend
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
    /// A setting of the process as a whole: stopping, the state file.
    Process(ProcessKey),
    Admin(AdminKey),
    Log(LogKey),
    Store(StoreKey),
}

/// A key of `[store]`; `Section` is the section itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKey {
    Section,
    Kind,
    Url,
    TlsCaFile,
    Prefix,
    LookupBudget,
    Timeout,
    Queue,
}

/// A setting outside listeners and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessKey {
    ShutdownTimeout,
    /// The `[state]` section itself.
    State,
    StateFile,
    StateInterval,
    TakeoverSocket,
}

/// A key of `[admin]`; `Section` is the section itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminKey {
    Section,
    Bind,
    Token,
    TokenForReads,
}

/// A key of `[log]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKey {
    Section,
    Format,
    ConnectionsPerSecond,
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
    /// The pool's default `send_proxy` for backends without their own.
    SendProxy,
    Affinity(AffinityKey),
    Timeout(TimeoutKey),
    Health(HealthKey),
}

/// A key of `[pool.NAME.health]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthKey {
    Check,
    Interval,
    Timeout,
    Rise,
    Fall,
    Sni,
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
    SendProxy,
}

impl ConfigPath {
    /// The enclosing place: a key's section, a section's configuration.
    /// A source that cannot locate a path locates its nearest parent.
    pub fn parent(&self) -> Option<ConfigPath> {
        match *self {
            ConfigPath::Root => None,
            ConfigPath::Process(
                ProcessKey::StateFile | ProcessKey::StateInterval | ProcessKey::TakeoverSocket,
            ) => Some(ConfigPath::Process(ProcessKey::State)),
            ConfigPath::Process(_) => Some(ConfigPath::Root),
            ConfigPath::Listener(_, ListenerKey::Section)
            | ConfigPath::Pool(_, PoolKey::Section)
            | ConfigPath::Admin(AdminKey::Section)
            | ConfigPath::Log(LogKey::Section)
            | ConfigPath::Store(StoreKey::Section) => Some(ConfigPath::Root),
            ConfigPath::Store(_) => Some(ConfigPath::Store(StoreKey::Section)),
            ConfigPath::Admin(_) => Some(ConfigPath::Admin(AdminKey::Section)),
            ConfigPath::Log(_) => Some(ConfigPath::Log(LogKey::Section)),
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
                PoolKey::SendProxy => "send_proxy",
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
                PoolKey::Health(h) => match h {
                    HealthKey::Check => "health.check",
                    HealthKey::Interval => "health.interval",
                    HealthKey::Timeout => "health.timeout",
                    HealthKey::Rise => "health.rise",
                    HealthKey::Fall => "health.fall",
                    HealthKey::Sni => "health.sni",
                },
            },
            ConfigPath::Process(k) => match k {
                ProcessKey::ShutdownTimeout => "shutdown_timeout",
                ProcessKey::State => "state",
                ProcessKey::StateFile => "state.file",
                ProcessKey::StateInterval => "state.interval",
                ProcessKey::TakeoverSocket => "state.takeover_socket",
            },
            ConfigPath::Backend { key, .. } => match key {
                BackendKey::Entry => "backend",
                BackendKey::Name => "name",
                BackendKey::Address => "address",
                BackendKey::Weight => "weight",
                BackendKey::MaxConnections => "max_connections",
                BackendKey::SendProxy => "send_proxy",
            },
            ConfigPath::Admin(k) => match k {
                AdminKey::Section => "admin",
                AdminKey::Bind => "bind",
                AdminKey::Token => "token",
                AdminKey::TokenForReads => "token_for_reads",
            },
            ConfigPath::Log(k) => match k {
                LogKey::Section => "log",
                LogKey::Format => "format",
                LogKey::ConnectionsPerSecond => "connections_per_second",
            },
            ConfigPath::Store(k) => match k {
                StoreKey::Section => "store",
                StoreKey::Kind => "store.kind",
                StoreKey::Url => "store.url",
                StoreKey::TlsCaFile => "store.tls_ca_file",
                StoreKey::Prefix => "store.prefix",
                StoreKey::LookupBudget => "store.lookup_budget",
                StoreKey::Timeout => "store.timeout",
                StoreKey::Queue => "store.queue",
            },
        }
    }

    /// The values an integer setting allows, and its default; `None` for
    /// a setting that is not an integer. Validation and every message
    /// about the setting read it here.
    pub fn int_range(&self) -> Option<IntRange> {
        let limits = Limits::default();
        let affinity = AffinityConfig::default();
        let health = HealthConfig::default();
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
            ConfigPath::Log(LogKey::ConnectionsPerSecond) => range(
                0,
                u32_max,
                Some(super::LogConfig::default().connections_per_second.into()),
            ),
            ConfigPath::Pool(_, PoolKey::Affinity(a)) => match a {
                AffinityKey::TableSize => range(1, any, size(affinity.table_size)),
                AffinityKey::ClientsTracked => range(1, any, size(affinity.clients_tracked)),
                AffinityKey::NatThreshold => range(0, u32_max, Some(affinity.nat_threshold.into())),
                AffinityKey::Ipv4Prefix => range(1, 32, Some(affinity.ipv4_prefix.into())),
                AffinityKey::Ipv6Prefix => range(1, 128, Some(affinity.ipv6_prefix.into())),
                _ => return None,
            },
            ConfigPath::Store(StoreKey::Queue) => {
                range(1, 1 << 24, size(super::StoreConfig::QUEUE))
            }
            // More than a thousand probes in a row is a typo, not a policy.
            ConfigPath::Pool(_, PoolKey::Health(HealthKey::Rise)) => {
                range(1, 1000, Some(health.rise.into()))
            }
            ConfigPath::Pool(_, PoolKey::Health(HealthKey::Fall)) => {
                range(1, 1000, Some(health.fall.into()))
            }
            _ => return None,
        })
    }

    /// A duration setting's default, the example its messages suggest.
    pub fn default_duration(&self) -> Option<Duration> {
        let t = Timeouts::default();
        let a = AffinityConfig::default();
        let h = HealthConfig::default();
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
            ConfigPath::Process(ProcessKey::ShutdownTimeout) => {
                Some(super::Lifecycle::default().shutdown_timeout)
            }
            ConfigPath::Process(ProcessKey::StateInterval) => Some(super::StateConfig::INTERVAL),
            ConfigPath::Store(StoreKey::LookupBudget) => Some(super::StoreConfig::LOOKUP_BUDGET),
            ConfigPath::Store(StoreKey::Timeout) => Some(super::StoreConfig::TIMEOUT),
            ConfigPath::Pool(_, PoolKey::Health(HealthKey::Interval)) => Some(h.interval),
            ConfigPath::Pool(_, PoolKey::Health(HealthKey::Timeout)) => Some(h.timeout),
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
            ConfigPath::Process(_) => write!(f, "lifecycle.{}", self.key()),
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
            ConfigPath::Admin(AdminKey::Section) => f.write_str("admin"),
            ConfigPath::Admin(_) => write!(f, "admin.{}", self.key()),
            ConfigPath::Log(LogKey::Section) => f.write_str("log"),
            ConfigPath::Log(_) => write!(f, "log.{}", self.key()),
            ConfigPath::Store(StoreKey::Section) => f.write_str("store"),
            ConfigPath::Store(_) => f.write_str(self.key()),
        }
    }
}
