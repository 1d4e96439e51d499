//! Runtime configuration of one router: what it listens on, its backends,
//! how it balances, and every budget and timeout.
//!
//! The quick command-line form (`--listen/--backend`) builds this directly;
//! the TOML file of a later issue will deserialize into the same types, so
//! the router itself never knows where its settings came from.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A configuration the operator must fix before the router starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

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
            weight: 1,
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
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "roundrobin" | "round-robin" => Ok(Balance::RoundRobin),
            "weighted-roundrobin" | "weighted-round-robin" => Ok(Balance::WeightedRoundRobin),
            "least-connections" | "leastconn" => Ok(Balance::LeastConnections),
            "source-hash" | "source" => Ok(Balance::SourceHash),
            other => Err(ConfigError(format!(
                "unknown balancer `{other}`: expected `roundrobin`, `weighted-roundrobin`, `least-connections` or `source-hash`"
            ))),
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
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError(format!(
                "`{s}` is not a CIDR network such as 10.0.0.0/8 or 2001:db8::/32"
            ))
        };
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
            return Err(ConfigError(format!(
                "`{s}`: prefix length {len} is longer than {max}"
            )));
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
    /// The admin endpoint (metrics, API); off when `None`.
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
}

/// The `[admin]` section: where the endpoint listens and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// A bearer token every write must carry (and every read with
    /// `token_for_reads`). Required when `bind` is not a loopback address.
    pub token: Option<String>,
    pub token_for_reads: bool,
}

impl AdminConfig {
    /// An endpoint on `bind` without a token.
    pub fn new(bind: SocketAddr) -> Self {
        AdminConfig {
            bind,
            token: None,
            token_for_reads: false,
        }
    }

    /// The admin section's rules, written once: `check`, `run` and the
    /// quick form all report what this says.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.token.as_deref() {
            None if !self.bind.ip().is_loopback() => out.push(format!(
                "the admin endpoint binds {}, which is not a loopback address, without a token: anyone who can reach it could drain backends; set [admin] token (or --admin-token), or bind 127.0.0.1",
                self.bind
            )),
            None if self.token_for_reads => out.push(
                "token_for_reads is set but there is no token: set [admin] token".to_string(),
            ),
            Some(t) if t.len() < MIN_TOKEN_LEN => out.push(format!(
                "the admin token is {} characters long; use at least {MIN_TOKEN_LEN}",
                t.len()
            )),
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => out.push(
                "the admin token must be printable ASCII without spaces (it travels in an HTTP header)"
                    .to_string(),
            ),
            _ => {}
        }
        out
    }
}

/// Shortest admin token accepted: guessing must not be practical.
pub const MIN_TOKEN_LEN: usize = 16;

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
            connections_per_second: 50,
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

impl std::str::FromStr for LogFormat {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError(format!(
                "unknown log format `{other}`: expected `text` or `json`"
            ))),
        }
    }
}

impl Config {
    /// One listener in front of one pool named `default`: the quick
    /// command-line form.
    pub fn single(listen: SocketAddr, backends: Vec<BackendConfig>) -> Self {
        Config {
            listeners: vec![ListenerConfig::new(listen, "default")],
            pools: vec![PoolConfig::new("default", backends)],
            admin: None,
            log: LogConfig::default(),
        }
    }

    pub fn pool_mut(&mut self, name: &str) -> Option<&mut PoolConfig> {
        self.pools.iter_mut().find(|p| p.name == name)
    }

    /// Rejects settings the router cannot run with, saying what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(problem) = self.admin.iter().flat_map(AdminConfig::problems).next() {
            return Err(ConfigError(problem));
        }
        if self.listeners.is_empty() {
            return Err(ConfigError("no listener: give at least one".into()));
        }
        let mut pool_names = std::collections::HashSet::new();
        for p in &self.pools {
            if !pool_names.insert(p.name.as_str()) {
                return Err(ConfigError(format!("pool name `{}` is used twice", p.name)));
            }
            p.validate()?;
        }
        for l in &self.listeners {
            let known = |name: &str, what: &str| {
                if pool_names.contains(name) {
                    Ok(())
                } else {
                    Err(ConfigError(format!(
                        "listener `{}`: {what} names pool `{name}`, which is not defined",
                        l.name
                    )))
                }
            };
            known(&l.default_pool, "default_pool")?;
            for r in &l.sni {
                known(&r.pool, &format!("SNI rule `{}`", r.pattern))?;
                validate_sni_pattern(&r.pattern)?;
            }
            if let NonTls::Pool(p) = &l.non_tls {
                known(p, "non_tls")?;
            }
            if l.proxy_protocol && l.proxy_trusted.is_empty() {
                return Err(ConfigError(format!(
                    "listener `{}`: proxy_protocol is on but proxy_trusted is empty, so every connection would be closed; list the proxies' networks",
                    l.name
                )));
            }
            l.limits.validate()?;
        }
        Ok(())
    }
}

/// An SNI pattern: a host name, or `*.` and a host name (the wildcard
/// covers exactly one label).
pub fn validate_sni_pattern(p: &str) -> Result<(), ConfigError> {
    let name = p.strip_prefix("*.").unwrap_or(p);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "SNI pattern `{p}` is not a host name or `*.` followed by one (e.g. api.example.com, *.example.com)"
        )))
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_hello_bytes < 512 {
            return Err(ConfigError(
                "hello byte budget below 512 bytes would reject ordinary ClientHellos".into(),
            ));
        }
        if self.max_connections == 0 || self.max_inspecting_per_ip == 0 {
            return Err(ConfigError("connection limits must be at least 1".into()));
        }
        Ok(())
    }
}

