//! What can be wrong with a configuration: [`ConfigError`], the rule a
//! setting breaks at its [`ConfigPath`], and [`ValueError`], text that does
//! not parse. Each message is written once, here, for every source.

use std::net::SocketAddr;
use std::time::Duration;

use super::format_duration;
use super::path::{AffinityKey, BackendKey, ConfigPath, HealthKey, IntRange, ListenerKey, PoolKey};

/// A text value that does not parse, from a flag or a file. Alone it
/// describes the text; inside a [`ConfigError`] the setting's name and
/// default are added ([`write_value_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(
        "`{0}` is not an IP:PORT address; write e.g. \"10.0.1.1:443\" or \"[2001:db8::1]:443\" (host names are not resolved)"
    )]
    NotAnAddress(String),
    #[error(
        "`{0}` is not a network in CIDR notation; write e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or a single address"
    )]
    NotANetwork(String),
    #[error("`{0}` is not a duration; write a number and a unit (ms, s, m, h or d), e.g. \"30s\"")]
    NotADuration(String),
    #[error("`{0}` is too long to count; write a shorter duration, e.g. \"30s\"")]
    DurationTooLong(String),
    #[error(
        "unknown balancer `{0}`; use \"roundrobin\", \"weighted-roundrobin\", \"least-connections\" or \"source-hash\""
    )]
    UnknownBalancer(String),
    /// `health.check` is not "tcp", "tls" or "none".
    #[error(
        "unknown health check `{0}`; use \"tcp\" (connect), \"tls\" (a ServerHello answers a ClientHello) or \"none\""
    )]
    UnknownHealthCheck(String),
    /// The quick form's `--backend` is not `NAME=IP:PORT`.
    #[error("backend `{0}` is not NAME=IP:PORT; write e.g. web1=10.0.1.1:443")]
    NotABackend(String),
    #[error("unknown log format `{0}`; use \"text\" or \"json\"")]
    UnknownLogFormat(String),
    /// `send_proxy` is not "off", "v1" or "v2".
    #[error(
        "unknown send_proxy `{0}`; use \"v1\" (text header), \"v2\" (binary header) or \"off\", matching what the backend expects"
    )]
    UnknownSendProxy(String),
    /// `store.kind` is not "memory", "redis" or "redis-cluster".
    #[error(
        "unknown store kind `{0}`; use \"memory\" (this process only), \"redis\" (one Redis server shared by several instances) or \"redis-cluster\" (a Redis Cluster)"
    )]
    UnknownStoreKind(String),
    /// `store.url` is not a `redis://` URL.
    #[error(
        "`{0}` is not a Redis URL; write e.g. \"redis://10.0.0.5:6379/0\", or \"rediss://...\" for TLS"
    )]
    NotARedisUrl(String),
    /// A `rediss://` URL in a build without the `store-tls` feature.
    #[error(
        "`{0}` asks for TLS to the store, which this build of stickytls lacks; build it with `cargo build --release --features store-tls`, or use redis://"
    )]
    StoreTlsNotBuilt(String),
}

/// One rule a configuration breaks, at the setting that breaks it. Every
/// one is the operator's to fix; none can be retried around. Displays as
/// `pools[0].timeouts.idle: timeouts.idle is zero, ...`: for a `Config`
/// built by code, where the path is the only location there is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {}", self.message(&|p| p.to_string()))]
pub struct ConfigError {
    pub path: ConfigPath,
    #[source]
    pub rule: Rule,
}

