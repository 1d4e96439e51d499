//! The server -> client direction: ServerHello / HelloRetryRequest, and for
//! TLS <= 1.2 the cleartext flight up to the server's ChangeCipherSpec,
//! collecting NewSessionTickets. Messages not needed (Certificate) are
//! counted past, never buffered.
#![deny(clippy::indexing_slicing)]

use nom::bytes::complete::take;
use nom::number::complete::{be_u8, be_u16, be_u32};

use super::client_hello::{SeenTypes, TLS13};
use super::ext;
use super::record::{
    ALERT, AlertReader, CHANGE_CIPHER_SPEC, Event, HANDSHAKE, Keep, MsgProgress, MsgReader,
    RecordReader, malformed, over_limit,
};
use super::wire::{WireError, ctx, empty, error_in, fail, offset_in, vec8, vec16};
use super::{InspectError, Limits, NewSessionTicket, Status};

/// Handshake types seen on the server side.
const SERVER_HELLO: u8 = 2;
const NEW_SESSION_TICKET: u8 = 4;
const SERVER_HELLO_DONE: u8 = 14;

/// The `random` of a HelloRetryRequest (RFC 8446 4.1.3): SHA-256 of
/// "HelloRetryRequest".
pub(crate) const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// What a ServerHello (or HelloRetryRequest) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerHelloInfo {
    /// supported_versions when present, else legacy_version.
    pub(crate) version: u16,
    pub(crate) hrr: bool,
    pub(crate) session_id: Vec<u8>,
    pub(crate) cipher_suite: u16,
    pub(crate) psk_selected: Option<u16>,
    /// Body offset of the pre_shared_key extension's data.
    pub(crate) psk_at: usize,
}

/// Parses a ServerHello body (also the HelloRetryRequest form).
///
/// ```text
/// struct {
///     ProtocolVersion legacy_version = 0x0303;    /* TLS v1.2 */
///     Random random;
///     opaque legacy_session_id_echo<0..32>;
///     CipherSuite cipher_suite;
///     uint8 legacy_compression_method = 0;
///     Extension extensions<6..2^16-1>;            /* may be absent before TLS 1.3 */
/// } ServerHello;
/// ```
pub(crate) fn parse_server_hello(body: &[u8]) -> Result<ServerHelloInfo, InspectError> {
    server_hello(body).map_err(|e| error_in(body, e))
}

fn server_hello(body: &[u8]) -> Result<ServerHelloInfo, nom::Err<WireError<'_>>> {
    let i = body;
    let (rest, legacy_version) = ctx("ServerHello truncated in legacy_version", be_u16)(i)?;
    // The version a server selects is at most TLS 1.2 here (TLS 1.3 puts
    // 0x0303 and selects in supported_versions), and no server speaks
    // below SSL 3.0 in this framing. Found by the differential target:
    // a ServerHello claiming 0x0304 or 0x0000 was read as a TLS 1.2 one.
    if !(0x0300..=0x0303).contains(&legacy_version) {
        return fail(i, "ServerHello legacy_version is not SSL 3.0 to TLS 1.2");
    }
    let (i, random) = ctx("ServerHello truncated in random", take(32usize))(rest)?;
    let (i, session_id) = vec8("ServerHello truncated in session_id")(i)?;
    if session_id.len() > 32 {
        return fail(session_id, "ServerHello session_id longer than 32 bytes");
    }
    let (i, cipher_suite) = ctx("ServerHello truncated in cipher_suite", be_u16)(i)?;
    let (i, _compression) = ctx("ServerHello truncated in compression_method", be_u8)(i)?;
    let mut info = ServerHelloInfo {
        version: legacy_version,
        hrr: random == HRR_RANDOM,
        session_id: session_id.to_vec(),
        cipher_suite,
        psk_selected: None,
        psk_at: 0,
    };
    if i.is_empty() {
        return Ok(info);
    }
    let (rest, extensions) = vec16("ServerHello truncated in extensions")(i)?;
    empty(rest, "trailing bytes after the ServerHello extensions")?;
    let mut seen = SeenTypes::new();
    let mut i = extensions;
    while !i.is_empty() {
        let at = i;
        let (rest, typ) = ctx("ServerHello extension truncated in its type", be_u16)(i)?;
        let (rest, data) = vec16("ServerHello extension truncated in its data")(rest)?;
        if !seen.insert(typ) {
            return fail(at, "duplicate extension in ServerHello");
        }
        match typ {
            ext::SUPPORTED_VERSIONS => {
                // ProtocolVersion selected_version;
                let (left, v) = ctx("ServerHello supported_versions truncated", be_u16)(data)?;
                empty(left, "trailing bytes in ServerHello supported_versions")?;
                info.version = v;
            }
            ext::PRE_SHARED_KEY => {
                // uint16 selected_identity;
                let (left, idx) = ctx("ServerHello pre_shared_key truncated", be_u16)(data)?;
                empty(left, "trailing bytes in ServerHello pre_shared_key")?;
                info.psk_at = offset_in(body, data);
                info.psk_selected = Some(idx);
            }
            _ => {}
        }
        i = rest;
    }
    Ok(info)
}

