//! The TOML configuration file: loading it into [`Config`] and reporting
//! every mistake as `FILE:LINE:COLUMN: error: what is wrong; what to change`.
//!
//! Loading runs in three passes so that one run of `stickytls check` shows
//! the operator as many mistakes as possible:
//! 1. TOML syntax, with the parser's recovery (several syntax errors can be
//!    reported, but nothing after this pass runs if there is one).
//! 2. Shape: each `[[listener]]` and `[pool.NAME]` section is deserialized
//!    on its own, with unknown keys denied, so a typo in one section does
//!    not hide the mistakes in the others.
//! 3. Meaning: addresses, CIDRs, durations, SNI patterns, limits, names and
//!    references between sections, all checked and all reported.
//!
//! The file format is described in docs/configuration.md.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::config::{
    AffinityConfig, BackendConfig, Balance, Cidr, Config, Limits, ListenerConfig, NonTls,
    PoolConfig, SniRoute, Timeouts, format_duration, parse_duration, validate_sni_pattern,
};

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiagnostic {
    pub file: String,
    /// 1-based line and column (in characters) of the offending text;
    /// `None` when the file could not be read at all.
    pub position: Option<(usize, usize)>,
    /// What is wrong, then `; ` and what to change.
    pub message: String,
}

impl fmt::Display for ConfigDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => {
                write!(f, "{}:{line}:{column}: error: {}", self.file, self.message)
            }
            None => write!(f, "{}: error: {}", self.file, self.message),
        }
    }
}

/// Every mistake found in a configuration file, in the order they appear
/// in it. Displays one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigDiagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and loads the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) => Err(ConfigErrors(vec![ConfigDiagnostic {
            file,
            position: None,
            message: format!(
                "cannot read the configuration file: {e}; check the path and its permissions"
            ),
        }])),
    }
}

/// Loads a configuration from `text`; `file_name` is only used in messages.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    let mut report = Report { errors: Vec::new() };
    let config = load_text(text, &mut report);
    if report.errors.is_empty() {
        if let Some(config) = config {
            // Every rule of `Config::validate` is checked above with a
            // position; this catches a rule added there and not here.
            match config.validate() {
                Ok(()) => return Ok(config),
                Err(e) => report.error(0..0, format!("{e}; see docs/configuration.md")),
            }
        }
    }
    report.errors.sort_by_key(|(span, _)| span.start);
    let errors = report
        .errors
        .into_iter()
        .map(|(span, message)| ConfigDiagnostic {
            file: file_name.to_string(),
            position: Some(line_column(text, span.start)),
            message,
        })
        .collect();
    Err(ConfigErrors(errors))
}

/// 1-based line and column (counted in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Mistakes found so far, each at a byte span of the file.
struct Report {
    errors: Vec<(Range<usize>, String)>,
}

impl Report {
    fn error(&mut self, span: Range<usize>, message: String) {
        self.errors.push((span, message));
    }

    /// A deserialization error from the toml crate, reworded to say what
    /// to change; `fallback` locates errors that carry no span.
    fn toml(&mut self, e: &toml::de::Error, text: &str, fallback: Range<usize>) {
        let msg = e.message().trim_end();
        let span = e.span().unwrap_or(fallback);
        let message = if let Some(rest) = msg.strip_prefix("unknown field ") {
            format!("unknown setting {rest}; fix its spelling or remove it")
        } else if msg.starts_with("invalid type") {
            // Integers are read as i64 and range-checked later.
            let msg = msg.replace("expected i64", "expected an integer");
            format!("{msg}; change the value to that type")
        } else if msg.starts_with("duplicate key") {
            let key = text.get(span.clone()).unwrap_or("").trim();
            format!(
                "`{key}` is defined twice; each key, listener name and pool may appear only once, so remove or rename one"
            )
        } else {
            format!("{msg}; fix the TOML syntax here")
        };
        self.error(span, message);
    }
}

