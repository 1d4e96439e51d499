//! The rules a configuration must follow, each written once:
//! [`Config::validate`] checks them all for every source of settings.

use super::error::{ConfigError, ConfigErrors, Rule};
use super::path::{
    AdminKey, AffinityKey, BackendKey, ConfigPath, HealthKey, ListenerKey, LogKey, PoolKey,
    ProcessKey, StoreKey, TimeoutKey,
};
use super::{
    AdminConfig, Config, HealthCheck, ListenerConfig, MIN_TOKEN_LEN, NonTls, PoolConfig,
    StoreConfig, StoreKind, is_sni_pattern,
};

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
        // A shutdown_timeout of zero is allowed: it closes open connections
        // at once, as a stop without draining.
        if let Some(state) = &self.lifecycle.state {
            let at = ConfigPath::Process;
            if state.file.as_os_str().is_empty() {
                errors.push(ConfigError::new(at(ProcessKey::StateFile), Rule::EmptyPath));
            }
            if state.interval.is_zero() {
                errors.push(ConfigError::new(at(ProcessKey::StateInterval), Rule::Zero));
            }
        }

        self.store.check(&mut errors);

        if let Some(path) = &self.lifecycle.takeover_socket {
            if path.as_os_str().is_empty() {
                errors.push(ConfigError::new(
                    ConfigPath::Process(ProcessKey::TakeoverSocket),
                    Rule::EmptyPath,
                ));
            }
        }

        if let Some(a) = &self.admin {
            a.check(&mut errors);
        }
        let rate = i128::from(self.log.connections_per_second);
        let at = ConfigPath::Log(LogKey::ConnectionsPerSecond);
        if at.int_range().is_some_and(|r| rate > r.max) {
            errors.push(ConfigError::new(at, Rule::OutOfRange { value: rate }));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

impl AdminConfig {
    fn check(&self, errors: &mut Vec<ConfigError>) {
        let mut push = |key, rule| errors.push(ConfigError::new(ConfigPath::Admin(key), rule));
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

        let h = &self.health;
        let health = |key| at(PoolKey::Health(key));
        for (key, d) in [
            (HealthKey::Interval, h.interval),
            (HealthKey::Timeout, h.timeout),
        ] {
            if d.is_zero() {
                errors.push(ConfigError::new(health(key), Rule::Zero));
            }
        }
        if !h.interval.is_zero() && h.timeout > h.interval {
            let rule = Rule::HealthTimeoutAboveInterval {
                timeout: h.timeout,
                interval: h.interval,
            };
            errors.push(ConfigError::new(health(HealthKey::Timeout), rule));
        }
        check_range(health(HealthKey::Rise), h.rise.into(), errors);
        check_range(health(HealthKey::Fall), h.fall.into(), errors);
        if let Some(name) = &h.sni {
            // A server name is a host name: no wildcard, no trailing dot
            // (RFC 6066 3).
            if name.starts_with("*.") || name.ends_with('.') || !is_sni_pattern(name) {
                let name = name.clone();
                errors.push(ConfigError::new(
                    health(HealthKey::Sni),
                    Rule::BadHealthSni { name },
                ));
            } else if h.check != HealthCheck::Tls {
                let check = h.check.as_str();
                errors.push(ConfigError::new(
                    health(HealthKey::Sni),
                    Rule::HealthSniWithoutTls { check },
                ));
            }
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

impl StoreConfig {
    fn check(&self, errors: &mut Vec<ConfigError>) {
        let at = ConfigPath::Store;
        if self.kind.is_redis() {
            if self.urls.is_empty() {
                errors.push(ConfigError::new(
                    at(StoreKey::Section),
                    Rule::StoreWithoutUrl { kind: self.kind },
                ));
            }
            // A single server uses the first; a cluster tries each.
            let used = match self.kind {
                StoreKind::RedisCluster => &self.urls[..],
                _ => &self.urls[..self.urls.len().min(1)],
            };
            for url in used {
                match super::parse_redis_url(url) {
                    Err(e) => errors.push(ConfigError::new(at(StoreKey::Url), Rule::Value(e))),
                    Ok(_) if self.kind == StoreKind::RedisCluster && names_a_database(url) => {
                        errors.push(ConfigError::new(at(StoreKey::Url), Rule::ClusterDatabase));
                    }
                    Ok(_) => {}
                }
            }
            if self.tls_ca_file.is_some() && !used.iter().any(|u| u.starts_with("rediss://")) {
                errors.push(ConfigError::new(
                    at(StoreKey::TlsCaFile),
                    Rule::StoreCaWithoutTls,
                ));
            }
        }
        if self.prefix.len() > StoreConfig::MAX_PREFIX {
            let len = self.prefix.len();
            errors.push(ConfigError::new(
                at(StoreKey::Prefix),
                Rule::StorePrefixTooLong { len },
            ));
        }
        if self.timeout.is_zero() {
            errors.push(ConfigError::new(at(StoreKey::Timeout), Rule::Zero));
        }
        if let Some(r) = at(StoreKey::Queue).int_range() {
            let q = self.queue as i128;
            if q < r.min || q > r.max {
                errors.push(ConfigError::new(
                    at(StoreKey::Queue),
                    Rule::OutOfRange { value: q },
                ));
            }
        }
    }
}

/// Whether a Redis URL selects a database other than 0.
fn names_a_database(url: &str) -> bool {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .is_ok_and(|i| i.redis_settings().db() != 0)
}
