//! Every setting, described once: where the file has it, its type, its
//! default and range, the quick form's flag, and whether a reload applies
//! it. The loader ([`super::file`]) accepts exactly these keys, validation
//! reads ranges here, the quick form ([`super::quick`]) names flags from
//! here, a reload ([`crate::reload`]) asks which changes wait for a
//! restart, and a test holds docs/configuration.md to the same list.
//!
//! A new setting is a row here, its field in the config types, one line in
//! the loader that reads it (and a flag, if the quick form has one).

use std::time::Duration;

use super::path::{
    AdminKey, AffinityKey, BackendKey, ConfigPath, HealthKey, IntRange, ListenerKey, LogKey,
    PoolKey, ProcessKey, StoreKey, TimeoutKey,
};
use super::{Config, PoolConfig, StateConfig, StoreConfig};

/// The table of the file a setting is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Top level, before the first section header.
    Root,
    State,
    Listener,
    Pool,
    /// One entry of a pool's `backends`.
    Backend,
    Affinity,
    Timeouts,
    Health,
    Admin,
    Log,
    Store,
    /// Only the quick form has it.
    CommandLine,
}

impl Section {
    /// How docs/configuration.md and messages name the section.
    pub fn title(self) -> &'static str {
        match self {
            Section::Root => "top level",
            Section::State => "[state]",
            Section::Listener => "[[listener]]",
            Section::Pool => "[pool.NAME]",
            Section::Backend => "backends",
            Section::Affinity => "[pool.NAME.affinity]",
            Section::Timeouts => "[pool.NAME.timeouts]",
            Section::Health => "[pool.NAME.health]",
            Section::Admin => "[admin]",
            Section::Log => "[log]",
            Section::Store => "[store]",
            Section::CommandLine => "command line",
        }
    }
}

/// What a value is written as, which the loader checks before reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string: a number and a unit (`parse_duration`).
    Duration,
    /// A whole number within these bounds.
    Int {
        min: i128,
        max: i128,
    },
    Bool,
    /// A string, parsed further where the setting is read.
    Text,
    /// An array of strings.
    List,
    /// `backends`: an array of tables.
    Tables,
    /// `[listener.sni]`: a table of pattern = pool.
    Sni,
}

/// A setting's default, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// Required, or absent means off or no limit.
    None,
    Int(i128),
    Time(Duration),
    Bool(bool),
    Text(&'static str),
}

/// What a reload does with a changed setting.
#[derive(Debug, Clone, Copy)]
pub enum Reload {
    /// The next connection, probe or API call sees the new value.
    Applied,
    /// Reported in the reload's `restart_required`, applied by the next
    /// restart; `Get` reads the value, to tell whether it changed.
    Restart(Get),
}

/// Reads a restart setting's value, as text only compared.
#[derive(Debug, Clone, Copy)]
pub enum Get {
    Config(fn(&Config) -> String),
    Pool(fn(&PoolConfig) -> String),
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Where it lives in a `Config` (listener, pool and backend 0).
    pub at: ConfigPath,
    pub section: Section,
    /// Its name in messages; the file's key is the part after the last dot.
    pub name: &'static str,
    pub kind: Kind,
    pub default: DefaultValue,
    pub reload: Reload,
    /// The quick form's flag that sets it.
    pub flag: Option<&'static str>,
    pub doc: &'static str,
}

impl Setting {
    /// The key as the file spells it in its section.
    pub fn key(&self) -> &'static str {
        self.name.rsplit('.').next().unwrap_or(self.name)
    }
}

/// One row of the table: a column per field of [`Setting`].
macro_rules! row {
    ($at:expr, $section:expr, $name:expr, $kind:expr, $default:expr, $reload:expr, $flag:expr, $doc:expr $(,)?) => {
        Setting {
            at: $at,
            section: $section,
            name: $name,
            kind: $kind,
            default: $default,
            reload: $reload,
            flag: $flag,
            doc: $doc,
        }
    };
}

/// A restart setting whose value `$e` is read from `$c`, a `Config` or a
/// `PoolConfig`.
macro_rules! restart {
    ($c:ident: Config => $e:expr) => {
        Reload::Restart(Get::Config(|$c| format!("{:?}", $e)))
    };
    ($c:ident: Pool => $e:expr) => {
        Reload::Restart(Get::Pool(|$c| format!("{:?}", $e)))
    };
}

