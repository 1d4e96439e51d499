//! The client -> server direction: the first ClientHello, and after a
//! HelloRetryRequest the second one. Between them, CCS and early-data
//! records are walked past without being kept.
//!
//! The client side may run ahead of the server side (a report fed the
//! whole client stream first). A handshake record after the first hello
//! is then read as a second ClientHello *speculatively*: its result, or
//! its error, is parked until the server says whether a HelloRetryRequest
//! came, and thrown away if not. Either feeding order gives one answer.
#![deny(clippy::indexing_slicing)]

use super::client_hello::{ClientHello, Spans};
use super::record::{
    ALERT, APPLICATION_DATA, AlertReader, CHANGE_CIPHER_SPEC, Event, HANDSHAKE, Keep, MsgProgress,
    MsgReader, RecordReader, malformed, over_limit,
};
use super::{Limits, Status};

/// The ClientHello handshake type.
const CLIENT_HELLO: u8 = 1;

/// A complete ClientHello, already checked by `ClientHello::parse`.
#[derive(Debug)]
pub(crate) struct HelloBytes {
    /// The handshake message body.
    pub(crate) body: Vec<u8>,
    /// How many records the message spanned.
    pub(crate) records: u64,
    /// Where the parse found each field, so reading the hello again is
    /// not a second parse.
    pub(crate) spans: Spans,
}

impl HelloBytes {
    pub(crate) fn hello(&self) -> ClientHello<'_> {
        ClientHello::from_spans(&self.body, &self.spans)
    }
}

/// What the server side has said so far about a second ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerSays {
    /// No ServerHello or HelloRetryRequest seen yet.
    Unknown,
    /// A HelloRetryRequest: a second ClientHello follows.
    Retry,
    /// A real ServerHello: no second ClientHello.
    NoRetry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading ClientHello number 1 or 2.
    InHello(u8),
    /// After the first ClientHello, before the second one starts.
    Between,
    /// A speculative second hello is complete or failed (in `parked`);
    /// waiting for the server to say whether it counts.
    Parked,
    /// Nothing more to read from the client.
    Finished,
}

#[derive(Debug)]
pub(crate) struct ClientSide {
    limits: Limits,
    rec: RecordReader,
    msg: MsgReader,
    alert: AlertReader,
    phase: Phase,
    /// Content type of the record being read.
    ctype: u8,
    /// A terminal answer (NotTls, Malformed, Alert), kept once given.
    failed: Option<Status>,
    pub(crate) hello1: Option<HelloBytes>,
    pub(crate) hello2: Option<HelloBytes>,
    /// Stream offset of the first record of the hello being read: the
    /// client byte budget counts from there.
    hello_start: u64,
    /// `rec.records` at the hello's first record.
    hello_first_record: Option<u64>,
    server: ServerSays,
    /// The error a speculative second hello ran into, kept until the
    /// server says whether a second hello was due.
    parked: Option<Status>,
    /// Every byte fed, from offset 0, while the caller has this side keep
    /// them ([`ClientSide::keep_bytes`]). A hello's body is then not
    /// copied as it arrives but rebuilt from here once whole: a caller
    /// that must replay the client's bytes keeps one copy of them, not
    /// two.
    kept: Option<Vec<u8>>,
}

impl ClientSide {
    pub(crate) fn new(limits: Limits) -> Self {
        ClientSide {
            limits,
            rec: RecordReader::default(),
            msg: MsgReader::default(),
            alert: AlertReader::default(),
            phase: Phase::InHello(1),
            ctype: 0,
            failed: None,
            hello1: None,
            hello2: None,
            hello_start: 0,
            hello_first_record: None,
            server: ServerSays::Unknown,
            parked: None,
            kept: None,
        }
    }

    /// Starts keeping every byte fed, if none has been fed yet (the copy
    /// must start where the records do).
    pub(crate) fn keep_bytes(&mut self) {
        if self.rec.offset == 0 && self.kept.is_none() {
            self.kept = Some(Vec::new());
        }
    }

