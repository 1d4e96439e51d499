//! io_uring against epoll on the router's passthrough path (issue 16, the
//! `io-uring-experiment` feature): one binary that relays TCP from
//! `--listen` to `--backend` the way `stickytls run --no-inspect` does,
//! either on tokio's epoll driver (`--mode epoll`) or on tokio-uring's
//! completion-based operations (`--mode uring`), so that system calls and
//! CPU per connection can be compared with nothing else changed.
//!
//! Both modes: one single-threaded runtime per thread, each thread with its
//! own `SO_REUSEPORT` listener (TCP_NODELAY on the listener, which accepted
//! sockets inherit); accept; one read of the client's first bytes (up to
//! 16 KiB); connect to the backend (TCP_NODELAY); send those bytes; then
//! copy both ways, each direction a future of its own, a half-close passed
//! on as `shutdown(Write)`, both sockets closed once both directions have
//! ended. An error in either direction ends both.
//!
//! ```text
//! cargo run --release --features io-uring-experiment --example uring_relay -- \
//!     --mode uring --listen 127.0.0.1:25000 --backend 127.0.0.1:25001
//! ```
//!
//! docs/performance.md, "io_uring (issue 16)", has what it measured.

#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The client's first read: as much as the router's hello stage reads.
const FIRST_BYTES: usize = 16 * 1024;
/// Each direction's copy buffer: the router's, one whole TLS record.
const COPY_BYTES: usize = 16 * 1024;
/// Pause after a failed accept (usually EMFILE), rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The I/O model a relay runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// tokio's readiness driver (epoll), as the router runs today.
    Epoll,
    /// tokio-uring: accept, connect, read and write as io_uring
    /// operations.
    Uring,
}

#[derive(Debug, Parser)]
#[command(
    about = "A TCP passthrough relay on epoll or io_uring, for measuring one against the other"
)]
struct Args {
    /// I/O model.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Address to accept clients on (port 0 picks one; the log line says
    /// which).
    #[arg(long)]
    listen: SocketAddr,
    /// Where every connection goes.
    #[arg(long)]
    backend: SocketAddr,
    /// Threads, each with its own runtime and listening socket.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let relay = start(args.mode, args.listen, args.backend, args.threads)?;
    eprintln!(
        "uring_relay: mode={:?} listen={} backend={} threads={}",
        args.mode,
        relay.addr,
        args.backend,
        args.threads.max(1)
    );
    relay.wait()
}

/// A relay's threads, serving until the process ends.
#[derive(Debug)]
pub struct Running {
    /// The address bound (the port chosen, when asked for port 0).
    pub addr: SocketAddr,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Blocks until a thread fails (its runtime could not start), which is
    /// the only way one ends.
    pub fn wait(self) -> io::Result<()> {
        for t in self.threads {
            t.join()
                .map_err(|_| io::Error::other("a relay thread panicked"))??;
        }
        Ok(())
    }
}

/// Binds `threads` listening sockets on `listen` (the first one picks the
/// port when it is 0) and serves each on a thread of its own.
pub fn start(
    mode: Mode,
    listen: SocketAddr,
    backend: SocketAddr,
    threads: usize,
) -> io::Result<Running> {
    let first = bind_reuseport(listen, mode)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads.max(1) {
        listeners.push(bind_reuseport(addr, mode)?);
    }
    let mut handles = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        handles.push(
            std::thread::Builder::new()
                .name(format!("relay-{i}"))
                .spawn(move || match mode {
                    Mode::Epoll => epoll::serve(listener, backend),
                    Mode::Uring => uring::serve(listener, backend),
                })?,
        );
    }
    Ok(Running {
        addr,
        threads: handles,
    })
}

/// As `listen::bind_reuseport` in the router. The epoll mode's socket is
/// non-blocking, as tokio needs; the uring mode's stays blocking: io_uring
/// waits for readiness itself, and on a socket marked non-blocking its
/// reads would answer `EAGAIN` instead.
fn bind_reuseport(addr: SocketAddr, mode: Mode) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(mode == Mode::Epoll)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The relay on tokio's epoll driver, connecting as the router's
/// `connect::open` and `send_first` do: the first bytes are sent on the
/// socket still connecting, and only an `EAGAIN` waits for the connect.
mod epoll {
    use std::io;
    use std::net::SocketAddr;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::{ACCEPT_BACKOFF, COPY_BYTES, FIRST_BYTES};

