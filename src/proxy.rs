//! PROXY protocol in (v1 text and v2 binary, parsed by the `ppp` crate):
//! behind a load balancer or firewall that terminates TCP, the header's
//! source address is the real client, and every affinity rule keys on it.
//!
//! A header is only believed from a trusted peer; anyone else could claim
//! any address and steal another client's affinity. So a listener with
//! `proxy_protocol = true` closes connections from untrusted peers, and
//! connections from trusted peers without a valid header.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::io;
use std::net::{IpAddr, SocketAddr};

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::config::Cidr;

/// A v2 header with its TLVs is rarely over a few hundred bytes; this caps
/// what an incomplete one can make us buffer.
pub(crate) const MAX_HEADER: usize = 4096;

/// Why a connection was closed at the PROXY header. Every variant is the
/// peer's doing (the listener's own `proxy_trusted` decides who may speak),
/// and none is retried: nothing has been routed yet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The peer is not in `proxy_trusted`: it may not name a client
    /// address, so its connection is closed unread.
    #[error(
        "PROXY protocol peer {0} is not in proxy_trusted; add its network there if it is your proxy"
    )]
    Untrusted(IpAddr),
    /// A trusted peer sent bytes that are not a usable PROXY header.
    #[error("missing or invalid PROXY protocol header: {0}")]
    Malformed(#[source] Malformed),
    /// The header was not complete within the hello timeout.
    #[error("PROXY header not complete within the hello timeout")]
    Timeout,
    /// The peer closed before its header was complete.
    #[error("peer closed before its PROXY header was complete")]
    Closed,
    /// The socket failed while the header was read.
    #[error("reading the PROXY header: {0}")]
    Io(#[source] io::Error),
}

/// What is wrong with a trusted peer's header, kept apart so that a test
/// or a metric can tell a proxy that sends no header (misconfigured
/// listener) from one that sends a broken one.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum Malformed {
    /// The first bytes match neither the v1 nor the v2 signature: the peer
    /// sends no header at all (often TLS straight away).
    #[error("the connection does not start with a PROXY signature")]
    NoSignature,
    /// A v1 line with no CRLF within the 107 bytes the format allows.
    #[error("v1 header longer than 107 bytes")]
    V1TooLong,
    /// A whole v1 line (CRLF included) that the parser still calls
    /// incomplete: its fields are cut or missing, and no more bytes can
    /// complete a line that has ended.
    #[error("v1 line ends before its protocol, addresses and ports")]
    V1Truncated,
    /// No complete header within 4096 bytes, more than any real proxy sends.
    #[error("no complete header in {MAX_HEADER} bytes")]
    TooLong,
    /// A v2 header whose source is a UNIX socket: it names no IP address
    /// to key affinity on.
    #[error("a UNIX-socket source address cannot key affinity")]
    UnixSource,
    #[error("v1: {0}")]
    V1(#[source] v1::BinaryParseError),
    #[error("v2: {0}")]
    V2(#[source] v2::ParseError),
}

impl ProxyError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Untrusted(_) => "proxy_untrusted",
            ProxyError::Malformed(_) => "proxy_invalid",
            ProxyError::Timeout => "hello_timeout",
            ProxyError::Closed => "client_closed",
            ProxyError::Io(_) => "io",
        }
    }
}

/// What a PROXY header says of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proxied {
    /// The client: the header's source, or the peer itself for the
    /// `LOCAL`/`UNKNOWN` headers proxies use for their own health checks.
    pub client: SocketAddr,
    /// The address the client connected to, as the header names it; `None`
    /// when it names none (then the accepted socket's own address stands
    /// in, when a backend is sent a header of its own).
    pub destination: Option<SocketAddr>,
}

