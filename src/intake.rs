//! Reading a client's ClientHello within a byte and time budget. Every byte
//! read is kept, to be replayed unmodified to the backend.
//!
//! The budget is what bounds a slow or hostile client: a stalled half
//! hello is closed at the hello timeout, a hello larger than the byte budget
//! as soon as it crosses it, and non-TLS input from its first bytes.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::io;

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use crate::inspect::{Alert, ErrorKind, Handshake, InspectError, NotTls, Status};

/// Why a client was closed before routing. All of these are the client's
/// doing; none is retried.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IntakeError {
    #[error("not TLS: {}", .0.reason)]
    NotTls(NotTls),
    #[error("malformed ClientHello: {0}")]
    Malformed(#[source] InspectError),
    #[error("client sent alert {} before its hello", .0.description)]
    Alert(Alert),
    /// The hello did not complete within the time budget.
    #[error("ClientHello not complete within the hello timeout ({received} bytes received)")]
    Timeout { received: usize },
    /// The client closed before its hello was complete.
    #[error("client closed before its ClientHello was complete ({received} bytes received)")]
    Closed { received: usize },
    #[error("reading the ClientHello: {0}")]
    Io(#[source] io::Error),
}

impl IntakeError {
    /// For `stickytls_inspection_errors_total`: the side and kind, when
    /// the inspector refused what the client sent (not when the client
    /// was slow or went away).
    pub fn inspection_error(&self) -> Option<(&'static str, &'static str)> {
        match self {
            IntakeError::NotTls(_) => Some(("client", "not_tls")),
            IntakeError::Malformed(e) if e.kind == ErrorKind::OverLimit => {
                Some(("client", "over_limit"))
            }
            IntakeError::Malformed(_) => Some(("client", "malformed")),
            IntakeError::Alert(_) => Some(("client", "alert")),
            _ => None,
        }
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            IntakeError::NotTls(_) => "not_tls",
            IntakeError::Malformed(e) if e.kind == ErrorKind::OverLimit => "over_budget",
            IntakeError::Malformed(_) => "malformed",
            IntakeError::Alert(_) => "alert",
            IntakeError::Timeout { .. } => "hello_timeout",
            IntakeError::Closed { .. } => "client_closed",
            IntakeError::Io(_) => "io",
        }
    }
}

/// The most one read takes. A whole ClientHello (even with a post-quantum
/// key share) fits, so the common hello is one read.
const READ_CHUNK: usize = 4096;