    /// The bytes kept so far.
    pub(crate) fn kept(&self) -> &[u8] {
        self.kept.as_deref().unwrap_or_default()
    }

    /// Hands the kept bytes over and stops keeping them. A hello still
    /// being read has what it has read so far copied out of them first,
    /// and is buffered from then on.
    pub(crate) fn take_kept(&mut self) -> Vec<u8> {
        let Some(kept) = self.kept.take() else {
            return Vec::new();
        };
        if self.failed.is_none() && matches!(self.phase, Phase::InHello(_)) {
            if let Err(s) = self.msg.rebuild(&kept) {
                self.failed = Some(s);
            }
        }
        kept
    }

    /// What `feed` answers now.
    pub(crate) fn status(&self) -> Status {
        if let Some(s) = &self.failed {
            return s.clone();
        }
        match self.phase {
            Phase::InHello(2) if self.server == ServerSays::Unknown => Status::Done,
            Phase::InHello(_) => Status::NeedMore,
            Phase::Between if self.server == ServerSays::Retry => Status::NeedMore,
            Phase::Between | Phase::Parked | Phase::Finished => Status::Done,
        }
    }

    pub(crate) fn wants_more(&self) -> bool {
        self.failed.is_none() && !matches!(self.phase, Phase::Parked | Phase::Finished)
    }

    /// Whether what is being read now only counts if the server sends a
    /// HelloRetryRequest.
    fn speculative(&self) -> bool {
        self.server == ServerSays::Unknown
            && matches!(self.phase, Phase::InHello(2) | Phase::Parked)
    }

    pub(crate) fn feed(&mut self, data: &[u8]) -> Status {
        if let Some(kept) = self.kept.as_mut() {
            let need = kept.len().saturating_add(data.len());
            super::record::grow_within(kept, need, usize::MAX);
            kept.extend_from_slice(data);
        }
        if self.failed.is_some() || matches!(self.phase, Phase::Parked | Phase::Finished) {
            return self.status();
        }
        if let Err(s) = self.run(data) {
            if self.speculative() {
                self.parked = Some(s);
                self.phase = Phase::Parked;
            } else {
                self.failed = Some(s);
            }
        }
        self.status()
    }

    /// Called by the handshake when the server side decides.
    pub(crate) fn server_said(&mut self, says: ServerSays) {
        if self.server != ServerSays::Unknown {
            return;
        }
        self.server = says;
        let parked = self.parked.take();
        match says {
            ServerSays::Unknown => {}
            ServerSays::NoRetry => {
                if matches!(
                    self.phase,
                    Phase::Between | Phase::InHello(2) | Phase::Parked
                ) {
                    self.phase = Phase::Finished;
                    self.hello2 = None;
                }
            }
            ServerSays::Retry => {
                if self.phase == Phase::Parked {
                    self.phase = Phase::Finished;
                    if parked.is_some() {
                        self.failed = parked;
                    }
                }
            }
        }
    }

    fn run(&mut self, data: &[u8]) -> Result<(), Status> {
        let mut input = data;
        while let Some(ev) = self.rec.next(&mut input)? {
            match ev {
                Event::Header { ctype, len, offset } => {
                    self.ctype = ctype;
                    self.on_header(ctype, len, offset)?;
                }
                Event::Payload { data, offset } => match self.ctype {
                    HANDSHAKE => self.on_handshake(data, offset)?,
                    CHANGE_CIPHER_SPEC if data != [1] => {
                        return Err(malformed(
                            offset,
                            "ChangeCipherSpec payload is not the single byte 1",
                        ));
                    }
                    ALERT => {
                        if let Some(a) = self.alert.feed(data) {
                            return Err(Status::Alert(a));
                        }
                    }
                    _ => {} // early data: walked past, not kept
                },
            }
            if matches!(self.phase, Phase::Parked | Phase::Finished) {
                break;
            }
        }
        Ok(())
    }

