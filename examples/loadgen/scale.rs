//! The scale part: what a proxy's memory and CPU do with many connections
//! open at once.
//!
//! - `stall`: N clients, each from its own loopback address (127.X.Y.1,
//!   one per /24, so no per-address cap on half-open hellos applies), send
//!   the first 5 bytes of a ClientHello record and stall. The proxy's RSS
//!   is read before, while they stall and after they have closed, wave
//!   after wave: the first wave pays for the allocator's growth, the later
//!   ones show what a stalled connection costs once that memory exists.
//! - `hold`: N TLS connections established through the proxy and left
//!   idle (RSS per connection), then each sending small requests (`echo`
//!   on the bulk backend; proxy CPU per request), while one more client
//!   times the setup of new connections one at a time (p50/p99) with
//!   nothing held, with the idle ones held and while the active ones run.
//!
//! Every phase is bounded in time (`--max-time`) as well as in count.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::conns::percentiles;
use crate::{Common, Tls, parse_secs, procstat, tls};

#[derive(Args, Debug)]
pub struct StallArgs {
    /// The proxy's listener.
    #[arg(long)]
    pub target: SocketAddr,
    /// Stalled clients per wave.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Waves, one after the other.
    #[arg(long, default_value_t = 2)]
    pub waves: usize,
    /// Wait after the last client has sent its bytes (and after they have
    /// all closed) before RSS is read. Keep connect time plus this under
    /// the proxies' hello timeouts (5 s in the bench).
    #[arg(long, default_value = "1s", value_parser = parse_secs)]
    pub settle: Duration,
    /// Every process of the proxy.
    #[arg(long, value_delimiter = ',', required = true)]
    pub watch_pids: Vec<u32>,
    /// KEY=VALUE copied into the JSON result; repeatable.
    #[arg(long = "tag", value_parser = crate::parse_tag)]
    pub tags: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct HoldArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to establish and hold.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Handshakes in flight at once while opening them.
    #[arg(long, default_value_t = 64)]
    pub open_concurrency: usize,
    /// Wait after the last one is open before RSS is read.
    #[arg(long, default_value = "1s", value_parser = parse_secs)]
    pub settle: Duration,
    /// Small requests per held connection in the active phase.
    #[arg(long, default_value_t = 20)]
    pub requests: usize,
    /// Bytes of each answer.
    #[arg(long, default_value_t = 64)]
    pub answer_bytes: usize,
    /// New connections timed in each phase, one at a time.
    #[arg(long, default_value_t = 200)]
    pub probes: usize,
    /// Bound on each phase (opening, each probe series, the active run).
    #[arg(long, default_value = "30s", value_parser = parse_secs)]
    pub max_time: Duration,
    /// Bound on each connection's handshake and each request.
    #[arg(long, default_value = "10s", value_parser = parse_secs)]
    pub timeout: Duration,
}

/// The 5-byte header of a handshake record announcing 512 bytes that never
/// come.
const STALL: [u8; 5] = [0x16, 0x03, 0x01, 0x02, 0x00];

/// The `i`th client's own address: 127.(1 + i / 250).(i % 250).1.
fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, (1 + i / 250).min(254) as u8, (i % 250) as u8, 1)
}

pub async fn stall(args: StallArgs) -> Result<(), String> {
    let pids = &args.watch_pids;
    let baseline = procstat::rss_bytes(pids);
    let mut waves = Vec::new();
    for wave in 1..=args.waves {
        let before = procstat::rss_bytes(pids);
        let started = Instant::now();
        let gate = Arc::new(Semaphore::new(256));
        let mut tasks = Vec::with_capacity(args.conns);
        for i in 0..args.conns {
            let (gate, target) = (gate.clone(), args.target);
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.ok()?;
                let socket = TcpSocket::new_v4().ok()?;
                socket
                    .bind(SocketAddr::V4(SocketAddrV4::new(source(i), 0)))
                    .ok()?;
                let mut s = tokio::time::timeout(Duration::from_secs(3), socket.connect(target))
                    .await
                    .ok()?
                    .ok()?;
                s.write_all(&STALL).await.ok()?;
                Some(s)
            }));
        }
        let mut streams: Vec<TcpStream> = Vec::with_capacity(args.conns);
        for t in tasks {
            if let Ok(Some(s)) = t.await {
                streams.push(s);
            }
        }
        let connected_s = started.elapsed().as_secs_f64();
        tokio::time::sleep(args.settle).await;
        let stalled = procstat::rss_bytes(pids);
        let sampled_s = started.elapsed().as_secs_f64();
        // Still open when RSS was read: the proxy has not closed them.
        let open = streams
            .iter()
            .filter(|s| {
                let mut b = [0u8; 1];
                matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        let connected = streams.len();
        drop(streams);
        tokio::time::sleep(args.settle).await;
        let closed = procstat::rss_bytes(pids);
        let per_conn = (connected > 0).then(|| (stalled as f64 - before as f64) / connected as f64);
        waves.push(json!({
            "wave": wave,
            "connected": connected,
            "open_at_sample": open,
            "connected_s": connected_s,
            "sampled_s": sampled_s,
            "rss_before": before,
            "rss_stalled": stalled,
            "rss_closed": closed,
            "bytes_per_conn": per_conn,
        }));
    }
    let mut out = json!({
        "kind": "scale-hello",
        "conns": args.conns,
        "stall_bytes": STALL.len(),
        "rss_baseline": baseline,
        "waves": waves,
    });
    for (k, v) in &args.tags {
        out[k] = json!(v);
    }
    println!("{out}");
    Ok(())
}

