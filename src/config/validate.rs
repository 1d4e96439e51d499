//! The rules a configuration must follow, each written once:
//! [`Config::validate`] checks them all for every source of settings.

use std::path::Path;
use std::time::Duration;

use super::error::{ConfigError, ConfigErrors, Rule};
use super::path::{
    AdminKey, AffinityKey, BackendKey, ConfigPath, HealthKey, ListenerKey, LogKey, PoolKey,
    ProcessKey, StoreKey, TimeoutKey,
};
use super::{
    AdminConfig, Config, HealthCheck, ListenerConfig, MIN_TOKEN_LEN, NonTls, PoolConfig,
    StoreConfig, StoreKind, is_sni_pattern,
};

/// The errors found so far, with the checks every section shares.
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, at: ConfigPath, rule: Rule) {
        self.0.push(ConfigError::new(at, rule));
    }

    /// A duration that must be above zero.
    fn zero(&mut self, at: ConfigPath, d: Duration) {
        if d.is_zero() {
            self.push(at, Rule::Zero);
        }
    }

    /// A file path setting that must not be empty.
    fn empty(&mut self, at: ConfigPath, path: &Path) {
        if path.as_os_str().is_empty() {
            self.push(at, Rule::EmptyPath);
        }
    }

    /// An integer setting against its [`ConfigPath::int_range`].
    fn range(&mut self, at: ConfigPath, value: impl TryInto<i128>) {
        let value = value.try_into().unwrap_or(i128::MAX);
        if at
            .int_range()
            .is_some_and(|r| !(r.min..=r.max).contains(&value))
        {
            self.push(at, Rule::OutOfRange { value });
        }
    }
}

impl Config {
    /// Checks every rule and returns every error, so that one run shows
    /// the operator all there is to fix. The router runs only a `Config`
    /// this accepts.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Errors(Vec::new());
        if self.listeners.is_empty() {
            errors.push(ConfigPath::Root, Rule::NoListener);
        }
        if self.pools.is_empty() {
            errors.push(ConfigPath::Root, Rule::NoPool);
        }
        let mut pool_names = std::collections::HashSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            let at = ConfigPath::Pool(i, PoolKey::Section);
            if p.name.trim().is_empty() {
                errors.push(at, Rule::EmptyName);
            } else if !pool_names.insert(p.name.as_str()) {
                let name = p.name.clone();
                errors.push(at, Rule::DuplicatePoolName { name });
            }
            p.check(i, &mut errors);
        }
        let defined: Vec<String> = self.pools.iter().map(|p| p.name.clone()).collect();
        for (i, l) in self.listeners.iter().enumerate() {
            l.check(i, &self.listeners[..i], &defined, &mut errors);
        }
        // A shutdown_timeout of zero is allowed: it closes open connections
        // at once, as a stop without draining.
        let at = ConfigPath::Process;
        if let Some(state) = &self.lifecycle.state {
            errors.empty(at(ProcessKey::StateFile), &state.file);
            errors.zero(at(ProcessKey::StateInterval), state.interval);
        }
        self.store.check(&mut errors);
        if let Some(path) = &self.lifecycle.takeover_socket {
            errors.empty(at(ProcessKey::TakeoverSocket), path);
        }
        if let Some(a) = &self.admin {
            a.check(&mut errors);
        }
        let rate = self.log.connections_per_second;
        errors.range(ConfigPath::Log(LogKey::ConnectionsPerSecond), rate);
        match errors.0.is_empty() {
            true => Ok(()),
            false => Err(ConfigErrors(errors.0)),
        }
    }
}

impl AdminConfig {
    fn check(&self, errors: &mut Errors) {
        let mut push = |key, rule| errors.push(ConfigPath::Admin(key), rule);
        match self.token.as_deref() {
            None if !self.bind.ip().is_loopback() => {
                push(AdminKey::Bind, Rule::AdminWithoutToken { bind: self.bind })
            }
            None if self.token_for_reads => {
                push(AdminKey::TokenForReads, Rule::TokenForReadsWithoutToken)
            }
            Some(t) if t.len() < MIN_TOKEN_LEN => {
                push(AdminKey::Token, Rule::TokenTooShort { len: t.len() })
            }
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                push(AdminKey::Token, Rule::TokenNotPrintable)
            }
            _ => {}
        }
        for name in &self.allowed_hosts {
            if !is_allowed_host(name) {
                let name = name.clone();
                push(AdminKey::AllowedHosts, Rule::BadAllowedHost { name });
            }
        }
    }
}

/// What `[admin] allowed_hosts` takes: a host name (letters, digits, `-`,
/// `_`, dot-separated labels, a final dot allowed) or an IP address, an
/// IPv6 one with or without brackets.
fn is_allowed_host(s: &str) -> bool {
    match s.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            s.parse::<std::net::IpAddr>().is_ok() || (!s.starts_with("*.") && is_sni_pattern(s))
        }
    }
}