/// Reads a PROXY header from a trusted `peer` before `deadline`. Bytes read
/// past the header are left in `rest`.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
    peer: SocketAddr,
    trusted: &[Cidr],
    deadline: Instant,
    rest: &mut Vec<u8>,
) -> Result<Proxied, ProxyError> {
    if !trusted.iter().any(|c| c.contains(peer.ip())) {
        return Err(ProxyError::Untrusted(peer.ip()));
    }
    let read = async {
        let mut buf = Vec::with_capacity(256);
        loop {
            if let Some((addr, len)) = parse(&buf, peer)? {
                // `len` is the header's, within `buf`.
                rest.extend_from_slice(buf.get(len..).unwrap_or_default());
                return Ok(addr);
            }
            if buf.len() >= MAX_HEADER {
                return Err(ProxyError::Malformed(Malformed::TooLong));
            }
            let start = buf.len();
            // Read only what a header could still need, so the TLS bytes
            // behind it mostly stay in the socket for the hello stage.
            let want = if start < 16 {
                16 - start
            } else {
                (MAX_HEADER - start).min(512)
            };
            buf.resize(start + want, 0);
            // Resized just above: `start..` is the `want` bytes to fill.
            let n = stream
                .read(buf.get_mut(start..).unwrap_or_default())
                .await
                .map_err(ProxyError::Io)?;
            buf.truncate(start + n);
            if n == 0 {
                return Err(ProxyError::Closed);
            }
        }
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::Timeout),
    }
}

/// `Ok(None)` while the header is incomplete.
pub(crate) fn parse(buf: &[u8], peer: SocketAddr) -> Result<Option<(Proxied, usize)>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Decide from the first bytes: neither signature means no header, and
    // waiting for more would only delay the inevitable.
    const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    const V1_SIG: &[u8] = b"PROXY ";
    let agrees = |sig: &[u8]| sig.iter().zip(buf).all(|(s, b)| s == b);
    if !agrees(V2_SIG) && !agrees(V1_SIG) {
        return Err(ProxyError::Malformed(Malformed::NoSignature));
    }
    // ppp reports some prefixes of a valid v1 line as errors ("40000 443\r"
    // is an invalid port until the \n arrives), so hand it only whole
    // lines; a v1 header is at most 107 bytes including its CRLF.
    // Only a CRLF within those 107 counts, so that the answer never
    // depends on how many bytes one read brought.
    let line = buf.get(..107).unwrap_or(buf);
    let crlf = line.windows(2).position(|w| w == b"\r\n");
    if buf.starts_with(b"P") && crlf.is_none() {
        if buf.len() >= 107 {
            return Err(ProxyError::Malformed(Malformed::V1TooLong));
        }
        return Ok(None);
    }
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        // A v1 line is whole once its CRLF is in (checked above): waiting
        // for more would only hold the connection until the hello timeout.
        if buf.starts_with(b"P") {
            return Err(ProxyError::Malformed(Malformed::V1Truncated));
        }
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let named = match h.addresses {
                v1::Addresses::Tcp4(a) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                v1::Addresses::Tcp6(a) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                v1::Addresses::Unknown => None,
            };
            // The line ends at its first CRLF, whatever ppp counted (it
            // stops an UNKNOWN line at a lone CR before it).
            let len = crlf.map_or(h.header.len(), |i| i + 2);
            Ok(Some((proxied(named, peer), len)))
        }
        HeaderResult::V2(Ok(h)) => {
            let named = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                (_, v2::Addresses::IPv6(a)) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                (_, v2::Addresses::Unspecified) => None,
                (_, v2::Addresses::Unix(_)) => {
                    return Err(ProxyError::Malformed(Malformed::UnixSource));
                }
            };
            Ok(Some((proxied(named, peer), h.len())))
        }
        HeaderResult::V1(Err(e)) => Err(ProxyError::Malformed(Malformed::V1(e))),
        HeaderResult::V2(Err(e)) => Err(ProxyError::Malformed(Malformed::V2(e))),
    }
}