    fn on_header(&mut self, ctype: u8, len: usize, offset: u64) -> Result<(), Status> {
        if ctype == ALERT {
            if len < 2 {
                return Err(malformed(offset + 3, "alert record shorter than 2 bytes"));
            }
            self.alert = AlertReader::default();
            return Ok(());
        }
        match (self.phase, ctype) {
            (Phase::InHello(_), HANDSHAKE) => {
                if self.hello_first_record.is_none() {
                    self.hello_first_record = Some(self.rec.records);
                }
                Ok(())
            }
            (Phase::InHello(_), _) => Err(malformed(
                offset,
                "record of another type inside a ClientHello",
            )),
            (Phase::Between, CHANGE_CIPHER_SPEC) => {
                if len != 1 {
                    return Err(malformed(
                        offset + 3,
                        "ChangeCipherSpec record is not 1 byte long",
                    ));
                }
                Ok(())
            }
            (Phase::Between, APPLICATION_DATA) => Ok(()),
            (Phase::Between, _) => {
                // A second ClientHello: for sure after a HelloRetryRequest,
                // speculatively while the server has not spoken.
                self.phase = Phase::InHello(2);
                self.hello_start = offset;
                self.hello_first_record = Some(self.rec.records);
                Ok(())
            }
            (Phase::Parked | Phase::Finished, _) => Ok(()),
        }
    }

    fn on_handshake(&mut self, data: &[u8], offset: u64) -> Result<(), Status> {
        let Phase::InHello(n) = self.phase else {
            return Ok(());
        };
        let budget_end = self
            .hello_start
            .saturating_add(self.limits.max_client_bytes as u64);
        let over = if n == 1 {
            "ClientHello exceeds the client byte budget"
        } else {
            "second ClientHello exceeds the client byte budget"
        };
        // Only bytes inside the budget are read, so every chunking meets
        // the budget at the same byte and gives the same answer.
        let allowed = usize::try_from(budget_end.saturating_sub(offset)).unwrap_or(usize::MAX);
        let (mut d, beyond) = data.split_at(allowed.min(data.len()));
        let mut off = offset;
        let keep = if self.kept.is_some() {
            Keep::Locate
        } else {
            Keep::Buffer
        };
        while !d.is_empty() {
            let mut decide = |t: u8, len: usize, at: u64| {
                if t != CLIENT_HELLO {
                    return Err(malformed(at, "handshake message is not a ClientHello"));
                }
                if at.saturating_add(4).saturating_add(len as u64) > budget_end {
                    return Err(over_limit(budget_end, over));
                }
                Ok(keep)
            };
            if self.msg.feed(&mut d, &mut off, &mut decide)? == MsgProgress::Complete {
                self.hello_complete(n)?;
                // Judged from the record's length, not from how much of it
                // has arrived, so the answer does not depend on chunking.
                if !d.is_empty() || !beyond.is_empty() || self.rec.in_payload() {
                    return Err(malformed(
                        off,
                        "handshake data after the ClientHello in its record",
                    ));
                }
                return Ok(());
            }
        }
        if !beyond.is_empty() {
            return Err(over_limit(budget_end, over));
        }
        Ok(())
    }

