//! The TOML configuration file: loading it into [`Config`] and reporting
//! every mistake as `FILE:LINE:COLUMN: error: what is wrong; what to change`.
//!
//! Loading runs in three passes so that one run of `stickytls check` shows
//! the operator as many mistakes as possible:
//! 1. TOML syntax, with the parser's recovery (several syntax errors can be
//!    reported, but nothing after this pass runs if there is one).
//! 2. Shape: each `[[listener]]` and `[pool.NAME]` section is checked on
//!    its own against the settings table ([`super::settings`]), unknown
//!    keys and values of the wrong TOML type denied, so a typo in one
//!    section does not hide the mistakes in the others.
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
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::settings::{self, Kind, Section};
use super::{
    AdminConfig, AdminKey, AffinityKey, BackendConfig, BackendKey, Balance, Cidr, Config,
    ConfigError, ConfigPath, HealthCheck, HealthKey, ListenerConfig, ListenerKey, LogFormat,
    LogKey, NonTls, PoolConfig, PoolKey, ProcessKey, Rule, SendProxy, SniRoute, StateConfig,
    StoreConfig, StoreKey, StoreKind, TimeoutKey, ValueError, parse_address, parse_duration,
    parse_redis_url,
};

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: error: {message}", position.map_or(String::new(), |(l, c)| format!(":{l}:{c}")))]
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

