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
//! 3. Meaning: text values (addresses, networks, durations, balancers) are
//!    parsed, the sections become a [`Config`], and [`Config::validate`]
//!    checks it: the same rules, with the same messages, as for the quick
//!    command-line form. Each error names its setting by [`ConfigPath`],
//!    which the span of the value recorded here turns into a line and
//!    column. A value that could not be read gets a stand-in, and rule
//!    errors about stand-ins are dropped, since the operator never wrote
//!    them.
//!
//! [`load`] is the one entry point for `check`, `run --config` and any
//! later reload: a path in, a validated `Config` or every located error out.
//!
//! The file format is described in docs/configuration.md.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::config::{
    AdminConfig, AdminKey, AffinityKey, BackendConfig, BackendKey, Balance, Cidr, Config,
    ConfigError, ConfigPath, HealthCheck, HealthKey, Lifecycle, ListenerConfig, ListenerKey,
    LogConfig, LogFormat, LogKey, NonTls, PoolConfig, PoolKey, ProcessKey, Rule, SendProxy,
    SniRoute, StateConfig, StoreConfig, StoreKey, StoreKind, TimeoutKey, ValueError, parse_address,
    parse_duration,
};

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiagnostic {
    pub file: String,
    /// 1-based line and column (in characters) of the offending text;
    /// `None` when the file could not be read at all.
    pub position: Option<(usize, usize)>,
    /// What kind of mistake, for code that acts on it (a reload reports
    /// it, a test asserts it) without reading the message.
    pub problem: Problem,
    /// What is wrong, then `; ` and what to change.
    pub message: String,
}

/// The kinds of mistake a file can hold. Only [`Problem::Rule`] can also
/// come from the command line or from code; the rest are the file's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The file could not be read.
    Unreadable(std::io::ErrorKind),
    /// Not valid TOML, or a key defined twice.
    Syntax,
    /// A key the format does not have, a value of the wrong TOML type, or
    /// a section of the wrong kind.
    Shape,
    /// A required key is absent (`bind`, `default_pool`, a backend's
    /// `name` or `address`).
    Missing,
    /// A setting breaks one of the configuration's rules.
    Rule(ConfigError),
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
pub struct Diagnostics(pub Vec<ConfigDiagnostic>);

impl fmt::Display for Diagnostics {
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

impl std::error::Error for Diagnostics {}

/// Reads, loads and validates the configuration file at `path`: what
/// `check` reports and what `run --config` starts with.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) => Err(Diagnostics(vec![ConfigDiagnostic {
            file,
            position: None,
            problem: Problem::Unreadable(e.kind()),
            message: format!(
                "cannot read the configuration file: {e}; check the path and its permissions"
            ),
        }])),
    }
}