const ANY: i128 = usize::MAX as i128;
const U32: i128 = u32::MAX as i128;
const fn int(min: i128, max: i128) -> Kind {
    Kind::Int { min, max }
}
const fn secs(n: u64) -> DefaultValue {
    DefaultValue::Time(Duration::from_secs(n))
}

/// The smallest hello byte budget: ordinary ClientHellos are a few hundred
/// bytes (about 1.5 KB with a post-quantum key share).
pub(crate) const MIN_HELLO_BYTES: usize = 512;

use ConfigPath as P;
use DefaultValue::{Bool as B, Int as I, None as NONE, Text as T};
use Kind::{Bool, Duration as Dur, List, Sni, Tables, Text};
use Reload::Applied;
use Section as S;

/// Every setting, in the order of the file's sections (which the loader's
/// "expected one of" lists follow) and of reload's restart report.
// One line a setting, as a table reads: rustfmt would spread each row
// over ten lines.
#[rustfmt::skip]
pub(crate) static SETTINGS: &[Setting] = &[
    row!(P::Listener(0, ListenerKey::Name), S::Listener, "name", Text, T("listener-N"), Applied, None, "Used in logs and metrics; unique."),
    row!(P::Listener(0, ListenerKey::Bind), S::Listener, "bind", Text, NONE, Applied, Some("--listen"), "Address to listen on (required)."),
    row!(P::Listener(0, ListenerKey::ProxyProtocol), S::Listener, "proxy_protocol", Bool, B(false), Applied, None, "Require a PROXY protocol header."),
    row!(P::Listener(0, ListenerKey::ProxyTrusted(0)), S::Listener, "proxy_trusted", List, NONE, Applied, None, "Peers allowed to send a PROXY header."),
    row!(P::Listener(0, ListenerKey::DefaultPool), S::Listener, "default_pool", Text, NONE, Applied, None, "Pool when no SNI rule matches (required)."),
    row!(P::Listener(0, ListenerKey::NonTls), S::Listener, "non_tls", Text, T("reject"), Applied, None, "Close non-TLS connections, or name a pool."),
    row!(P::Listener(0, ListenerKey::MaxConnections), S::Listener, "max_connections", int(1, ANY), I(10_000), Applied, Some("--max-connections"), "Most connections at once."),
    // No fixed default: half of max_connections, rounded up
    // (`Limits::connections_per_client`).
    row!(P::Listener(0, ListenerKey::MaxConnectionsPerClient), S::Listener, "max_connections_per_client", int(1, ANY), NONE, Applied, Some("--max-connections-per-client"), "Most connections of one client prefix at once (half of max_connections)."),
    row!(P::Listener(0, ListenerKey::MaxInspectingPerIp), S::Listener, "max_inspecting_per_ip", int(1, U32), I(64), Applied, None, "Connections of one client prefix still sending their hello."),
    row!(P::Listener(0, ListenerKey::MaxHelloBytes), S::Listener, "max_hello_bytes", int(MIN_HELLO_BYTES as i128, ANY), I(16 * 1024), Applied, Some("--max-hello-bytes"), "Bytes before the hello must be complete."),
    row!(P::Listener(0, ListenerKey::SniPattern(0)), S::Listener, "sni", Sni, NONE, Applied, None, "Server name pattern = pool."),
    row!(P::Pool(0, PoolKey::Balance), S::Pool, "balance", Text, T("roundrobin"), Applied, Some("--balance"), "How a client without affinity is placed."),
    row!(P::Pool(0, PoolKey::Inspect), S::Pool, "inspect", Bool, B(true), Applied, Some("--no-inspect"), "Inspect handshakes and keep affinity."),
    row!(P::Pool(0, PoolKey::SendProxy), S::Pool, "send_proxy", Text, T("off"), Applied, None, "PROXY header for backends without their own."),
    row!(P::Pool(0, PoolKey::Backends), S::Pool, "backends", Tables, NONE, Applied, Some("--backend"), "The servers (required)."),
    row!(P::Backend { pool: 0, backend: 0, key: BackendKey::Name }, S::Backend, "name", Text, NONE, Applied, Some("--backend"), "Identifies the backend in the table (required)."),
    row!(P::Backend { pool: 0, backend: 0, key: BackendKey::Address }, S::Backend, "address", Text, NONE, Applied, Some("--backend"), "IP:PORT (required)."),
    row!(P::Backend { pool: 0, backend: 0, key: BackendKey::Weight }, S::Backend, "weight", int(0, U32), I(1), Applied, None, "Relative share; 0 takes no new clients."),
    row!(P::Backend { pool: 0, backend: 0, key: BackendKey::MaxConnections }, S::Backend, "max_connections", int(1, U32), NONE, Applied, None, "Most connections open to it."),
    row!(P::Backend { pool: 0, backend: 0, key: BackendKey::SendProxy }, S::Backend, "send_proxy", Text, T("off"), Applied, Some("--send-proxy"), "PROXY header sent before the client's bytes."),
    row!(P::Backend { pool: 0, backend: 0, key: BackendKey::TcpFastopen }, S::Backend, "tcp_fastopen", Bool, B(false), Applied, Some("--tcp-fastopen"), "Connect with TCP Fast Open."),
    row!(P::Pool(0, PoolKey::Affinity(AffinityKey::Timeout)), S::Affinity, "affinity.timeout", Dur, secs(30 * 60), restart!(p: Pool => p.affinity.inactivity_timeout), Some("--affinity-timeout"), "An entry unused this long is forgotten."),
    row!(P::Pool(0, PoolKey::Affinity(AffinityKey::AbsoluteMax)), S::Affinity, "affinity.absolute_max", Dur, NONE, restart!(p: Pool => p.affinity.absolute_max), None, "Cap on an entry's age."),
    row!(P::Pool(0, PoolKey::Affinity(AffinityKey::TableSize)), S::Affinity, "affinity.table_size", int(1, ANY), I(1_000_000), restart!(p: Pool => p.affinity.table_size), None, "Most session entries."),
    row!(P::Pool(0, PoolKey::Affinity(AffinityKey::CorrelationWindow)), S::Affinity, "affinity.correlation_window", Dur, secs(30 * 60), restart!(p: Pool => p.affinity.correlation_window), Some("--correlation-window"), "How long a client's last backend pins it."),
    row!(P::Pool(0, PoolKey::Affinity(AffinityKey::NatThreshold)), S::Affinity, "affinity.nat_threshold", int(0, U32), I(4), restart!(p: Pool => p.affinity.nat_threshold), Some("--nat-threshold"), "New sessions that mark a prefix shared."),
    row!(P::Pool(0, PoolKey::Affinity(AffinityKey::Ipv4Prefix)), S::Affinity, "affinity.ipv4_prefix", int(1, 32), I(32), Applied, None, "Prefix length of one IPv4 client."),
    row!(P::Pool(0, PoolKey::Affinity(AffinityKey::Ipv6Prefix)), S::Affinity, "affinity.ipv6_prefix", int(1, 128), I(64), Applied, None, "Prefix length of one IPv6 client."),
    row!(P::Pool(0, PoolKey::Affinity(AffinityKey::ClientsTracked)), S::Affinity, "affinity.clients_tracked", int(1, ANY), I(1_000_000), restart!(p: Pool => p.affinity.clients_tracked), None, "Most client prefixes tracked."),
    row!(P::Pool(0, PoolKey::Timeout(TimeoutKey::Hello)), S::Timeouts, "timeouts.hello", Dur, secs(5), Applied, Some("--hello-timeout"), "Time to deliver the ClientHello."),
    row!(P::Pool(0, PoolKey::Timeout(TimeoutKey::Connect)), S::Timeouts, "timeouts.connect", Dur, secs(3), Applied, Some("--connect-timeout"), "Per backend connection attempt."),
    row!(P::Pool(0, PoolKey::Timeout(TimeoutKey::FirstByte)), S::Timeouts, "timeouts.first_byte", Dur, secs(5), Applied, Some("--first-byte-timeout"), "Backend silence before the next is tried."),
    row!(P::Pool(0, PoolKey::Timeout(TimeoutKey::Idle)), S::Timeouts, "timeouts.idle", Dur, secs(600), Applied, Some("--idle-timeout"), "No traffic this long closes."),
    row!(P::Pool(0, PoolKey::Timeout(TimeoutKey::DownHold)), S::Timeouts, "timeouts.down_hold", Dur, secs(10), Applied, None, "How long a failed backend is skipped."),
    row!(P::Pool(0, PoolKey::Health(HealthKey::Check)), S::Health, "health.check", Text, T("tcp"), Applied, Some("--health-check"), "tcp, tls or none."),
    row!(P::Pool(0, PoolKey::Health(HealthKey::Interval)), S::Health, "health.interval", Dur, secs(2), Applied, Some("--check-interval"), "Time between two probes."),
    row!(P::Pool(0, PoolKey::Health(HealthKey::Timeout)), S::Health, "health.timeout", Dur, secs(1), Applied, None, "Bound on one probe."),
    row!(P::Pool(0, PoolKey::Health(HealthKey::Rise)), S::Health, "health.rise", int(1, 1000), I(2), Applied, None, "Passed probes that bring a backend back."),
    row!(P::Pool(0, PoolKey::Health(HealthKey::Fall)), S::Health, "health.fall", int(1, 1000), I(3), Applied, None, "Failed probes that mark it down."),
    row!(P::Pool(0, PoolKey::Health(HealthKey::Sni)), S::Health, "health.sni", Text, NONE, Applied, None, "Server name the TLS check sends."),
    row!(P::Admin(AdminKey::Bind), S::Admin, "bind", Text, NONE, restart!(c: Config => c.admin.as_ref().map(|a| a.bind)), Some("--admin"), "Where metrics and the API are served."),
    row!(P::Admin(AdminKey::Token), S::Admin, "token", Text, NONE, restart!(c: Config => c.admin.as_ref().map(|a| &a.token)), Some("--admin-token"), "Bearer token of writes."),
    row!(P::Admin(AdminKey::TokenForReads), S::Admin, "token_for_reads", Bool, B(false), restart!(c: Config => c.admin.as_ref().map(|a| a.token_for_reads)), None, "Reads need the token too."),
    row!(P::Admin(AdminKey::AllowedHosts), S::Admin, "allowed_hosts", List, NONE, restart!(c: Config => c.admin.as_ref().map(|a| &a.allowed_hosts)), None, "Host names, besides its address and localhost, a request without the token may use."),
    row!(P::Log(LogKey::Format), S::Log, "format", Text, T("text"), restart!(c: Config => c.log.format), Some("--log-format"), "text or json."),
    row!(P::Log(LogKey::ConnectionsPerSecond), S::Log, "connections_per_second", int(0, U32), I(50), restart!(c: Config => c.log.connections_per_second), Some("--log-rate"), "Per-connection lines a second."),
    row!(P::Process(ProcessKey::ShutdownTimeout), S::Root, "shutdown_timeout", Dur, secs(30), restart!(c: Config => c.lifecycle.shutdown_timeout), Some("--shutdown-timeout"), "How long a stop lets connections finish."),
    row!(P::Process(ProcessKey::StateFile), S::State, "state.file", Text, NONE, restart!(c: Config => c.lifecycle.state.as_ref().map(|s| &s.file)), Some("--state-file"), "Where the tables are kept across restarts."),
    row!(P::Process(ProcessKey::StateInterval), S::State, "state.interval", Dur, DefaultValue::Time(StateConfig::INTERVAL), restart!(c: Config => c.lifecycle.state.as_ref().map(|s| s.interval)), None, "How often the state is written."),
    row!(P::Process(ProcessKey::TakeoverSocket), S::State, "state.takeover_socket", Text, NONE, restart!(c: Config => c.lifecycle.takeover_socket), Some("--takeover-socket"), "Unix socket of a takeover."),
    row!(P::Store(StoreKey::Kind), S::Store, "store.kind", Text, T("memory"), restart!(c: Config => c.store.kind), Some("--store"), "memory, redis or redis-cluster."),
    row!(P::Store(StoreKey::Url), S::Store, "store.url", Text, NONE, restart!(c: Config => c.store.urls), Some("--store"), "The Redis server."),
    row!(P::Store(StoreKey::Url), S::Store, "store.urls", List, NONE, restart!(c: Config => c.store.urls), None, "Several URLs: a cluster's seed nodes."),
    row!(P::Store(StoreKey::TlsCaFile), S::Store, "store.tls_ca_file", Text, NONE, restart!(c: Config => c.store.tls_ca_file), None, "CA certificates for rediss://."),
    row!(P::Store(StoreKey::PasswordFile), S::Store, "store.password_file", Text, NONE, restart!(c: Config => c.store.password_file), None, "A file holding the store's password."),
    row!(P::Store(StoreKey::Prefix), S::Store, "store.prefix", Text, T(StoreConfig::PREFIX), restart!(c: Config => c.store.prefix), None, "Put before every key."),
    row!(P::Store(StoreKey::LookupBudget), S::Store, "store.lookup_budget", Dur, DefaultValue::Time(StoreConfig::LOOKUP_BUDGET), restart!(c: Config => c.store.lookup_budget), Some("--store-lookup-budget"), "How long a connection waits for Redis."),
    row!(P::Store(StoreKey::Timeout), S::Store, "store.timeout", Dur, DefaultValue::Time(StoreConfig::TIMEOUT), restart!(c: Config => c.store.timeout), None, "Longest one request to Redis."),
    row!(P::Store(StoreKey::Queue), S::Store, "store.queue", int(1, 1 << 24), I(StoreConfig::QUEUE as i128), restart!(c: Config => c.store.queue), None, "Writes waiting to be sent at most."),
    // No place in a `Config`: read once at start, so only a restart changes it.
    row!(P::Process(ProcessKey::Threads), S::CommandLine, "threads", int(1, ANY), NONE, restart!(_c: Config => ()), Some("--threads"), "Worker threads (one per CPU)."),
];