/// Reads at most `room` bytes and feeds them to the inspector, which
/// keeps them (`Handshake::keep_client_bytes`). The bytes land first in a
/// scratch array on the stack of this one poll, never in the connection's
/// future nor in spare capacity of a buffer: a client that sends five
/// bytes and stalls holds five bytes, not a read-sized buffer. `None`:
/// the client closed.
async fn read_into<R: AsyncRead + Unpin>(
    client: &mut R,
    hs: &mut Handshake,
    room: usize,
) -> io::Result<Option<Status>> {
    poll_fn(|cx| {
        let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        // Capped at `READ_CHUNK`, the range is within `scratch`.
        let mut read = ReadBuf::uninit(scratch.get_mut(..room.min(READ_CHUNK)).unwrap_or_default());
        match Pin::new(&mut *client).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(Ok(None)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(hs.feed_client(read.filled())))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Reads until the inspector has the first ClientHello, or `deadline`.
/// `buf` may already hold bytes that followed a PROXY header; on success,
/// and when the client is not speaking TLS, every byte of the client's
/// stream read so far is in `buf` (to replay or forward); on any other
/// error it is empty.
///
/// While the hello is read, the client's bytes are kept once, by the
/// inspector, which rebuilds the hello's body from them when it is whole:
/// a stalled hello holds what the client sent (one allocation, grown by a
/// quarter at a time, never doubled past it), however it was cut into
/// records, and no reassembly buffer beside it.
pub(crate) async fn read_hello<R: AsyncRead + Unpin>(
    client: &mut R,
    hs: &mut Handshake,
    buf: &mut Vec<u8>,
    deadline: Instant,
    max_bytes: usize,
) -> Result<(), IntakeError> {
    hs.keep_client_bytes();
    let early = std::mem::take(buf);
    let read = async {
        let mut status = hs.feed_client(&early);
        drop(early);
        loop {
            match status {
                Status::NeedMore => {}
                Status::Done => return Ok(()),
                Status::NotTls(n) => return Err(IntakeError::NotTls(n)),
                Status::Malformed(e) => return Err(IntakeError::Malformed(e)),
                Status::Alert(a) => return Err(IntakeError::Alert(a)),
            }
            let received = hs.kept_client_bytes().len();
            // Read no further than the budget allows: the inspector rejects
            // the byte past it, and nothing more is ever buffered.
            let room = max_bytes.saturating_sub(received).clamp(1, READ_CHUNK);
            status = match read_into(client, hs, room).await {
                Ok(Some(status)) => status,
                Ok(None) => return Err(IntakeError::Closed { received }),
                Err(e) => return Err(IntakeError::Io(e)),
            };
        }
    };
    let timed = tokio::time::timeout_at(deadline, read).await;
    let r = timed.unwrap_or_else(|_| {
        Err(IntakeError::Timeout {
            received: hs.kept_client_bytes().len(),
        })
    });
    // Only these go on to send the bytes anywhere; a client refused for
    // anything else is closed with its bytes.
    if matches!(r, Ok(()) | Err(IntakeError::NotTls(_))) {
        *buf = hs.take_client_bytes();
    }
    r
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_client_holds_only_the_bytes_it_sent() {
        let (mut client, mut server) = tokio::io::duplex(64);
        // A handshake record's header announcing 512 bytes, then nothing.
        client
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .unwrap();
        let mut hs = Handshake::new(Default::default());
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = read_hello(&mut server, &mut hs, &mut buf, deadline, 16_384).await;
        assert!(
            matches!(r, Err(IntakeError::Timeout { received: 5 })),
            "{r:?}"
        );
        // Kept once, by the inspector (the inspector's own tests bound the
        // allocation); nothing handed back to a client that is closed.
        assert_eq!(hs.kept_client_bytes(), [0x16, 0x03, 0x01, 0x02, 0x00]);
        assert!(buf.is_empty() && buf.capacity() == 0);
        drop(client);
    }

    /// A TLS 1.2 ClientHello handshake message naming `sni`.
    fn hello_message(sni: &[u8]) -> Vec<u8> {
        let len16 = |n: usize| (n as u16).to_be_bytes();
        let mut name = vec![0];
        name.extend(len16(sni.len()));
        name.extend(sni);
        let mut ext = vec![0, 0];
        ext.extend(len16(name.len() + 2));
        ext.extend(len16(name.len()));
        ext.extend(name);
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.push(0);
        body.extend([0, 2, 0xc0, 0x2f, 1, 0]);
        body.extend(len16(ext.len()));
        body.extend(ext);
        let mut msg = vec![1, 0];
        msg.extend(len16(body.len()));
        msg.extend(body);
        msg
    }

    #[tokio::test(start_paused = true)]
    async fn a_hello_in_one_byte_records_is_replayed_whole_and_read_as_in_one_record() {
        let msg = hello_message(b"one.example");
        let record = |payload: &[u8]| {
            let mut r = vec![0x16, 3, 1];
            r.extend((payload.len() as u16).to_be_bytes());
            r.extend(payload);
            r
        };
        let one = record(&msg);
        let split: Vec<u8> = msg.chunks(1).flat_map(record).collect();
        let mut seen = Vec::new();
        for stream in [one, split] {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            client.write_all(&stream).await.unwrap();
            let mut hs = Handshake::new(Default::default());
            let mut buf = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            read_hello(&mut server, &mut hs, &mut buf, deadline, 16_384)
                .await
                .unwrap();
            assert_eq!(buf, stream, "every byte read is handed back for replay");
            let ch = hs.client_hello().unwrap();
            assert_eq!(ch.sni, Some(&b"one.example"[..]));
            seen.push((
                ch.body.to_vec(),
                format!("{:?}", ch.extension_types().collect::<Vec<_>>()),
            ));
        }
        assert_eq!(seen[0], seen[1]);
        assert_eq!(seen[0].0, msg[4..]);
    }
}