/// The rules, one variant each, with what the message needs to say. The
/// messages that do not depend on where the setting is are written here;
/// [`ConfigError::message`] writes the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    /// A value given as text does not parse.
    #[error(transparent)]
    Value(ValueError),
    /// An integer outside [`ConfigPath::int_range`].
    #[error("{value} is out of range")]
    OutOfRange { value: i128 },
    /// A timeout of zero would fail every connection or forget every entry.
    #[error("zero")]
    Zero,
    #[error(
        "affinity.absolute_max ({}) is shorter than affinity.timeout ({}), so entries would expire before they go idle; raise it or remove it",
        format_duration(*max),
        format_duration(*timeout)
    )]
    AbsoluteMaxBelowTimeout { max: Duration, timeout: Duration },
    #[error(
        "no [[listener]] section, so nothing would accept connections; add one with `bind` and `default_pool`"
    )]
    NoListener,
    #[error(
        "no [pool.NAME] section, so there is nowhere to send connections; add one with `backends`"
    )]
    NoPool,
    /// A listener, pool or backend name is empty.
    #[error("empty name")]
    EmptyName,
    /// `first` is the earlier listener with the name: a message points
    /// there too, so the operator sees both.
    #[error("listener name `{name}` is used twice")]
    DuplicateListenerName { name: String, first: usize },
    /// Two listeners cannot share a socket; `first` is the earlier one.
    #[error(
        "bind address {addr} is already used by listener `{first_name}`; give each listener its own address or port"
    )]
    DuplicateBind {
        addr: SocketAddr,
        first_name: String,
        first: usize,
    },
    /// Only a `Config` built in code can have this; TOML already refuses a
    /// table defined twice.
    #[error("pool name `{name}` is used twice; give each pool its own name")]
    DuplicatePoolName { name: String },
    /// The affinity table stores backend names, so two backends with one
    /// name would share every session; `first` is the earlier one.
    #[error(
        "backend name `{name}` is used twice in pool `{pool}`; names identify backends in the affinity table, so give each its own"
    )]
    DuplicateBackendName {
        name: String,
        pool: String,
        first: usize,
    },
    #[error(
        "pool `{pool}` has no backends; add at least one {{ name = \"...\", address = \"IP:PORT\" }}"
    )]
    NoBackends { pool: String },
    #[error(
        "every backend of pool `{pool}` has weight 0, so no client could be placed; give at least one a weight above 0"
    )]
    AllWeightsZero { pool: String },
    /// A reference to a pool no section defines; `defined` offers the
    /// names that are.
    #[error("{referrer} names pool `{name}`, which is not defined")]
    UndefinedPool {
        referrer: String,
        name: String,
        defined: Vec<String>,
    },
    #[error(
        "SNI pattern `{pattern}` is not a host name or `*.` followed by one; write e.g. \"api.example.com\" or \"*.example.com\" (a wildcard covers exactly one leading label)"
    )]
    BadSniPattern { pattern: String },
    /// Two patterns that match the same names (case and a trailing dot
    /// are ignored): the later would silently win.
    #[error(
        "SNI pattern `{pattern}` is the same name as `{first_pattern}` (matching ignores case and a trailing dot); keep one of them"
    )]
    DuplicateSniPattern {
        pattern: String,
        first_pattern: String,
        first: usize,
    },
    #[error(
        "proxy_protocol is on but proxy_trusted is empty, so every connection would be closed; list the proxies' networks in proxy_trusted, e.g. proxy_trusted = [\"10.0.0.0/8\"]"
    )]
    ProxyWithoutTrusted,
    /// A file path setting is empty.
    #[error("empty path")]
    EmptyPath,
    /// A probe may not outlast the interval: probes of one backend would
    /// overlap.
    #[error(
        "health.timeout ({}) is longer than health.interval ({}), so one backend's probes would overlap; lower the timeout or raise the interval",
        format_duration(*timeout),
        format_duration(*interval)
    )]
    HealthTimeoutAboveInterval {
        timeout: Duration,
        interval: Duration,
    },
    /// `health.sni` is not a host name.
    #[error(
        "health.sni `{name}` is not a host name; write e.g. \"www.example.com\", or remove it to send no server name"
    )]
    BadHealthSni { name: String },
    /// `health.sni` is set but only the TLS check sends it.
    #[error(
        "health.sni is only sent by the TLS check, but health.check is \"{check}\"; set check = \"tls\" or remove sni"
    )]
    HealthSniWithoutTls { check: &'static str },
    /// The admin endpoint listens beyond this host without a token:
    /// anyone who reaches it could drain backends.
    #[error(
        "the admin endpoint binds {bind}, which is not a loopback address, without a token, so anyone who can reach it could drain backends; set a token (in [admin], or --admin-token) or bind 127.0.0.1"
    )]
    AdminWithoutToken { bind: SocketAddr },
    #[error(
        "the admin token is {len} characters long; use at least {} (e.g. the output of `openssl rand -hex 16`)",
        super::MIN_TOKEN_LEN
    )]
    TokenTooShort { len: usize },
    /// The token travels in an HTTP header.
    #[error(
        "the admin token must be printable ASCII without spaces, since it travels in an HTTP header"
    )]
    TokenNotPrintable,
    #[error("token_for_reads is true but there is no token; set token in [admin]")]
    TokenForReadsWithoutToken,
    /// An `[admin] allowed_hosts` entry that no `Host` header could match.
    #[error(
        "allowed_hosts entry `{name}` is not a host name or IP address; write the name alone, e.g. \"router1.example.net\" or \"10.0.0.5\" (no scheme, port or wildcard: the port is never compared)"
    )]
    BadAllowedHost { name: String },
    /// `[store] kind = "redis"` or `"redis-cluster"` without a `url`.
    #[error("{}", match kind {
        super::StoreKind::RedisCluster => "[store] kind = \"redis-cluster\" has no `urls`; list some of its nodes, e.g. urls = [\"redis://10.0.0.5:6379\", \"redis://10.0.0.6:6379\"]",
        _ => "[store] kind = \"redis\" has no `url`; add e.g. url = \"redis://10.0.0.5:6379/0\"",
    })]
    StoreWithoutUrl { kind: super::StoreKind },
    /// A cluster seed URL naming a database other than 0 (a cluster has
    /// only database 0).
    #[error("a cluster URL names a database other than 0")]
    ClusterDatabase,
    /// `store.tls_ca_file` without a `rediss://` URL.
    #[error("a CA file without rediss://")]
    StoreCaWithoutTls,
    /// `store.password_file` cannot be used.
    #[error("store password file: {reason}")]
    StorePassword { reason: String },
    /// A store URL carries a password and so does `store.password_file`
    /// or the environment.
    #[error("the store password is given twice")]
    StorePasswordTwice,
    /// `store.prefix` is longer than [`super::StoreConfig::MAX_PREFIX`].
    #[error(
        "store.prefix is {len} bytes long; shorten it to {} bytes or less",
        super::StoreConfig::MAX_PREFIX
    )]
    StorePrefixTooLong { len: usize },
}