/// Loads and validates a configuration from `text`; `file_name` is only
/// used in messages.
pub fn parse(text: &str, file_name: &str) -> Result<Config, Diagnostics> {
    let mut report = Report::default();
    let config = load_text(text, &mut report);
    if let Some(config) = &config {
        if let Err(rules) = config.validate() {
            for e in rules.0 {
                if report.judged(&e) {
                    report.rule(e);
                }
            }
        }
    }
    let mut found: Vec<(Range<usize>, Problem, String)> = std::mem::take(&mut report.file_errors);
    let elsewhere = |p: ConfigPath| {
        let line = line_column(text, report.locate(p).start).0;
        match p {
            ConfigPath::Listener(..) => format!("the listener at line {line}"),
            _ => format!("the one at line {line}"),
        }
    };
    for e in report.rule_errors.iter() {
        let message = e.message(&elsewhere);
        found.push((report.locate(e.path), Problem::Rule(e.clone()), message));
    }
    match config {
        Some(config) if found.is_empty() => Ok(config),
        _ => {
            found.sort_by_key(|(span, _, _)| span.start);
            let errors = found
                .into_iter()
                .map(|(span, problem, message)| ConfigDiagnostic {
                    file: file_name.to_string(),
                    position: Some(line_column(text, span.start)),
                    problem,
                    message,
                })
                .collect();
            Err(Diagnostics(errors))
        }
    }
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

/// What loading found so far, and where each setting was written.
#[derive(Default)]
struct Report {
    /// Mistakes only a file can make, at their byte span.
    file_errors: Vec<(Range<usize>, Problem, String)>,
    /// Broken rules, located through `spans` at the end.
    rule_errors: Vec<ConfigError>,
    /// Where each setting's value (or section) was written.
    spans: HashMap<ConfigPath, Range<usize>>,
    /// Settings that could not be read and hold a stand-in.
    unread: Vec<ConfigPath>,
    /// Where the file starts, for what belongs to no section.
    root: Range<usize>,
    /// `[[listener]]` or `pool` present but not in a usable form: their
    /// absence is then not a mistake of its own.
    saw_listener: bool,
    saw_pool: bool,
}

impl Report {
    fn error(&mut self, span: Range<usize>, problem: Problem, message: String) {
        self.file_errors.push((span, problem, message));
    }

    fn rule(&mut self, e: ConfigError) {
        self.rule_errors.push(e);
    }

    fn at(&mut self, path: ConfigPath, span: Range<usize>) {
        self.spans.insert(path, span);
    }

    /// A required key is absent; `path` holds a stand-in.
    fn missing(&mut self, span: Range<usize>, path: ConfigPath, message: String) {
        self.unread.push(path);
        self.error(span, Problem::Missing, message);
    }

    /// Whether `e` is about what the operator wrote rather than a stand-in.
    fn judged(&self, e: &ConfigError) -> bool {
        match e.rule {
            Rule::NoListener if self.saw_listener => return false,
            Rule::NoPool if self.saw_pool => return false,
            _ => {}
        }
        !e.places()
            .any(|p| self.unread.iter().any(|u| p.is_within(u)))
    }

    /// The span of `path`, or of the nearest enclosing place written.
    fn locate(&self, path: ConfigPath) -> Range<usize> {
        let mut p = Some(path);
        while let Some(here) = p {
            if let Some(span) = self.spans.get(&here) {
                return span.clone();
            }
            p = here.parent();
        }
        self.root.start..self.root.start
    }

    /// A text value parsed with `parse`; a stand-in (`None`) if it does not.
    fn value<T>(
        &mut self,
        path: ConfigPath,
        v: &Spanned<String>,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        self.at(path, v.span());
        match parse(v.get_ref()) {
            Ok(x) => Some(x),
            Err(e) => {
                self.unread.push(path);
                self.rule(ConfigError {
                    path,
                    rule: Rule::Value(e),
                });
                None
            }
        }
    }

    /// An integer that fits `T`; the range the setting allows is checked
    /// by validation, so one that does not fit gets the same message.
    fn int<T: TryFrom<i64>>(&mut self, path: ConfigPath, v: &Spanned<i64>) -> Option<T> {
        self.at(path, v.span());
        match T::try_from(*v.get_ref()) {
            Ok(x) => Some(x),
            Err(_) => {
                self.unread.push(path);
                self.rule(ConfigError {
                    path,
                    rule: Rule::OutOfRange {
                        value: (*v.get_ref()).into(),
                    },
                });
                None
            }
        }
    }

    /// A deserialization error from the toml crate, reworded to say what
    /// to change; `fallback` locates errors that carry no span.
    fn toml(&mut self, e: &toml::de::Error, text: &str, fallback: Range<usize>) {
        let msg = e.message().trim_end();
        let span = e.span().unwrap_or(fallback);
        let (problem, message) = if let Some(rest) = msg.strip_prefix("unknown field ") {
            (
                Problem::Shape,
                format!("unknown setting {rest}; fix its spelling or remove it"),
            )
        } else if msg.starts_with("invalid type") {
            // Integers are read as i64 and range-checked later.
            let msg = msg.replace("expected i64", "expected an integer");
            (
                Problem::Shape,
                format!("{msg}; change the value to that type"),
            )
        } else if msg.starts_with("duplicate key") {
            let key = text.get(span.clone()).unwrap_or("").trim();
            (
                Problem::Syntax,
                format!(
                    "`{key}` is defined twice; each key, listener name and pool may appear only once, so remove or rename one"
                ),
            )
        } else {
            (Problem::Syntax, format!("{msg}; fix the TOML syntax here"))
        };
        self.error(span, problem, message);
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

/// `[admin]`: the admin endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    bind: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    token_for_reads: Option<Spanned<bool>>,
}

/// `[store]`: where the affinity tables live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    kind: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    /// Several addresses: a cluster's seed nodes; a single server uses
    /// the first.
    urls: Option<Spanned<Vec<Spanned<String>>>>,
    tls_ca_file: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    lookup_budget: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    queue: Option<Spanned<i64>>,
}

/// `[log]`: how lines are written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFile {
    format: Option<Spanned<String>>,
    connections_per_second: Option<Spanned<i64>>,
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
    /// The default for backends without their own `send_proxy`.
    send_proxy: Option<Spanned<String>>,
    backends: Option<Spanned<Vec<Spanned<BackendFile>>>>,
    #[serde(default)]
    affinity: AffinityFile,
    #[serde(default)]
    timeouts: TimeoutsFile,
    #[serde(default)]
    health: HealthFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    name: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    weight: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    send_proxy: Option<Spanned<String>>,
    tcp_fastopen: Option<bool>,
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

/// `[state]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    file: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    takeover_socket: Option<Spanned<String>>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    check: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<i64>>,
    fall: Option<Spanned<i64>>,
    sni: Option<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// Passes 1 and 2.

/// A stand-in address for a listener or backend whose own could not be
/// read; port 0 never clashes with another listener's.
const STAND_IN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The configuration the file describes, with stand-ins where a value
/// could not be read (recorded in `report`); `None` after a syntax error.
fn load_text(text: &str, report: &mut Report) -> Option<Config> {
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            report.toml(e, text, 0..0);
        }
        return None;
    }
    report.root = root.span();
    let mut listeners = Vec::new();
    let mut pools = Vec::new();
    let mut lifecycle = Lifecycle::default();
    let mut admin = None;
    let mut log = LogConfig::default();
    let mut store = StoreConfig::default();
    for (key, value) in root.into_inner() {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "listener" => {
                report.saw_listener = true;
                let DeValue::Array(items) = value.get_ref() else {
                    report.error(
                        value.span(),
                        Problem::Shape,
                        "`listener` must be an array of tables; write each listener as a [[listener]] section"
                            .to_string(),
                    );
                    continue;
                };
                for item in items.iter() {
                    let span = item.span();
                    let i = listeners.len();
                    let listener = if !item.get_ref().is_table() {
                        report.error(span.clone(), Problem::Shape, "a listener must be a table; write it as a [[listener]] section".into());
                        None
                    } else {
                        match Spanned::<ListenerFile>::deserialize(ValueDeserializer::from(item.clone())) {
                            Ok(l) => Some(l),
                            Err(e) => {
                                report.toml(&e, text, span.clone());
                                None
                            }
                        }
                    };
                    listeners.push(match listener {
                        Some(l) => build_listener(i, l, report),
                        None => {
                            let section = ConfigPath::Listener(i, ListenerKey::Section);
                            report.at(section, span);
                            report.unread.push(section);
                            let mut stand_in = ListenerConfig::new(STAND_IN, "");
                            stand_in.name = format!("listener-{}", i + 1);
                            stand_in
                        }
                    });
                }
            }
            "pool" => {
                report.saw_pool = true;
                let DeValue::Table(table) = value.get_ref() else {
                    report.error(
                        value.span(),
                        Problem::Shape,
                        "`pool` must be a table of pools; write each pool as a [pool.NAME] section".to_string(),
                    );
                    continue;
                };
                for (name, body) in table.iter() {
                    let i = pools.len();
                    let section = ConfigPath::Pool(i, PoolKey::Section);
                    report.at(section, name.span());
                    let pool = if !body.get_ref().is_table() {
                        report.error(
                            body.span(),
                            Problem::Shape,
                            format!("pool `{}` must be a table; write it as a [pool.{}] section", name.get_ref(), name.get_ref()),
                        );
                        None
                    } else {
                        match PoolFile::deserialize(ValueDeserializer::from(body.clone())) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                report.toml(&e, text, name.span());
                                None
                            }
                        }
                    };
                    // A pool with mistakes is still known by its name, so a
                    // reference to it is not also reported as undefined.
                    pools.push(match pool {
                        Some(p) => build_pool(i, name.get_ref(), p, report),
                        None => {
                            report.unread.push(section);
                            PoolConfig::new(name.get_ref(), Vec::new())
                        }
                    });
                }
            }
            "shutdown_timeout" => {
                match String::deserialize(ValueDeserializer::from(value.clone())) {
                    Ok(text) => {
                        let v = Spanned::new(value.span(), text);
                        let at = ConfigPath::Process(ProcessKey::ShutdownTimeout);
                        if let Some(d) = report.value(at, &v, parse_duration) {
                            lifecycle.shutdown_timeout = d;
                        }
                    }
                    Err(e) => report.toml(&e, text, value.span()),
                }
            }
            "state" => {
                if !value.get_ref().is_table() {
                    report.error(
                        value.span(),
                        Problem::Shape,
                        "`state` must be a table; write it as a [state] section with `file`".into(),
                    );
                    continue;
                }
                let at = ConfigPath::Process;
                report.at(at(ProcessKey::State), key_span);
                match StateFile::deserialize(ValueDeserializer::from(value.clone())) {
                    Ok(st) => {
                        if let Some(t) = &st.takeover_socket {
                            report.at(at(ProcessKey::TakeoverSocket), t.span());
                            lifecycle.takeover_socket = Some(t.get_ref().into());
                        }
                        lifecycle.state = build_state(st, value.span(), report);
                    }
                    Err(e) => {
                        report.toml(&e, text, value.span());
                        report.unread.push(at(ProcessKey::State));
                    }
                }
            }

            "admin" => {
                let section = ConfigPath::Admin(AdminKey::Section);
                report.at(section, key_span.clone());
                match AdminFile::deserialize(ValueDeserializer::from(value.clone())) {
                    Ok(a) => admin = Some(build_admin(a, key_span, report)),
                    Err(e) => report.toml(&e, text, key_span),
                }
            }
            "store" => {
                report.at(ConfigPath::Store(StoreKey::Section), key_span.clone());
                match StoreFile::deserialize(ValueDeserializer::from(value.clone())) {
                    Ok(st) => store = build_store(st, report),
                    Err(e) => report.toml(&e, text, key_span),
                }
            }
            "log" => {
                report.at(ConfigPath::Log(LogKey::Section), key_span.clone());
                match LogFile::deserialize(ValueDeserializer::from(value.clone())) {
                    Ok(l) => log = build_log(l, report),
                    Err(e) => report.toml(&e, text, key_span),
                }
            }
            other => report.error(
                key_span,
                Problem::Shape,
                format!(
                    "unknown top-level setting `{other}`; the file holds shutdown_timeout and only [state], [[listener]], [pool.NAME], [admin], [log] and [store] sections, so move it into one or remove it"
                ),
            ),
        }
    }
    Some(Config {
        listeners,
        pools,
        lifecycle,
        admin,
        log,
        store,
    })
}