    fn hello_complete(&mut self, n: u8) -> Result<(), Status> {
        if self.msg.located() {
            if let Some(kept) = &self.kept {
                self.msg.rebuild(kept)?;
            }
        }
        let spans = match ClientHello::parse(&self.msg.body) {
            Ok(ch) => ch.spans(),
            Err(e) => return Err(self.msg.body_error(e)),
        };
        let first = self.hello_first_record.take().unwrap_or(self.rec.records);
        let hello = HelloBytes {
            body: self.msg.take_body(),
            records: self.rec.records.saturating_sub(first) + 1,
            spans,
        };
        if n == 1 {
            self.hello1 = Some(hello);
            self.phase = match self.server {
                ServerSays::NoRetry => Phase::Finished,
                _ => Phase::Between,
            };
        } else {
            self.hello2 = Some(hello);
            self.phase = if self.server == ServerSays::Unknown {
                Phase::Parked
            } else {
                Phase::Finished
            };
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::super::fuzzing::hello_fields;
    use super::super::testutil::{ChBuilder, handshake_record, records};
    use super::super::{Handshake, Limits, Status};
    use super::*;

    /// A handshake fed `stream` whole, keeping the client's bytes or not.
    fn fed(stream: &[u8], keep: bool) -> (Handshake, Status) {
        let mut h = Handshake::new(Limits::default());
        if keep {
            h.keep_client_bytes();
        }
        let st = h.feed_client(stream);
        (h, st)
    }

    #[test]
    fn a_hello_in_one_byte_records_reads_as_in_one_record() {
        let msg = ChBuilder::tls13("bytes.example")
            .psk(&[b"identity"])
            .message();
        let one = handshake_record(&msg);
        let split = records(HANDSHAKE, &msg, 1);
        for keep in [false, true] {
            let (a, st_a) = fed(&one, keep);
            let (b, st_b) = fed(&split, keep);
            assert_eq!((st_a, st_b), (Status::Done, Status::Done), "keep {keep}");
            assert_eq!(
                hello_fields(&a.client_hello().unwrap()),
                hello_fields(&b.client_hello().unwrap()),
                "keep {keep}"
            );
            assert_eq!(b.client_hello().unwrap().body, &msg[4..]);
            assert_eq!(b.client_hello_records(), Some(msg.len() as u64));
        }
    }

    #[test]
    fn an_error_in_a_hello_of_one_byte_records_is_at_its_byte_in_the_stream() {
        let msg = ChBuilder::tls13("d.example")
            .ext(0xff01, &[0])
            .ext(0xff01, &[0])
            .message();
        let (_, one) = fed(&handshake_record(&msg), false);
        let Status::Malformed(e) = one else {
            panic!("{one:?}")
        };
        // Message byte m is at 5 + m in one record, and at 6m + 5 when
        // every byte has a record (and its 5-byte header) of its own.
        let m = e.offset - 5;
        let split = records(HANDSHAKE, &msg, 1);
        for keep in [false, true] {
            let (_, st) = fed(&split, keep);
            let Status::Malformed(s) = st else {
                panic!("{st:?}")
            };
            assert_eq!((s.what, s.offset), (e.what, 6 * m + 5), "keep {keep}");
        }
        // Taken back part way, the rest buffered: the same answer.
        let mut h = Handshake::new(Limits::default());
        h.keep_client_bytes();
        let (a, b) = split.split_at(split.len() / 2);
        h.feed_client(a);
        assert_eq!(h.take_client_bytes(), a);
        let Status::Malformed(s) = h.feed_client(b) else {
            panic!()
        };
        assert_eq!(s.offset, 6 * m + 5);
    }

    #[test]
    fn a_hello_in_progress_holds_half_again_its_body_at_most_or_nothing_when_kept() {
        let msg = ChBuilder::tls13("big.example")
            .ext(0xff01, &[0; 20_000])
            .message();
        let limits = Limits {
            max_client_bytes: 64 * 1024,
            ..Limits::default()
        };
        for size in [1, 2, 3, 700, 16_384] {
            let stream = records(HANDSHAKE, &msg, size);
            let prefix = &stream[..16 * 1024];
            let (whole, part) = (prefix.len() / (size + 5), prefix.len() % (size + 5));
            let body = whole * size + part.saturating_sub(5) - 4;

            let mut copied = ClientSide::new(limits);
            assert_eq!(copied.feed(prefix), Status::NeedMore);
            let held = copied.msg.held();
            assert!(
                held <= body + body / 2 + 1024,
                "{size}-byte records: {held} held for a {body}-byte body"
            );

            // Fed a byte at a time, the copy grows the most often.
            let mut kept = ClientSide::new(limits);
            kept.keep_bytes();
            for b in prefix.chunks(1) {
                assert_eq!(kept.feed(b), Status::NeedMore);
            }
            assert_eq!(kept.msg.held(), 0, "{size}-byte records, kept");
            let cap = kept.kept.as_ref().unwrap().capacity();
            assert!(
                cap <= prefix.len() / 4 * 5 + 64,
                "{size}-byte records: {cap} kept"
            );
        }
    }
}
