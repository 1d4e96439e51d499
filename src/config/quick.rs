//! The quick form: `stickytls run`'s flags, which describe one listener
//! in front of one pool named `default` (or name a configuration file
//! instead), and their conversion into a [`Config`] held to the same rules
//! as the file's, each mistake located at its flag. Each flag's setting is
//! described in [`super::settings`], which a test holds this to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::file::{self, Diagnostics};
use super::{
    AdminConfig, BackendConfig, Balance, Config, ConfigErrors, ConfigPath, HealthCheck, LogFormat,
    SendProxy, StateConfig, StoreConfig, ValueError, parse_duration,
};

/// `stickytls run`'s arguments: a file, or the quick form's flags; the
/// worker threads and the log flags go with either.
// The field docs are `--help`'s text, which names file sections as the
// file writes them (`[log]`), not as links.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (docs/configuration.md), instead of the quick
    /// --listen/--backend form and its tuning options.
    #[arg(long, value_name = "FILE", conflicts_with = "QuickForm")]
    pub config: Option<PathBuf>,
    /// Worker threads, each with its own runtime and listening socket
    /// (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Log lines as `text` or `json` (overrides [log] format).
    #[arg(long, value_name = "FORMAT", value_parser = parsed::<LogFormat>)]
    pub log_format: Option<LogFormat>,
    /// Per-connection log lines per second at most; the rest are dropped
    /// and counted; 0 turns them off (overrides [log]
    /// connections_per_second).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=u64::from(u32::MAX)))]
    pub log_rate: Option<u64>,
    #[command(flatten)]
    pub quick: QuickForm,
}

/// The quick form's flags: given with --config they would be ignored, so
/// clap refuses them together (the group is the struct's name).
// The field docs are `--help`'s text, which names file sections as the
// file writes them (`[log]`), not as links.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Args, Debug)]
pub struct QuickForm {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", required_unless_present = "config")]
    pub listen: Option<SocketAddr>,
    /// A backend, as NAME=IP:PORT; repeat for each backend.
    #[arg(long = "backend", value_name = "NAME=ADDR", value_parser = parsed::<BackendConfig>, required_unless_present = "config")]
    pub backends: Vec<BackendConfig>,
    /// Balancer for clients without affinity, one of:
    ///   roundrobin           each backend in turn
    ///   weighted-roundrobin  each backend its weight's share, interleaved
    ///   least-connections    fewest open connections relative to weight
    ///   source-hash          by client address: every instance agrees
    /// (Weights are set in a --config file; here every backend weighs 1.)
    #[arg(long, default_value = "roundrobin", verbatim_doc_comment)]
    pub balance: Balance,
    /// Affinity entries unused this long are forgotten.
    #[arg(long, default_value = "30m", value_parser = parse_duration_arg)]
    pub affinity_timeout: Duration,
    /// Time a client has to send its whole ClientHello.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    pub hello_timeout: Duration,
    /// More new sessions than this from one address within the correlation
    /// window mark it as shared (NAT): its fresh clients are balanced.
    #[arg(long, default_value_t = 4)]
    pub nat_threshold: u32,
    /// How long a client address's last backend is used to re-bind its
    /// unknown sessions and pin its fresh ones.
    #[arg(long, default_value = "30m", value_parser = parse_duration_arg)]
    pub correlation_window: Duration,
    /// Bytes a client may send before its ClientHello must be complete.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_hello_bytes: usize,
    /// Per-backend connect timeout.
    #[arg(long, default_value = "3s", value_parser = parse_duration_arg)]
    pub connect_timeout: Duration,
    /// How long a backend may stay silent after the hello before the next
    /// one is tried.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    pub first_byte_timeout: Duration,
    /// Close connections with no traffic either way for this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration_arg)]
    pub idle_timeout: Duration,
    /// Most connections at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most connections one client address holds at once (default: half
    /// of --max-connections, rounded up). Raise it for clients behind one
    /// NAT address, or a load generator on one address.
    #[arg(long, value_name = "N")]
    pub max_connections_per_client: Option<usize>,
    /// How backends are probed between connections: tcp (a connect), tls
    /// (a ClientHello answered by a ServerHello) or none.
    #[arg(long, default_value = "tcp", value_parser = parsed::<HealthCheck>)]
    pub health_check: HealthCheck,
    /// Time between two health probes of one backend.
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    pub check_interval: Duration,
    /// Send every backend a PROXY protocol header with the client's
    /// address: v1 (text), v2 (binary, with the routing rule) or off. The
    /// backends must expect it (docs/operations.md).
    #[arg(long, value_name = "VERSION", default_value = "off", value_parser = parsed::<SendProxy>)]
    pub send_proxy: SendProxy,
    /// Connect to every backend with TCP Fast Open (TCP_FASTOPEN_CONNECT):
    /// the hello travels in the SYN once a backend has given this host a
    /// cookie. Only for backends that enable TFO themselves.
    #[arg(long)]
    pub tcp_fastopen: bool,
    /// Route by the balancer alone: no affinity lookup and no learning
    /// (the ClientHello is still read, for SNI). For measuring what
    /// inspection costs.
    #[arg(long)]
    pub no_inspect: bool,
    /// Serve metrics and the admin API on this address
    /// (docs/operations.md); its one pool is named `default`.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// The admin endpoint's bearer token; required unless --admin is a
    /// loopback address.
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "admin",
        env = "STICKYTLS_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// After SIGTERM or SIGINT, how long open connections may finish
    /// before the rest are closed ("0s": close them at once).
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub shutdown_timeout: Duration,
    /// Keep the affinity table and client index in this file across
    /// restarts (written every minute and at shutdown, read at start).
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Hand over to a new process without refusing a connection: a
    /// running router listens on this Unix socket, and one started with
    /// the same path takes its listening sockets and state from it.
    #[arg(long, value_name = "PATH")]
    pub takeover_socket: Option<PathBuf>,
    /// Share the affinity table with other instances through this Redis
    /// server (redis://HOST:PORT/DB) or Redis Cluster
    /// (redis-cluster://HOST:PORT,HOST:PORT,... naming some of its nodes);
    /// see [store] in docs/configuration.md.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// How long a connection waits for the shared store when its hello
    /// offers a key this instance does not know.
    #[arg(long, value_name = "DURATION", requires = "store", value_parser = parse_duration_arg)]
    pub store_lookup_budget: Option<Duration>,
}

