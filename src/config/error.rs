//! What can be wrong with a configuration: [`ConfigError`], the rule a
//! setting breaks at its [`ConfigPath`], and [`ValueError`], text that does
//! not parse. Each message is written once, here, for every source.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::format_duration;
use super::path::{AffinityKey, BackendKey, ConfigPath, HealthKey, IntRange, ListenerKey, PoolKey};

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
    /// `health.check` is not "tcp", "tls" or "none".
    UnknownHealthCheck(String),
    /// The quick form's `--backend` is not `NAME=IP:PORT`.
    NotABackend(String),
    UnknownLogFormat(String),
    /// `send_proxy` is not "off", "v1" or "v2".
    UnknownSendProxy(String),
    /// `store.kind` is not "memory", "redis" or "redis-cluster".
    UnknownStoreKind(String),
    /// `store.url` is not a `redis://` URL.
    NotARedisUrl(String),
    /// A `rediss://` URL in a build without the `store-tls` feature.
    StoreTlsNotBuilt(String),
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
    /// `first` is the earlier listener with the name: a message points
    /// there too, so the operator sees both.
    DuplicateListenerName {
        name: String,
        first: usize,
    },
    /// Two listeners cannot share a socket; `first` is the earlier one.
    DuplicateBind {
        addr: SocketAddr,
        first_name: String,
        first: usize,
    },
    /// Only a `Config` built in code can have this; TOML already refuses a
    /// table defined twice.
    DuplicatePoolName {
        name: String,
    },
    /// The affinity table stores backend names, so two backends with one
    /// name would share every session; `first` is the earlier one.
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
    /// Two patterns that match the same names (case and a trailing dot
    /// are ignored): the later would silently win.
    DuplicateSniPattern {
        pattern: String,
        first_pattern: String,
        first: usize,
    },
    ProxyWithoutTrusted,
    /// A file path setting is empty.
    EmptyPath,
    /// A probe may not outlast the interval: probes of one backend would
    /// overlap.
    HealthTimeoutAboveInterval {
        timeout: Duration,
        interval: Duration,
    },
    /// `health.sni` is not a host name.
    BadHealthSni {
        name: String,
    },
    /// `health.sni` is set but only the TLS check sends it.
    HealthSniWithoutTls {
        check: &'static str,
    },
    /// The admin endpoint listens beyond this host without a token:
    /// anyone who reaches it could drain backends.
    AdminWithoutToken {
        bind: SocketAddr,
    },
    TokenTooShort {
        len: usize,
    },
    /// The token travels in an HTTP header.
    TokenNotPrintable,
    TokenForReadsWithoutToken,
    /// `[store] kind = "redis"` or `"redis-cluster"` without a `url`.
    StoreWithoutUrl {
        kind: super::StoreKind,
    },
    /// A cluster seed URL naming a database other than 0 (a cluster has
    /// only database 0).
    ClusterDatabase,
    /// `store.tls_ca_file` without a `rediss://` URL.
    StoreCaWithoutTls,
    /// `store.prefix` is longer than [`super::StoreConfig::MAX_PREFIX`].
    StorePrefixTooLong {
        len: usize,
    },
}

