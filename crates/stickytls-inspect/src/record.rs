//! TLS record framing and handshake-message reassembly across records,
//! both incremental: bytes arrive in any chunking, down to one at a time,
//! and nothing is buffered that the caller did not ask to keep.
//!
//! This is the one layer not written in nom: its headers are fixed-size
//! (5 and 4 bytes), collected a byte at a time into arrays and
//! destructured, which cannot fail, and its job is the state between
//! feeds. The variable-length grammar starts once a message is whole, in
//! `client_hello` and `server` (see `wire`).
#![deny(clippy::indexing_slicing)]

use super::{Alert, ErrorKind, InspectError, NotTls, Status};

/// Record content types (RFC 8446 5.1).
pub(crate) const CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

/// The largest record length accepted: 2^14 plus the 256 bytes of
/// expansion a TLS 1.3 ciphertext record may carry.
pub(crate) const MAX_RECORD_LEN: usize = (1 << 14) + 256;

pub(crate) fn malformed(offset: u64, what: &'static str) -> Status {
    Status::Malformed(InspectError {
        offset,
        what,
        kind: ErrorKind::Malformed,
    })
}

/// Input over one of the caller's [`super::Limits`].
pub(crate) fn over_limit(offset: u64, what: &'static str) -> Status {
    Status::Malformed(InspectError {
        offset,
        what,
        kind: ErrorKind::OverLimit,
    })
}

/// Decides from the first one to three bytes of a stream whether it can
/// be TLS at all, so that a client that waits for a reply (HTTP, SSH) is
/// not kept waiting for a record length that never comes. `None`: still
/// possibly TLS.
pub(crate) fn classify(first: &[u8]) -> Option<NotTls> {
    const HTTP_METHODS: [&[u8]; 10] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"CONNECT ",
        b"PATCH ",
        b"TRACE ",
        b"PRI ",
    ];
    let b0 = *first.first()?;
    let reason = match b0 {
        HANDSHAKE | ALERT => match first.get(1) {
            Some(&major) if major != 3 => "not a TLS record (version major is not 3)",
            _ => return None,
        },
        APPLICATION_DATA => "application data before handshake",
        CHANGE_CIPHER_SPEC => "ChangeCipherSpec before handshake",
        b if b & 0x80 != 0 => match first.get(2) {
            // SSLv2 record: 2-byte length with the high bit set, then msg type.
            Some(&t) if t != 1 => "SSLv2-format record",
            _ => "SSLv2-format hello",
        },
        _ => {
            let prefix = |m: &[u8]| first.iter().zip(m).all(|(a, b)| a == b);
            if prefix(b"SSH-") {
                "SSH banner"
            } else if HTTP_METHODS.iter().any(|m| prefix(m)) {
                "HTTP request"
            } else {
                "not a TLS record"
            }
        }
    };
    Some(NotTls { reason })
}

/// What the record reader found next in the input.
#[derive(Debug)]
pub(crate) enum Event<'i> {
    /// A record header was read and checked.
    Header { ctype: u8, len: usize, offset: u64 },
    /// Payload bytes of the current record, starting at stream `offset`.
    Payload { data: &'i [u8], offset: u64 },
}

/// Reads record headers and hands out payload bytes as they arrive.
///
/// ```text
/// struct {
///     ContentType type;
///     ProtocolVersion legacy_record_version;
///     uint16 length;
///     opaque fragment[TLSPlaintext.length];
/// } TLSPlaintext;
/// ```
#[derive(Debug, Default)]
pub(crate) struct RecordReader {
    /// A header split across feeds.
    hdr: [u8; 5],
    hdr_len: usize,
    /// Payload bytes still to come in the current record (0 = between records).
    remaining: usize,
    /// Stream offset of the next byte.
    pub(crate) offset: u64,
    /// Records whose header has been read.
    pub(crate) records: u64,
}