/// The settings of one section, in file order.
pub(crate) fn in_section(section: Section) -> impl Iterator<Item = &'static Setting> {
    SETTINGS.iter().filter(move |s| s.section == section)
}

impl ConfigPath {
    /// The setting this path names; `None` for a section or the whole.
    pub fn setting(&self) -> Option<&'static Setting> {
        let at = self.zeroed();
        SETTINGS.iter().find(|s| s.at == at)
    }

    /// The values an integer setting allows, and its default; `None` for
    /// a setting that is not an integer.
    pub fn int_range(&self) -> Option<IntRange> {
        let s = self.setting()?;
        let Kind::Int { min, max } = s.kind else {
            return None;
        };
        let default = match s.default {
            DefaultValue::Int(d) => Some(d),
            _ => None,
        };
        Some(IntRange { min, max, default })
    }

    /// A duration setting's default, the example its messages suggest.
    pub fn default_duration(&self) -> Option<Duration> {
        let at = match *self {
            // No default of its own: its messages suggest the timeout's.
            P::Pool(p, PoolKey::Affinity(AffinityKey::AbsoluteMax)) => {
                P::Pool(p, PoolKey::Affinity(AffinityKey::Timeout))
            }
            other => other,
        };
        match at.setting()?.default {
            DefaultValue::Time(d) => Some(d),
            _ => None,
        }
    }
}

