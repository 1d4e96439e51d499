//! Many short connections: TCP connect, TLS handshake, one HTTP/1.1
//! request with `Connection: close`, read to the end.
//!
//! Simulated clients each keep their own session store (one rustls
//! `ClientConfig` each), and one client never has two connections at once,
//! so with `--resume` every timed connection offers the session its client
//! got last. Before the timed part, each client makes one untimed
//! connection to get its first session; `--warmup-target` sends that one
//! elsewhere (another router instance sharing a store), and with as many
//! clients as connections every timed connection is then the first
//! resumption, through `--target`, of a session learned there.
//!
//! The backend tells who it is: the body is expected to hold
//! `backend=NAME` and `reused=r` (nginx's `$ssl_session_reused`) when it
//! resumed. A resumption can only succeed on the backend that issued the
//! session (each backend has its own cache and ticket keys), so the share
//! of offers that resumed is the share that reached the issuing backend.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Common, Tls, parse_secs, procstat, tls};

#[derive(Args, Debug)]
pub struct ConnsArgs {
    #[command(flatten)]
    pub common: Common,
    /// Timed connections to make.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Connections in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Simulated clients, each with its own session store (at least
    /// `concurrency`).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// TLS version offered.
    #[arg(long, value_enum, default_value = "13")]
    pub tls: Tls,
    /// Offer each client's last session (resumed handshakes); off, every
    /// handshake is full.
    #[arg(long)]
    pub resume: bool,
    /// Stop starting connections after this long, whatever `--conns` says.
    #[arg(long, default_value = "60s", value_parser = parse_secs)]
    pub max_time: Duration,
    /// Bound on each connection.
    #[arg(long, default_value = "10s", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Where each client's warm-up connection (its first, full handshake)
    /// goes, when not to `--target`: with a shared store, the instance
    /// that learns the sessions the timed connections resume through
    /// `--target`, another instance that has never seen them.
    #[arg(long, value_name = "ADDR", requires = "resume")]
    pub warmup_target: Option<SocketAddr>,
    /// A shell command run after the warm-up, before the timed part (for
    /// example `callgrind_control --zero PID`, so a profile holds only
    /// timed connections).
    #[arg(long)]
    pub after_warmup: Option<String>,
}

/// What one connection saw.
struct Outcome {
    /// Connect start to handshake complete.
    handshake: Duration,
    /// Connect start to the whole answer read.
    total: Duration,
    backend: String,
    client_resumed: bool,
    server_resumed: bool,
}

/// One simulated client.
struct Client {
    /// Carries this client's session store.
    config: Arc<ClientConfig>,
    /// Backend of this client's previous connection.
    last_backend: Option<String>,
}

