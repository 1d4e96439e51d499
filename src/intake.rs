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

/// Reads at most `room` bytes and appends them to `buf`, which grows by
/// what arrived and no more. The bytes land first in a scratch array on
/// the stack of this one poll, never in the connection's future nor in
/// spare capacity of `buf`: a client that sends five bytes and stalls
/// holds five bytes (and its hello, when complete, an allocation of its
/// own size), not a read-sized buffer. The copy is the price: one memcpy
/// of the hello.
async fn read_into<R: AsyncRead + Unpin>(
    client: &mut R,
    buf: &mut Vec<u8>,
    room: usize,
) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut scratch = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        // Capped at `READ_CHUNK`, the range is within `scratch`.
        let mut read = ReadBuf::uninit(scratch.get_mut(..room.min(READ_CHUNK)).unwrap_or_default());
        match Pin::new(&mut *client).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                buf.extend_from_slice(read.filled());
                Poll::Ready(Ok(read.filled().len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Reads until the inspector has the first ClientHello, or `deadline`.
/// `buf` may already hold bytes that followed a PROXY header; on success
/// every byte of the client's TLS stream read so far is in `buf`.
pub(crate) async fn read_hello<R: AsyncRead + Unpin>(
    client: &mut R,
    hs: &mut Handshake,
    buf: &mut Vec<u8>,
    deadline: Instant,
    max_bytes: usize,
) -> Result<(), IntakeError> {
    let read = async {
        if !buf.is_empty() {
            match hs.feed_client(buf) {
                Status::NeedMore => {}
                Status::Done => return Ok(()),
                Status::NotTls(n) => return Err(IntakeError::NotTls(n)),
                Status::Malformed(e) => return Err(IntakeError::Malformed(e)),
                Status::Alert(a) => return Err(IntakeError::Alert(a)),
            }
        }
        loop {
            let start = buf.len();
            // Read no further than the budget allows: the inspector rejects
            // the byte past it, and nothing more is ever buffered.
            let room = max_bytes.saturating_sub(start).clamp(1, READ_CHUNK);
            let n = read_into(client, buf, room)
                .await
                .map_err(IntakeError::Io)?;
            if n == 0 {
                return Err(IntakeError::Closed { received: start });
            }
            // `buf` only grows: `start..` is what was just read.
            match hs.feed_client(buf.get(start..).unwrap_or_default()) {
                Status::NeedMore => continue,
                Status::Done => return Ok(()),
                Status::NotTls(n) => return Err(IntakeError::NotTls(n)),
                Status::Malformed(e) => return Err(IntakeError::Malformed(e)),
                Status::Alert(a) => return Err(IntakeError::Alert(a)),
            }
        }
    };
    match tokio::time::timeout_at(deadline, read).await {
        Ok(r) => r,
        Err(_) => Err(IntakeError::Timeout {
            received: buf.len(),
        }),
    }
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
        assert_eq!(buf, [0x16, 0x03, 0x01, 0x02, 0x00]);
        assert!(buf.capacity() < 64, "capacity {}", buf.capacity());
        drop(client);
    }
}