impl ListenerConfig {
    /// `earlier`: the listeners before this one, for names and addresses
    /// used twice.
    fn check(&self, l: usize, earlier: &[ListenerConfig], pools: &[String], errors: &mut Errors) {
        let at = |key| ConfigPath::Listener(l, key);
        if self.name.trim().is_empty() {
            errors.push(at(ListenerKey::Name), Rule::EmptyName);
        } else if let Some(first) = earlier.iter().position(|e| e.name == self.name) {
            let name = self.name.clone();
            errors.push(
                at(ListenerKey::Name),
                Rule::DuplicateListenerName { name, first },
            );
        }
        // Port 0 asks the system for any free port, so two never clash.
        let clash = |e: &ListenerConfig| e.bind == self.bind && self.bind.port() != 0;
        if let Some(first) = earlier.iter().position(clash) {
            let first_name = earlier[first].name.clone();
            let rule = Rule::DuplicateBind {
                addr: self.bind,
                first_name,
                first,
            };
            errors.push(at(ListenerKey::Bind), rule);
        }
        if self.proxy_protocol && self.proxy_trusted.is_empty() {
            errors.push(at(ListenerKey::ProxyProtocol), Rule::ProxyWithoutTrusted);
        }
        let mut reference = |key, referrer: String, name: &str| {
            if !pools.iter().any(|p| p == name) {
                let (name, defined) = (name.to_string(), pools.to_vec());
                errors.push(
                    at(key),
                    Rule::UndefinedPool {
                        referrer,
                        name,
                        defined,
                    },
                );
            }
        };
        reference(
            ListenerKey::DefaultPool,
            "default_pool".into(),
            &self.default_pool,
        );
        for (i, r) in self.sni.iter().enumerate() {
            let referrer = format!("SNI rule `{}`", r.pattern);
            reference(ListenerKey::SniPool(i), referrer, &r.pool);
        }
        if let NonTls::Pool(p) = &self.non_tls {
            reference(ListenerKey::NonTls, "non_tls".into(), p);
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, r) in self.sni.iter().enumerate() {
            let at = at(ListenerKey::SniPattern(i));
            let pattern = r.pattern.clone();
            if !is_sni_pattern(&r.pattern) {
                errors.push(at, Rule::BadSniPattern { pattern });
                seen.push(String::new());
                continue;
            }
            // Matching ignores case and a trailing dot, so these two would
            // be one rule and the later would silently win.
            let normal = r.pattern.trim_end_matches('.').to_ascii_lowercase();
            if let Some(first) = seen.iter().position(|s| *s == normal) {
                let first_pattern = self.sni[first].pattern.clone();
                let rule = Rule::DuplicateSniPattern {
                    pattern,
                    first_pattern,
                    first,
                };
                errors.push(at, rule);
            }
            seen.push(normal);
        }
        let limits = &self.limits;
        errors.range(at(ListenerKey::MaxConnections), limits.max_connections);
        // Above max_connections it is allowed and simply never reached.
        if let Some(n) = limits.max_connections_per_client {
            errors.range(at(ListenerKey::MaxConnectionsPerClient), n);
        }
        errors.range(
            at(ListenerKey::MaxInspectingPerIp),
            limits.max_inspecting_per_ip,
        );
        errors.range(at(ListenerKey::MaxHelloBytes), limits.max_hello_bytes);
    }
}

