//! One connection's handshake, both directions, and what the server's
//! answers let a router learn.
#![deny(clippy::indexing_slicing)]

use super::client::{ClientSide, ServerSays};
use super::client_hello::{ClientHello, TLS13};
use super::record::malformed;
use super::server::{SPhase, ServerSide};
use super::{KeyKind, Learned, Limits, Outcome, Resumption, Status, ticket_key_name};

/// One connection's handshake, both directions.
#[derive(Debug)]
pub struct Handshake {
    client: ClientSide,
    server: ServerSide,
    /// Set once the server side is finished and the ClientHello it answers
    /// is known.
    outcome: Option<Outcome>,
    /// A terminal server-side answer found while building the outcome.
    server_failed: Option<Status>,
}

impl Handshake {
    pub fn new(limits: Limits) -> Self {
        Handshake {
            client: ClientSide::new(limits),
            server: ServerSide::new(limits),
            outcome: None,
            server_failed: None,
        }
    }

    /// Feeds client -> server bytes. `Done` once the first ClientHello is
    /// complete; after the server sends a HelloRetryRequest, feeding goes
    /// on to the second ClientHello and `Done` again.
    ///
    /// The client side may be fed ahead of the server side: handshake
    /// records after the first hello are then kept (up to the client
    /// budget) until the server says whether they hold a second hello.
    pub fn feed_client(&mut self, data: &[u8]) -> Status {
        let st = self.client.feed(data);
        self.finalize();
        st
    }

    /// Has the client side keep a copy of every client byte fed from now
    /// on, for a caller that must replay them (a router sends the client's
    /// bytes to the backend verbatim): the first ClientHello's body is then
    /// rebuilt from that copy once whole instead of being copied as it
    /// arrives, so a hello in progress costs its bytes once, not twice.
    /// Answers are the same either way. Only before the first
    /// `feed_client`; later calls do nothing.
    pub fn keep_client_bytes(&mut self) {
        self.client.keep_bytes();
    }

    /// The client bytes kept so far (see `keep_client_bytes`).
    pub fn kept_client_bytes(&self) -> &[u8] {
        self.client.kept()
    }

    /// Hands over every client byte fed since `keep_client_bytes` and
    /// stops keeping them (empty if they were not kept). A hello still in
    /// progress copies what it has read so far out of them first.
    pub fn take_client_bytes(&mut self) -> Vec<u8> {
        self.client.take_kept()
    }

    /// Feeds server -> client bytes. `Done` when the cleartext part of the
    /// server's flight we need is over (TLS 1.3: the real ServerHello; TLS
    /// <= 1.2: the server's ChangeCipherSpec). Answers `NeedMore` while the
    /// server side is over but the ClientHello it answers is still
    /// incomplete; feed the client, then `feed_server(&[])` again.
    pub fn feed_server(&mut self, data: &[u8]) -> Status {
        self.server.feed(data);
        if self.server.hrr {
            self.client.server_said(ServerSays::Retry);
        } else if self.server.hello.is_some() {
            self.client.server_said(ServerSays::NoRetry);
        }
        self.finalize();
        self.server_status()
    }

    /// What `feed_server` answers now.
    pub fn server_status(&self) -> Status {
        if let Some(s) = self.server.failed.as_ref().or(self.server_failed.as_ref()) {
            return s.clone();
        }
        if self.outcome.is_some() {
            Status::Done
        } else {
            Status::NeedMore
        }
    }

    /// What `feed_client` answers now.
    pub fn client_status(&self) -> Status {
        self.client.status()
    }

    /// Whether client -> server bytes should still be fed (false once the
    /// client side is finished for good, e.g. after a non-HRR ServerHello).
    pub fn wants_client(&self) -> bool {
        self.client.wants_more()
    }

    /// Whether server -> client bytes should still be fed.
    pub fn wants_server(&self) -> bool {
        self.server.failed.is_none()
            && self.server_failed.is_none()
            && self.server.phase != SPhase::Finished
    }