    pub fn serve(listener: std::net::TcpListener, backend: SocketAddr) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener)?;
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        tokio::spawn(relay(client, backend));
                    }
                    Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
                }
            }
        })
    }

    async fn relay(mut client: TcpStream, backend: SocketAddr) {
        let mut first = Vec::with_capacity(FIRST_BYTES);
        match client.read_buf(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(mut server) = connect_with(backend, &first).await else {
            return;
        };
        drop(first);
        let ended = {
            let (mut client_in, mut client_out) = client.split();
            let (mut server_in, mut server_out) = server.split();
            tokio::try_join!(
                copy(&mut client_in, &mut server_out),
                copy(&mut server_in, &mut client_out),
            )
        };
        if ended.is_err() {
            reset(&client);
            reset(&server);
        }
    }

    /// A connection to `addr` that has sent `first`.
    async fn connect_with(addr: SocketAddr, mut first: &[u8]) -> io::Result<TcpStream> {
        use rustix::net::SendFlags;
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_nodelay(true)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
        let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
        while !first.is_empty() {
            match rustix::net::send(&stream, first, SendFlags::NOSIGNAL) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => first = &first[n..],
                Err(rustix::io::Errno::AGAIN) => stream.writable().await?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(stream)
    }

    /// One direction: to the end of `from`'s stream, then its half-close
    /// passed on.
    async fn copy(
        from: &mut (impl AsyncRead + Unpin),
        to: &mut (impl AsyncWrite + Unpin),
    ) -> io::Result<()> {
        // Capacity, not zeroed length: `read_buf` fills it without a
        // memset, as the uring mode's reads do.
        let mut buf = Vec::with_capacity(COPY_BYTES);
        loop {
            buf.clear();
            if from.read_buf(&mut buf).await? == 0 {
                return to.shutdown().await;
            }
            to.write_all(&buf).await?;
        }
    }

    /// Closes with a reset when the stream is dropped (linger 0), so the
    /// peer learns the relay failed rather than seeing a clean end.
    fn reset(s: &TcpStream) {
        let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
    }
}

/// The relay on tokio-uring: accept, connect, read and write are io_uring
/// operations. `socket`, `setsockopt`, `shutdown` and `close` stay system
/// calls: tokio-uring 0.5 has no operation for the first three, and its
/// close operation is public only for files (a dropped `TcpStream` closes
/// its socket with close(2)).
mod uring {
    use std::io;
    use std::net::{Shutdown, SocketAddr};

    use tokio_uring::net::{TcpListener, TcpStream};

    use super::{ACCEPT_BACKOFF, COPY_BYTES, FIRST_BYTES};

    pub fn serve(listener: std::net::TcpListener, backend: SocketAddr) -> io::Result<()> {
        tokio_uring::start(async move {
            let listener = TcpListener::from_std(listener);
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        tokio_uring::spawn(relay(client, backend));
                    }
                    Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
                }
            }
        })
    }

    async fn relay(client: TcpStream, backend: SocketAddr) {
        let (read, first) = client.read(Vec::with_capacity(FIRST_BYTES)).await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(server) = TcpStream::connect(backend).await else {
            return;
        };
        if server.set_nodelay(true).is_err() {
            return;
        }
        let (sent, _) = server.write_all(first).await;
        if sent.is_err() {
            return;
        }
        // Both directions in one task; the streams close as they are
        // dropped, once both have ended.
        let _ = tokio::join!(copy(&client, &server), copy(&server, &client));
    }

    /// One direction: to the end of `from`'s stream, then its half-close
    /// passed on. On an error both sockets are shut down both ways, which
    /// also completes the other direction's read still in the ring (a
    /// dropped operation would hold its socket open until it completed).
    async fn copy(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
        let copied = async {
            let mut buf = Vec::with_capacity(COPY_BYTES);
            loop {
                // A read fills the buffer from its start only if it is
                // empty: tokio-uring never shortens a `Vec`.
                buf.clear();
                let (read, b) = from.read(buf).await;
                if read? == 0 {
                    return to.shutdown(Shutdown::Write);
                }
                let (written, b) = to.write_all(b).await;
                written?;
                buf = b;
            }
        }
        .await;
        if copied.is_err() {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
        copied
    }
}