impl PoolConfig {
    /// Rejects pool settings the router cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pool = &self.name;
        if self.backends.is_empty() {
            return Err(ConfigError(format!(
                "pool `{pool}` has no backends: give at least one"
            )));
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.backends {
            if b.name.is_empty() {
                return Err(ConfigError(format!(
                    "pool `{pool}`: backend {} has an empty name",
                    b.addr
                )));
            }
            if !names.insert(b.name.as_str()) {
                return Err(ConfigError(format!(
                    "pool `{pool}`: backend name `{}` is used twice; names identify backends in the affinity table and must be unique",
                    b.name
                )));
            }
            if b.max_connections == Some(0) {
                return Err(ConfigError(format!(
                    "pool `{pool}`: backend `{}` has max_connections 0 and could never be used; remove the limit or raise it",
                    b.name
                )));
            }
        }
        if self.backends.iter().all(|b| b.weight == 0) {
            return Err(ConfigError(format!(
                "pool `{pool}`: every backend has weight 0, so no client could be placed"
            )));
        }
        let t = &self.timeouts;
        for (what, d) in [
            ("hello timeout", t.hello),
            ("connect timeout", t.connect),
            ("first-byte timeout", t.first_byte),
            ("idle timeout", t.idle),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!(
                    "pool `{pool}`: {what} is zero, so every connection would fail"
                )));
            }
        }
        let a = &self.affinity;
        if a.inactivity_timeout.is_zero() {
            return Err(ConfigError(format!(
                "pool `{pool}`: affinity timeout is zero, so nothing would ever stick"
            )));
        }
        if let Some(max) = a.absolute_max {
            if max < a.inactivity_timeout {
                return Err(ConfigError(format!(
                    "pool `{pool}`: affinity absolute maximum ({}) is shorter than the inactivity timeout ({}); raise it or drop it",
                    format_duration(max),
                    format_duration(a.inactivity_timeout)
                )));
            }
        }
        if a.table_size == 0 || a.clients_tracked == 0 {
            return Err(ConfigError(format!(
                "pool `{pool}`: affinity table sizes must be at least 1"
            )));
        }
        if a.ipv4_prefix == 0 || a.ipv4_prefix > 32 || a.ipv6_prefix == 0 || a.ipv6_prefix > 128 {
            return Err(ConfigError(format!(
                "pool `{pool}`: client prefix lengths must be 1..=32 for IPv4 and 1..=128 for IPv6"
            )));
        }
        Ok(())
    }
}

/// Parses `NAME=HOST:PORT`.
pub fn parse_backend(s: &str) -> Result<BackendConfig, ConfigError> {
    let (name, addr) = s.split_once('=').ok_or_else(|| {
        ConfigError(format!(
            "backend `{s}`: expected NAME=ADDR, e.g. a=127.0.0.1:9443"
        ))
    })?;
    let addr = addr
        .parse()
        .map_err(|_| ConfigError(format!("backend `{s}`: `{addr}` is not an IP:PORT address")))?;
    Ok(BackendConfig::new(name, addr))
}

/// Parses durations like `500ms`, `5s`, `30m`, `2h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        ConfigError(format!(
            "duration `{s}`: expected a number and a unit, e.g. 5s or 30m"
        ))
    })?;
    let secs = |mul: u64| {
        n.checked_mul(mul)
            .map(Duration::from_secs)
            .ok_or_else(|| ConfigError(format!("duration `{s}` is too large")))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => Err(ConfigError(format!(
            "duration `{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
        ))),
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

    #[test]
    fn validation_names_what_to_change() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let b = |n: &str| BackendConfig::new(n, addr);
        let mut cfg = Config::single(addr, vec![b("a"), b("a")]);
        assert!(cfg.validate().unwrap_err().0.contains("used twice"));
        cfg.pools[0].backends = vec![b("a")];
        assert!(cfg.validate().is_ok());
        cfg.pools[0].affinity.absolute_max = Some(Duration::from_secs(1));
        assert!(cfg.validate().unwrap_err().0.contains("absolute maximum"));
        cfg.pools[0].affinity.absolute_max = None;
        cfg.listeners[0].default_pool = "nope".into();
        assert!(cfg.validate().unwrap_err().0.contains("not defined"));
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
        assert!(validate_sni_pattern("api.example.com").is_ok());
        assert!(validate_sni_pattern("*.example.com").is_ok());
        assert!(validate_sni_pattern("*").is_err());
        assert!(validate_sni_pattern("a.*.com").is_err());
        assert!(validate_sni_pattern("bad name").is_err());
    }
}

#[cfg(test)]
mod admin_tests {
    use super::*;

    fn cfg(bind: &str, token: Option<&str>) -> AdminConfig {
        AdminConfig {
            bind: bind.parse().unwrap(),
            token: token.map(str::to_string),
            token_for_reads: false,
        }
    }

    #[test]
    fn a_non_loopback_bind_needs_a_token_and_the_message_names_it() {
        let p = cfg("0.0.0.0:9900", None).problems();
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("token"), "{p:?}");
        assert!(cfg("[::]:9900", None).problems()[0].contains("token"));
        assert!(
            cfg("0.0.0.0:9900", Some("a-long-enough-token"))
                .problems()
                .is_empty()
        );
        assert!(cfg("127.0.0.1:9900", None).problems().is_empty());
        assert!(cfg("[::1]:9900", None).problems().is_empty());
    }

    #[test]
    fn tokens_must_be_long_and_header_safe() {
        assert!(cfg("127.0.0.1:1", Some("short")).problems()[0].contains("at least"));
        assert!(
            cfg("127.0.0.1:1", Some("has a space in it here")).problems()[0].contains("printable")
        );
        let mut reads = cfg("127.0.0.1:1", None);
        reads.token_for_reads = true;
        assert!(reads.problems()[0].contains("token_for_reads"));
    }
}
