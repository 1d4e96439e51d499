//! `stickytls check` and `stickytls run --config` on real files: every
//! class of mistake is reported at its file, line and column with what to
//! change, and the exit status tells a reload script whether to go on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A broken configuration and exactly what `check` must print for it.
struct Case {
    name: &'static str,
    /// The file; a leading newline is only there to line the text up in
    /// this source and is dropped.
    config: &'static str,
    /// Every stderr line, in order.
    errors: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "absolute_short",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[pool.web.affinity]
timeout = "30m"
absolute_max = "10m"
"#,
        errors: &[
            r#"stickytls.toml:10:16: error: affinity.absolute_max (10m) is shorter than affinity.timeout (30m), so entries would expire before they go idle; raise it or remove it"#,
        ],
    },
    Case {
        name: "backend_maxconn0",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443", max_connections = 0 }]
"#,
        errors: &[
            r#"stickytls.toml:7:74: error: max_connections is 0, so this backend could never be used; raise it or remove the line for no limit"#,
        ],
    },
    Case {
        name: "bad_backend_addr",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1" }]
"#,
        errors: &[
            r#"stickytls.toml:7:40: error: `10.0.1.1` is not an IP:PORT address; write e.g. "10.0.1.1:443" or "[2001:db8::1]:443" (host names are not resolved)"#,
        ],
    },
    Case {
        name: "bad_balance",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
balance = "random"
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:7:11: error: unknown balancer `random`; use "roundrobin", "weighted-roundrobin", "least-connections" or "source-hash""#,
        ],
    },
    Case {
        name: "bad_bind",
        config: r#"
[[listener]]
name = "https"
bind = "localhost:443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:3:8: error: `localhost:443` is not an IP:PORT address; write e.g. "0.0.0.0:443" or "[::]:443" (host names are not resolved)"#,
        ],
    },
    Case {
        name: "bad_cidr",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
proxy_protocol = true
proxy_trusted = ["10.0.0.0/33"]

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:6:18: error: `10.0.0.0/33` is not a network in CIDR notation; write e.g. "10.0.0.0/8", "2001:db8::/32" or a single address"#,
        ],
    },
    Case {
        name: "bad_duration",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[pool.web.timeouts]
idle = "10 minutes"
"#,
        errors: &[
            r#"stickytls.toml:9:8: error: timeouts.idle `10 minutes` is not a duration; write a number and a unit (ms, s, m, h or d), e.g. "10m""#,
        ],
    },
    Case {
        name: "bad_prefix",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[pool.web.affinity]
ipv4_prefix = 33
"#,
        errors: &[
            r#"stickytls.toml:9:15: error: affinity.ipv4_prefix is 33, but a prefix length is 1 to 32 bits; use 32 for one address per client"#,
        ],
    },
    Case {
        name: "bad_sni",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
[listener.sni]
"a.*.example.com" = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:6:1: error: SNI pattern `a.*.example.com` is not a host name or `*.` followed by one; write e.g. "api.example.com" or "*.example.com" (a wildcard covers exactly one leading label)"#,
        ],
    },
    Case {
        name: "dup_backend",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }, { name = "web1", address = "10.0.1.2:443" }]
