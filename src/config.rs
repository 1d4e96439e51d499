//! Runtime configuration of one router: what it listens on, its backends,
//! how it balances, and every budget and timeout.
//!
//! The quick command-line form (`--listen/--backend`) builds this directly;
//! the TOML file of a later issue will deserialize into the same types, so
//! the router itself never knows where its settings came from.

use std::fmt;
use std::net::SocketAddr;
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
}

/// How a client with no affinity is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
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
            "source-hash" | "source" => Ok(Balance::SourceHash),
            other => Err(ConfigError(format!(
                "unknown balancer `{other}`: expected `roundrobin` or `source-hash`"
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

/// One router: a listener in front of one pool of backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    pub listen: SocketAddr,
    pub backends: Vec<BackendConfig>,
    pub balance: Balance,
    pub affinity: AffinityConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
}

impl RouterConfig {
    /// A router with default settings in front of `backends`.
    pub fn new(listen: SocketAddr, backends: Vec<BackendConfig>) -> Self {
        RouterConfig {
            listen,
            backends,
            balance: Balance::RoundRobin,
            affinity: AffinityConfig::default(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
        }
    }

    /// Rejects settings the router cannot run with, saying what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            return Err(ConfigError("no backends: give at least one `--backend NAME=ADDR`".into()));
        }
        let mut names = std::collections::HashSet::new();
        for b in &self.backends {
            if b.name.is_empty() {
                return Err(ConfigError(format!("backend {} has an empty name", b.addr)));
            }
            if !names.insert(b.name.as_str()) {
                return Err(ConfigError(format!(
                    "backend name `{}` is used twice: names identify backends in the affinity table and must be unique",
                    b.name
                )));
            }
        }
        if self.backends.iter().all(|b| b.weight == 0) {
            return Err(ConfigError("every backend has weight 0: no client could be placed".into()));
        }
        let t = &self.timeouts;
        for (what, d) in [
            ("hello timeout", t.hello),
            ("connect timeout", t.connect),
            ("first-byte timeout", t.first_byte),
            ("idle timeout", t.idle),
        ] {
            if d.is_zero() {
                return Err(ConfigError(format!("{what} is zero: every connection would fail")));
            }
        }
        let a = &self.affinity;
        if a.inactivity_timeout.is_zero() {
            return Err(ConfigError("affinity timeout is zero: nothing would ever stick".into()));
        }
        if let Some(max) = a.absolute_max {
            if max < a.inactivity_timeout {
                return Err(ConfigError(format!(
                    "affinity absolute maximum ({}) is shorter than the inactivity timeout ({}): raise it or drop it",
                    format_duration(max),
                    format_duration(a.inactivity_timeout)
                )));
            }
        }
        if a.table_size == 0 || a.clients_tracked == 0 {
            return Err(ConfigError("affinity table size must be at least 1".into()));
        }
        if a.ipv4_prefix == 0 || a.ipv4_prefix > 32 || a.ipv6_prefix == 0 || a.ipv6_prefix > 128 {
            return Err(ConfigError(
                "client prefix lengths must be 1..=32 for IPv4 and 1..=128 for IPv6".into(),
            ));
        }
        if self.limits.max_hello_bytes < 512 {
            return Err(ConfigError(
                "hello byte budget below 512 bytes would reject ordinary ClientHellos".into(),
            ));
        }
        if self.limits.max_connections == 0 || self.limits.max_inspecting_per_ip == 0 {
            return Err(ConfigError("connection limits must be at least 1".into()));
        }
        Ok(())
    }
}

/// Parses `NAME=HOST:PORT`.
pub fn parse_backend(s: &str) -> Result<BackendConfig, ConfigError> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| ConfigError(format!("backend `{s}`: expected NAME=ADDR, e.g. a=127.0.0.1:9443")))?;
    let addr = addr
        .parse()
        .map_err(|_| ConfigError(format!("backend `{s}`: `{addr}` is not an IP:PORT address")))?;
    Ok(BackendConfig { name: name.to_string(), addr, weight: 1 })
}

/// Parses durations like `500ms`, `5s`, `30m`, `2h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| ConfigError(format!("duration `{s}`: expected a number and a unit, e.g. 5s or 30m")))?;
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
        _ => Err(ConfigError(format!("duration `{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"))),
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
        let b = |n: &str| BackendConfig { name: n.into(), addr, weight: 1 };
        let mut cfg = RouterConfig::new(addr, vec![b("a"), b("a")]);
        assert!(cfg.validate().unwrap_err().0.contains("used twice"));
        cfg.backends = vec![b("a")];
        assert!(cfg.validate().is_ok());
        cfg.affinity.absolute_max = Some(Duration::from_secs(1));
        assert!(cfg.validate().unwrap_err().0.contains("absolute maximum"));
    }
}