/// Totals of the timed part.
#[derive(Default)]
struct Tally {
    handshakes_us: Vec<u64>,
    totals_us: Vec<u64>,
    errors: usize,
    first_errors: Vec<String>,
    /// Connections that offered a session.
    offered: usize,
    resumed: usize,
    server_resumed: usize,
    /// Connections that reached the same backend as their client's
    /// previous one.
    same_backend: usize,
    backends: BTreeMap<String, usize>,
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

pub async fn run(args: ConnsArgs) -> Result<(), String> {
    let ca = tls::load_ca(&args.common.ca)?;
    let name = ServerName::try_from(args.common.sni.clone()).map_err(|e| e.to_string())?;
    let concurrency = args.concurrency.max(1);
    let n_clients = args.clients.max(concurrency);
    let clients: Vec<Mutex<Client>> = (0..n_clients)
        .map(|_| {
            tls::client_config(&ca, args.tls, args.resume).map(|config| {
                Mutex::new(Client {
                    config,
                    last_backend: None,
                })
            })
        })
        .collect::<Result<_, _>>()?;
    let clients = Arc::new(clients);
    let target = args.common.target;

    // Warm-up: one connection per client, so each holds a session.
    if args.resume {
        let target = args.warmup_target.unwrap_or(target);
        let queue: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new((0..n_clients).collect()));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (queue, clients, name, tally) =
                (queue.clone(), clients.clone(), name.clone(), tally.clone());
            let timeout = args.timeout;
            tasks.push(tokio::spawn(async move {
                loop {
                    let Some(i) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    let config = clients[i].lock().unwrap().config.clone();
                    match tokio::time::timeout(timeout, one(config, target, name.clone())).await {
                        Ok(Ok(o)) => clients[i].lock().unwrap().last_backend = Some(o.backend),
                        Ok(Err(e)) => note_error(&tally, e),
                        Err(_) => note_error(&tally, "timed out".into()),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())?;
        }
        let t = tally.lock().unwrap();
        if t.errors == n_clients {
            return Err(format!(
                "every warm-up connection failed, e.g. {:?}",
                t.first_errors.first()
            ));
        }
    }

    if let Some(cmd) = &args.after_warmup {
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .await;
        if !status.as_ref().is_ok_and(|s| s.success()) {
            return Err(format!("--after-warmup {cmd:?} failed: {status:?}"));
        }
    }

    let pids = args.common.watch_pids.clone();
    let tck = args.common.clk_tck;
    let cpu_before = procstat::cpu(&pids, tck);
    let own_before = procstat::own_cpu_seconds(tck);
    let started = Instant::now();
    let deadline = started + args.max_time;
    let issued = Arc::new(AtomicUsize::new(0));
    let idle: Arc<Mutex<VecDeque<usize>>> = Arc::new(Mutex::new((0..n_clients).collect()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (idle, clients, name, tally, issued) = (
            idle.clone(),
            clients.clone(),
            name.clone(),
            tally.clone(),
            issued.clone(),
        );
        let (limit, timeout, resume) = (args.conns, args.timeout, args.resume);
        tasks.push(tokio::spawn(async move {
            loop {
                if Instant::now() >= deadline || issued.fetch_add(1, Ordering::Relaxed) >= limit {
                    return;
                }
                // Never empty: there are at least as many clients as tasks.
                let Some(i) = idle.lock().unwrap().pop_front() else {
                    return;
                };
                let (config, last) = {
                    let c = clients[i].lock().unwrap();
                    (c.config.clone(), c.last_backend.clone())
                };
                let result = tokio::time::timeout(timeout, one(config, target, name.clone())).await;
                match result {
                    Ok(Ok(o)) => {
                        let mut t = tally.lock().unwrap();
                        t.handshakes_us.push(o.handshake.as_micros() as u64);
                        t.totals_us.push(o.total.as_micros() as u64);
                        if resume {
                            t.offered += 1;
                            t.resumed += usize::from(o.client_resumed);
                            t.server_resumed += usize::from(o.server_resumed);
                        }
                        if last.as_deref() == Some(o.backend.as_str()) {
                            t.same_backend += 1;
                        }
                        *t.backends.entry(o.backend.clone()).or_default() += 1;
                        drop(t);
                        clients[i].lock().unwrap().last_backend = Some(o.backend);
                    }
                    Ok(Err(e)) => note_error(&tally, e),
                    Err(_) => note_error(&tally, "timed out".into()),
                }
                idle.lock().unwrap().push_back(i);
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let proxy = procstat::cpu(&pids, tck) - cpu_before;
    let proxy_cpu = proxy.total();
    let own_cpu = procstat::own_cpu_seconds(tck) - own_before;

    let mut t = Arc::try_unwrap(tally)
        .map_err(|_| "tally still shared")?
        .into_inner()
        .unwrap();
    let ok = t.handshakes_us.len();
    let mut out = json!({
        "kind": "conns",
        "tls": match args.tls { Tls::V12 => "1.2", Tls::V13 => "1.3" },
        "resume": args.resume,
        "concurrency": concurrency,
        "clients": n_clients,
        "conns": ok,
        "errors": t.errors,
        "first_errors": t.first_errors,
        "elapsed_s": elapsed,
        "conns_per_s": ok as f64 / elapsed.max(1e-9),
        "handshake_us": percentiles(&mut t.handshakes_us),
        "total_us": percentiles(&mut t.totals_us),
        "offered": t.offered,
        "resumed": t.resumed,
        "server_resumed": t.server_resumed,
        "resumed_share": if t.offered > 0 { json!(t.resumed as f64 / t.offered as f64) } else { Value::Null },
        "same_backend": t.same_backend,
        "backends": t.backends,
        "loadgen_cpu_s": own_cpu,
    });
    if !pids.is_empty() {
        out["proxy_cpu_s"] = json!(proxy_cpu);
        out["proxy_user_s"] = json!(proxy.user);
        out["proxy_sys_s"] = json!(proxy.sys);
        out["proxy_cpu_s_per_10k"] = json!(if ok > 0 {
            proxy_cpu * 10_000.0 / ok as f64
        } else {
            f64::NAN
        });
    }
    for (k, v) in &args.common.tags {
        out[k] = json!(v);
    }
    println!("{out}");
    Ok(())
}

fn note_error(tally: &Mutex<Tally>, e: String) {
    let mut t = tally.lock().unwrap();
    t.errors += 1;
    if t.first_errors.len() < 3 && !t.first_errors.contains(&e) {
        t.first_errors.push(e);
    }
}

/// p50, p90, p99 and max of `v`, in the same unit; sorts `v`.
pub fn percentiles(v: &mut [u64]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    json!({ "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": v[v.len() - 1] })
}

/// One connection: connect, handshake, ask, read the whole answer.
async fn one(
    config: Arc<ClientConfig>,
    target: SocketAddr,
    name: ServerName<'static>,
) -> Result<Outcome, String> {
    let start = Instant::now();
    let mut tls = tls::connect(config, name, target).await?;
    let handshake = start.elapsed();
    let client_resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.write_all(REQUEST)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let mut answer = Vec::with_capacity(512);
    // A backend that closes without close_notify still gave its answer.
    if let Err(e) = tls.read_to_end(&mut answer).await {
        if e.kind() != std::io::ErrorKind::UnexpectedEof || answer.is_empty() {
            return Err(format!("answer: {e}"));
        }
    }
    let total = start.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    let backend = field("backend=")
        .ok_or_else(|| format!("answer names no backend: {:?}", text.lines().next()))?;
    Ok(Outcome {
        handshake,
        total,
        backend,
        client_resumed,
        server_resumed: field("reused=").as_deref() == Some("r"),
    })
}