fn build_store(st: StoreFile, report: &mut Report) -> StoreConfig {
    let at = ConfigPath::Store;
    let mut c = StoreConfig::default();
    if let Some(k) = &st.kind {
        c.kind = report
            .value(at(StoreKey::Kind), k, |s| s.parse::<StoreKind>())
            .unwrap_or_default();
    }
    let urls: Vec<Spanned<String>> = match (&st.url, &st.urls) {
        (Some(u), Some(list)) => {
            report.error(
                list.span(),
                Problem::Shape,
                "[store] has both `url` and `urls`; keep one".into(),
            );
            vec![u.clone()]
        }
        (Some(u), None) => vec![u.clone()],
        (None, Some(list)) => {
            if list.get_ref().is_empty() {
                report.error(
                    list.span(),
                    Problem::Shape,
                    "store.urls is empty; give at least one, e.g. [\"redis://10.0.0.5:6379/0\"]"
                        .into(),
                );
            }
            list.get_ref().clone()
        }
        (None, None) => Vec::new(),
    };
    for u in &urls {
        // Read, but not usable: not also "missing" (the error is reported
        // here, at the URL).
        let _ = report.value(at(StoreKey::Url), u, crate::config::parse_redis_url);
        c.urls.push(u.get_ref().clone());
    }
    if let Some(f) = &st.tls_ca_file {
        report.at(at(StoreKey::TlsCaFile), f.span());
        c.tls_ca_file = Some(f.get_ref().into());
    }
    if let Some(p) = &st.prefix {
        report.at(at(StoreKey::Prefix), p.span());
        c.prefix = p.get_ref().clone();
    }
    if let Some(b) = &st.lookup_budget {
        if let Some(d) = report.value(at(StoreKey::LookupBudget), b, parse_duration) {
            c.lookup_budget = d;
        }
    }
    if let Some(t) = &st.timeout {
        if let Some(d) = report.value(at(StoreKey::Timeout), t, parse_duration) {
            c.timeout = d;
        }
    }
    if let Some(q) = &st.queue {
        c.queue = report.int(at(StoreKey::Queue), q).unwrap_or(c.queue);
    }
    c
}