impl RecordReader {
    /// The next event from `input`, advancing it; `Ok(None)` when `input`
    /// is used up.
    pub(crate) fn next<'i>(&mut self, input: &mut &'i [u8]) -> Result<Option<Event<'i>>, Status> {
        if self.remaining > 0 {
            if input.is_empty() {
                return Ok(None);
            }
            let n = self.remaining.min(input.len());
            let (data, rest) = input.split_at(n);
            *input = rest;
            let offset = self.offset;
            self.offset += n as u64;
            self.remaining -= n;
            return Ok(Some(Event::Payload { data, offset }));
        }
        while self.hdr_len < 5 {
            let Some((&b, rest)) = input.split_first() else {
                return Ok(None);
            };
            *input = rest;
            if let Some(slot) = self.hdr.get_mut(self.hdr_len) {
                *slot = b;
            }
            self.hdr_len += 1;
            self.offset += 1;
            if self.offset <= 3 {
                if let Some(not) = classify(self.hdr.get(..self.hdr_len).unwrap_or_default()) {
                    return Err(Status::NotTls(not));
                }
            }
        }
        self.hdr_len = 0;
        let start = self.offset - 5;
        let [ctype, major, _minor, l0, l1] = self.hdr;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if !matches!(ctype, CHANGE_CIPHER_SPEC..=APPLICATION_DATA) {
            return Err(malformed(start, "unknown record content type"));
        }
        if major != 3 {
            return Err(malformed(start + 1, "record version major is not 3"));
        }
        if len > MAX_RECORD_LEN {
            return Err(malformed(start + 3, "record longer than 2^14+256 bytes"));
        }
        if len == 0 && ctype != APPLICATION_DATA {
            return Err(malformed(
                start + 3,
                "empty record of a type that may not be empty",
            ));
        }
        self.remaining = len;
        self.records += 1;
        Ok(Some(Event::Header {
            ctype,
            len,
            offset: start,
        }))
    }
}

impl RecordReader {
    /// Whether payload bytes of the current record are still to come.
    pub(crate) fn in_payload(&self) -> bool {
        self.remaining > 0
    }
}

/// Collects the payload of an alert record (level, description), which
/// may itself arrive a byte at a time.
#[derive(Debug, Default)]
pub(crate) struct AlertReader {
    got: [u8; 2],
    n: usize,
}

impl AlertReader {
    /// Feeds alert payload bytes; the alert once both bytes are in.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Option<Alert> {
        for &b in data {
            if let Some(slot) = self.got.get_mut(self.n) {
                *slot = b;
                self.n += 1;
            }
        }
        let [level, description] = self.got;
        (self.n == 2).then_some(Alert { level, description })
    }
}

/// The length of a record header: the gap in the stream between two
/// pieces of one handshake message, which only handshake records may
/// carry (anything else inside a message is refused or ends the stream).
const RECORD_HEADER_LEN: u64 = 5;

/// Whether a handshake message's body is kept or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Buffer the body (the caller has checked its length against a cap).
    Buffer,
    /// Count the body's bytes past without copying them: the caller keeps
    /// the whole stream and rebuilds the body from it ([`MsgReader::rebuild`]).
    Locate,
    /// Count the body's bytes past without keeping them.
    Skip,
}

/// Reassembles handshake messages from record payloads into one buffer.
///
/// ```text
/// struct {
///     HandshakeType msg_type;    /* handshake type */
///     uint24 length;             /* remaining bytes in message */
///     select (Handshake.msg_type) { ... };
/// } Handshake;
/// ```
///
/// What a kept body costs is bounded by the body, whatever the records'
/// sizes: the buffer never grows past the message's length, and where
/// the records broke it is one bit per body byte (a piece of a message
/// is always followed by a 5-byte record header, so where each piece
/// starts is all that maps body bytes back to stream offsets), never an
/// entry per record.
#[derive(Debug, Default)]
pub(crate) struct MsgReader {
    hdr: [u8; 4],
    hdr_len: usize,
    /// Stream offset of the current message's header.
    pub(crate) msg_offset: u64,
    pub(crate) msg_type: u8,
    pub(crate) msg_len: usize,
    got: usize,
    keep: Option<Keep>,
    /// How the current (or just completed) message's body was read.
    mode: Option<Keep>,
    /// The body so far (only in `Keep::Buffer`); grows as bytes arrive.
    pub(crate) body: Vec<u8>,
    /// Where the body's first byte is in the stream.
    first_frag: u64,
    /// Bit `i` set: body byte `i` is the first of a later record. Empty
    /// (no allocation) while the body is in one record.
    breaks: Vec<u64>,
    /// Stream offset just past the last body byte taken.
    last_end: u64,
}