// ---------------------------------------------------------------------------
// The file's shape. Values that need checking beyond their TOML type are
// kept as strings or i64 with their span, so pass 3 can report all of them.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerFile {
    name: Option<Spanned<String>>,
    bind: Option<Spanned<String>>,
    proxy_protocol: Option<Spanned<bool>>,
    proxy_trusted: Option<Vec<Spanned<String>>>,
    default_pool: Option<Spanned<String>>,
    non_tls: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    max_inspecting_per_ip: Option<Spanned<i64>>,
    max_hello_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    sni: SniRules,
}

/// `[listener.sni]`: pattern → pool, in file order (a map would sort them
/// and lose the patterns' positions).
#[derive(Debug, Default)]
struct SniRules(Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for SniRules {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RulesVisitor;
        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = SniRules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of \"host name\" = \"pool\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SniRules, A::Error> {
                let mut rules = Vec::new();
                while let Some(rule) = map.next_entry()? {
                    rules.push(rule);
                }
                Ok(SniRules(rules))
            }
        }
        d.deserialize_map(RulesVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    balance: Option<Spanned<String>>,
    inspect: Option<bool>,
    backends: Option<Spanned<Vec<Spanned<BackendFile>>>>,
    #[serde(default)]
    affinity: AffinityFile,
    #[serde(default)]
    timeouts: TimeoutsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    name: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AffinityFile {
    timeout: Option<Spanned<String>>,
    absolute_max: Option<Spanned<String>>,
    table_size: Option<Spanned<i64>>,
    correlation_window: Option<Spanned<String>>,
    nat_threshold: Option<Spanned<i64>>,
    ipv4_prefix: Option<Spanned<i64>>,
    ipv6_prefix: Option<Spanned<i64>>,
    clients_tracked: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsFile {
    hello: Option<Spanned<String>>,
    connect: Option<Spanned<String>>,
    first_byte: Option<Spanned<String>>,
    idle: Option<Spanned<String>>,
    down_hold: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// Passes 1 and 2.

/// Returns the configuration if it could be built; mistakes go to `report`
/// (a `Some` is only trusted when `report` stayed empty).
fn load_text(text: &str, report: &mut Report) -> Option<Config> {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            report.toml(e, text, 0..0);
        }
        return None;
    }
    let root_span = root.span();
    let mut listeners = Vec::new();
    let mut pools = Vec::new();
    // Every pool named in the file, even one whose section has mistakes, so
    // a reference to it is not also reported as undefined.
    let mut pool_names: Vec<String> = Vec::new();
    let mut saw_listener = false;
    let mut saw_pool = false;
    for (key, value) in root.into_inner() {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "listener" => {
                saw_listener = true;
                let DeValue::Array(items) = value.get_ref() else {
                    report.error(
                        value.span(),
                        "`listener` must be an array of tables; write each listener as a [[listener]] section"
                            .to_string(),
                    );
                    continue;
                };
                for item in items.iter() {
                    let span = item.span();
                    if !item.get_ref().is_table() {
                        report.error(span, "a listener must be a table; write it as a [[listener]] section".into());
                        continue;
                    }
                    match Spanned::<ListenerFile>::deserialize(ValueDeserializer::from(item.clone())) {
                        Ok(l) => listeners.push(l),
                        Err(e) => report.toml(&e, text, span),
                    }
                }
            }
            "pool" => {
                saw_pool = true;
                let DeValue::Table(table) = value.get_ref() else {
                    report.error(
                        value.span(),
                        "`pool` must be a table of pools; write each pool as a [pool.NAME] section".to_string(),
                    );
                    continue;
                };
                for (name, body) in table.iter() {
                    pool_names.push(name.get_ref().to_string());
                    if !body.get_ref().is_table() {
                        report.error(
                            body.span(),
                            format!("pool `{}` must be a table; write it as a [pool.{}] section", name.get_ref(), name.get_ref()),
                        );
                        continue;
                    }
                    match PoolFile::deserialize(ValueDeserializer::from(body.clone())) {
                        Ok(p) => pools.push((Spanned::new(name.span(), name.get_ref().to_string()), p)),
                        Err(e) => report.toml(&e, text, name.span()),
                    }
                }
            }
            other => report.error(
                key_span,
                format!(
                    "unknown top-level setting `{other}`; the file holds only [[listener]] and [pool.NAME] sections, so move it into one or remove it"
                ),
            ),
        }
    }
    if !saw_listener {
        report.error(
            root_span.start..root_span.start,
            "no [[listener]] section, so nothing would accept connections; add one with `bind` and `default_pool`"
                .to_string(),
        );
    }
    if !saw_pool {
        report.error(
            root_span.start..root_span.start,
            "no [pool.NAME] section, so there is nowhere to send connections; add one with `backends`".to_string(),
        );
    }

    // Pass 3.
    let pools: Vec<PoolConfig> = pools
        .into_iter()
        .filter_map(|(name, p)| check_pool(name, p, report))
        .collect();
    let known = PoolNames(pool_names);
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut binds: HashMap<SocketAddr, String> = HashMap::new();
    let mut built = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        if let Some(l) = check_listener(i, l, &known, &mut names, &mut binds, text, report) {
            built.push(l);
        }
    }
    Some(Config {
        listeners: built,
        pools,
        admin: None,
        log: Default::default(),
    })
}