fn build_admin(a: AdminFile, section: Range<usize>, report: &mut Report) -> AdminConfig {
    let bind = match &a.bind {
        Some(b) => report
            .value(ConfigPath::Admin(AdminKey::Bind), b, parse_address)
            .unwrap_or(STAND_IN),
        None => {
            report.missing(
                section,
                ConfigPath::Admin(AdminKey::Bind),
                "[admin] has no `bind` address; add e.g. bind = \"127.0.0.1:9900\"".to_string(),
            );
            STAND_IN
        }
    };
    let token = a.token.as_ref().map(|t| {
        report.at(ConfigPath::Admin(AdminKey::Token), t.span());
        t.get_ref().clone()
    });
    let token_for_reads = a.token_for_reads.as_ref().is_some_and(|t| {
        report.at(ConfigPath::Admin(AdminKey::TokenForReads), t.span());
        *t.get_ref()
    });
    AdminConfig {
        bind,
        token,
        token_for_reads,
    }
}

fn build_log(l: LogFile, report: &mut Report) -> LogConfig {
    let mut c = LogConfig::default();
    if let Some(f) = &l.format {
        c.format = report
            .value(ConfigPath::Log(LogKey::Format), f, |s| {
                s.parse::<LogFormat>()
            })
            .unwrap_or_default();
    }
    if let Some(n) = &l.connections_per_second {
        c.connections_per_second = report
            .int(ConfigPath::Log(LogKey::ConnectionsPerSecond), n)
            .unwrap_or(c.connections_per_second);
    }
    c
}

// ---------------------------------------------------------------------------
// Pass 3: from text to values. The rules are in `Config::validate`.

/// `[state]`'s file; `None` when `file` is missing (reported here, unless
/// the section only names a `takeover_socket`).
fn build_state(s: StateFile, span: Range<usize>, report: &mut Report) -> Option<StateConfig> {
    let at = ConfigPath::Process;
    let Some(file) = &s.file else {
        if s.takeover_socket.is_some() && s.interval.is_none() {
            return None;
        }
        report.missing(
            span,
            at(ProcessKey::StateFile),
            "[state] has no `file`; add file = \"/var/lib/stickytls/state\", or remove the section to keep nothing across restarts".into(),
        );
        return None;
    };
    report.at(at(ProcessKey::StateFile), file.span());
    let mut c = StateConfig::new(file.get_ref().into());
    if let Some(v) = &s.interval {
        if let Some(d) = report.value(at(ProcessKey::StateInterval), v, parse_duration) {
            c.interval = d;
        }
    }
    Some(c)
}

fn build_listener(i: usize, l: Spanned<ListenerFile>, report: &mut Report) -> ListenerConfig {
    let at = |key| ConfigPath::Listener(i, key);
    let span = l.span();
    report.at(at(ListenerKey::Section), span.clone());
    let l = l.into_inner();
    let mut c = ListenerConfig::new(STAND_IN, "");
    c.name = match &l.name {
        Some(n) => {
            report.at(at(ListenerKey::Name), n.span());
            n.get_ref().clone()
        }
        None => format!("listener-{}", i + 1),
    };
    match &l.bind {
        Some(b) => {
            c.bind = report
                .value(at(ListenerKey::Bind), b, parse_address)
                .unwrap_or(STAND_IN)
        }
        None => report.missing(
            span.clone(),
            at(ListenerKey::Bind),
            format!(
                "listener `{}` has no `bind` address; add e.g. bind = \"0.0.0.0:443\"",
                c.name
            ),
        ),
    }
    if let Some(p) = &l.proxy_protocol {
        report.at(at(ListenerKey::ProxyProtocol), p.span());
        c.proxy_protocol = *p.get_ref();
    }
    for (j, cidr) in l.proxy_trusted.iter().flatten().enumerate() {
        let cidr = report
            .value(at(ListenerKey::ProxyTrusted(j)), cidr, |s| {
                s.parse::<Cidr>()
            })
            .unwrap_or(Cidr {
                addr: STAND_IN.ip(),
                len: 32,
            });
        c.proxy_trusted.push(cidr);
    }
    match &l.default_pool {
        Some(p) => {
            report.at(at(ListenerKey::DefaultPool), p.span());
            c.default_pool = p.get_ref().clone();
        }
        None => report.missing(
            span,
            at(ListenerKey::DefaultPool),
            format!(
                "listener `{}` has no `default_pool`; add default_pool = \"NAME\" naming the pool for connections no SNI rule matches",
                c.name
            ),
        ),
    }
    for (j, (pattern, pool)) in l.sni.0.iter().enumerate() {
        report.at(at(ListenerKey::SniPattern(j)), pattern.span());
        report.at(at(ListenerKey::SniPool(j)), pool.span());
        c.sni.push(SniRoute {
            pattern: pattern.get_ref().clone(),
            pool: pool.get_ref().clone(),
        });
    }
    if let Some(v) = &l.non_tls {
        report.at(at(ListenerKey::NonTls), v.span());
        // "reject" always means closing, even if a pool has that name.
        if v.get_ref() != "reject" {
            c.non_tls = NonTls::Pool(v.get_ref().clone());
        }
    }
    let limits = &mut c.limits;
    if let Some(v) = &l.max_connections {
        limits.max_connections = report
            .int(at(ListenerKey::MaxConnections), v)
            .unwrap_or(limits.max_connections);
    }
    if let Some(v) = &l.max_inspecting_per_ip {
        limits.max_inspecting_per_ip = report
            .int(at(ListenerKey::MaxInspectingPerIp), v)
            .unwrap_or(limits.max_inspecting_per_ip);
    }
    if let Some(v) = &l.max_hello_bytes {
        limits.max_hello_bytes = report
            .int(at(ListenerKey::MaxHelloBytes), v)
            .unwrap_or(limits.max_hello_bytes);
    }
    c
}

