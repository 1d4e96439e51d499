//! Bulk transfer: one TLS connection that moves N bytes one way, and the
//! backend it talks to.
//!
//! The protocol is one request line: `up N` (the client then sends N bytes,
//! the backend discards them and answers `ok N`) or `down N` (the backend
//! sends N bytes and closes). Timing starts after the handshake, so the
//! figure is the stream's, not the handshake's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::{Common, Tls, procstat, tls};

/// Size of each application write; rustls cuts it into 16 KiB records.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    Up,
    Down,
}

#[derive(Args, Debug)]
pub struct BulkArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bytes to move.
    #[arg(long)]
    pub bytes: u64,
    #[arg(long, value_enum)]
    pub direction: Direction,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    /// Certificate chain (PEM, leaf first).
    #[arg(long)]
    pub cert: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

pub async fn run(args: BulkArgs) -> Result<(), String> {
    let ca = tls::load_ca(&args.common.ca)?;
    let config = tls::client_config(&ca, Tls::V13, false)?;
    let name = ServerName::try_from(args.common.sni.clone()).map_err(|e| e.to_string())?;
    let mut tls = tls::connect(config, name, args.common.target).await?;

    let (pids, tck) = (&args.common.watch_pids, args.common.clk_tck);
    let cpu_before = procstat::cpu(pids, tck);
    let own_before = procstat::own_cpu_seconds(tck);
    let machine_before = procstat::machine_busy_seconds(tck);
    let started = Instant::now();
    let moved = match args.direction {
        Direction::Up => {
            tls.write_all(format!("up {}\n", args.bytes).as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let buf = vec![0x5a_u8; CHUNK];
            let mut left = args.bytes;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                tls.write_all(&buf[..n])
                    .await
                    .map_err(|e| format!("upload: {e}"))?;
                left -= n as u64;
            }
            tls.flush().await.map_err(|e| e.to_string())?;
            let mut answer = String::new();
            BufReader::new(&mut tls)
                .read_line(&mut answer)
                .await
                .map_err(|e| format!("answer: {e}"))?;
            if answer.trim() != format!("ok {}", args.bytes) {
                return Err(format!("backend answered {answer:?}"));
            }
            args.bytes
        }
        Direction::Down => {
            tls.write_all(format!("down {}\n", args.bytes).as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0u64;
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(format!("download: {e}")),
                }
            }
            if got != args.bytes {
                return Err(format!("downloaded {got} of {} bytes", args.bytes));
            }
            got
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let proxy = procstat::cpu(pids, tck) - cpu_before;
    let proxy_cpu = proxy.total();
    let own_cpu = procstat::own_cpu_seconds(tck) - own_before;
    let machine = procstat::machine_busy_seconds(tck)
        .zip(machine_before)
        .map(|(after, before)| after - before);
    let gb = moved as f64 / 1e9;
    let mut out = json!({
        "kind": "bulk",
        "direction": match args.direction { Direction::Up => "up", Direction::Down => "down" },
        "bytes": moved,
        "elapsed_s": elapsed,
        "gb_per_s": gb / elapsed.max(1e-9),
        "loadgen_cpu_s": own_cpu,
    });
    if let Some(busy) = machine {
        out["machine_busy_s"] = json!(busy);
        out["machine_cpu_s_per_gb"] = json!(busy / gb.max(1e-12));
        out["cores_busy"] = json!(busy / elapsed.max(1e-9));
    }
    if !pids.is_empty() {
        out["proxy_cpu_s"] = json!(proxy_cpu);
        out["proxy_cpu_s_per_gb"] = json!(proxy_cpu / gb.max(1e-12));
        out["proxy_user_s"] = json!(proxy.user);
        out["proxy_sys_s"] = json!(proxy.sys);
    }
    for (k, v) in &args.common.tags {
        out[k] = json!(v);
    }
    println!("{out}");
    Ok(())
}

/// The bulk backend. Runs until killed.
pub async fn serve(args: ServeArgs) -> Result<(), String> {
    let acceptor = TlsAcceptor::from(tls::server_config(&args.cert, &args.key)?);
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("{}: {e}", args.listen))?;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(_) => {
                // Out of descriptors: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = session(tls).await;
            }
        });
    }
}

async fn session(tls: tokio_rustls::server::TlsStream<TcpStream>) -> std::io::Result<()> {
    // Small until a bulk verb needs more: the scale part holds thousands
    // of these sessions at once.
    let mut tls = BufReader::with_capacity(256, tls);
    let mut line = String::new();
    let (verb, n) = loop {
        line.clear();
        if tls.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let (verb, n) = (
            words.next(),
            words.next().and_then(|n| n.parse::<u64>().ok()),
        );
        match (verb, n) {
            (Some("echo"), Some(n)) if n <= 4096 => {
                let answer = vec![b'e'; n as usize];
                tls.write_all(&answer).await?;
                tls.flush().await?;
            }
            _ => break (verb.map(str::to_string), n),
        }
    };
    match (verb.as_deref(), n) {
        (Some("up"), Some(n)) => {
            // What the line reader holds already, then big reads straight
            // from the stream.
            let buffered = tls.buffer().len().min(n as usize);
            tls.consume(buffered);
            let mut left = n - buffered as u64;
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let want = buf.len().min(left as usize);
                let got = tls.get_mut().read(&mut buf[..want]).await?;
                if got == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                left -= got as u64;
            }
            tls.write_all(format!("ok {n}\n").as_bytes()).await?;
        }
        (Some("down"), Some(n)) => {
            let buf = vec![0xa5_u8; CHUNK];
            let mut left = n;
            while left > 0 {
                let k = left.min(CHUNK as u64) as usize;
                tls.write_all(&buf[..k]).await?;
                left -= k as u64;
            }
        }
        _ => tls.write_all(b"bad request\n").await?,
    }
    tls.shutdown().await
}