/// Every mistake found in a configuration file, in the order they appear
/// in it. Displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Diagnostics(pub Vec<ConfigDiagnostic>);

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
pub(crate) fn parse(text: &str, file_name: &str) -> Result<Config, Diagnostics> {
    let mut report = Report::default();
    let config = load_text(text, &mut report);
    if let Some(Err(rules)) = config.as_ref().map(Config::validate) {
        for e in rules.0 {
            if report.judged(&e) {
                report.rule_errors.push(e);
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

/// A value of the file, with its span.
type Value<'a> = Spanned<DeValue<'a>>;

/// The value of `key` in `table`.
fn get<'t, 'a>(table: &'t DeTable<'a>, key: &str) -> Option<&'t Value<'a>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// `v` as a `T`; the shape pass has made sure it is one.
fn de<'a, T: Deserialize<'a>>(v: &Value<'a>) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(v.clone()))
}

/// The sub-sections of a section, each a table of its own settings.
fn subsections(section: Section) -> &'static [(&'static str, Section)] {
    match section {
        Section::Pool => &[
            ("affinity", Section::Affinity),
            ("timeouts", Section::Timeouts),
            ("health", Section::Health),
        ],
        _ => &[],
    }
}

/// What loading found so far, and where each setting was written.
#[derive(Default)]
struct Report<'t> {
    text: &'t str,
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

impl Report<'_> {
    fn error(&mut self, span: Range<usize>, problem: Problem, message: String) {
        self.file_errors.push((span, problem, message));
    }

    fn at(&mut self, path: ConfigPath, span: Range<usize>) {
        self.spans.insert(path, span);
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
        let span = path.ancestors().find_map(|p| self.spans.get(&p));
        span.cloned().unwrap_or(self.root.start..self.root.start)
    }

    /// Pass 2 for one section: whether every key of `table` is a setting
    /// of `section` (or a sub-section's, checked in turn) with a value of
    /// its type. Like serde with unknown fields denied, only the first
    /// mistake in file order is reported, and the section is not read.
    fn shape(&mut self, table: &DeTable, section: Section) -> bool {
        for (spanned_key, value) in table.iter() {
            let key = spanned_key.get_ref().as_ref();
            if let Some(&(_, sub)) = subsections(section).iter().find(|(k, _)| *k == key) {
                match self.shape_table(value, sub, &format!("`{key}`"), sub.title()) {
                    true => continue,
                    false => return false,
                }
            }
            let Some(setting) = settings::in_section(section).find(|s| s.key() == key) else {
                let known: Vec<String> = settings::in_section(section)
                    .map(|s| s.key())
                    .chain(subsections(section).iter().map(|(k, _)| *k))
                    .map(|k| format!("`{k}`"))
                    .collect();
                let expected = match &known[..] {
                    [one] => format!("expected {one}"),
                    [a, b] => format!("expected {a} or {b}"),
                    _ => format!("expected one of {}", known.join(", ")),
                };
                self.error(
                    spanned_key.span(),
                    Problem::Shape,
                    format!("unknown setting `{key}`, {expected}; fix its spelling or remove it"),
                );
                return false;
            };
            let typed = match setting.kind {
                Kind::Int { .. } => de::<i64>(value).map(drop),
                Kind::Bool => de::<bool>(value).map(drop),
                Kind::Duration | Kind::Text => de::<String>(value).map(drop),
                Kind::List => de::<Vec<Spanned<String>>>(value).map(drop),
                Kind::Sni => match value.get_ref().as_table() {
                    Some(t) => t.iter().try_for_each(|(_, v)| de::<String>(v).map(drop)),
                    None => return self.not_a_table(value.span(), "`sni`", "[listener.sni]"),
                },
                Kind::Tables => match value.get_ref().as_array() {
                    Some(items) => {
                        let form = "{ name = \"...\", address = \"IP:PORT\" }";
                        let backend = |i| self.shape_table(i, Section::Backend, "a backend", form);
                        match items.iter().all(backend) {
                            true => Ok(()),
                            false => return false,
                        }
                    }
                    None => de::<Vec<toml::Value>>(value).map(drop),
                },
            };
            if let Err(e) = typed {
                self.toml(&e, value.span());
                return false;
            }
        }
        true
    }

    /// `shape` of `v`, which must be a table: `what` (a section or entry),
    /// written as `form`.
    fn shape_table(&mut self, v: &Value, section: Section, what: &str, form: &str) -> bool {
        match v.get_ref().as_table() {
            Some(t) => self.shape(t, section),
            None => self.not_a_table(v.span(), what, form),
        }
    }

    /// `what`, a section or entry, is not a table; returns false, for
    /// `shape`.
    fn not_a_table(&mut self, span: Range<usize>, what: &str, form: &str) -> bool {
        self.error(
            span,
            Problem::Shape,
            format!("{what} must be a table; write it as {form}"),
        );
        false
    }

    /// `path`'s setting in `table`, read as its type reads (see [`Read`]);
    /// `None` when absent, or when it does not parse (reported).
    fn read<T: Read>(&mut self, table: &DeTable, path: ConfigPath) -> Option<T> {
        let v = get(table, path.setting()?.key())?;
        self.at(path, v.span());
        T::read(self, path, v)
    }

    /// `read`, into `slot` when it is there and parses.
    fn set<T: Read>(&mut self, table: &DeTable, path: ConfigPath, slot: &mut T) {
        if let Some(v) = self.read(table, path) {
            *slot = v;
        }
    }

    /// `read` of a required setting: when it is absent, `message` says so
    /// at `span`, the enclosing section.
    fn required<T: Read>(
        &mut self,
        table: &DeTable,
        path: ConfigPath,
        span: Range<usize>,
        message: impl FnOnce() -> String,
    ) -> Option<T> {
        if get(table, path.setting()?.key()).is_none() {
            // A stand-in takes its place.
            self.unread.push(path);
            self.error(span, Problem::Missing, message());
            return None;
        }
        self.read(table, path)
    }

    /// The text `v` of `path`, parsed with `parse`; a stand-in (`None`,
    /// reported) when it does not parse.
    fn parse_value<T>(
        &mut self,
        path: ConfigPath,
        v: &Value,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        self.at(path, v.span());
        match parse(v.get_ref().as_str().unwrap_or_default()) {
            Ok(x) => Some(x),
            Err(e) => {
                self.unread.push(path);
                self.rule_errors
                    .push(ConfigError::new(path, Rule::Value(e)));
                None
            }
        }
    }

    /// An integer that fits `T`; the range the setting allows is checked
    /// by validation, so one that does not fit gets the same message.
    fn int<T: TryFrom<i64>>(&mut self, path: ConfigPath, v: &Value) -> Option<T> {
        let n: i64 = de(v).ok()?;
        let fits = T::try_from(n).ok();
        if fits.is_none() {
            self.unread.push(path);
            let rule = Rule::OutOfRange { value: n.into() };
            self.rule_errors.push(ConfigError::new(path, rule));
        }
        fits
    }

    /// A deserialization error from the toml crate, reworded to say what
    /// to change; `fallback` locates errors that carry no span.
    fn toml(&mut self, e: &toml::de::Error, fallback: Range<usize>) {
        let msg = e.message().trim_end();
        let span = e.span().unwrap_or(fallback);
        let (problem, message) = if msg.starts_with("invalid type") {
            // Integers are read as i64 and range-checked later.
            let msg = msg.replace("expected i64", "expected an integer");
            (
                Problem::Shape,
                format!("{msg}; change the value to that type"),
            )
        } else if msg.starts_with("duplicate key") {
            let key = self.text.get(span.clone()).unwrap_or("").trim();
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

/// How a setting's value is read from the file: text parsed by its
/// type's parser, with the message every source gives, or an integer or a
/// boolean as TOML types it. The shape pass has checked the TOML type.
trait Read: Sized {
    fn read(report: &mut Report, path: ConfigPath, v: &Value) -> Option<Self>;
}

/// `Read` for text settings, each by its parser, and for integers, each
/// by [`Report::int`].
macro_rules! read_as {
    (text: $($t:ty => $parse:expr),+) => {$(
        impl Read for $t {
            fn read(report: &mut Report, path: ConfigPath, v: &Value) -> Option<Self> {
                report.parse_value(path, v, $parse)
            }
        }
    )+};
    (int: $($t:ty),+) => {$(
        impl Read for $t {
            fn read(report: &mut Report, path: ConfigPath, v: &Value) -> Option<Self> {
                report.int(path, v)
            }
        }
    )+};
}

read_as!(text: Duration => parse_duration, SocketAddr => parse_address, Balance => str::parse,
    HealthCheck => str::parse, LogFormat => str::parse, SendProxy => str::parse,
    StoreKind => str::parse, String => |s| Ok(s.to_string()), PathBuf => |s| Ok(s.into()));
read_as!(int: u8, u32, u64, usize);

/// A list of strings, as written: each is checked by validation.
impl Read for Vec<String> {
    fn read(_: &mut Report, _: ConfigPath, v: &Value) -> Option<Self> {
        de(v).ok()
    }
}

impl Read for bool {
    fn read(_: &mut Report, _: ConfigPath, v: &Value) -> Option<bool> {
        de(v).ok()
    }
}

/// A stand-in address for a listener or backend whose own could not be
/// read; port 0 never clashes with another listener's.
const STAND_IN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The configuration the file describes, with stand-ins where a value
/// could not be read (recorded in `report`); `None` after a syntax error.
fn load_text<'t>(text: &'t str, report: &mut Report<'t>) -> Option<Config> {
    report.text = text;
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in &syntax {
            report.toml(e, 0..0);
        }
        return None;
    }
    report.root = root.span();
    let mut c = Config::default();
    let root = root.into_inner();
    for (key, value) in root.iter() {
        let key_span = key.span();
        let table = value.get_ref().as_table();
        match (key.get_ref().as_ref(), table) {
            ("listener", _) => {
                report.saw_listener = true;
                let Some(items) = value.get_ref().as_array() else {
                    report.error(
                        value.span(),
                        Problem::Shape,
                        "`listener` must be an array of tables; write each listener as a [[listener]] section"
                            .to_string(),
                    );
                    continue;
                };
                for item in items.iter() {
                    let i = c.listeners.len();
                    let ok = report.shape_table(item, Section::Listener, "a listener", "a [[listener]] section");
                    let listener = item.get_ref().as_table().filter(|_| ok).map(|t| build_listener(i, t, item.span(), report));
                    c.listeners.push(listener.unwrap_or_else(|| {
                        let section = ConfigPath::Listener(i, ListenerKey::Section);
                        report.at(section, item.span());
                        report.unread.push(section);
                        let mut stand_in = ListenerConfig::new(STAND_IN, "");
                        stand_in.name = format!("listener-{}", i + 1);
                        stand_in
                    }));
                }
            }
            ("pool", Some(table)) => {
                report.saw_pool = true;
                for (name, body) in table.iter() {
                    let i = c.pools.len();
                    let section = ConfigPath::Pool(i, PoolKey::Section);
                    report.at(section, name.span());
                    let name = name.get_ref();
                    let ok = report.shape_table(body, Section::Pool, &format!("pool `{name}`"), &format!("a [pool.{name}] section"));
                    let pool = body.get_ref().as_table().filter(|_| ok).map(|t| build_pool(i, name, t, report));
                    // A pool with mistakes is still known by its name, so a
                    // reference to it is not also reported as undefined.
                    c.pools.push(pool.unwrap_or_else(|| {
                        report.unread.push(section);
                        PoolConfig::new(name, Vec::new())
                    }));
                }
            }
            ("pool", None) => {
                report.saw_pool = true;
                report.error(value.span(), Problem::Shape, "`pool` must be a table of pools; write each pool as a [pool.NAME] section".to_string());
            }
            ("shutdown_timeout", _) => {
                let at = ConfigPath::Process(ProcessKey::ShutdownTimeout);
                match de::<String>(value) {
                    Ok(_) => report.set(&root, at, &mut c.lifecycle.shutdown_timeout),
                    Err(e) => report.toml(&e, value.span()),
                }
            }
            ("state", None) => report.error(
                value.span(),
                Problem::Shape,
                "`state` must be a table; write it as a [state] section with `file`".into(),
            ),
            ("state", Some(t)) => {
                let at = ConfigPath::Process;
                report.at(at(ProcessKey::State), key_span);
                if report.shape(t, Section::State) {
                    c.lifecycle.takeover_socket = report.read(t, at(ProcessKey::TakeoverSocket));
                    c.lifecycle.state = build_state(t, value.span(), report);
                } else {
                    report.unread.push(at(ProcessKey::State));
                }
            }
            ("admin", Some(t)) => {
                report.at(ConfigPath::Admin(AdminKey::Section), key_span.clone());
                if report.shape(t, Section::Admin) {
                    c.admin = Some(build_admin(t, key_span, report));
                }
            }
            ("store", Some(t)) => {
                report.at(ConfigPath::Store(StoreKey::Section), key_span.clone());
                if report.shape(t, Section::Store) {
                    c.store = build_store(t, report);
                }
            }
            ("log", Some(t)) => {
                report.at(ConfigPath::Log(LogKey::Section), key_span.clone());
                if report.shape(t, Section::Log) {
                    let at = ConfigPath::Log;
                    report.set(t, at(LogKey::Format), &mut c.log.format);
                    report.set(t, at(LogKey::ConnectionsPerSecond), &mut c.log.connections_per_second);
                }
            }
            (name @ ("admin" | "store" | "log"), None) => {
                let form = format!("[{name}] with its settings under it");
                report.not_a_table(value.span(), &format!("`{name}`"), &form);
            }
            (other, _) => report.error(
                key_span,
                Problem::Shape,
                format!(
                    "unknown top-level setting `{other}`; the file holds shutdown_timeout and only [state], [[listener]], [pool.NAME], [admin], [log] and [store] sections, so move it into one or remove it"
                ),
            ),
        }
    }
    Some(c)
}

// ---------------------------------------------------------------------------
// Pass 3: from text to values, one line per setting. The rules are in
// `Config::validate`.

fn build_store(t: &DeTable, report: &mut Report) -> StoreConfig {
    let at = ConfigPath::Store;
    let mut c = StoreConfig::default();
    report.set(t, at(StoreKey::Kind), &mut c.kind);
    let (url, list) = (get(t, "url"), get(t, "urls"));
    let items: Vec<&Value> = list
        .and_then(|l| l.get_ref().as_array())
        .into_iter()
        .flatten()
        .collect();
    let mistake = match url {
        Some(_) => "[store] has both `url` and `urls`; keep one",
        None if items.is_empty() => {
            "store.urls is empty; give at least one, e.g. [\"redis://10.0.0.5:6379/0\"]"
        }
        None => "",
    };
    if let Some(list) = list.filter(|_| !mistake.is_empty()) {
        report.error(list.span(), Problem::Shape, mistake.into());
    }
    let urls = url.map_or(items, |u| vec![u]);
    for u in urls {
        // Read, but not usable: not also "missing" (the error is reported
        // here, at the URL).
        let _ = report.parse_value(at(StoreKey::Url), u, parse_redis_url);
        c.urls
            .push(u.get_ref().as_str().unwrap_or_default().to_string());
    }
    c.tls_ca_file = report.read(t, at(StoreKey::TlsCaFile));
    c.password_file = report.read(t, at(StoreKey::PasswordFile));
    report.set(t, at(StoreKey::Prefix), &mut c.prefix);
    report.set(t, at(StoreKey::LookupBudget), &mut c.lookup_budget);
    report.set(t, at(StoreKey::Timeout), &mut c.timeout);
    report.set(t, at(StoreKey::Queue), &mut c.queue);
    c
}

fn build_admin(t: &DeTable, section: Range<usize>, report: &mut Report) -> AdminConfig {
    let at = ConfigPath::Admin;
    let bind = report.required(t, at(AdminKey::Bind), section, || {
        "[admin] has no `bind` address; add e.g. bind = \"127.0.0.1:9900\"".to_string()
    });
    AdminConfig {
        bind: bind.unwrap_or(STAND_IN),
        token: report.read(t, at(AdminKey::Token)),
        token_for_reads: report.read(t, at(AdminKey::TokenForReads)).unwrap_or(false),
        allowed_hosts: report
            .read(t, at(AdminKey::AllowedHosts))
            .unwrap_or_default(),
    }
}

/// `[state]`'s file; `None` when `file` is missing (reported here, unless
/// the section only names a `takeover_socket`).
fn build_state(t: &DeTable, span: Range<usize>, report: &mut Report) -> Option<StateConfig> {
    let at = ConfigPath::Process;
    if get(t, "file").is_none()
        && get(t, "takeover_socket").is_some()
        && get(t, "interval").is_none()
    {
        return None;
    }
    let file = report.required(t, at(ProcessKey::StateFile), span, || {
        "[state] has no `file`; add file = \"/var/lib/stickytls/state\", or remove the section to keep nothing across restarts".into()
    })?;
    let mut c = StateConfig::new(file);
    report.set(t, at(ProcessKey::StateInterval), &mut c.interval);
    Some(c)
}

fn build_listener(
    i: usize,
    t: &DeTable,
    span: Range<usize>,
    report: &mut Report,
) -> ListenerConfig {
    let at = |key| ConfigPath::Listener(i, key);
    report.at(at(ListenerKey::Section), span.clone());
    let mut c = ListenerConfig::new(STAND_IN, "");
    c.name = report
        .read(t, at(ListenerKey::Name))
        .unwrap_or_else(|| format!("listener-{}", i + 1));
    let name = &c.name;
    let bind = report.required(t, at(ListenerKey::Bind), span.clone(), || {
        format!("listener `{name}` has no `bind` address; add e.g. bind = \"0.0.0.0:443\"")
    });
    let default_pool = report.required(t, at(ListenerKey::DefaultPool), span, || {
        format!(
            "listener `{name}` has no `default_pool`; add default_pool = \"NAME\" naming the pool for connections no SNI rule matches"
        )
    });
    c.bind = bind.unwrap_or(STAND_IN);
    c.default_pool = default_pool.unwrap_or_default();
    report.set(t, at(ListenerKey::ProxyProtocol), &mut c.proxy_protocol);
    let trusted = get(t, "proxy_trusted").and_then(|v| v.get_ref().as_array());
    for (j, cidr) in trusted.into_iter().flatten().enumerate() {
        let cidr = report.parse_value(at(ListenerKey::ProxyTrusted(j)), cidr, str::parse::<Cidr>);
        c.proxy_trusted
            .push(cidr.unwrap_or(Cidr(STAND_IN.ip().into())));
    }
    let rules = get(t, "sni").and_then(|v| v.get_ref().as_table());
    for (j, (pattern, pool)) in rules.into_iter().flatten().enumerate() {
        report.at(at(ListenerKey::SniPattern(j)), pattern.span());
        report.at(at(ListenerKey::SniPool(j)), pool.span());
        let pool = pool.get_ref().as_str().unwrap_or_default().to_string();
        c.sni.push(SniRoute {
            pattern: pattern.get_ref().to_string(),
            pool,
        });
    }
    // "reject" always means closing, even if a pool has that name.
    if let Some(pool) = report
        .read::<String>(t, at(ListenerKey::NonTls))
        .filter(|v| v != "reject")
    {
        c.non_tls = NonTls::Pool(pool);
    }
    let limits = &mut c.limits;
    report.set(
        t,
        at(ListenerKey::MaxConnections),
        &mut limits.max_connections,
    );
    limits.max_connections_per_client = report.read(t, at(ListenerKey::MaxConnectionsPerClient));
    report.set(
        t,
        at(ListenerKey::MaxInspectingPerIp),
        &mut limits.max_inspecting_per_ip,
    );
    report.set(
        t,
        at(ListenerKey::MaxHelloBytes),
        &mut limits.max_hello_bytes,
    );
    c
}

fn build_pool(i: usize, name: &str, t: &DeTable, report: &mut Report) -> PoolConfig {
    let at = |key| ConfigPath::Pool(i, key);
    let mut c = PoolConfig::new(name, Vec::new());
    report.set(t, at(PoolKey::Balance), &mut c.balance);
    report.set(t, at(PoolKey::Inspect), &mut c.inspect);
    // Resolved here, into each backend: the running router keeps one
    // setting per backend, which a reload then changes in place.
    let send_proxy = report.read(t, at(PoolKey::SendProxy)).unwrap_or_default();
    if let Some(list) = get(t, "backends") {
        report.at(at(PoolKey::Backends), list.span());
        let items = list.get_ref().as_array().into_iter().flatten();
        for (j, b) in items.enumerate() {
            let table = b.get_ref().as_table().cloned().unwrap_or_default();
            c.backends
                .push(build_backend(i, j, &table, b.span(), send_proxy, report));
        }
    }
    let sub = |key| {
        get(t, key)
            .and_then(|v| v.get_ref().as_table())
            .cloned()
            .unwrap_or_default()
    };

    let (t, o) = (sub("timeouts"), &mut c.timeouts);
    let time = |key| at(PoolKey::Timeout(key));
    report.set(&t, time(TimeoutKey::Hello), &mut o.hello);
    report.set(&t, time(TimeoutKey::Connect), &mut o.connect);
    report.set(&t, time(TimeoutKey::FirstByte), &mut o.first_byte);
    report.set(&t, time(TimeoutKey::Idle), &mut o.idle);
    report.set(&t, time(TimeoutKey::DownHold), &mut o.down_hold);

    let (t, o) = (sub("affinity"), &mut c.affinity);
    let aff = |key| at(PoolKey::Affinity(key));
    report.set(&t, aff(AffinityKey::Timeout), &mut o.inactivity_timeout);
    report.set(
        &t,
        aff(AffinityKey::CorrelationWindow),
        &mut o.correlation_window,
    );
    o.absolute_max = report.read(&t, aff(AffinityKey::AbsoluteMax));
    report.set(&t, aff(AffinityKey::TableSize), &mut o.table_size);
    report.set(&t, aff(AffinityKey::ClientsTracked), &mut o.clients_tracked);
    report.set(&t, aff(AffinityKey::NatThreshold), &mut o.nat_threshold);
    report.set(&t, aff(AffinityKey::Ipv4Prefix), &mut o.ipv4_prefix);
    report.set(&t, aff(AffinityKey::Ipv6Prefix), &mut o.ipv6_prefix);

    let (t, o) = (sub("health"), &mut c.health);
    let check = |key| at(PoolKey::Health(key));
    report.set(&t, check(HealthKey::Check), &mut o.check);
    report.set(&t, check(HealthKey::Interval), &mut o.interval);
    report.set(&t, check(HealthKey::Timeout), &mut o.timeout);
    report.set(&t, check(HealthKey::Rise), &mut o.rise);
    report.set(&t, check(HealthKey::Fall), &mut o.fall);
    o.sni = report.read(&t, check(HealthKey::Sni));
    c
}

fn build_backend(
    pool: usize,
    backend: usize,
    t: &DeTable,
    span: Range<usize>,
    pool_send_proxy: SendProxy,
    report: &mut Report,
) -> BackendConfig {
    let at = |key| ConfigPath::Backend { pool, backend, key };
    report.at(at(BackendKey::Entry), span.clone());
    let name: Option<String> = report.required(t, at(BackendKey::Name), span.clone(), || {
        "backend has no `name`; add name = \"...\" (names identify backends in the affinity table and must stay stable across reloads)".into()
    });
    let addr = report.required(t, at(BackendKey::Address), span, || {
        "backend has no `address`; add address = \"IP:PORT\"".into()
    });
    let mut c = BackendConfig::new(&name.unwrap_or_default(), addr.unwrap_or(STAND_IN));
    report.set(t, at(BackendKey::Weight), &mut c.weight);
    c.max_connections = report.read(t, at(BackendKey::MaxConnections));
    c.send_proxy = report
        .read(t, at(BackendKey::SendProxy))
        .unwrap_or(pool_send_proxy);
    report.set(t, at(BackendKey::TcpFastopen), &mut c.tcp_fastopen);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AffinityConfig, Lifecycle, Limits, Timeouts};
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
    fn the_file_accepts_exactly_the_described_keys() {
        use crate::config::settings::SETTINGS;
        for s in SETTINGS
            .iter()
            .filter(|s| s.section != Section::CommandLine)
        {
            let value = match s.kind {
                Kind::Duration | Kind::Text => "\"1s\"",
                Kind::Int { .. } => "1",
                Kind::Bool => "true",
                Kind::List => "[\"x\"]",
                Kind::Tables => "[]",
                Kind::Sni => "{}",
            };
            let text = format!("{} = {value}\n", s.key());
            let (table, _) = DeTable::parse_recoverable(&text);
            let mut report = Report::default();
            assert!(
                report.shape(table.get_ref(), s.section),
                "{}: {:?}",
                s.name,
                report.file_errors
            );
            let text = format!("{}_typo = {value}\n", s.key());
            let (table, _) = DeTable::parse_recoverable(&text);
            assert!(
                !report.shape(table.get_ref(), s.section),
                "{} accepted a typo",
                s.name
            );
        }
    }

    #[test]
    fn a_section_that_is_not_a_table_is_located_and_says_how_to_write_it() {
        let e = errors(&format!("log = 1\n{MINIMAL}"));
        assert!(
            e[0].starts_with("t.toml:1:7: error: `log` must be a table; write it as [log]"),
            "{e:?}"
        );
        let e = errors("listener = [1]\n");
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.toml:1:13: error: a listener must be a table")),
            "{e:?}"
        );
        let nested = MINIMAL.replace("[pool.web]\n", "[pool.web]\naffinity = 5\n");
        let e = errors(&nested);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("`affinity` must be a table; write it as [pool.NAME.affinity]"),
            "{e:?}"
        );
        let pool = format!("{MINIMAL}\n[pool]\napi = 3\n");
        let e = errors(&pool);
        assert!(e.iter().any(|l| l.contains("pool `api` must be a table; write it as a [pool.api] section")), "{e:?}");
    }

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
max_connections_per_client = 50
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
                "10.0.0.0/8".parse::<Cidr>().unwrap(),
                "2001:db8::1/128".parse::<Cidr>().unwrap(),
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
                max_connections_per_client: Some(50),
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
            "{MINIMAL}\n[admin]\nbind = \"0.0.0.0:9900\"\ntoken = \"0123456789abcdef\"\ntoken_for_reads = true\nallowed_hosts = [\"router1.example.net\", \"::1\"]\n\n[log]\nformat = \"json\"\nconnections_per_second = 0\n"
        );
        let c = parse(&text, "t.toml").unwrap();
        let a = c.admin.unwrap();
        assert_eq!(a.bind, "0.0.0.0:9900".parse().unwrap());
        assert_eq!(a.token.as_deref(), Some("0123456789abcdef"));
        assert!(a.token_for_reads);
        assert_eq!(a.allowed_hosts, ["router1.example.net", "::1"]);
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
    fn an_allowed_host_with_a_scheme_or_a_port_is_located_and_says_to_write_the_name_alone() {
        let text = format!(
            "{MINIMAL}\n[admin]\nbind = \"127.0.0.1:9900\"\nallowed_hosts = [\"ok.example\", \"http://router1.example.net:9900\"]\n"
        );
        let line = text
            .lines()
            .position(|l| l.starts_with("allowed_hosts"))
            .unwrap()
            + 1;
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with(&format!("t.toml:{line}:")), "{e:?}");
        assert!(
            e[0].contains("`http://router1.example.net:9900`") && e[0].contains("name alone"),
            "{e:?}"
        );
        for bad in ["*.example.net", "a b", "", "10.0.0.5:9900", "[10.0.0.5]"] {
            let text = format!(
                "{MINIMAL}\n[admin]\nbind = \"127.0.0.1:9900\"\nallowed_hosts = [\"{bad}\"]\n"
            );
            assert_eq!(errors(&text).len(), 1, "{bad}");
        }
        for good in [
            "router1",
            "10.0.0.5",
            "2001:db8::1",
            "[2001:db8::1]",
            "a.example.",
        ] {
            let text = format!(
                "{MINIMAL}\n[admin]\nbind = \"127.0.0.1:9900\"\nallowed_hosts = [\"{good}\"]\n"
            );
            assert!(parse(&text, "t.toml").is_ok(), "{good}");
        }
        let text =
            format!("{MINIMAL}\n[admin]\nbind = \"127.0.0.1:9900\"\nallowed_hosts = \"one\"\n");
        assert_eq!(errors(&text).len(), 1, "a string, not a list");
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
                password_file: None,
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
    fn the_store_password_is_given_in_one_place() {
        let file = std::env::temp_dir().join(format!("stickytls-pw-{}", std::process::id()));
        std::fs::write(&file, "s3cret\r\n").unwrap();
        let f = file.display();
        let ok = format!(
            "[store]\nkind = \"redis\"\nurl = \"redis://app@h:1\"\npassword_file = \"{f}\"\n{MINIMAL}"
        );
        let c = parse(&ok, "t.toml").unwrap();
        assert_eq!(c.store.password().unwrap().as_deref(), Some("s3cret"));
        let twice = format!(
            "[store]\nkind = \"redis\"\nurl = \"redis://app:pw@h:1\"\npassword_file = \"{f}\"\n{MINIMAL}"
        );
        let e = parse(&twice, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("t.toml:4:17: error: store.password_file: a store URL carries a password and so does"),
            "{e}"
        );
        std::fs::remove_file(&file).unwrap();
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
                "[store]\nkind = \"redis\"\nurl = \"redis://h:1\"\npassword_file = \"/nonexistent/stickytls-password\"\n",
                "t.toml:4:17: error: store.password_file: cannot read /nonexistent/stickytls-password",
            ),
            (
                "[store]\nkind = \"redis\"\nurl = \"redis://u:pw@h:1\"\npassword_file = \"/dev/null\"\n",
                "t.toml:4:17: error: store.password_file: /dev/null is empty",
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