/// What `MsgReader::feed` did with the bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MsgProgress {
    /// The bytes were used and the message is not complete.
    Partial,
    /// The message is complete; the rest of the input starts after it.
    Complete,
}

/// Grows `v` to hold `need` items: to exactly that the first time, then
/// by a quarter (64 items while small) or what is needed if more, and
/// never past `max` (a length the caller has checked against its cap)
/// unless `need` is. A buffer is then never more than a quarter larger
/// than its content once past its first allocation, whatever the pieces
/// it was fed in, and copying it as it grows stays linear overall.
pub(crate) fn grow_within<T>(v: &mut Vec<T>, need: usize, max: usize) {
    let cap = v.capacity();
    if need <= cap {
        return;
    }
    let step = if cap == 0 {
        need
    } else {
        cap.saturating_add((cap / 4).max(64)).min(max)
    };
    v.reserve_exact(step.max(need) - v.len());
}

impl MsgReader {
    /// Whether no part of a message has been read.
    pub(crate) fn idle(&self) -> bool {
        self.hdr_len == 0 && self.keep.is_none()
    }

    /// Hands over the completed body, leaving an empty buffer behind, and
    /// frees the record breaks: a finished message holds nothing here.
    pub(crate) fn take_body(&mut self) -> Vec<u8> {
        self.breaks = Vec::new();
        std::mem::take(&mut self.body)
    }

    /// Whether the current (or just completed) message's body was located
    /// in the caller's copy of the stream rather than buffered here.
    pub(crate) fn located(&self) -> bool {
        self.mode == Some(Keep::Locate)
    }

    /// Reads from `data` (at stream `offset`), consuming what belongs to
    /// the current message. `decide` is asked once per message, given its
    /// type, length and header offset, whether to keep or skip the body.
    pub(crate) fn feed(
        &mut self,
        data: &mut &[u8],
        offset: &mut u64,
        decide: &mut dyn FnMut(u8, usize, u64) -> Result<Keep, Status>,
    ) -> Result<MsgProgress, Status> {
        while self.hdr_len < 4 {
            let Some((&b, rest)) = data.split_first() else {
                return Ok(MsgProgress::Partial);
            };
            if self.hdr_len == 0 {
                self.msg_offset = *offset;
            }
            *data = rest;
            *offset += 1;
            if let Some(slot) = self.hdr.get_mut(self.hdr_len) {
                *slot = b;
            }
            self.hdr_len += 1;
        }
        if self.keep.is_none() {
            let [t, a, b, c] = self.hdr;
            self.msg_type = t;
            self.msg_len = u32::from_be_bytes([0, a, b, c]) as usize;
            self.got = 0;
            self.body.clear();
            self.breaks.clear();
            self.first_frag = *offset;
            self.last_end = *offset;
            let keep = decide(t, self.msg_len, self.msg_offset)?;
            self.keep = Some(keep);
            self.mode = Some(keep);
        }
        let n = (self.msg_len - self.got).min(data.len());
        let (take, rest) = data.split_at(n);
        if n > 0 {
            if self.got == 0 {
                self.first_frag = *offset;
            }
            if self.keep == Some(Keep::Buffer) {
                if self.got > 0 && *offset != self.last_end {
                    debug_assert_eq!(*offset - self.last_end, RECORD_HEADER_LEN);
                    self.mark_break(self.got);
                }
                grow_within(&mut self.body, self.got + n, self.msg_len);
                self.body.extend_from_slice(take);
            }
            self.got += n;
            *offset += n as u64;
            self.last_end = *offset;
        }
        *data = rest;
        if self.got == self.msg_len {
            self.hdr_len = 0;
            self.keep = None;
            Ok(MsgProgress::Complete)
        } else {
            Ok(MsgProgress::Partial)
        }
    }

