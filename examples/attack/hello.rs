//! ClientHellos built byte by byte, for what an attacker sends and no TLS
//! library would: a PSK identity that is a key name and garbage, a TLS
//! 1.3-only hello carrying a TLS 1.2 session ID, a TLS 1.2 hello that
//! leaves out its session's cipher suite, a hello sent as 1-byte records.
//! And the one parse the attacker needs: the PSK identity a real client's
//! hello offers, whose first 16 bytes are its ticket's key name.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `body` behind a 16-bit length.
fn vec16(body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("a hello field under 64 KiB");
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// `body` behind an 8-bit length.
fn vec8(body: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::try_from(body.len()).expect("a field under 256 bytes")];
    v.extend_from_slice(body);
    v
}

/// One extension: type, then its data behind a 16-bit length.
fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut v = kind.to_be_bytes().to_vec();
    v.extend(vec16(data));
    v
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `n` random bytes, from the same provider the peers use.
pub fn random(n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut out)
        .expect("the system's random source");
    out
}

/// What a hand-made hello says.
#[derive(Debug, Clone, Default)]
pub struct Hello {
    /// `legacy_session_id`: a victim's TLS 1.2 session ID, or empty.
    pub session_id: Vec<u8>,
    /// Offer only TLS 1.3 (`supported_versions` = 0x0304 alone, TLS 1.3
    /// suites); otherwise a TLS 1.2 hello with `suites`.
    pub tls13_only: bool,
    /// TLS 1.2 cipher suites (ignored for `tls13_only`).
    pub suites: Vec<u16>,
    /// `server_name`, if any.
    pub sni: Option<String>,
    /// One `pre_shared_key` identity (TLS 1.3 only), with a binder of
    /// garbage: a server that cannot decrypt the ticket never checks it.
    pub psk_identity: Option<Vec<u8>>,
}

impl Hello {
    /// The ClientHello handshake message, its 4-byte header included.
    pub fn message(&self) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = &self.sni {
            let mut entry = vec![0]; // host_name
            entry.extend(vec16(name.as_bytes()));
            exts.extend(extension(0, &vec16(&entry)));
        }
        // ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
        exts.extend(extension(13, &vec16(&u16s(&[0x0403, 0x0804, 0x0401]))));
        let suites = if self.tls13_only {
            // x25519 only, and its share.
            exts.extend(extension(10, &vec16(&u16s(&[0x001d]))));
            exts.extend(extension(43, &vec8(&u16s(&[0x0304]))));
            let mut share = u16s(&[0x001d]);
            share.extend(vec16(&random(32)));
            exts.extend(extension(51, &vec16(&share)));
            // psk_dhe_ke
            exts.extend(extension(45, &vec8(&[1])));
            vec![0x1301, 0x1302, 0x1303]
        } else {
            exts.extend(extension(10, &vec16(&u16s(&[0x001d, 0x0017]))));
            exts.extend(extension(11, &vec8(&[0]))); // uncompressed points
            exts.extend(extension(23, &[])); // extended_master_secret
            exts.extend(extension(0xff01, &[0])); // renegotiation_info
            self.suites.clone()
        };
        if let (true, Some(identity)) = (self.tls13_only, &self.psk_identity) {
            // pre_shared_key comes last.
            let mut identities = vec16(identity);
            identities.extend(random(4)); // obfuscated_ticket_age
            let binders = vec8(&random(32));
            let mut data = vec16(&identities);
            data.extend(vec16(&binders));
            exts.extend(extension(41, &data));
        }
        let mut body = vec![0x03, 0x03];
        body.extend(random(32));
        body.extend(vec8(&self.session_id));
        body.extend(vec16(&u16s(&suites)));
        body.extend([1, 0]); // null compression
        body.extend(vec16(&exts));
        let mut msg = vec![0x01];
        let len = u32::try_from(body.len()).expect("a hello under 16 MiB");
        msg.extend(len.to_be_bytes().get(1..).unwrap_or_default());
        msg.extend(body);
        msg
    }

    /// The hello in one handshake record.
    pub fn record(&self) -> Vec<u8> {
        record(&self.message())
    }
}

/// A TLS handshake record holding `payload`.
pub fn record(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x16, 0x03, 0x01];
    v.extend(vec16(payload));
    v
}

/// About `wire_bytes` of a ClientHello that never ends, as 1-byte records:
/// the header declares a 12,000-byte hello (under the router's 16 KiB
/// bound, so it is not refused for its size) of which a sixth of the bytes
/// sent is payload.
pub fn stalled_one_byte_records(wire_bytes: usize) -> Vec<u8> {
    let mut payload = vec![0x01, 0x00, 0x2e, 0xe0, 0x03, 0x03];
    payload.extend(random(32));
    payload.extend([0, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    let records = wire_bytes / 6;
    payload.resize(records.max(payload.len()), 0);
    payload.iter().flat_map(|b| record(&[*b])).collect()
}

/// The first PSK identity of a single-record ClientHello (a real client's,
/// from rustls): where the attacker reads a backend's key name.
///
/// ```text
/// struct { opaque identity<1..2^16-1>; uint32 obfuscated_ticket_age; } PskIdentity;
/// struct { PskIdentity identities<7..2^16-1>; PskBinderEntry binders<33..2^16-1>; } OfferedPsks;
/// ```
pub fn first_psk_identity(record: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader(record.get(5..)?);
    r.take(4)?; // handshake header
    r.take(2 + 32)?; // version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind == 41 {
            let mut psks = Reader(data);
            let mut identities = Reader(psks.vec16()?);
            return Some(identities.vec16()?.to_vec());
        }
    }
    None
}

/// A bounds-checked cursor.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = *self.take(1)?.first()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// A TCP connection to `to` from `from` (any port).
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(to))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What the far end did with a hand-made hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Bytes came back (a ServerHello, or an alert).
    Answered,
    /// Closed or reset without a byte.
    Closed,
    /// Nothing within the bound.
    Silent,
}

/// Sends `hello` from `from` and reads the server's flight until it
/// pauses (so the router has seen the ServerHello and what follows it),
/// then closes. Bounded at about 5 s.
pub async fn send(from: IpAddr, to: SocketAddr, hello: &[u8]) -> io::Result<Answer> {
    let mut stream = connect_from(from, to).await?;
    stream.write_all(hello).await?;
    let mut buf = vec![0; 16 * 1024];
    let mut got = 0usize;
    loop {
        let wait = if got == 0 {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(300)
        };
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) if got == 0 => return Ok(Answer::Silent),
            Err(_) | Ok(Ok(0)) | Ok(Err(_)) => {
                return Ok(if got == 0 {
                    Answer::Closed
                } else {
                    Answer::Answered
                });
            }
            Ok(Ok(n)) => {
                if got == 0 && std::env::var_os("ATTACK_DEBUG").is_some() {
                    eprintln!(
                        "[attack] answer to a hand-made hello: {}",
                        hex::encode(buf.get(..n.min(48)).unwrap_or_default())
                    );
                }
                got += n
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_identity_round_trips() {
        let hello = Hello {
            tls13_only: true,
            sni: Some("localhost".into()),
            psk_identity: Some(b"0123456789abcdefgarbage".to_vec()),
            ..Hello::default()
        };
        assert_eq!(
            first_psk_identity(&hello.record()).as_deref(),
            Some(&b"0123456789abcdefgarbage"[..])
        );
    }
}