impl ConfigError {
    pub fn new(path: ConfigPath, rule: Rule) -> Self {
        ConfigError { path, rule }
    }

    /// The places this error depends on: its own, and the first of two
    /// duplicates or the other side of a comparison. A source that could
    /// not read one of them drops the error rather than guess.
    pub fn places(&self) -> impl Iterator<Item = ConfigPath> {
        let other = match (&self.rule, self.path) {
            (Rule::DuplicateListenerName { first, .. }, _) => {
                ConfigPath::Listener(*first, ListenerKey::Name)
            }
            (Rule::DuplicateBind { first, .. }, _) => {
                ConfigPath::Listener(*first, ListenerKey::Bind)
            }
            (Rule::DuplicateSniPattern { first, .. }, ConfigPath::Listener(l, _)) => {
                ConfigPath::Listener(l, ListenerKey::SniPattern(*first))
            }
            (Rule::DuplicateBackendName { first, .. }, ConfigPath::Backend { pool, .. }) => {
                let at = |backend| ConfigPath::Backend {
                    pool,
                    backend,
                    key: BackendKey::Name,
                };
                at(*first)
            }
            (Rule::HealthTimeoutAboveInterval { .. }, ConfigPath::Pool(p, _)) => {
                ConfigPath::Pool(p, PoolKey::Health(HealthKey::Interval))
            }
            (Rule::AbsoluteMaxBelowTimeout { .. }, ConfigPath::Pool(p, _)) => {
                ConfigPath::Pool(p, PoolKey::Affinity(AffinityKey::Timeout))
            }
            // None other: the error's own place again.
            _ => self.path,
        };
        [self.path, other].into_iter()
    }