type Tls13 = tokio_rustls::client::TlsStream<TcpStream>;

/// Times new connections one at a time (connect to handshake end) until
/// `count` are done, `max_time` has passed or `stop` turns true.
async fn probes(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    target: SocketAddr,
    count: usize,
    max_time: Duration,
    timeout: Duration,
    stop: Option<Arc<AtomicBool>>,
) -> Value {
    let deadline = Instant::now() + max_time;
    let mut us = Vec::with_capacity(count);
    let mut errors = 0u64;
    while us.len() < count
        && Instant::now() < deadline
        && !stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
    {
        let start = Instant::now();
        match tokio::time::timeout(timeout, tls::connect(config.clone(), name.clone(), target))
            .await
        {
            Ok(Ok(conn)) => {
                us.push(start.elapsed().as_micros() as u64);
                drop(conn);
            }
            _ => errors += 1,
        }
        // Not back to back: a new connection every 5 ms at most, so the
        // probe measures setup under the load, not a load of its own.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    json!({ "count": us.len(), "errors": errors, "setup_us": percentiles(&mut us) })
}

pub async fn hold(args: HoldArgs) -> Result<(), String> {
    let ca = tls::load_ca(&args.common.ca)?;
    let config = tls::client_config(&ca, Tls::V13, false)?;
    let name = ServerName::try_from(args.common.sni.clone()).map_err(|e| e.to_string())?;
    let target = args.common.target;
    let pids = args.common.watch_pids.clone();
    let tck = args.common.clk_tck;
    let probe = |stop: Option<Arc<AtomicBool>>| {
        probes(
            config.clone(),
            name.clone(),
            target,
            args.probes,
            args.max_time,
            args.timeout,
            stop,
        )
    };

    let rss_baseline = procstat::rss_bytes(&pids);
    let probes_none = probe(None).await;

    // Open and hold.
    let opening = Instant::now();
    let deadline = opening + args.max_time;
    let gate = Arc::new(Semaphore::new(args.open_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        let (gate, config, name, timeout) =
            (gate.clone(), config.clone(), name.clone(), args.timeout);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::timeout(timeout, tls::connect(config, name, target))
                .await
                .ok()?
                .ok()
        }));
    }
    let mut held: Vec<Tls13> = Vec::with_capacity(args.conns);
    for t in tasks {
        if let Ok(Some(s)) = t.await {
            held.push(s);
        }
    }
    let open_s = opening.elapsed().as_secs_f64();
    let open_errors = args.conns - held.len();
    tokio::time::sleep(args.settle).await;
    let rss_idle = procstat::rss_bytes(&pids);
    let probes_idle = probe(None).await;

    // Active: every held connection sends small requests, closed loop.
    let requests = Arc::new(AtomicU64::new(0));
    let request_errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let cpu_before = procstat::cpu(&pids, tck);
    let active_start = Instant::now();
    let active_deadline = active_start + args.max_time;
    let line = format!("echo {}\n", args.answer_bytes);
    let mut tasks = Vec::with_capacity(held.len());
    for mut s in held.drain(..) {
        let (requests, errors, line) = (requests.clone(), request_errors.clone(), line.clone());
        let (n, size, timeout) = (args.requests, args.answer_bytes, args.timeout);
        tasks.push(tokio::spawn(async move {
            let mut answer = vec![0u8; size];
            for _ in 0..n {
                if Instant::now() >= active_deadline {
                    break;
                }
                let one = async {
                    s.write_all(line.as_bytes()).await?;
                    s.read_exact(&mut answer).await
                };
                match tokio::time::timeout(timeout, one).await {
                    Ok(Ok(_)) => {
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            s
        }));
    }
    let prober = tokio::spawn(probe(Some(done.clone())));
    for t in tasks {
        if let Ok(s) = t.await {
            held.push(s);
        }
    }
    done.store(true, Ordering::Relaxed);
    let active_s = active_start.elapsed().as_secs_f64();
    let cpu = procstat::cpu(&pids, tck) - cpu_before;
    let rss_active = procstat::rss_bytes(&pids);
    let probes_active = prober.await.map_err(|e| e.to_string())?;
    let still = held.len();
    drop(held);
    tokio::time::sleep(args.settle).await;
    let rss_closed = procstat::rss_bytes(&pids);

    let n_req = requests.load(Ordering::Relaxed);
    let mut out = json!({
        "kind": "scale-hold",
        "conns": args.conns,
        "held": args.conns - open_errors,
        "open_errors": open_errors,
        "open_s": open_s,
        "rss_baseline": rss_baseline,
        "rss_idle": rss_idle,
        "bytes_per_idle_conn": (args.conns > open_errors).then(|| (rss_idle as f64 - rss_baseline as f64) / (args.conns - open_errors) as f64),
        "rss_active": rss_active,
        "rss_closed": rss_closed,
        "held_after_active": still,
        "requests": n_req,
        "request_errors": request_errors.load(Ordering::Relaxed),
        "answer_bytes": args.answer_bytes,
        "active_s": active_s,
        "requests_per_s": n_req as f64 / active_s.max(1e-9),
        "proxy_cpu_s": cpu.total(),
        "proxy_sys_s": cpu.sys,
        "proxy_cpu_us_per_request": (n_req > 0).then(|| cpu.total() * 1e6 / n_req as f64),
        "probes": { "none": probes_none, "idle": probes_idle, "active": probes_active },
    });
    for (k, v) in &args.common.tags {
        out[k] = json!(v);
    }
    println!("{out}");
    Ok(())
}