/// The header's (source, destination), or the peer for a header that
/// names no client.
fn proxied(named: Option<(SocketAddr, SocketAddr)>, peer: SocketAddr) -> Proxied {
    match named {
        Some((client, destination)) => Proxied {
            client,
            destination: Some(destination),
        },
        None => Proxied {
            client: peer,
            destination: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[test]
    fn v1_header_gives_the_client_address_and_leaves_the_rest() {
        let mut input = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n".to_vec();
        let header_len = input.len();
        input.extend_from_slice(&[0x16, 0x03, 0x01]);
        let (addr, len) = parse(&input, peer()).unwrap().unwrap();
        assert_eq!(addr.client, "192.0.2.7:40000".parse().unwrap());
        assert_eq!(addr.destination, Some("198.51.100.1:443".parse().unwrap()));
        assert_eq!(len, header_len);
    }

    #[test]
    fn v2_header_gives_the_client_address() {
        let src: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap();
        let (addr, len) = parse(&header, peer()).unwrap().unwrap();
        assert_eq!(addr.client, src);
        assert_eq!(addr.destination, Some(dst));
        assert_eq!(len, header.len());
    }

    #[test]
    fn headers_naming_no_client_give_the_peer_and_no_destination() {
        let local = v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
        .build()
        .unwrap();
        for header in [&local[..], b"PROXY UNKNOWN\r\n"] {
            let (addr, len) = parse(header, peer()).unwrap().unwrap();
            assert_eq!(
                addr,
                Proxied {
                    client: peer(),
                    destination: None
                }
            );
            assert_eq!(len, header.len());
        }
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete_not_an_error() {
        let input = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n";
        for i in 1..input.len() {
            assert!(parse(&input[..i], peer()).unwrap().is_none(), "prefix {i}");
        }
    }

    #[test]
    fn tls_without_a_header_is_rejected_from_the_first_byte() {
        let e = parse(&[0x16], peer()).unwrap_err();
        assert!(
            matches!(e, ProxyError::Malformed(Malformed::NoSignature)),
            "{e}"
        );
    }

    fn trusted() -> Vec<Cidr> {
        vec!["127.0.0.0/8".parse().unwrap()]
    }

    #[tokio::test]
    async fn an_untrusted_peer_is_refused_before_anything_is_read() {
        let (mut ours, _theirs) = tokio::io::duplex(64);
        let stranger: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        let e = read_header(&mut ours, stranger, &trusted(), deadline, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(
            matches!(e, ProxyError::Untrusted(ip) if ip == stranger.ip()),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_peer_closing_mid_header_is_closed_not_malformed() {
        let (mut ours, mut theirs) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut theirs, b"PROXY TCP4 192.0.2.7")
            .await
            .unwrap();
        drop(theirs);
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        let e = read_header(&mut ours, peer(), &trusted(), deadline, &mut Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyError::Closed), "{e}");
    }

    #[tokio::test]
    async fn a_header_still_incomplete_at_the_deadline_is_a_timeout() {
        let (mut ours, mut theirs) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut theirs, b"PROXY TCP4 ")
            .await
            .unwrap();
        // A deadline already passed: the read is pending, so it expires at
        // once, without waiting on a clock.
        let e = read_header(
            &mut ours,
            peer(),
            &trusted(),
            Instant::now(),
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ProxyError::Timeout), "{e}");
        drop(theirs);
    }

    #[test]
    fn malformed_headers_say_what_is_wrong_with_them() {
        let long = [b"PROXY ".as_slice(), &[b'1'; 110]].concat();
        assert!(matches!(
            parse(&long, peer()),
            Err(ProxyError::Malformed(Malformed::V1TooLong))
        ));
        // Whole lines with fields missing or cut: refused at the CRLF, not
        // held until the hello timeout.
        for line in [
            b"PROXY TCP4\r\n".as_slice(),
            b"PROXY TCP4 192.0.2.7\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n",
            b"PROXY \r\n",
        ] {
            let r = parse(line, peer());
            assert!(
                matches!(r, Err(ProxyError::Malformed(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(line)
            );
        }
        // A v2 signature with version 3: ppp reports what it found.
        assert!(matches!(
            parse(b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\0", peer()),
            Err(ProxyError::Malformed(Malformed::V1(_) | Malformed::V2(_)))
        ));
    }
}