    /// What is wrong, then `; ` and what to change. `elsewhere` describes
    /// another place the message refers to (a file says "the listener at
    /// line 2").
    pub fn message(&self, elsewhere: &dyn Fn(ConfigPath) -> String) -> String {
        let key = self.path.key();
        match &self.rule {
            Rule::Value(v) => value_message(v, &self.path),
            Rule::OutOfRange { value } => {
                let (min, max, default) = match self.path.int_range() {
                    Some(IntRange { min, max, default }) => (min, max, default),
                    None => (0, i128::MAX, None),
                };
                let default = default.map_or("no limit".to_string(), |d| d.to_string());
                match self.path {
                    ConfigPath::Pool(
                        _,
                        PoolKey::Affinity(AffinityKey::Ipv4Prefix | AffinityKey::Ipv6Prefix),
                    ) => format!(
                        "{key} is {value}, but a prefix length is {min} to {max} bits; use {max} for one address per client"
                    ),
                    ConfigPath::Listener(_, ListenerKey::MaxHelloBytes) if *value < min => format!(
                        "{key} {value} would reject ordinary ClientHellos; set it to {min} or more (default {default})"
                    ),
                    ConfigPath::Listener(_, ListenerKey::MaxConnectionsPerClient)
                        if *value < min =>
                    {
                        format!(
                            "{key} is {value}, so no client could connect; set it to {min} or more, or remove it for the default, half of max_connections"
                        )
                    }
                    ConfigPath::Backend {
                        key: BackendKey::MaxConnections,
                        ..
                    } if *value < min => format!(
                        "{key} is {value}, so this backend could never be used; raise it or remove the line for no limit"
                    ),
                    _ if *value < min => {
                        format!("{key} is {value}; set it to {min} or more (default {default})")
                    }
                    _ => format!(
                        "{key} is {value}, too large; set it to {max} or less (default {default})"
                    ),
                }
            }
            Rule::Zero => {
                let example = format_duration(
                    self.path
                        .default_duration()
                        .unwrap_or(Duration::from_secs(1)),
                );
                let (effect, or) = match self.path {
                    ConfigPath::Store(_) => ("fail every request to the store", ""),
                    ConfigPath::Process(_) => ("write the state file without pause", ""),
                    ConfigPath::Pool(_, PoolKey::Health(_)) => (
                        "fail every health check or probe without pause",
                        ", or set health.check = \"none\"",
                    ),
                    _ => ("fail every connection or forget every entry at once", ""),
                };
                format!(
                    "{key} is zero, which would {effect}; set it above zero, e.g. \"{example}\"{or}"
                )
            }
            Rule::ClusterDatabase => format!(
                "{key} names a database other than 0, and a Redis Cluster has only database 0; end the URL with /0 or leave the database out"
            ),
            Rule::StorePassword { reason } => format!("{key}: {reason}"),
            Rule::StorePasswordTwice => format!(
                "{key}: a store URL carries a password and so does store.password_file or {}; give it in one place (the file is best: URLs show up in process lists and logs)",
                super::StoreConfig::PASSWORD_ENV
            ),
            Rule::StoreCaWithoutTls => format!(
                "{key} is set but no store URL is rediss://; use rediss:// URLs or remove it"
            ),
            Rule::EmptyPath => format!(
                "{key} is empty; give the path of the state file, e.g. \"/var/lib/stickytls/state\", or remove the [state] section"
            ),
            Rule::EmptyName => match self.path {
                ConfigPath::Listener(..) => {
                    "listener name is empty; give it a name or remove the `name` line"
                }
                ConfigPath::Pool(..) => {
                    "pool name is empty; give the pool a name, as in [pool.web]"
                }
                _ => "backend name is empty; give it a name that stays stable across reloads",
            }
            .to_string(),
            Rule::DuplicateListenerName { name, first } => format!(
                "listener name `{name}` is already used by {}; give each listener its own name",
                elsewhere(ConfigPath::Listener(*first, ListenerKey::Name))
            ),
            Rule::UndefinedPool { name, defined, .. } => {
                let reject = match self.path {
                    ConfigPath::Listener(_, ListenerKey::NonTls) => "write \"reject\", ",
                    _ => "",
                };
                let others = match defined.is_empty() {
                    true => String::new(),
                    false => format!(" or use one of: {}", defined.join(", ")),
                };
                format!("{}; {reject}add a [pool.{name}] section{others}", self.rule)
            }
            rule => rule.to_string(),
        }
    }
}

/// One message for a value that does not parse at `path`: a duration's
/// names its setting and suggests its default, an address its kind.
fn value_message(e: &ValueError, path: &ConfigPath) -> String {
    let example = path
        .default_duration()
        .map_or_else(|| "30s".to_string(), format_duration);
    let key = path.key();
    match e {
        ValueError::NotAnAddress(text)
            if matches!(path, ConfigPath::Listener(_, ListenerKey::Bind)) =>
        {
            format!(
                "`{text}` is not an IP:PORT address; write e.g. \"0.0.0.0:443\" or \"[::]:443\" (host names are not resolved)"
            )
        }
        ValueError::NotADuration(text) => format!(
            "{key} `{text}` is not a duration; write a number and a unit (ms, s, m, h or d), e.g. \"{example}\""
        ),
        ValueError::DurationTooLong(text) => format!(
            "{key} `{text}` is too long to count; write a shorter duration, e.g. \"{example}\""
        ),
        other => other.to_string(),
    }
}

/// Every rule a configuration breaks, in the order they were found; one
/// per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);