/// The pool names defined in the file, for reference checks.
struct PoolNames(Vec<String>);

impl PoolNames {
    /// Reports `name` at its span if no `[pool.NAME]` defines it;
    /// `alternative` offers another value the setting accepts.
    fn check(&self, what: &str, name: &Spanned<String>, alternative: &str, report: &mut Report) {
        if self.0.iter().any(|p| p == name.get_ref()) {
            return;
        }
        let fix = if self.0.is_empty() {
            format!("{alternative}add a [pool.{}] section", name.get_ref())
        } else {
            format!(
                "{alternative}add a [pool.{}] section or use one of: {}",
                name.get_ref(),
                self.0.join(", ")
            )
        };
        report.error(
            name.span(),
            format!(
                "{what} names pool `{}`, which is not defined; {fix}",
                name.get_ref()
            ),
        );
    }
}

// ---------------------------------------------------------------------------
// Pass 3: meaning.

fn check_listener(
    index: usize,
    l: Spanned<ListenerFile>,
    pools: &PoolNames,
    names: &mut HashMap<String, usize>,
    binds: &mut HashMap<SocketAddr, String>,
    text: &str,
    report: &mut Report,
) -> Option<ListenerConfig> {
    let span = l.span();
    let l = l.into_inner();
    let before = report.errors.len();
    let name = match &l.name {
        Some(n) if n.get_ref().trim().is_empty() => {
            report.error(
                n.span(),
                "listener name is empty; give it a name or remove the `name` line".into(),
            );
            String::new()
        }
        Some(n) => {
            if let Some(&other) = names.get(n.get_ref()) {
                report.error(
                    n.span(),
                    format!(
                        "listener name `{}` is already used by the listener at line {}; give each listener its own name",
                        n.get_ref(),
                        line_column(text, other).0
                    ),
                );
            } else {
                names.insert(n.get_ref().clone(), n.span().start);
            }
            n.get_ref().clone()
        }
        None => format!("listener-{}", index + 1),
    };

    let bind = match &l.bind {
        None => {
            report.error(
                span.clone(),
                format!("listener `{name}` has no `bind` address; add e.g. bind = \"0.0.0.0:443\""),
            );
            None
        }
        Some(b) => match b.get_ref().parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some(other) = binds.get(&addr) {
                    report.error(
                        b.span(),
                        format!("bind address {addr} is already used by listener `{other}`; give each listener its own address or port"),
                    );
                } else {
                    binds.insert(addr, name.clone());
                }
                Some(addr)
            }
            Err(_) => {
                report.error(
                    b.span(),
                    format!(
                        "`{}` is not an IP:PORT address; write e.g. \"0.0.0.0:443\" or \"[::]:443\" (host names are not resolved)",
                        b.get_ref()
                    ),
                );
                None
            }
        },
    };

    let mut proxy_trusted = Vec::new();
    for c in l.proxy_trusted.iter().flatten() {
        match c.get_ref().parse::<Cidr>() {
            Ok(cidr) => proxy_trusted.push(cidr),
            Err(_) => report.error(
                c.span(),
                format!(
                    "`{}` is not a network in CIDR notation; write e.g. \"10.0.0.0/8\", \"2001:db8::/32\" or a single address",
                    c.get_ref()
                ),
            ),
        }
    }
    let proxy_protocol = l.proxy_protocol.as_ref().is_some_and(|p| *p.get_ref());
    if let Some(p) = &l.proxy_protocol {
        if *p.get_ref() && l.proxy_trusted.as_ref().is_none_or(|t| t.is_empty()) {
            report.error(
                p.span(),
                "proxy_protocol is on but proxy_trusted is empty, so every connection would be closed; list the proxies' networks in proxy_trusted, e.g. proxy_trusted = [\"10.0.0.0/8\"]".into(),
            );
        }
    }

    let default_pool = match &l.default_pool {
        Some(p) => {
            pools.check("default_pool", p, "", report);
            p.get_ref().clone()
        }
        None => {
            report.error(
                span.clone(),
                format!("listener `{name}` has no `default_pool`; add default_pool = \"NAME\" naming the pool for connections no SNI rule matches"),
            );
            String::new()
        }
    };

    let mut sni = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (pattern, pool) in &l.sni.0 {
        match validate_sni_pattern(pattern.get_ref()) {
            Ok(()) => {
                // Matching ignores case and a trailing dot, so these two
                // would be one rule and the later would silently win.
                let normal = pattern.get_ref().trim_end_matches('.').to_ascii_lowercase();
                if let Some(first) = seen.get(&normal) {
                    report.error(
                        pattern.span(),
                        format!(
                            "SNI pattern `{}` is the same name as `{first}` (matching ignores case and a trailing dot); keep one of them",
                            pattern.get_ref()
                        ),
                    );
                } else {
                    seen.insert(normal, pattern.get_ref().clone());
                }
            }
            Err(_) => report.error(
                pattern.span(),
                format!(
                    "SNI pattern `{}` is not a host name or `*.` followed by one; write e.g. \"api.example.com\" or \"*.example.com\" (a wildcard covers exactly one leading label)",
                    pattern.get_ref()
                ),
            ),
        }
        pools.check(
            &format!("SNI rule `{}`", pattern.get_ref()),
            pool,
            "",
            report,
        );
        sni.push(SniRoute {
            pattern: pattern.get_ref().clone(),
            pool: pool.get_ref().clone(),
        });
    }

    let non_tls = match &l.non_tls {
        None => NonTls::Reject,
        Some(v) if v.get_ref() == "reject" => NonTls::Reject,
        Some(v) => {
            pools.check("non_tls", v, "write \"reject\", ", report);
            NonTls::Pool(v.get_ref().clone())
        }
    };

    let defaults = Limits::default();
    let limits = Limits {
        max_connections: int(
            &l.max_connections,
            defaults.max_connections,
            1,
            "max_connections",
            report,
        ),
        max_inspecting_per_ip: int(
            &l.max_inspecting_per_ip,
            defaults.max_inspecting_per_ip,
            1,
            "max_inspecting_per_ip",
            report,
        ),
        max_hello_bytes: match &l.max_hello_bytes {
            // The generic range message would not say why 512.
            Some(v) if (0..512).contains(v.get_ref()) => {
                report.error(
                    v.span(),
                    format!(
                        "max_hello_bytes {} would reject ordinary ClientHellos; set it to 512 or more (default 16384)",
                        v.get_ref()
                    ),
                );
                defaults.max_hello_bytes
            }
            v => int(v, defaults.max_hello_bytes, 512, "max_hello_bytes", report),
        },
    };

    if report.errors.len() > before {
        return None;
    }
    Some(ListenerConfig {
        name,
        bind: bind?,
        proxy_protocol,
        proxy_trusted,
        sni,
        default_pool,
        non_tls,
        limits,
    })
}