    /// Bytes allocated for the message being read.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.body.capacity() + self.breaks.capacity() * 8
    }

    /// Notes that body byte `at` starts a new record.
    fn mark_break(&mut self, at: usize) {
        let word = at / 64;
        grow_within(&mut self.breaks, word + 1, self.msg_len / 64 + 1);
        if self.breaks.len() <= word {
            self.breaks.resize(word + 1, 0);
        }
        if let Some(w) = self.breaks.get_mut(word) {
            *w |= 1 << (at % 64);
        }
    }

    /// Record breaks at body bytes `1..=at`.
    fn breaks_through(&self, at: usize) -> u64 {
        let word = at / 64;
        let whole: u64 = self
            .breaks
            .iter()
            .take(word)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let mask = u64::MAX >> (63 - at % 64);
        let part = self.breaks.get(word).map_or(0, |w| (w & mask).count_ones());
        whole + u64::from(part)
    }

    /// The stream offset of byte `at` of the current (or just completed)
    /// message body.
    pub(crate) fn stream_offset(&self, at: usize) -> u64 {
        self.first_frag + at as u64 + RECORD_HEADER_LEN * self.breaks_through(at)
    }

    /// Turns an error found in the body into one at its stream offset.
    pub(crate) fn body_error(&self, e: InspectError) -> Status {
        let at = usize::try_from(e.offset).unwrap_or(usize::MAX);
        malformed(self.stream_offset(at), e.what)
    }

    /// Rebuilds the located body read so far from `stream`, the caller's
    /// copy of every byte of this direction from offset 0, as if it had
    /// been buffered, and buffers from here on. `stream` frames into
    /// records already checked, so the walk cannot fail on any input; if
    /// it did (a caller's copy that is not the stream), the answer is an
    /// error at the message rather than a wrong body.
    pub(crate) fn rebuild(&mut self, stream: &[u8]) -> Result<(), Status> {
        if self.mode != Some(Keep::Locate) {
            return Ok(());
        }
        if self.keep == Some(Keep::Locate) {
            self.keep = Some(Keep::Buffer);
        }
        self.mode = Some(Keep::Buffer);
        self.body = Vec::with_capacity(self.got);
        self.breaks = Vec::new();
        let start = self.first_frag;
        let mut rest = stream;
        let mut at = 0u64;
        while self.body.len() < self.got {
            let (Some(&[_, _, _, l0, l1]), Some(after)) = (rest.get(..5), rest.get(5..)) else {
                return Err(malformed(
                    self.msg_offset,
                    "kept stream ends inside a message",
                ));
            };
            // The last record may not be all there yet (taken part way).
            let len = usize::from(u16::from_be_bytes([l0, l1])).min(after.len());
            let (payload, next) = after.split_at(len);
            rest = next;
            let from = at + 5;
            at = from + len as u64;
            if at <= start {
                continue;
            }
            let skip = usize::try_from(start.saturating_sub(from)).unwrap_or(usize::MAX);
            let wanted = self.got - self.body.len();
            let piece = payload.get(skip..).unwrap_or_default();
            let piece = piece.get(..wanted).unwrap_or(piece);
            if piece.is_empty() {
                continue;
            }
            if !self.body.is_empty() {
                self.mark_break(self.body.len());
            }
            self.body.extend_from_slice(piece);
        }
        Ok(())
    }
}