/// A value of the quick form, parsed as the file's is, with the same message.
fn parsed<T: std::str::FromStr<Err = ValueError>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e: ValueError| e.to_string())
}

/// A duration flag (`--timeout 5s`), with the file's grammar and message.
pub(crate) fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// A configuration that cannot run, located where the operator gave it.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error(transparent)]
    File(Diagnostics),
    /// The configuration is kept (boxed: it is large) to name each
    /// backend by what was typed for it. Displays one error per line, as
    /// `check` prints them, at the flag instead of `FILE:LINE:COLUMN:`.
    #[error("{}", flags_message(.0, .1))]
    Flags(Box<Config>, #[source] ConfigErrors),
}

fn flags_message(config: &Config, errors: &ConfigErrors) -> String {
    let line = |e: &super::ConfigError| {
        let message = e.message(&|p| flag(config, p));
        format!("{}: error: {message}", flag(config, e.path))
    };
    errors.0.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// The quick-form flag that sets `path`, or the nearest enclosing place
/// that has one.
fn flag(config: &Config, path: ConfigPath) -> String {
    if let ConfigPath::Backend { pool, backend, .. } = path {
        // Each backend is known by what was typed for it.
        return match config.pools.get(pool).and_then(|p| p.backends.get(backend)) {
            Some(b) => format!("--backend {}={}", b.name, b.addr),
            None => "--backend".to_string(),
        };
    }
    let flag = path.ancestors().find_map(|p| p.setting()?.flag);
    flag.unwrap_or("the command line").to_string()
}

impl RunArgs {
    /// The file's configuration, or the quick form's checked by the same
    /// rules; then the log flags, which apply to both.
    pub fn config(self) -> Result<Config, Invalid> {
        let mut c = match &self.config {
            Some(path) => file::load(path).map_err(Invalid::File)?,
            None => self.quick.config()?,
        };
        if let Some(f) = self.log_format {
            c.log.format = f;
        }
        if let Some(n) = self.log_rate {
            c.log.connections_per_second = n;
        }
        Ok(c)
    }
}

impl QuickForm {
    fn config(self) -> Result<Config, Invalid> {
        let Some(listen) = self.listen else {
            unreachable!("clap requires --listen unless --config is given")
        };
        let mut backends = self.backends;
        for b in &mut backends {
            b.send_proxy = self.send_proxy;
            b.tcp_fastopen = self.tcp_fastopen;
        }
        let mut c = Config::single(listen, backends);
        c.admin = self.admin.map(|bind| AdminConfig {
            bind,
            token: self.admin_token,
            ..AdminConfig::new(bind)
        });
        let p = &mut c.pools[0];
        p.balance = self.balance;
        p.inspect = !self.no_inspect;
        p.affinity.inactivity_timeout = self.affinity_timeout;
        p.affinity.correlation_window = self.correlation_window;
        p.affinity.nat_threshold = self.nat_threshold;
        p.timeouts.hello = self.hello_timeout;
        p.timeouts.connect = self.connect_timeout;
        p.timeouts.first_byte = self.first_byte_timeout;
        p.timeouts.idle = self.idle_timeout;
        p.health.check = self.health_check;
        p.health.interval = self.check_interval;
        // The probe's bound follows a shorter interval down, so that
        // `--check-interval 500ms` alone is valid.
        if !self.check_interval.is_zero() {
            p.health.timeout = p.health.timeout.min(self.check_interval);
        }
        let l = &mut c.listeners[0].limits;
        l.max_hello_bytes = self.max_hello_bytes;
        l.max_connections = self.max_connections;
        l.max_connections_per_client = self.max_connections_per_client;
        c.lifecycle.shutdown_timeout = self.shutdown_timeout;
        c.lifecycle.state = self.state_file.map(StateConfig::new);
        c.lifecycle.takeover_socket = self.takeover_socket;
        if let Some(url) = self.store {
            c.store = StoreConfig::from_flag(&url);
            if let Some(b) = self.store_lookup_budget {
                c.store.lookup_budget = b;
            }
        }
        match c.validate() {
            Ok(()) => Ok(c),
            Err(errors) => Err(Invalid::Flags(Box::new(c), errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::Problem;
    use crate::config::settings::{DefaultValue, Kind, SETTINGS};
    use clap::Parser;

    /// `run` as the binary's command line has it.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Command {
        Run(RunArgs),
    }

    fn quick_config(flags: &[&str]) -> Result<Config, Invalid> {
        let args = ["stickytls", "run", "--listen", "127.0.0.1:8443"];
        let cli = Cli::try_parse_from(args.iter().chain(flags)).unwrap();
        let Command::Run(run) = cli.command;
        run.config()
    }

    /// The quick form's errors for `flags`, as `run` prints them.
    fn quick_form(flags: &[&str]) -> Vec<String> {
        match quick_config(flags) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    /// A file with one pool named `default`, as the quick form has, and
    /// `extra` appended; its rule errors as `check` prints them.
    fn file(backends: &str, extra: &str) -> Vec<String> {
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:8443\"\ndefault_pool = \"default\"\n{extra}\n[pool.default]\nbackends = [{backends}]\n"
        );
        let errors = file::parse(&text, "t.toml").unwrap_err().0;
        assert!(
            errors.iter().all(|d| matches!(d.problem, Problem::Rule(_))),
            "{errors:?}"
        );
        errors.iter().map(|d| d.to_string()).collect()
    }

    /// What follows `error: `: the message without its location.
    fn message(line: &str) -> &str {
        line.split_once(": error: ").unwrap().1
    }

    #[test]
    fn store_flags_set_a_redis_store_and_a_bad_url_names_the_flag() {
        let c = quick_config(&[
            "--backend",
            "a=127.0.0.1:1",
            "--store",
            "redis://10.0.0.5:6379/1",
            "--store-lookup-budget",
            "5ms",
        ])
        .unwrap();
        assert_eq!(c.store.kind, crate::config::StoreKind::Redis);
        assert_eq!(c.store.urls, ["redis://10.0.0.5:6379/1"]);
        assert_eq!(c.store.lookup_budget, Duration::from_millis(5));
        assert_eq!(c.store.prefix, StoreConfig::PREFIX);
        let without = quick_config(&["--backend", "a=127.0.0.1:1"]).unwrap();
        assert_eq!(without.store, StoreConfig::default());
        let bad = quick_form(&["--backend", "a=127.0.0.1:1", "--store", "10.0.0.5:6379"]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].starts_with("--store: error: `10.0.0.5:6379` is not a Redis URL"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_cluster_store_flag_names_its_seed_nodes() {
        let c = quick_config(&[
            "--backend",
            "a=127.0.0.1:1",
            "--store",
            "redis-cluster://10.0.0.5:7000,10.0.0.6:7001",
        ])
        .unwrap();
        assert_eq!(c.store.kind, crate::config::StoreKind::RedisCluster);
        assert_eq!(
            c.store.urls,
            ["redis://10.0.0.5:7000", "redis://10.0.0.6:7001"]
        );
        let bad = quick_form(&["--backend", "a=127.0.0.1:1", "--store", "redis-cluster://"]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].starts_with("--store: error: `redis://` is not a Redis URL"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_rule_broken_in_a_file_or_by_flags_gives_the_same_message() {
        let one = r#"{ name = "a", address = "127.0.0.1:1" }"#;
        let cases: [(&[&str], &str, String, &str); 8] = [
            (
                &["--backend", "a=127.0.0.1:1", "--idle-timeout", "0s"],
                "[pool.default.timeouts]\nidle = \"0s\"",
                one.into(),
                "--idle-timeout",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--affinity-timeout", "0"],
                "[pool.default.affinity]\ntimeout = \"0\"",
                one.into(),
                "--affinity-timeout",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--correlation-window", "0ms"],
                "[pool.default.affinity]\ncorrelation_window = \"0ms\"",
                one.into(),
                "--correlation-window",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--max-hello-bytes", "100"],
                "max_hello_bytes = 100",
                one.into(),
                "--max-hello-bytes",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--max-connections", "0"],
                "max_connections = 0",
                one.into(),
                "--max-connections",
            ),
            (
                &[
                    "--backend",
                    "a=127.0.0.1:1",
                    "--max-connections-per-client",
                    "0",
                ],
                "max_connections_per_client = 0",
                one.into(),
                "--max-connections-per-client",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--backend", "a=127.0.0.1:2"],
                "",
                format!(r#"{one}, {{ name = "a", address = "127.0.0.1:2" }}"#),
                "--backend a=127.0.0.1:2",
            ),
            (
                &["--backend", "=127.0.0.1:1"],
                "",
                r#"{ name = "", address = "127.0.0.1:1" }"#.into(),
                "--backend =127.0.0.1:1",
            ),
        ];
        for (flags, extra, backends, flag) in cases {
            let quick = quick_form(flags);
            let file = file(&backends, extra);
            assert_eq!(quick.len(), 1, "{flags:?}: {quick:?}");
            assert_eq!(file.len(), 1, "{extra}: {file:?}");
            assert_eq!(message(&quick[0]), message(&file[0]), "{flags:?}");
            assert!(
                quick[0].starts_with(&format!("{flag}: error: ")),
                "{}",
                quick[0]
            );
        }
    }

    #[test]
    fn health_flags_set_the_check_and_its_interval() {
        let c = quick_config(&["--backend", "a=127.0.0.1:1"]).unwrap();
        assert_eq!(c.pools[0].health.check, HealthCheck::Tcp);
        let c = quick_config(&[
            "--backend",
            "a=127.0.0.1:1",
            "--health-check",
            "tls",
            "--check-interval",
            "500ms",
        ])
        .unwrap();
        let h = &c.pools[0].health;
        assert_eq!(h.check, HealthCheck::Tls);
        assert_eq!(h.interval, Duration::from_millis(500));
        assert_eq!(
            h.timeout,
            Duration::from_millis(500),
            "bounded by the interval"
        );
        let c = quick_config(&["--backend", "a=127.0.0.1:1", "--health-check", "none"]).unwrap();
        assert_eq!(c.pools[0].health.check, HealthCheck::None);
    }

    #[test]
    fn send_proxy_flag_applies_to_every_backend_and_refuses_other_values() {
        let two = ["--backend", "a=127.0.0.1:1", "--backend", "b=127.0.0.1:2"];
        let sent = |flags: &[&str]| -> Vec<SendProxy> {
            let all: Vec<&str> = two.iter().chain(flags).copied().collect();
            let c = quick_config(&all).unwrap();
            c.pools[0].backends.iter().map(|b| b.send_proxy).collect()
        };
        assert_eq!(sent(&[]), [SendProxy::Off, SendProxy::Off]);
        assert_eq!(sent(&["--send-proxy", "v1"]), [SendProxy::V1; 2]);
        assert_eq!(sent(&["--send-proxy", "v2"]), [SendProxy::V2; 2]);
        let args = ["stickytls", "run", "--listen", "127.0.0.1:8443"];
        let e = Cli::try_parse_from(args.iter().chain(&two).chain(&["--send-proxy", "v3"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--send-proxy"), "{e}");
        assert!(e.contains("unknown send_proxy `v3`"), "{e}");
        // Like the other quick-form options, it cannot be mixed with a file.
        let e = Cli::try_parse_from([
            "stickytls",
            "run",
            "--config",
            "x.toml",
            "--send-proxy",
            "v2",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn tcp_fastopen_flag_applies_to_every_backend() {
        let two = ["--backend", "a=127.0.0.1:1", "--backend", "b=127.0.0.1:2"];
        let fast_open = |flags: &[&str]| -> Vec<bool> {
            let all: Vec<&str> = two.iter().chain(flags).copied().collect();
            let c = quick_config(&all).unwrap();
            c.pools[0].backends.iter().map(|b| b.tcp_fastopen).collect()
        };
        assert_eq!(fast_open(&[]), [false, false]);
        assert_eq!(fast_open(&["--tcp-fastopen"]), [true, true]);
        let e = Cli::try_parse_from(["stickytls", "run", "--config", "x.toml", "--tcp-fastopen"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn the_per_client_share_defaults_to_half_the_listener_and_the_flag_sets_it() {
        let limits = |flags: &[&str]| {
            let all: Vec<&str> = ["--backend", "a=127.0.0.1:1"]
                .iter()
                .chain(flags)
                .copied()
                .collect();
            quick_config(&all).unwrap().listeners[0].limits
        };
        let l = limits(&[]);
        assert_eq!(l.max_connections_per_client, None);
        assert_eq!(l.connections_per_client(), 5_000);
        let l = limits(&["--max-connections", "41"]);
        assert_eq!(l.connections_per_client(), 21, "rounded up");
        let l = limits(&["--max-connections", "1"]);
        assert_eq!(
            l.connections_per_client(),
            1,
            "one slot still serves one client"
        );
        let l = limits(&["--max-connections-per-client", "20000"]);
        assert_eq!(
            l.connections_per_client(),
            20_000,
            "above max_connections is allowed (and never reached)"
        );
    }

    #[test]
    fn valid_flags_make_a_config_with_their_values() {
        let c = quick_config(&["--backend", "a=127.0.0.1:1", "--idle-timeout", "1s"]).unwrap();
        assert_eq!(c.pools[0].timeouts.idle, Duration::from_secs(1));
        assert_eq!(c.pools[0].backends[0].name, "a");
    }

    #[test]
    fn every_flag_sets_a_described_setting_with_the_same_default() {
        let run = RunArgs::augment_args(clap::Command::new("run"));
        let flags: Vec<String> = run
            .get_arguments()
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        for arg in run.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let name = format!("--{long}");
            if name == "--config" {
                continue; // the file itself
            }
            let Some(s) = SETTINGS.iter().find(|s| s.flag == Some(name.as_str())) else {
                panic!("{name} sets no setting of config::settings");
            };
            let Some(given) = arg.get_default_values().first().and_then(|v| v.to_str()) else {
                continue;
            };
            let same = match (s.kind, s.default) {
                (Kind::Duration, DefaultValue::Time(d)) => parse_duration(given) == Ok(d),
                (Kind::Int { .. }, DefaultValue::Int(d)) => given.parse() == Ok(d),
                (_, DefaultValue::Text(t)) => given == t,
                (_, DefaultValue::Bool(b)) => given == b.to_string(),
                _ => false,
            };
            assert!(
                same,
                "{name} defaults to {given}, {} to {:?}",
                s.name, s.default
            );
        }
        for s in SETTINGS {
            if let Some(f) = s.flag {
                assert!(
                    flags.iter().any(|g| g == f),
                    "{}'s flag {f} is not a flag of run",
                    s.name
                );
            }
        }
    }
}