fn check_pool(name: Spanned<String>, p: PoolFile, report: &mut Report) -> Option<PoolConfig> {
    let before = report.errors.len();
    let pool = name.get_ref().clone();
    if pool.trim().is_empty() {
        report.error(
            name.span(),
            "pool name is empty; give the pool a name, as in [pool.web]".into(),
        );
    }

    let balance = match &p.balance {
        None => Balance::RoundRobin,
        Some(b) => b.get_ref().parse::<Balance>().unwrap_or_else(|_| {
            report.error(
                b.span(),
                format!(
                    "unknown balancer `{}`; use \"roundrobin\", \"weighted-roundrobin\", \"least-connections\" or \"source-hash\"",
                    b.get_ref()
                ),
            );
            Balance::RoundRobin
        }),
    };

    let mut backends = Vec::new();
    match &p.backends {
        None => report.error(
            name.span(),
            format!("pool `{pool}` has no backends; add backends = [{{ name = \"web1\", address = \"10.0.1.1:443\" }}]"),
        ),
        Some(list) if list.get_ref().is_empty() => report.error(
            list.span(),
            format!("pool `{pool}` has no backends; add at least one {{ name = \"...\", address = \"IP:PORT\" }}"),
        ),
        Some(list) => {
            let mut names: HashSet<&str> = HashSet::new();
            for b in list.get_ref() {
                let span = b.span();
                let b = b.get_ref();
                let bname = match &b.name {
                    None => {
                        report.error(
                            span.clone(),
                            "backend has no `name`; add name = \"...\" (names identify backends in the affinity table and must stay stable across reloads)".into(),
                        );
                        None
                    }
                    Some(n) if n.get_ref().trim().is_empty() => {
                        report.error(n.span(), "backend name is empty; give it a name that stays stable across reloads".into());
                        None
                    }
                    Some(n) => {
                        if !names.insert(n.get_ref()) {
                            report.error(
                                n.span(),
                                format!("backend name `{}` is used twice in pool `{pool}`; names identify backends in the affinity table, so give each its own", n.get_ref()),
                            );
                        }
                        Some(n.get_ref().clone())
                    }
                };
                let addr = match &b.address {
                    None => {
                        report.error(span.clone(), "backend has no `address`; add address = \"IP:PORT\"".into());
                        None
                    }
                    Some(a) => a.get_ref().parse::<SocketAddr>().map_err(|_| {
                        report.error(
                            a.span(),
                            format!(
                                "`{}` is not an IP:PORT address; write e.g. \"10.0.1.1:443\" or \"[2001:db8::1]:443\" (host names are not resolved)",
                                a.get_ref()
                            ),
                        );
                    }).ok(),
                };
                let weight = int(&b.weight, 1u32, 0, "weight", report);
                let max_connections = b.max_connections.as_ref().map(|m| {
                    if *m.get_ref() == 0 {
                        report.error(
                            m.span(),
                            "max_connections is 0, so this backend could never be used; raise it or remove the line for no limit".into(),
                        );
                        0
                    } else {
                        int(&b.max_connections, 0u32, 1, "max_connections", report)
                    }
                });
                if let (Some(name), Some(addr)) = (bname, addr) {
                    backends.push(BackendConfig { name, addr, weight, max_connections });
                }
            }
            if list.get_ref().iter().all(|b| b.get_ref().weight.as_ref().is_some_and(|w| *w.get_ref() == 0)) {
                report.error(
                    list.span(),
                    format!("every backend of pool `{pool}` has weight 0, so no client could be placed; give at least one a weight above 0"),
                );
            }
        }
    }

    let d = Timeouts::default();
    let t = &p.timeouts;
    let timeouts = Timeouts {
        hello: duration(&t.hello, d.hello, "timeouts.hello", true, report),
        connect: duration(&t.connect, d.connect, "timeouts.connect", true, report),
        first_byte: duration(
            &t.first_byte,
            d.first_byte,
            "timeouts.first_byte",
            true,
            report,
        ),
        idle: duration(&t.idle, d.idle, "timeouts.idle", true, report),
        down_hold: duration(
            &t.down_hold,
            d.down_hold,
            "timeouts.down_hold",
            false,
            report,
        ),
    };

    let d = AffinityConfig::default();
    let a = &p.affinity;
    let inactivity_timeout = duration(
        &a.timeout,
        d.inactivity_timeout,
        "affinity.timeout",
        true,
        report,
    );
    let absolute_max = a.absolute_max.as_ref().map(|m| {
        let max = duration(&a.absolute_max, inactivity_timeout, "affinity.absolute_max", true, report);
        if max < inactivity_timeout {
            report.error(
                m.span(),
                format!(
                    "affinity.absolute_max ({}) is shorter than affinity.timeout ({}), so entries would expire before they go idle; raise it or remove it",
                    format_duration(max),
                    format_duration(inactivity_timeout)
                ),
            );
        }
        max
    });
    let affinity = AffinityConfig {
        inactivity_timeout,
        absolute_max,
        table_size: int(
            &a.table_size,
            d.table_size,
            1,
            "affinity.table_size",
            report,
        ),
        correlation_window: duration(
            &a.correlation_window,
            d.correlation_window,
            "affinity.correlation_window",
            // The client index works in whole seconds (at least 2): zero
            // would not turn correlation off, so it is not accepted.
            true,
            report,
        ),
        nat_threshold: int(
            &a.nat_threshold,
            d.nat_threshold,
            0,
            "affinity.nat_threshold",
            report,
        ),
        ipv4_prefix: prefix(
            &a.ipv4_prefix,
            d.ipv4_prefix,
            32,
            "affinity.ipv4_prefix",
            report,
        ),
        ipv6_prefix: prefix(
            &a.ipv6_prefix,
            d.ipv6_prefix,
            128,
            "affinity.ipv6_prefix",
            report,
        ),
        clients_tracked: int(
            &a.clients_tracked,
            d.clients_tracked,
            1,
            "affinity.clients_tracked",
            report,
        ),
    };

    if report.errors.len() > before {
        return None;
    }
    Some(PoolConfig {
        name: pool,
        backends,
        balance,
        affinity,
        timeouts,
        inspect: p.inspect.unwrap_or(true),
    })
}