impl ConfigError {
    pub fn new(path: ConfigPath, rule: Rule) -> Self {
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
            Rule::HealthTimeoutAboveInterval { .. } => match self.path {
                ConfigPath::Pool(p, _) => {
                    Some(ConfigPath::Pool(p, PoolKey::Health(HealthKey::Interval)))
                }
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
            Rule::Zero if matches!(self.path, ConfigPath::Store(_)) => write!(
                f,
                "{key} is zero, which would fail every request to the store; set it above zero, e.g. \"{}\"",
                format_duration(self.path.default_duration().unwrap_or(Duration::from_millis(500)))
            ),
            Rule::StoreWithoutUrl {
                kind: super::StoreKind::RedisCluster,
            } => f.write_str(
                "[store] kind = \"redis-cluster\" has no `urls`; list some of its nodes, e.g. urls = [\"redis://10.0.0.5:6379\", \"redis://10.0.0.6:6379\"]",
            ),
            Rule::StoreWithoutUrl { .. } => f.write_str(
                "[store] kind = \"redis\" has no `url`; add e.g. url = \"redis://10.0.0.5:6379/0\"",
            ),
            Rule::ClusterDatabase => write!(
                f,
                "{key} names a database other than 0, and a Redis Cluster has only database 0; end the URL with /0 or leave the database out"
            ),
            Rule::StoreCaWithoutTls => write!(
                f,
                "{key} is set but no store URL is rediss://; use rediss:// URLs or remove it"
            ),
            Rule::StorePrefixTooLong { len } => write!(
                f,
                "{key} is {len} bytes long; shorten it to {} bytes or less",
                super::StoreConfig::MAX_PREFIX
            ),
            Rule::Zero if matches!(self.path, ConfigPath::Process(_)) => write!(
                f,
                "{key} is zero, which would write the state file without pause; set it above zero, e.g. \"{}\"",
                format_duration(self.path.default_duration().unwrap_or(Duration::from_secs(60)))
            ),
            Rule::EmptyPath => write!(
                f,
                "{key} is empty; give the path of the state file, e.g. \"/var/lib/stickytls/state\", or remove the [state] section"
            ),

            Rule::Zero if matches!(self.path, ConfigPath::Pool(_, PoolKey::Health(_))) => write!(
                f,
                "{key} is zero, which would fail every health check or probe without pause; set it above zero, e.g. \"{}\", or set health.check = \"none\"",
                format_duration(self.path.default_duration().unwrap_or(Duration::from_secs(1)))
            ),
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
            Rule::HealthTimeoutAboveInterval { timeout, interval } => write!(
                f,
                "health.timeout ({}) is longer than health.interval ({}), so one backend's probes would overlap; lower the timeout or raise the interval",
                format_duration(*timeout),
                format_duration(*interval)
            ),
            Rule::BadHealthSni { name } => write!(
                f,
                "health.sni `{name}` is not a host name; write e.g. \"www.example.com\", or remove it to send no server name"
            ),
            Rule::HealthSniWithoutTls { check } => write!(
                f,
                "health.sni is only sent by the TLS check, but health.check is \"{check}\"; set check = \"tls\" or remove sni"
            ),
            Rule::AdminWithoutToken { bind } => write!(
                f,
                "the admin endpoint binds {bind}, which is not a loopback address, without a token, so anyone who can reach it could drain backends; set a token (in [admin], or --admin-token) or bind 127.0.0.1"
            ),
            Rule::TokenTooShort { len } => write!(
                f,
                "the admin token is {len} characters long; use at least {} (e.g. the output of `openssl rand -hex 16`)",
                super::MIN_TOKEN_LEN
            ),
            Rule::TokenNotPrintable => f.write_str(
                "the admin token must be printable ASCII without spaces, since it travels in an HTTP header",
            ),
            Rule::TokenForReadsWithoutToken => f.write_str(
                "token_for_reads is true but there is no token; set token in [admin]",
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
        ValueError::UnknownHealthCheck(text) => write!(
            f,
            "unknown health check `{text}`; use \"tcp\" (connect), \"tls\" (a ServerHello answers a ClientHello) or \"none\""
        ),
        ValueError::NotABackend(text) => write!(
            f,
            "backend `{text}` is not NAME=IP:PORT; write e.g. web1=10.0.1.1:443"
        ),
        ValueError::UnknownLogFormat(text) => {
            write!(f, "unknown log format `{text}`; use \"text\" or \"json\"")
        }
        ValueError::UnknownSendProxy(text) => write!(
            f,
            "unknown send_proxy `{text}`; use \"v1\" (text header), \"v2\" (binary header) or \"off\", matching what the backend expects"
        ),
        ValueError::UnknownStoreKind(text) => write!(
            f,
            "unknown store kind `{text}`; use \"memory\" (this process only), \"redis\" (one Redis server shared by several instances) or \"redis-cluster\" (a Redis Cluster)"
        ),
        ValueError::NotARedisUrl(text) => write!(
            f,
            "`{text}` is not a Redis URL; write e.g. \"redis://10.0.0.5:6379/0\", or \"rediss://...\" for TLS"
        ),
        ValueError::StoreTlsNotBuilt(text) => write!(
            f,
            "`{text}` asks for TLS to the store, which this build of stickytls lacks; build it with `cargo build --release --features store-tls`, or use redis://"
        ),
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