/// The default of the integer setting at `at`, for the config types'
/// `Default`s; 0 if the table has none, which a test rules out.
pub(super) fn int_default<T: TryFrom<i128> + std::default::Default>(at: ConfigPath) -> T {
    let default = at.int_range().and_then(|r| r.default);
    default
        .and_then(|d| T::try_from(d).ok())
        .unwrap_or_default()
}

/// The default of the duration setting at `at`, for the config types'
/// `Default`s.
pub(super) fn duration_default(at: ConfigPath) -> Duration {
    at.default_duration().unwrap_or_default()
}

/// The settings that changed from `old` to `new` and wait for a restart,
/// as the reload's outcome names them: a process-wide section once, by
/// its title, a pool's setting by `pool.NAME.` and its name.
pub(crate) fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in SETTINGS {
        let Reload::Restart(Get::Config(get)) = s.reload else {
            continue;
        };
        let name = match s.section {
            Section::Root | Section::State => "state, shutdown_timeout",
            other => other.title().trim_matches(['[', ']']),
        };
        if get(old) != get(new) && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// The settings of a kept pool that changed and wait for a restart, by
/// their names in messages.
pub(crate) fn pool_restart_required(old: &PoolConfig, new: &PoolConfig) -> Vec<&'static str> {
    let changed =
        |s: &&Setting| matches!(s.reload, Reload::Restart(Get::Pool(get)) if get(old) != get(new));
    SETTINGS.iter().filter(changed).map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_described_once_with_a_consistent_default() {
        for (i, s) in SETTINGS.iter().enumerate() {
            let twice = SETTINGS[..i]
                .iter()
                .any(|e| e.section == s.section && e.key() == s.key());
            assert!(!twice, "{} is described twice", s.name);
            assert!(!s.doc.is_empty(), "{} has no doc line", s.name);
            match (s.kind, s.default) {
                (Kind::Int { min, max }, DefaultValue::Int(d)) => {
                    assert!(
                        (min..=max).contains(&d),
                        "{}'s default is out of range",
                        s.name
                    )
                }
                (
                    Kind::Int { .. } | Kind::Duration | Kind::Bool | Kind::Text,
                    DefaultValue::None,
                ) => {}
                (Kind::Duration, DefaultValue::Time(_))
                | (Kind::Bool, DefaultValue::Bool(_))
                | (Kind::Text, DefaultValue::Text(_))
                | (Kind::List | Kind::Tables | Kind::Sni, DefaultValue::None) => {}
                (kind, default) => panic!("{}: a {kind:?} with default {default:?}", s.name),
            }
        }
    }

    #[test]
    fn the_config_types_take_their_defaults_from_the_table() {
        let pool = PoolConfig::new("p", Vec::new());
        let config = Config::single("127.0.0.1:1".parse().unwrap(), Vec::new());
        let l = &config.listeners[0].limits;
        assert_eq!(
            (
                l.max_connections,
                l.max_inspecting_per_ip,
                l.max_hello_bytes
            ),
            (10_000, 64, 16_384)
        );
        assert_eq!(l.max_connections_per_client, None);
        assert_eq!(l.connections_per_client(), 5_000, "half of max_connections");
        assert_eq!(pool.affinity.table_size, 1_000_000);
        assert_eq!(pool.timeouts.idle, Duration::from_secs(600));
        assert_eq!(pool.health.rise, 2);
        assert_eq!(config.store.queue, 65_536);
        assert_eq!(config.log.connections_per_second, 50);
        assert_eq!(config.lifecycle.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn a_reload_names_each_restart_setting_that_changed_and_nothing_else() {
        let config = Config::single("127.0.0.1:1".parse().unwrap(), Vec::new());
        let mut changed = config.clone();
        assert!(restart_required(&config, &changed).is_empty());
        changed.pools[0].timeouts.idle = Duration::from_secs(1);
        changed.listeners[0].limits.max_connections = 5;
        assert!(
            restart_required(&config, &changed).is_empty(),
            "applied in place"
        );
        changed.store.prefix = "other:".into();
        changed.lifecycle.shutdown_timeout = Duration::ZERO;
        changed.admin = Some(super::super::AdminConfig::new(
            "127.0.0.1:2".parse().unwrap(),
        ));
        assert_eq!(
            restart_required(&config, &changed),
            ["admin", "state, shutdown_timeout", "store"]
        );
        let mut pool = config.pools[0].clone();
        pool.affinity.table_size = 5;
        pool.affinity.nat_threshold = 9;
        pool.affinity.ipv4_prefix = 24;
        assert_eq!(
            pool_restart_required(&config.pools[0], &pool),
            ["affinity.table_size", "affinity.nat_threshold"]
        );
    }

    #[test]
    fn docs_state_every_setting_and_its_reload_class() {
        let docs = include_str!("../../docs/configuration.md");
        let table = docs
            .split("## What a reload applies")
            .nth(1)
            .expect("docs/configuration.md has a section `What a reload applies`");
        let documented: Vec<(String, String, String)> = table
            .lines()
            .take_while(|l| !l.starts_with("## "))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                match cells[..] {
                    ["", section, key, class, ""] if key.starts_with('`') => Some((
                        section.to_string(),
                        key.trim_matches('`').to_string(),
                        class.to_string(),
                    )),
                    _ => None,
                }
            })
            .collect();
        let described: Vec<(String, String, String)> = SETTINGS
            .iter()
            .map(|s| {
                let class = match s.reload {
                    Reload::Applied => "reload",
                    Reload::Restart(_) => "restart",
                };
                (
                    s.section.title().to_string(),
                    s.key().to_string(),
                    class.to_string(),
                )
            })
            .collect();
        for d in &described {
            assert!(
                documented.contains(d),
                "docs/configuration.md does not state {d:?}"
            );
        }
        for d in &documented {
            assert!(
                described.contains(d),
                "docs/configuration.md states {d:?}, which is no setting"
            );
        }
    }
}
