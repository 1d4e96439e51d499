//! Where a setting lives in a [`Config`](super::Config), and what is known
//! about each setting ([`super::settings`]): its name as the file spells
//! it, the integers it allows, its default.

use std::fmt;

/// The values an integer setting allows. Wide enough for both the file's
/// i64 and the runtime's usize, so one comparison serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntRange {
    pub min: i128,
    pub max: i128,
    /// What an absent setting means; `None` for no limit.
    pub default: Option<i128>,
}

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
    PasswordFile,
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
    /// `--threads`: the quick form's only, with no place in a `Config`.
    Threads,
}

/// A key of `[admin]`; `Section` is the section itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminKey {
    Section,
    Bind,
    Token,
    TokenForReads,
    AllowedHosts,
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
    MaxConnectionsPerClient,
    MaxInspectingPerIp,
    MaxHelloBytes,
}

/// A key of a pool; `Section` is the pool itself, known by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKey {
    Section,
    Balance,
    Backends,
    Inspect,
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
    TcpFastopen,
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

    /// This place, then each enclosing one out to the configuration.
    pub fn ancestors(&self) -> impl Iterator<Item = ConfigPath> {
        std::iter::successors(Some(*self), ConfigPath::parent)
    }

    /// Whether this is `place` or lies inside it.
    pub fn is_within(&self, place: &ConfigPath) -> bool {
        self.ancestors().any(|p| p == *place)
    }

    /// The setting's name as the file spells it (and docs/configuration.md
    /// documents it), used in every message about it.
    pub fn key(&self) -> &'static str {
        match self {
            ConfigPath::Root => "configuration",
            ConfigPath::Listener(_, ListenerKey::Section) => "listener",
            ConfigPath::Pool(_, PoolKey::Section) => "pool",
            ConfigPath::Process(ProcessKey::State) => "state",
            ConfigPath::Backend {
                key: BackendKey::Entry,
                ..
            } => "backend",
            ConfigPath::Admin(AdminKey::Section) => "admin",
            ConfigPath::Log(LogKey::Section) => "log",
            ConfigPath::Store(StoreKey::Section) => "store",
            // Every other path is a setting of the table.
            _ => self.setting().map_or("configuration", |s| s.name),
        }
    }

    /// The same place in listener, pool and backend 0, as the settings
    /// table names it.
    pub fn zeroed(&self) -> ConfigPath {
        match *self {
            ConfigPath::Listener(_, ListenerKey::ProxyTrusted(_)) => {
                ConfigPath::Listener(0, ListenerKey::ProxyTrusted(0))
            }
            ConfigPath::Listener(_, ListenerKey::SniPattern(_) | ListenerKey::SniPool(_)) => {
                ConfigPath::Listener(0, ListenerKey::SniPattern(0))
            }
            ConfigPath::Listener(_, k) => ConfigPath::Listener(0, k),
            ConfigPath::Pool(_, k) => ConfigPath::Pool(0, k),
            ConfigPath::Backend { key, .. } => ConfigPath::Backend {
                pool: 0,
                backend: 0,
                key,
            },
            other => other,
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