/// An integer setting at least `min` that fits `T`, else `default`.
fn int<T: TryFrom<i64> + Copy + fmt::Display>(
    v: &Option<Spanned<i64>>,
    default: T,
    min: i64,
    what: &str,
    report: &mut Report,
) -> T {
    let Some(v) = v else { return default };
    let n = *v.get_ref();
    match T::try_from(n) {
        Ok(x) if n >= min => x,
        _ if n < min => {
            report.error(
                v.span(),
                format!("{what} is {n}; set it to {min} or more (default {default})"),
            );
            default
        }
        _ => {
            report.error(
                v.span(),
                format!("{what} is {n}, too large; set it lower (default {default})"),
            );
            default
        }
    }
}

/// A client prefix length: 1..=`max` bits.
fn prefix(v: &Option<Spanned<i64>>, default: u8, max: i64, what: &str, report: &mut Report) -> u8 {
    match v {
        Some(p) if !(1..=max).contains(p.get_ref()) => {
            report.error(
                p.span(),
                format!(
                    "{what} is {}, but a prefix length is 1 to {max} bits; use {max} for one address per client",
                    p.get_ref()
                ),
            );
            default
        }
        _ => int(v, default, 1, what, report),
    }
}

/// A duration setting such as "30m"; `nonzero` for timeouts where zero
/// would fail every connection.
fn duration(
    v: &Option<Spanned<String>>,
    default: Duration,
    what: &str,
    nonzero: bool,
    report: &mut Report,
) -> Duration {
    let Some(v) = v else { return default };
    match parse_duration(v.get_ref()) {
        Ok(d) if nonzero && d.is_zero() => {
            report.error(
                v.span(),
                format!("{what} is zero, which would fail every connection or forget every entry at once; set it above zero, e.g. \"{}\"", format_duration(default)),
            );
            default
        }
        Ok(d) => d,
        Err(_) => {
            report.error(
                v.span(),
                format!(
                    "{what} `{}` is not a duration; write a number and a unit (ms, s, m, h or d), e.g. \"{}\"",
                    v.get_ref(),
                    format_duration(default)
                ),
            );
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse(text, "t.toml")
            .unwrap_err()
            .0
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    const MINIMAL: &str = r#"
[[listener]]
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#;

    #[test]
    fn a_full_file_becomes_the_expected_config_values() {
        let text = r#"
[[listener]]
name = "edge"
bind = "[::]:443"
proxy_protocol = true
proxy_trusted = ["10.0.0.0/8", "2001:db8::1"]
default_pool = "web"
non_tls = "plain"
max_connections = 500
max_inspecting_per_ip = 8
max_hello_bytes = 4096
[listener.sni]
"api.example.com" = "api"
"*.example.com" = "web"

[pool.web]
balance = "weighted-roundrobin"
backends = [
  { name = "w1", address = "10.0.1.1:443", weight = 3, max_connections = 100 },
  { name = "w2", address = "[2001:db8::2]:8443", weight = 0 },
]
[pool.web.affinity]
timeout = "45m"
absolute_max = "1d"
table_size = 5000
correlation_window = "90s"
nat_threshold = 0
ipv4_prefix = 24
ipv6_prefix = 56
clients_tracked = 700
[pool.web.timeouts]
hello = "250ms"
connect = "2s"
first_byte = "7s"
idle = "1h"
down_hold = "0s"

[pool.api]
balance = "source-hash"
inspect = false
backends = [{ name = "a1", address = "10.0.2.1:443" }]

[pool.plain]
backends = [{ name = "p1", address = "10.0.3.1:80" }]
"#;
        let c = parse(text, "t.toml").unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.name, "edge");
        assert_eq!(l.bind, "[::]:443".parse().unwrap());
        assert!(l.proxy_protocol);
        assert_eq!(
            l.proxy_trusted,
            vec![
                Cidr {
                    addr: "10.0.0.0".parse().unwrap(),
                    len: 8
                },
                Cidr {
                    addr: "2001:db8::1".parse().unwrap(),
                    len: 128
                },
            ]
        );
        assert_eq!(
            l.sni,
            vec![
                SniRoute {
                    pattern: "api.example.com".into(),
                    pool: "api".into()
                },
                SniRoute {
                    pattern: "*.example.com".into(),
                    pool: "web".into()
                },
            ]
        );
        assert_eq!(l.default_pool, "web");
        assert_eq!(l.non_tls, NonTls::Pool("plain".into()));
        assert_eq!(
            l.limits,
            Limits {
                max_connections: 500,
                max_inspecting_per_ip: 8,
                max_hello_bytes: 4096
            }
        );

        assert_eq!(
            c.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["web", "api", "plain"]
        );
        let web = &c.pools[0];
        assert_eq!(web.balance, Balance::WeightedRoundRobin);
        assert!(web.inspect);
        assert_eq!(
            web.backends,
            vec![
                BackendConfig {
                    name: "w1".into(),
                    addr: "10.0.1.1:443".parse().unwrap(),
                    weight: 3,
                    max_connections: Some(100)
                },
                BackendConfig {
                    name: "w2".into(),
                    addr: "[2001:db8::2]:8443".parse().unwrap(),
                    weight: 0,
                    max_connections: None
                },
            ]
        );
        assert_eq!(
            web.affinity,
            AffinityConfig {
                inactivity_timeout: Duration::from_secs(45 * 60),
                absolute_max: Some(Duration::from_secs(86400)),
                table_size: 5000,
                correlation_window: Duration::from_secs(90),
                nat_threshold: 0,
                ipv4_prefix: 24,
                ipv6_prefix: 56,
                clients_tracked: 700,
            }
        );
        assert_eq!(
            web.timeouts,
            Timeouts {
                hello: Duration::from_millis(250),
                connect: Duration::from_secs(2),
                first_byte: Duration::from_secs(7),
                idle: Duration::from_secs(3600),
                down_hold: Duration::ZERO,
            }
        );
        assert_eq!(c.pools[1].balance, Balance::SourceHash);
        assert!(!c.pools[1].inspect);
    }

    #[test]
    fn settings_left_out_take_the_runtime_defaults() {
        let c = parse(MINIMAL, "t.toml").unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.name, "listener-1");
        assert!(!l.proxy_protocol && l.proxy_trusted.is_empty() && l.sni.is_empty());
        assert_eq!(l.non_tls, NonTls::Reject);
        assert_eq!(l.limits, Limits::default());
        let expected = PoolConfig::new(
            "web",
            vec![BackendConfig::new("web1", "10.0.1.1:443".parse().unwrap())],
        );
        assert_eq!(c.pools, vec![expected]);
    }

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        // Columns count characters, as editors do, not bytes.
        assert_eq!(line_column("é = \"x\"", 5), (1, 5));
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn several_syntax_errors_are_reported_and_nothing_after_them() {
        let e = errors("[[listener]]\nbind = = 1\ndefault_pool = \"a\nbogus = 1\n");
        assert!(e.len() >= 2, "{e:?}");
        assert!(
            e.iter().all(|l| l.contains("fix the TOML syntax here")),
            "{e:?}"
        );
        assert!(e.iter().all(|l| !l.contains("bogus")), "{e:?}");
    }

    #[test]
    fn a_shape_error_in_one_section_does_not_hide_mistakes_elsewhere() {
        let text = MINIMAL.replace("default_pool = \"web\"", "default_pool = \"web\"\nbnd = 1")
            + "\n[pool.api]\nbackends = [{ name = \"a\", address = \"nowhere\" }]\n";
        let e = errors(&text);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:5:1: error: unknown setting `bnd`"),
            "{e:?}"
        );
        assert!(e[1].starts_with("t.toml:11:"), "{e:?}");
        assert!(
            e[1].contains("`nowhere` is not an IP:PORT address"),
            "{e:?}"
        );
    }

    #[test]
    fn a_pool_with_mistakes_is_still_known_to_the_listeners_that_name_it() {
        let text = MINIMAL.replace(
            "[{ name = \"web1\", address = \"10.0.1.1:443\" }]",
            "[{ name = \"web1\" }]",
        );
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("backend has no `address`"), "{e:?}");
    }

    #[test]
    fn hello_timeout_longer_than_idle_is_accepted() {
        let text = format!("{MINIMAL}[pool.web.timeouts]\nhello = \"20m\"\nidle = \"10m\"\n");
        assert!(parse(&text, "t.toml").is_ok());
    }

    #[test]
    fn every_message_says_what_to_change_after_a_semicolon() {
        let broken = [
            MINIMAL.replace("8443", "x"),
            MINIMAL.replace("\"web\"\n", "\"nope\"\n"),
            MINIMAL.replace("}]", ", weight = -1 }]"),
            MINIMAL.replace("}]", ", max_connections = 0 }]"),
            format!(
                "{MINIMAL}[pool.web.affinity]\ntimeout = \"0m\"\nipv6_prefix = 0\ntable_size = 0\n"
            ),
            String::new(),
        ];
        for text in &broken {
            for line in errors(text) {
                let (_, message) = line.split_once(": error: ").unwrap();
                let (what, change) = message.split_once("; ").unwrap_or_else(|| panic!("{line}"));
                assert!(!what.is_empty() && !change.is_empty(), "{line}");
            }
        }
    }
}