impl PoolConfig {
    fn check(&self, p: usize, errors: &mut Errors) {
        let pool = self.name.clone();
        let at = |key| ConfigPath::Pool(p, key);
        if self.backends.is_empty() {
            errors.push(
                at(PoolKey::Backends),
                Rule::NoBackends { pool: pool.clone() },
            );
        } else if self.backends.iter().all(|b| b.weight == 0) {
            errors.push(
                at(PoolKey::Backends),
                Rule::AllWeightsZero { pool: pool.clone() },
            );
        }
        for (i, b) in self.backends.iter().enumerate() {
            let at = |key| ConfigPath::Backend {
                pool: p,
                backend: i,
                key,
            };
            if b.name.trim().is_empty() {
                errors.push(at(BackendKey::Name), Rule::EmptyName);
            } else if let Some(first) = self.backends[..i].iter().position(|e| e.name == b.name) {
                let (name, pool) = (b.name.clone(), pool.clone());
                let rule = Rule::DuplicateBackendName { name, pool, first };
                errors.push(at(BackendKey::Name), rule);
            }
            errors.range(at(BackendKey::Weight), b.weight);
            if let Some(max) = b.max_connections {
                errors.range(at(BackendKey::MaxConnections), max);
            }
        }

        let (t, a) = (&self.timeouts, &self.affinity);
        errors.zero(at(PoolKey::Timeout(TimeoutKey::Hello)), t.hello);
        errors.zero(at(PoolKey::Timeout(TimeoutKey::Connect)), t.connect);
        errors.zero(at(PoolKey::Timeout(TimeoutKey::FirstByte)), t.first_byte);
        errors.zero(at(PoolKey::Timeout(TimeoutKey::Idle)), t.idle);
        let affinity = |key| at(PoolKey::Affinity(key));
        errors.zero(affinity(AffinityKey::Timeout), a.inactivity_timeout);
        // The client index works in whole seconds: zero would not turn
        // correlation off.
        errors.zero(
            affinity(AffinityKey::CorrelationWindow),
            a.correlation_window,
        );
        if let Some(max) = a.absolute_max.filter(|max| *max < a.inactivity_timeout) {
            let rule = Rule::AbsoluteMaxBelowTimeout {
                max,
                timeout: a.inactivity_timeout,
            };
            errors.push(affinity(AffinityKey::AbsoluteMax), rule);
        }
        errors.range(affinity(AffinityKey::TableSize), a.table_size);
        errors.range(affinity(AffinityKey::ClientsTracked), a.clients_tracked);
        errors.range(affinity(AffinityKey::NatThreshold), a.nat_threshold);
        errors.range(affinity(AffinityKey::Ipv4Prefix), a.ipv4_prefix);
        errors.range(affinity(AffinityKey::Ipv6Prefix), a.ipv6_prefix);

        let h = &self.health;
        let health = |key| at(PoolKey::Health(key));
        errors.zero(health(HealthKey::Interval), h.interval);
        errors.zero(health(HealthKey::Timeout), h.timeout);
        if !h.interval.is_zero() && h.timeout > h.interval {
            let rule = Rule::HealthTimeoutAboveInterval {
                timeout: h.timeout,
                interval: h.interval,
            };
            errors.push(health(HealthKey::Timeout), rule);
        }
        errors.range(health(HealthKey::Rise), h.rise);
        errors.range(health(HealthKey::Fall), h.fall);
        if let Some(name) = &h.sni {
            // A server name is a host name: no wildcard, no trailing dot
            // (RFC 6066 3).
            if name.starts_with("*.") || name.ends_with('.') || !is_sni_pattern(name) {
                let name = name.clone();
                errors.push(health(HealthKey::Sni), Rule::BadHealthSni { name });
            } else if h.check != HealthCheck::Tls {
                let check = h.check.as_str();
                errors.push(health(HealthKey::Sni), Rule::HealthSniWithoutTls { check });
            }
        }
    }
}

impl StoreConfig {
    fn check(&self, errors: &mut Errors) {
        let at = ConfigPath::Store;
        if self.kind.is_redis() {
            if self.urls.is_empty() {
                errors.push(
                    at(StoreKey::Section),
                    Rule::StoreWithoutUrl { kind: self.kind },
                );
            }
            // A single server uses the first; a cluster tries each.
            let used = match self.kind {
                StoreKind::RedisCluster => &self.urls[..],
                _ => &self.urls[..self.urls.len().min(1)],
            };
            for url in used {
                match super::parse_redis_url(url) {
                    Err(e) => errors.push(at(StoreKey::Url), Rule::Value(e)),
                    Ok(_) if self.kind == StoreKind::RedisCluster && names_a_database(url) => {
                        errors.push(at(StoreKey::Url), Rule::ClusterDatabase);
                    }
                    Ok(_) => {}
                }
            }
            if self.tls_ca_file.is_some() && !used.iter().any(|u| u.starts_with("rediss://")) {
                errors.push(at(StoreKey::TlsCaFile), Rule::StoreCaWithoutTls);
            }
            // One place for the password: a URL's own beside a file or
            // the environment would leave which one is used to a rule
            // nobody remembers.
            let in_url = used.iter().any(|u| super::url_has_password(u));
            match self.password() {
                Err(reason) => {
                    errors.push(at(StoreKey::PasswordFile), Rule::StorePassword { reason })
                }
                Ok(Some(_)) if in_url => {
                    let key = if self.password_file.is_some() {
                        StoreKey::PasswordFile
                    } else {
                        StoreKey::Url
                    };
                    errors.push(at(key), Rule::StorePasswordTwice);
                }
                Ok(_) => {}
            }
        }
        if self.prefix.len() > StoreConfig::MAX_PREFIX {
            let len = self.prefix.len();
            errors.push(at(StoreKey::Prefix), Rule::StorePrefixTooLong { len });
        }
        errors.zero(at(StoreKey::Timeout), self.timeout);
        errors.range(at(StoreKey::Queue), self.queue);
    }
}

/// Whether a Redis URL selects a database other than 0.
fn names_a_database(url: &str) -> bool {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .is_ok_and(|i| i.redis_settings().db() != 0)
}