fn build_pool(i: usize, name: &str, p: PoolFile, report: &mut Report) -> PoolConfig {
    let at = |key| ConfigPath::Pool(i, key);
    let mut c = PoolConfig::new(name, Vec::new());
    if let Some(b) = &p.balance {
        c.balance = report
            .value(at(PoolKey::Balance), b, |s| s.parse::<Balance>())
            .unwrap_or(Balance::RoundRobin);
    }
    c.inspect = p.inspect.unwrap_or(true);
    // Resolved here, into each backend: the running router keeps one
    // setting per backend, which a reload then changes in place.
    let send_proxy = match &p.send_proxy {
        Some(v) => report
            .value(at(PoolKey::SendProxy), v, |s| s.parse::<SendProxy>())
            .unwrap_or_default(),
        None => SendProxy::Off,
    };
    if let Some(list) = &p.backends {
        report.at(at(PoolKey::Backends), list.span());
        for (j, b) in list.get_ref().iter().enumerate() {
            c.backends.push(build_backend(i, j, b, send_proxy, report));
        }
    }

    let t = &p.timeouts;
    let timeouts = &mut c.timeouts;
    for (key, v, slot) in [
        (TimeoutKey::Hello, &t.hello, &mut timeouts.hello),
        (TimeoutKey::Connect, &t.connect, &mut timeouts.connect),
        (
            TimeoutKey::FirstByte,
            &t.first_byte,
            &mut timeouts.first_byte,
        ),
        (TimeoutKey::Idle, &t.idle, &mut timeouts.idle),
        (TimeoutKey::DownHold, &t.down_hold, &mut timeouts.down_hold),
    ] {
        if let Some(v) = v {
            if let Some(d) = report.value(at(PoolKey::Timeout(key)), v, parse_duration) {
                *slot = d;
            }
        }
    }

    let a = &p.affinity;
    let affinity = &mut c.affinity;
    for (key, v, slot) in [
        (
            AffinityKey::Timeout,
            &a.timeout,
            &mut affinity.inactivity_timeout,
        ),
        (
            AffinityKey::CorrelationWindow,
            &a.correlation_window,
            &mut affinity.correlation_window,
        ),
    ] {
        if let Some(v) = v {
            if let Some(d) = report.value(at(PoolKey::Affinity(key)), v, parse_duration) {
                *slot = d;
            }
        }
    }
    if let Some(v) = &a.absolute_max {
        affinity.absolute_max = report.value(
            at(PoolKey::Affinity(AffinityKey::AbsoluteMax)),
            v,
            parse_duration,
        );
    }
    let int_at = |key| at(PoolKey::Affinity(key));
    if let Some(v) = &a.table_size {
        if let Some(n) = report.int(int_at(AffinityKey::TableSize), v) {
            affinity.table_size = n;
        }
    }
    if let Some(v) = &a.clients_tracked {
        if let Some(n) = report.int(int_at(AffinityKey::ClientsTracked), v) {
            affinity.clients_tracked = n;
        }
    }
    if let Some(v) = &a.nat_threshold {
        if let Some(n) = report.int(int_at(AffinityKey::NatThreshold), v) {
            affinity.nat_threshold = n;
        }
    }
    if let Some(v) = &a.ipv4_prefix {
        if let Some(n) = report.int(int_at(AffinityKey::Ipv4Prefix), v) {
            affinity.ipv4_prefix = n;
        }
    }
    if let Some(v) = &a.ipv6_prefix {
        if let Some(n) = report.int(int_at(AffinityKey::Ipv6Prefix), v) {
            affinity.ipv6_prefix = n;
        }
    }

    let h = &p.health;
    let health = &mut c.health;
    let health_at = |key| at(PoolKey::Health(key));
    if let Some(v) = &h.check {
        health.check = report
            .value(health_at(HealthKey::Check), v, |s| s.parse::<HealthCheck>())
            .unwrap_or(health.check);
    }
    for (key, v, slot) in [
        (HealthKey::Interval, &h.interval, &mut health.interval),
        (HealthKey::Timeout, &h.timeout, &mut health.timeout),
    ] {
        if let Some(v) = v {
            if let Some(d) = report.value(health_at(key), v, parse_duration) {
                *slot = d;
            }
        }
    }
    for (key, v, slot) in [
        (HealthKey::Rise, &h.rise, &mut health.rise),
        (HealthKey::Fall, &h.fall, &mut health.fall),
    ] {
        if let Some(v) = v {
            if let Some(n) = report.int(health_at(key), v) {
                *slot = n;
            }
        }
    }
    if let Some(v) = &h.sni {
        report.at(health_at(HealthKey::Sni), v.span());
        health.sni = Some(v.get_ref().clone());
    }
    c
}