    /// The first ClientHello, once complete.
    pub fn client_hello(&self) -> Option<ClientHello<'_>> {
        Some(self.client.hello1.as_ref()?.hello())
    }

    /// The second ClientHello after a HelloRetryRequest.
    pub fn second_client_hello(&self) -> Option<ClientHello<'_>> {
        Some(self.client.hello2.as_ref()?.hello())
    }

    /// How many records the first ClientHello spanned.
    pub fn client_hello_records(&self) -> Option<u64> {
        Some(self.client.hello1.as_ref()?.records)
    }

    /// How many records the second ClientHello spanned.
    pub fn second_client_hello_records(&self) -> Option<u64> {
        Some(self.client.hello2.as_ref()?.records)
    }

    /// Whether the server sent a HelloRetryRequest (known before `outcome`).
    pub fn hello_retry_request(&self) -> bool {
        self.server.hrr
    }

    /// Bytes the server side holds in its message buffer (for tests that
    /// check big messages are streamed, not buffered).
    #[cfg(test)]
    pub(crate) fn buffered_server_bytes(&self) -> usize {
        self.server.buffered()
    }

    /// The version the server selected, as soon as its (real) ServerHello
    /// is read: for TLS <= 1.2 that is long before `outcome`, which waits
    /// for the server's ChangeCipherSpec. A health check needs no more.
    pub fn server_version(&self) -> Option<u16> {
        Some(self.server.hello.as_ref()?.version)
    }

    /// What the server side showed, once `feed_server` returned `Done`.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Builds the outcome once the server side is over and the hello it
    /// answers is complete.
    fn finalize(&mut self) {
        if self.outcome.is_some()
            || self.server_failed.is_some()
            || self.server.failed.is_some()
            || self.server.phase != SPhase::Finished
        {
            return;
        }
        let hello = if self.server.hrr {
            self.client.hello2.as_ref()
        } else {
            self.client.hello1.as_ref()
        };
        let Some(ch) = hello.map(|h| h.hello()) else {
            return;
        };
        match outcome(&self.server, &ch) {
            Ok(o) => self.outcome = Some(o),
            Err(s) => self.server_failed = Some(s),
        }
    }
}

fn learn(learned: &mut Vec<Learned>, kind: KeyKind, key: &[u8], offered: bool) {
    learned.push(Learned {
        kind,
        key: key.to_vec(),
        offered,
    });
    if matches!(kind, KeyKind::Ticket | KeyKind::PskIdentity) {
        if let Some(name) = ticket_key_name(key) {
            learned.push(Learned {
                kind: KeyKind::TicketKeyName,
                key: name.to_vec(),
                offered,
            });
        }
    }
}

/// What the finished server side and the ClientHello it answered show.
fn outcome(server: &ServerSide, ch: &ClientHello<'_>) -> Result<Outcome, Status> {
    let Some(sh) = server.hello.as_ref() else {
        return Err(malformed(0, "server side finished without a ServerHello"));
    };
    let mut o = Outcome {
        version: sh.version,
        cipher_suite: sh.cipher_suite,
        hello_retry_request: server.hrr,
        session_id: sh.session_id.clone(),
        psk_selected: sh.psk_selected,
        new_session_tickets: server.tickets.clone(),
        ..Outcome::default()
    };
    if sh.version == TLS13 {
        if let Some(idx) = sh.psk_selected {
            if !ch.has_psk {
                return Err(malformed(
                    server.psk_offset,
                    "ServerHello selected a PSK the client did not offer",
                ));
            }
            // With ECH the index points into the inner hello we cannot
            // see; the outer identities are GREASE and never learned.
            if !ch.ech {
                let Some(id) = ch.psk_identities().nth(usize::from(idx)) else {
                    return Err(malformed(
                        server.psk_offset,
                        "ServerHello selected_identity out of range",
                    ));
                };
                learn(&mut o.learned, KeyKind::PskIdentity, id, true);
            }
            o.resumed = true;
            o.resumption = Some(Resumption::Tls13Psk);
        }
        return Ok(o);
    }
    let offered_ticket = ch.session_ticket.filter(|t| !t.is_empty());
    o.resumed = !server.hello_done;
    if o.resumed {
        o.resumption = Some(if offered_ticket.is_some() {
            Resumption::Tls12Ticket
        } else {
            Resumption::Tls12SessionId
        });
    }
    // With a ticket offered, an echoed session ID is client-chosen.
    if offered_ticket.is_none() && !sh.session_id.is_empty() {
        let echoed = sh.session_id == ch.session_id;
        learn(&mut o.learned, KeyKind::SessionId, &sh.session_id, echoed);
    }
    if let (true, Some(t)) = (o.resumed, offered_ticket) {
        learn(&mut o.learned, KeyKind::Ticket, t, true);
    }
    for t in &server.tickets {
        learn(&mut o.learned, KeyKind::Ticket, &t.ticket, false);
    }
    Ok(o)
}