"#,
        errors: &[
            r#"stickytls.toml:7:67: error: backend name `web1` is used twice in pool `web`; names identify backends in the affinity table, so give each its own"#,
        ],
    },
    Case {
        name: "dup_bind",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[[listener]]
name = "again"
bind = "127.0.0.1:8443"
default_pool = "web"
"#,
        errors: &[
            r#"stickytls.toml:10:8: error: bind address 127.0.0.1:8443 is already used by listener `https`; give each listener its own address or port"#,
        ],
    },
    Case {
        name: "dup_listener",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[[listener]]
name = "https"
bind = "127.0.0.1:9443"
default_pool = "web"
"#,
        errors: &[
            r#"stickytls.toml:9:8: error: listener name `https` is already used by the listener at line 2; give each listener its own name"#,
        ],
    },
    Case {
        name: "dup_pool",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[pool.web]
backends = [{ name = "web2", address = "10.0.1.2:443" }]
"#,
        errors: &[
            r#"stickytls.toml:8:7: error: `web` is defined twice; each key, listener name and pool may appear only once, so remove or rename one"#,
            r#"stickytls.toml:9:1: error: `backends` is defined twice; each key, listener name and pool may appear only once, so remove or rename one"#,
        ],
    },
    Case {
        name: "empty_pool",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = []
"#,
        errors: &[
            r#"stickytls.toml:7:12: error: pool `web` has no backends; add at least one { name = "...", address = "IP:PORT" }"#,
        ],
    },
    Case {
        name: "listener_maxconn0",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
max_connections = 0

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:5:19: error: max_connections is 0; set it to 1 or more (default 10000)"#,
        ],
    },
    Case {
        name: "missing_bind",
        config: r#"
[[listener]]
name = "https"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:1:1: error: listener `https` has no `bind` address; add e.g. bind = "0.0.0.0:443""#,
        ],
    },
    Case {
        name: "no_listener",
        config: r#"
[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:1:1: error: no [[listener]] section, so nothing would accept connections; add one with `bind` and `default_pool`"#,
        ],
    },
    Case {
        name: "proxy_untrusted",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
proxy_protocol = true

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:5:18: error: proxy_protocol is on but proxy_trusted is empty, so every connection would be closed; list the proxies' networks in proxy_trusted, e.g. proxy_trusted = ["10.0.0.0/8"]"#,
        ],
    },
    Case {
        name: "small_hello",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
max_hello_bytes = 100

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:5:19: error: max_hello_bytes 100 would reject ordinary ClientHellos; set it to 512 or more (default 16384)"#,
        ],
    },
    Case {
        name: "sni_case_dup",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
[listener.sni]
"api.example.com" = "web"
"API.example.com." = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:7:1: error: SNI pattern `API.example.com.` is the same name as `api.example.com` (matching ignores case and a trailing dot); keep one of them"#,
        ],
    },
    Case {
        name: "syntax",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:3:23: error: invalid basic string, expected `"`; fix the TOML syntax here"#,
        ],
    },
    Case {
        name: "undefined_default",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "wbe"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:4:16: error: default_pool names pool `wbe`, which is not defined; add a [pool.wbe] section or use one of: web"#,
        ],
    },
    Case {
        name: "undefined_non_tls",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
non_tls = "legacy"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:5:11: error: non_tls names pool `legacy`, which is not defined; write "reject", add a [pool.legacy] section or use one of: web"#,
        ],
    },
    Case {
        name: "undefined_sni",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
[listener.sni]
"api.example.com" = "api"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:6:21: error: SNI rule `api.example.com` names pool `api`, which is not defined; add a [pool.api] section or use one of: web"#,
        ],
    },
    Case {
        name: "unknown_affinity_key",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[pool.web.affinity]
timout = "5m"
"#,
        errors: &[
            r#"stickytls.toml:9:1: error: unknown setting `timout`, expected one of `timeout`, `absolute_max`, `table_size`, `correlation_window`, `nat_threshold`, `ipv4_prefix`, `ipv6_prefix`, `clients_tracked`; fix its spelling or remove it"#,
        ],
    },
    Case {
        name: "unknown_listener_key",
        config: r#"
[[listener]]
name = "https"
bnd = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:3:1: error: unknown setting `bnd`, expected one of `name`, `bind`, `proxy_protocol`, `proxy_trusted`, `default_pool`, `non_tls`, `max_connections`, `max_connections_per_client`, `max_inspecting_per_ip`, `max_hello_bytes`, `sni`; fix its spelling or remove it"#,
        ],
    },
    Case {
        name: "unknown_top",
        config: r#"
log_level = "debug"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:1:1: error: unknown top-level setting `log_level`; the file holds shutdown_timeout and only [state], [[listener]], [pool.NAME], [admin], [log] and [store] sections, so move it into one or remove it"#,
        ],
    },
    Case {
        name: "wrong_type_bool",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"
proxy_protocol = "yes"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
"#,
        errors: &[
            r#"stickytls.toml:5:18: error: invalid type: string "yes", expected a boolean; change the value to that type"#,
        ],
    },
    Case {
        name: "wrong_type_weight",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443", weight = "2" }]
"#,
        errors: &[
            r#"stickytls.toml:7:65: error: invalid type: string "2", expected an integer; change the value to that type"#,
        ],
    },
    Case {
        name: "zero_timeout",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[pool.web.timeouts]
connect = "0s"
"#,
        errors: &[
            r#"stickytls.toml:9:11: error: timeouts.connect is zero, which would fail every connection or forget every entry at once; set it above zero, e.g. "3s""#,
        ],
    },
    Case {
        name: "zero_weights",
        config: r#"
[[listener]]
name = "https"
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443", weight = 0 }, { name = "web2", address = "10.0.1.2:443", weight = 0 }]
"#,
        errors: &[
            r#"stickytls.toml:7:12: error: every backend of pool `web` has weight 0, so no client could be placed; give at least one a weight above 0"#,
        ],
    },
];