/// Parses a TLS <= 1.2 NewSessionTicket body; `None` for an empty ticket
/// (the server promised one in its ServerHello but changed its mind).
///
/// ```text
/// struct {
///     uint32 ticket_lifetime_hint;
///     opaque ticket<0..2^16-1>;
/// } NewSessionTicket;
/// ```
pub(crate) fn parse_new_session_ticket(
    body: &[u8],
) -> Result<Option<NewSessionTicket>, InspectError> {
    new_session_ticket(body).map_err(|e| error_in(body, e))
}

fn new_session_ticket(body: &[u8]) -> Result<Option<NewSessionTicket>, nom::Err<WireError<'_>>> {
    let (i, lifetime_hint) = ctx("NewSessionTicket truncated in lifetime hint", be_u32)(body)?;
    let (i, ticket) = vec16("NewSessionTicket truncated in ticket")(i)?;
    empty(i, "trailing bytes after the NewSessionTicket")?;
    Ok((!ticket.is_empty()).then(|| NewSessionTicket {
        lifetime_hint,
        ticket: ticket.to_vec(),
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SPhase {
    /// Waiting for the ServerHello or HelloRetryRequest.
    AwaitHello,
    /// After a HelloRetryRequest: a compat CCS, then the real ServerHello.
    AfterHrr,
    /// TLS <= 1.2: walking the cleartext flight to the server's CCS.
    Tls12,
    /// All cleartext we need has been read.
    Finished,
}

#[derive(Debug)]
pub(crate) struct ServerSide {
    limits: Limits,
    rec: RecordReader,
    msg: MsgReader,
    alert: AlertReader,
    pub(crate) phase: SPhase,
    /// Content type of the record being read.
    ctype: u8,
    /// A terminal answer (NotTls, Malformed, Alert), kept once given.
    pub(crate) failed: Option<Status>,
    /// Whether a HelloRetryRequest came first.
    pub(crate) hrr: bool,
    /// The real ServerHello.
    pub(crate) hello: Option<ServerHelloInfo>,
    /// Stream offset of the real ServerHello's pre_shared_key data.
    pub(crate) psk_offset: u64,
    /// Whether ServerHelloDone came (a full TLS <= 1.2 handshake).
    pub(crate) hello_done: bool,
    pub(crate) tickets: Vec<NewSessionTicket>,
}

impl ServerSide {
    pub(crate) fn new(limits: Limits) -> Self {
        ServerSide {
            limits,
            rec: RecordReader::default(),
            msg: MsgReader::default(),
            alert: AlertReader::default(),
            phase: SPhase::AwaitHello,
            ctype: 0,
            failed: None,
            hrr: false,
            hello: None,
            psk_offset: 0,
            hello_done: false,
            tickets: Vec::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.msg.body.capacity()
    }

    pub(crate) fn feed(&mut self, data: &[u8]) {
        if self.failed.is_some() || self.phase == SPhase::Finished {
            return;
        }
        if let Err(s) = self.run(data) {
            self.failed = Some(s);
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
                    CHANGE_CIPHER_SPEC => {
                        if data != [1] {
                            return Err(malformed(
                                offset,
                                "ChangeCipherSpec payload is not the single byte 1",
                            ));
                        }
                        if self.phase == SPhase::Tls12 {
                            self.phase = SPhase::Finished;
                        }
                    }
                    ALERT => {
                        if let Some(a) = self.alert.feed(data) {
                            return Err(Status::Alert(a));
                        }
                    }
                    _ => {}
                },
            }
            if self.phase == SPhase::Finished {
                break;
            }
        }
        Ok(())
    }

    fn on_header(&mut self, ctype: u8, len: usize, offset: u64) -> Result<(), Status> {
        match ctype {
            ALERT => {
                if len < 2 {
                    return Err(malformed(offset + 3, "alert record shorter than 2 bytes"));
                }
                self.alert = AlertReader::default();
                Ok(())
            }
            HANDSHAKE => Ok(()),
            CHANGE_CIPHER_SPEC => {
                if !matches!(self.phase, SPhase::AfterHrr | SPhase::Tls12) {
                    return Err(malformed(offset, "ChangeCipherSpec before the ServerHello"));
                }
                if !self.msg.idle() {
                    return Err(malformed(
                        offset,
                        "ChangeCipherSpec inside a handshake message",
                    ));
                }
                if len != 1 {
                    return Err(malformed(
                        offset + 3,
                        "ChangeCipherSpec record is not 1 byte long",
                    ));
                }
                Ok(())
            }
            _ => Err(malformed(
                offset,
                "application data before the server's ChangeCipherSpec",
            )),
        }
    }

    fn on_handshake(&mut self, data: &[u8], offset: u64) -> Result<(), Status> {
        let mut d = data;
        let mut off = offset;
        let cap = self.limits.max_server_message;
        while !d.is_empty() && self.phase != SPhase::Finished {
            let phase = self.phase;
            let mut decide = |t: u8, len: usize, at: u64| match (phase, t) {
                (SPhase::AwaitHello | SPhase::AfterHrr, SERVER_HELLO)
                | (SPhase::Tls12, NEW_SESSION_TICKET) => {
                    if len > cap {
                        Err(over_limit(
                            at + 1,
                            "server handshake message larger than the server message cap",
                        ))
                    } else {
                        Ok(Keep::Buffer)
                    }
                }
                (SPhase::AwaitHello | SPhase::AfterHrr, _) => Err(malformed(
                    at,
                    "first server handshake message is not a ServerHello",
                )),
                (_, SERVER_HELLO) => Err(malformed(at, "second ServerHello")),
                (_, SERVER_HELLO_DONE) if len != 0 => {
                    Err(malformed(at + 1, "ServerHelloDone is not empty"))
                }
                _ => Ok(Keep::Skip),
            };
            if self.msg.feed(&mut d, &mut off, &mut decide)? == MsgProgress::Complete {
                self.message_complete()?;
            }
        }
        Ok(())
    }

    fn message_complete(&mut self) -> Result<(), Status> {
        match self.msg.msg_type {
            SERVER_HELLO => {
                let info =
                    parse_server_hello(&self.msg.body).map_err(|e| self.msg.body_error(e))?;
                let at = self.msg.msg_offset;
                if info.hrr {
                    if self.hrr {
                        return Err(malformed(at, "second HelloRetryRequest"));
                    }
                    self.hrr = true;
                    self.phase = SPhase::AfterHrr;
                    return Ok(());
                }
                if self.hrr && info.version != TLS13 {
                    return Err(malformed(
                        at,
                        "ServerHello after a HelloRetryRequest is not TLS 1.3",
                    ));
                }
                if info.version != TLS13 && info.psk_selected.is_some() {
                    return Err(malformed(
                        at,
                        "pre_shared_key in a ServerHello below TLS 1.3",
                    ));
                }
                self.psk_offset = self.msg.stream_offset(info.psk_at);
                self.phase = if info.version == TLS13 {
                    SPhase::Finished
                } else {
                    SPhase::Tls12
                };
                self.hello = Some(info);
            }
            NEW_SESSION_TICKET => {
                if let Some(t) =
                    parse_new_session_ticket(&self.msg.body).map_err(|e| self.msg.body_error(e))?
                {
                    self.tickets.push(t);
                }
            }
            SERVER_HELLO_DONE => self.hello_done = true,
            _ => {}
        }
        Ok(())
    }
}