fn build_backend(
    pool: usize,
    backend: usize,
    b: &Spanned<BackendFile>,
    pool_send_proxy: SendProxy,
    report: &mut Report,
) -> BackendConfig {
    let at = |key| ConfigPath::Backend { pool, backend, key };
    let span = b.span();
    report.at(at(BackendKey::Entry), span.clone());
    let b = b.get_ref();
    let mut c = BackendConfig::new("", STAND_IN);
    match &b.name {
        Some(n) => {
            report.at(at(BackendKey::Name), n.span());
            c.name = n.get_ref().clone();
        }
        None => report.missing(
            span.clone(),
            at(BackendKey::Name),
            "backend has no `name`; add name = \"...\" (names identify backends in the affinity table and must stay stable across reloads)".into(),
        ),
    }
    match &b.address {
        Some(a) => {
            c.addr = report
                .value(at(BackendKey::Address), a, parse_address)
                .unwrap_or(STAND_IN);
        }
        None => report.missing(
            span,
            at(BackendKey::Address),
            "backend has no `address`; add address = \"IP:PORT\"".into(),
        ),
    }
    if let Some(w) = &b.weight {
        c.weight = report.int(at(BackendKey::Weight), w).unwrap_or(c.weight);
    }
    if let Some(m) = &b.max_connections {
        c.max_connections = report.int(at(BackendKey::MaxConnections), m);
    }
    c.send_proxy = match &b.send_proxy {
        Some(v) => report
            .value(at(BackendKey::SendProxy), v, |s| s.parse::<SendProxy>())
            .unwrap_or(pool_send_proxy),
        None => pool_send_proxy,
    };
    c.tcp_fastopen = b.tcp_fastopen.unwrap_or(false);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AffinityConfig, Limits, Timeouts};
    use std::time::Duration;

    fn errors(text: &str) -> Vec<String> {
        diagnostics(text).iter().map(|d| d.to_string()).collect()
    }

    fn diagnostics(text: &str) -> Vec<ConfigDiagnostic> {
        parse(text, "t.toml").unwrap_err().0
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
  { name = "w1", address = "10.0.1.1:443", weight = 3, max_connections = 100, tcp_fastopen = true },
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
                    max_connections: Some(100),
                    send_proxy: SendProxy::Off,
                    tcp_fastopen: true,
                },
                BackendConfig {
                    name: "w2".into(),
                    addr: "[2001:db8::2]:8443".parse().unwrap(),
                    weight: 0,
                    max_connections: None,
                    send_proxy: SendProxy::Off,
                    tcp_fastopen: false,
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
    fn admin_and_log_sections_become_config_values() {
        let text = format!(
            "{MINIMAL}\n[admin]\nbind = \"0.0.0.0:9900\"\ntoken = \"0123456789abcdef\"\ntoken_for_reads = true\n\n[log]\nformat = \"json\"\nconnections_per_second = 0\n"
        );
        let c = parse(&text, "t.toml").unwrap();
        let a = c.admin.unwrap();
        assert_eq!(a.bind, "0.0.0.0:9900".parse().unwrap());
        assert_eq!(a.token.as_deref(), Some("0123456789abcdef"));
        assert!(a.token_for_reads);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.connections_per_second, 0);
        assert_eq!(
            parse(MINIMAL, "t.toml").unwrap().admin,
            None,
            "off by default"
        );
    }

    #[test]
    fn a_public_admin_bind_without_a_token_is_located_and_names_the_token() {
        let text = format!("{MINIMAL}\n[admin]\nbind = \"0.0.0.0:9900\"\n");
        let bind_line = text
            .lines()
            .position(|l| l.starts_with("bind = \"0.0.0.0"))
            .unwrap()
            + 1;
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!("t.toml:{bind_line}:8: error: ")),
            "{e:?}"
        );
        assert!(
            e[0].contains("without a token") && e[0].contains("set a token"),
            "{e:?}"
        );

        let short = format!(
            "{MINIMAL}\n[admin]\nbind = \"127.0.0.1:9900\"\ntoken = \"short\"\n[log]\nformat = \"xml\"\n"
        );
        let e = errors(&short);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|m| m.contains("at least 16")), "{e:?}");
        assert!(
            e.iter().any(|m| m.contains("unknown log format `xml`")),
            "{e:?}"
        );
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
        let d = diagnostics("[[listener]]\nbind = = 1\ndefault_pool = \"a\nbogus = 1\n");
        assert!(d.iter().all(|d| d.problem == Problem::Syntax), "{d:?}");
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
        let d = diagnostics(&text);
        assert_eq!(d[0].problem, Problem::Shape);
        assert_eq!(
            d[1].problem,
            Problem::Rule(ConfigError {
                path: ConfigPath::Backend {
                    pool: 1,
                    backend: 0,
                    key: BackendKey::Address
                },
                rule: Rule::Value(ValueError::NotAnAddress("nowhere".into())),
            })
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
        assert_eq!(diagnostics(&text)[0].problem, Problem::Missing);
    }

    #[test]
    fn a_value_that_cannot_be_read_raises_no_rule_about_its_stand_in() {
        // The address's stand-in, the one CIDR's and the pool's would each
        // break a rule (port 0 twice, empty proxy_trusted, no backends) if
        // they were judged.
        let text = r#"
[[listener]]
bind = "127.0.0.1:8443"
default_pool = "web"
proxy_protocol = true
proxy_trusted = ["not a network"]

[[listener]]
name = "second"
bind = "nowhere"
default_pool = "broken"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443", weight = -1 }]

[pool.broken]
backends = "none"
"#;
        let rules: Vec<Rule> = diagnostics(text)
            .into_iter()
            .filter_map(|d| match d.problem {
                Problem::Rule(e) => Some(e.rule),
                _ => None,
            })
            .collect();
        assert_eq!(
            rules,
            [
                Rule::Value(ValueError::NotANetwork("not a network".into())),
                Rule::Value(ValueError::NotAnAddress("nowhere".into())),
                Rule::OutOfRange { value: -1 },
            ]
        );
    }

    #[test]
    fn a_duplicate_refers_to_the_first_by_its_line() {
        let text = format!(
            "{MINIMAL}\n[[listener]]\nname = \"listener-1\"\nbind = \"127.0.0.1:9443\"\ndefault_pool = \"web\"\n"
        );
        let d = diagnostics(&text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(matches!(
            &d[0].problem,
            Problem::Rule(ConfigError {
                rule: Rule::DuplicateListenerName { first: 0, .. },
                ..
            })
        ));
        // The first listener took its name by default: its section's line.
        assert_eq!(d[0].position, Some((10, 8)));
        assert!(
            d[0].message.contains("used by the listener at line 2;"),
            "{}",
            d[0].message
        );
    }

    #[test]
    fn shutdown_timeout_and_state_are_read_and_default_when_absent() {
        let c = parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(c.lifecycle, Lifecycle::default());
        assert_eq!(c.lifecycle.shutdown_timeout, Duration::from_secs(30));
        let text = format!(
            "shutdown_timeout = \"0s\"\n[state]\nfile = \"/var/lib/stickytls/state\"\ninterval = \"5m\"\n{MINIMAL}"
        );
        let c = parse(&text, "t.toml").unwrap();
        assert_eq!(c.lifecycle.shutdown_timeout, Duration::ZERO);
        assert_eq!(
            c.lifecycle.state,
            Some(StateConfig {
                file: "/var/lib/stickytls/state".into(),
                interval: Duration::from_secs(300),
            })
        );
        let text = format!("[state]\nfile = \"s\"\n{MINIMAL}");
        let c = parse(&text, "t.toml").unwrap();
        assert_eq!(c.lifecycle.state.unwrap().interval, StateConfig::INTERVAL);
    }

    #[test]
    fn a_store_section_becomes_the_store_config_and_defaults_to_memory() {
        let c = parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(c.store, StoreConfig::default());
        assert_eq!(c.store.kind, StoreKind::Memory);
        let text = format!(
            "[store]\nkind = \"redis\"\nurls = [\"redis://10.0.0.5:6379/2\", \"redis://10.0.0.6:6379/2\"]\nprefix = \"edge:\"\nlookup_budget = \"5ms\"\ntimeout = \"1s\"\nqueue = 1000\n{MINIMAL}"
        );
        let c = parse(&text, "t.toml").unwrap();
        assert_eq!(
            c.store,
            StoreConfig {
                kind: StoreKind::Redis,
                urls: vec![
                    "redis://10.0.0.5:6379/2".into(),
                    "redis://10.0.0.6:6379/2".into()
                ],
                tls_ca_file: None,
                prefix: "edge:".into(),
                lookup_budget: Duration::from_millis(5),
                timeout: Duration::from_secs(1),
                queue: 1000,
            }
        );
        let text = format!(
            "[store]\nkind = \"redis-cluster\"\nurls = [\"redis://10.0.0.5:7000\", \"redis://10.0.0.6:7000\"]\n{MINIMAL}"
        );
        let c = parse(&text, "t.toml").unwrap();
        assert_eq!(
            c.store,
            StoreConfig::redis_cluster(&["redis://10.0.0.5:7000", "redis://10.0.0.6:7000"])
        );
    }

    #[test]
    fn store_mistakes_are_located_and_say_what_to_write() {
        let cases = [
            (
                "[store]\nkind = \"redis-cluster\"\n",
                "t.toml:1:2: error: [store] kind = \"redis-cluster\" has no `urls`; list some of its nodes",
            ),
            (
                "[store]\nkind = \"redis-cluster\"\nurls = [\"redis://h:1/3\"]\n",
                "t.toml:3:9: error: store.url names a database other than 0",
            ),
            (
                "[store]\nkind = \"redis\"\nurl = \"redis://h:1\"\ntls_ca_file = \"ca.pem\"\n",
                "t.toml:4:15: error: store.tls_ca_file is set but no store URL is rediss://",
            ),
            (
                "[store]\nkind = \"etcd\"\n",
                "t.toml:2:8: error: unknown store kind `etcd`",
            ),
            (
                "[store]\nkind = \"redis\"\n",
                "t.toml:1:2: error: [store] kind = \"redis\" has no `url`",
            ),
            (
                "[store]\nkind = \"redis\"\nurl = \"http://h:1\"\n",
                "t.toml:3:7: error: `http://h:1` is not a Redis URL",
            ),
            (
                "[store]\nkind = \"redis\"\nurl = \"redis://h:1\"\ntimeout = \"0s\"\n",
                "t.toml:4:11: error: store.timeout is zero",
            ),
            (
                "[store]\nlookup_budget = \"fast\"\n",
                "t.toml:2:17: error: store.lookup_budget `fast` is not a duration",
            ),
            (
                "[store]\nqueue = 0\n",
                "t.toml:2:9: error: store.queue is 0; set it to 1 or more",
            ),
            (
                "[store]\nkinds = \"redis\"\n",
                "t.toml:2:1: error: unknown setting `kinds`",
            ),
        ];
        for (head, expected) in cases {
            let e = errors(&format!("{head}{MINIMAL}"));
            assert_eq!(e.len(), 1, "{head}: {e:?}");
            assert!(e[0].starts_with(expected), "{head}: {}", e[0]);
        }
    }

    #[test]
    fn a_rediss_url_without_the_tls_feature_names_the_feature() {
        let text = format!("[store]\nkind = \"redis\"\nurl = \"rediss://h:1\"\n{MINIMAL}");
        if cfg!(feature = "store-tls") {
            let c = parse(&text, "t.toml").unwrap();
            assert_eq!(c.store.urls, ["rediss://h:1"]);
        } else {
            let e = errors(&text);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with("t.toml:3:7: error: `rediss://h:1` asks for TLS to the store")
                    && e[0].contains("--features store-tls"),
                "{}",
                e[0]
            );
        }
    }

    #[test]
    fn state_and_shutdown_mistakes_are_located() {
        let cases = [
            (
                "[state]\ninterval = \"1m\"\n",
                "t.toml:1:1: error: [state] has no `file`",
            ),
            (
                "[state]\nfile = \"\"\n",
                "t.toml:2:8: error: state.file is empty;",
            ),
            (
                "[state]\nfile = \"s\"\ninterval = \"0s\"\n",
                "t.toml:3:12: error: state.interval is zero, which would write the state file without pause; set it above zero, e.g. \"1m\"",
            ),
            (
                "[state]\nfile = \"s\"\nintervall = \"1m\"\n",
                "t.toml:3:1: error: unknown setting `intervall`",
            ),
            (
                "shutdown_timeout = \"soon\"\n",
                "t.toml:1:20: error: shutdown_timeout `soon` is not a duration",
            ),
            (
                "shutdown_timeout = 30\n",
                "t.toml:1:20: error: invalid type",
            ),
        ];
        for (head, expected) in cases {
            let e = errors(&format!("{head}{MINIMAL}"));
            assert_eq!(e.len(), 1, "{head}: {e:?}");
            assert!(e[0].starts_with(expected), "{head}: {}", e[0]);
        }
    }

    #[test]
    fn a_health_section_sets_every_check_setting_and_absent_ones_keep_defaults() {
        use crate::config::HealthConfig;
        let text = format!(
            "{MINIMAL}[pool.web.health]\ncheck = \"tls\"\ninterval = \"5s\"\ntimeout = \"750ms\"\nrise = 4\nfall = 1\nsni = \"check.example.com\"\n"
        );
        let c = parse(&text, "t.toml").unwrap();
        assert_eq!(
            c.pools[0].health,
            HealthConfig {
                check: HealthCheck::Tls,
                interval: Duration::from_secs(5),
                timeout: Duration::from_millis(750),
                rise: 4,
                fall: 1,
                sni: Some("check.example.com".into()),
            }
        );
        let c = parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(c.pools[0].health, HealthConfig::default());
        assert_eq!(c.pools[0].health.check, HealthCheck::Tcp);
    }

    #[test]
    fn send_proxy_of_a_pool_applies_to_backends_without_their_own() {
        let text = r#"
[[listener]]
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
send_proxy = "v2"
backends = [
  { name = "w1", address = "10.0.1.1:443" },
  { name = "w2", address = "10.0.1.2:443", send_proxy = "v1" },
  { name = "w3", address = "10.0.1.3:443", send_proxy = "off" },
]

[pool.api]
backends = [{ name = "a1", address = "10.0.2.1:443", send_proxy = "v1" }, { name = "a2", address = "10.0.2.2:443" }]
"#;
        let c = parse(text, "t.toml").unwrap();
        let sent = |p: usize| -> Vec<SendProxy> {
            c.pools[p].backends.iter().map(|b| b.send_proxy).collect()
        };
        assert_eq!(sent(0), [SendProxy::V2, SendProxy::V1, SendProxy::Off]);
        assert_eq!(sent(1), [SendProxy::V1, SendProxy::Off]);
    }

    #[test]
    fn an_unknown_send_proxy_is_located_at_its_value() {
        let pool = MINIMAL.replace("[pool.web]\n", "[pool.web]\nsend_proxy = \"v3\"\n");
        let e = errors(&pool);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0],
            "t.toml:7:14: error: unknown send_proxy `v3`; use \"v1\" (text header), \"v2\" (binary header) or \"off\", matching what the backend expects"
        );
        let backend = MINIMAL.replace("}]", ", send_proxy = 2 }]");
        let e = errors(&backend);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.toml:7:"), "{e:?}");
        assert!(e[0].contains("invalid type"), "{e:?}");
        let backend = MINIMAL.replace("}]", ", send_proxy = \"proxy\" }]");
        let d = diagnostics(&backend);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].position, Some((7, 70)), "at the value");
        assert_eq!(
            d[0].problem,
            Problem::Rule(ConfigError {
                path: ConfigPath::Backend {
                    pool: 0,
                    backend: 0,
                    key: BackendKey::SendProxy
                },
                rule: Rule::Value(ValueError::UnknownSendProxy("proxy".into())),
            })
        );
    }

    #[test]
    fn tcp_fastopen_is_per_backend_off_by_default_and_must_be_a_boolean() {
        let c = parse(MINIMAL, "t.toml").unwrap();
        assert!(!c.pools[0].backends[0].tcp_fastopen);
        let on = MINIMAL.replace("}]", ", tcp_fastopen = true }]");
        assert!(parse(&on, "t.toml").unwrap().pools[0].backends[0].tcp_fastopen);
        let e = errors(&MINIMAL.replace("}]", ", tcp_fastopen = \"yes\" }]"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.toml:7:"), "{e:?}");
        assert!(e[0].contains("invalid type"), "{e:?}");
        // A backend option only: a pool-level default is not accepted.
        let e = errors(&MINIMAL.replace("[pool.web]\n", "[pool.web]\ntcp_fastopen = true\n"));
        assert!(e[0].contains("unknown setting `tcp_fastopen`"), "{e:?}");
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