/// A fresh directory for one test's files; the binary runs inside it so
/// messages carry the short relative file name.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stickytls-check-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stickytls(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stickytls"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn check_reports_each_broken_config_at_its_line_and_column_and_exits_1() {
    let dir = scratch("table");
    let mut failures = Vec::new();
    for case in CASES {
        let case_dir = dir.join(case.name);
        std::fs::create_dir_all(&case_dir).unwrap();
        let text = case.config.strip_prefix('\n').unwrap_or(case.config);
        std::fs::write(case_dir.join("stickytls.toml"), text).unwrap();
        let out = stickytls(&case_dir, &["check", "--config", "stickytls.toml"]);
        let got = stderr_lines(&out);
        if out.status.code() != Some(1) || got != case.errors {
            failures.push(format!(
                "{}: exit {:?}\n  expected: {:#?}\n  got: {:#?}",
                case.name,
                out.status.code(),
                case.errors,
                got
            ));
        }
        assert!(
            out.stdout.is_empty(),
            "{}: nothing on stdout for a broken file",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_reports_every_mistake_in_a_file_not_only_the_first() {
    let dir = scratch("many");
    std::fs::write(
        dir.join("many.toml"),
        r#"[[listener]]
bind = "0.0.0.0:443"
default_pool = "nowhere"
proxy_protocol = true

[[listener]]
bind = "0.0.0.0:80"
default_pool = "web"
non_tls = "plain"

[pool.web]
backends = [{ name = "a", address = "10.0.0.1" }]

[pool.web.timeouts]
idle = "0"

[pool.typo]
balanse = "roundrobin"
"#,
    )
    .unwrap();
    let out = stickytls(&dir, &["check", "--config", "many.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&out),
        [
            r#"many.toml:3:16: error: default_pool names pool `nowhere`, which is not defined; add a [pool.nowhere] section or use one of: web, typo"#,
            r#"many.toml:4:18: error: proxy_protocol is on but proxy_trusted is empty, so every connection would be closed; list the proxies' networks in proxy_trusted, e.g. proxy_trusted = ["10.0.0.0/8"]"#,
            r#"many.toml:9:11: error: non_tls names pool `plain`, which is not defined; write "reject", add a [pool.plain] section or use one of: web, typo"#,
            r#"many.toml:12:37: error: `10.0.0.1` is not an IP:PORT address; write e.g. "10.0.1.1:443" or "[2001:db8::1]:443" (host names are not resolved)"#,
            r#"many.toml:15:8: error: timeouts.idle is zero, which would fail every connection or forget every entry at once; set it above zero, e.g. "10m""#,
            r#"many.toml:18:1: error: unknown setting `balanse`, expected one of `balance`, `inspect`, `send_proxy`, `backends`, `affinity`, `timeouts`, `health`; fix its spelling or remove it"#,
        ]
    );
}

#[test]
fn example_config_passes_check_with_a_summary() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stickytls.toml");
    let out = stickytls(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &["check", "--config", example.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: ok (2 listeners, 3 pools, 6 backends)\n",
            example.display()
        )
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn run_refuses_a_broken_config_with_the_same_message_and_exit_1() {
    let dir = scratch("run");
    std::fs::write(
        dir.join("broken.toml"),
        "[[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\n[pool.web]\nbackends = []\n",
    )
    .unwrap();
    let expected = [
        r#"broken.toml:6:12: error: pool `web` has no backends; add at least one { name = "...", address = "IP:PORT" }"#,
    ];
    let check = stickytls(&dir, &["check", "--config", "broken.toml"]);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(stderr_lines(&check), expected);
    let run = stickytls(&dir, &["run", "--config", "broken.toml"]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(stderr_lines(&run), expected);
}

#[test]
fn run_refuses_broken_flags_with_the_files_message_at_the_flag() {
    let dir = scratch("flags");
    let run = stickytls(
        &dir,
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "a=127.0.0.1:1",
            "--connect-timeout",
            "0s",
            "--max-hello-bytes",
            "100",
        ],
    );
    assert_eq!(run.status.code(), Some(1));
    // The same messages as the zero_timeout and small_hello cases above.
    assert_eq!(
        stderr_lines(&run),
        [
            r#"--connect-timeout: error: timeouts.connect is zero, which would fail every connection or forget every entry at once; set it above zero, e.g. "3s""#,
            r#"--max-hello-bytes: error: max_hello_bytes 100 would reject ordinary ClientHellos; set it to 512 or more (default 16384)"#,
        ]
    );
}

#[test]
fn an_unreadable_file_is_an_error_and_usage_mistakes_exit_2() {
    let dir = scratch("usage");
    let missing = stickytls(&dir, &["check", "--config", "absent.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.starts_with("absent.toml: error: cannot read the configuration file: "),
        "{err}"
    );
    assert_eq!(stickytls(&dir, &["check"]).status.code(), Some(2));
    let both = stickytls(
        &dir,
        &[
            "run",
            "--config",
            "a.toml",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "a=127.0.0.1:1",
        ],
    );
    assert_eq!(both.status.code(), Some(2));
    let tuning = stickytls(
        &dir,
        &["run", "--config", "a.toml", "--balance", "source-hash"],
    );
    assert_eq!(
        tuning.status.code(),
        Some(2),
        "a quick-form option would be silently ignored with --config"
    );
}

#[test]
fn readme_minimal_config_passes_check() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("```toml\n").expect("README shows a config") + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let dir = scratch("readme");
    std::fs::write(dir.join("stickytls.toml"), &readme[start..end]).unwrap();
    let out = stickytls(&dir, &["check", "--config", "stickytls.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_health_check_mistakes_at_their_lines() {
    let dir = scratch("health");
    std::fs::write(
        dir.join("health.toml"),
        r#"[[listener]]
bind = "127.0.0.1:8443"
default_pool = "web"

[pool.web]
backends = [{ name = "web1", address = "10.0.1.1:443" }]
[pool.web.health]
check = "http"
interval = "500ms"
timeout = "2s"
rise = 0
fall = 1001
sni = "*.example.com"

[pool.api]
backends = [{ name = "api1", address = "10.0.2.1:443" }]
[pool.api.health]
interval = "0s"
sni = "api.example.com"

[pool.typo]
backends = [{ name = "t1", address = "10.0.3.1:443" }]
[pool.typo.health]
tries = 3
"#,
    )
    .unwrap();
    let out = stickytls(&dir, &["check", "--config", "health.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&out),
        [
            r#"health.toml:8:9: error: unknown health check `http`; use "tcp" (connect), "tls" (a ServerHello answers a ClientHello) or "none""#,
            r#"health.toml:10:11: error: health.timeout (2s) is longer than health.interval (500ms), so one backend's probes would overlap; lower the timeout or raise the interval"#,
            r#"health.toml:11:8: error: health.rise is 0; set it to 1 or more (default 2)"#,
            r#"health.toml:12:8: error: health.fall is 1001, too large; set it to 1000 or less (default 3)"#,
            r#"health.toml:13:7: error: health.sni `*.example.com` is not a host name; write e.g. "www.example.com", or remove it to send no server name"#,
            r#"health.toml:18:12: error: health.interval is zero, which would fail every health check or probe without pause; set it above zero, e.g. "2s", or set health.check = "none""#,
            r#"health.toml:19:7: error: health.sni is only sent by the TLS check, but health.check is "tcp"; set check = "tls" or remove sni"#,
            r#"health.toml:24:1: error: unknown setting `tries`, expected one of `check`, `interval`, `timeout`, `rise`, `fall`, `sni`; fix its spelling or remove it"#,
        ]
    );

    // The quick form: the same rule, the same message, at its flag.
    let out = stickytls(
        &dir,
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "a=127.0.0.1:1",
            "--check-interval",
            "0s",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&out),
        [
            r#"--check-interval: error: health.interval is zero, which would fail every health check or probe without pause; set it above zero, e.g. "2s", or set health.check = "none""#
        ]
    );
}
