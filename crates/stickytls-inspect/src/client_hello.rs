//! The ClientHello grammar, in nom combinators over the whole message, and
//! the view it yields, which borrows the message and allocates nothing.
#![deny(clippy::indexing_slicing)]

use nom::bytes::complete::take;
use nom::number::complete::{be_u8, be_u16, be_u32};

use super::InspectError;
use super::ext;
use super::wire::{PResult, WireError, ctx, empty, error_in, fail, offset_in, vec8, vec16};

/// TLS 1.3's version code point.
pub(crate) const TLS13: u16 = 0x0304;

/// GREASE values (RFC 8701): 0x?a?a with both bytes equal.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A parsed ClientHello, borrowing the handshake message bytes. Parsing it
/// allocates nothing; the fingerprint is computed only when asked.
#[derive(Debug, Clone)]
pub struct ClientHello<'a> {
    /// The handshake message body (after the 4-byte handshake header).
    pub body: &'a [u8],
    pub legacy_version: u16,
    /// 0..=32 bytes.
    pub session_id: &'a [u8],
    /// `server_name` host_name, exactly as sent (not lowercased).
    pub sni: Option<&'a [u8]>,
    /// `session_ticket`: None = absent, Some(empty) = present and empty.
    pub session_ticket: Option<&'a [u8]>,
    /// Whether `pre_shared_key` was present.
    pub has_psk: bool,
    pub early_data: bool,
    /// `encrypted_client_hello` (0xfe0d) present: an ECH outer hello whose
    /// PSK identities are GREASE.
    pub ech: bool,
    /// The cipher_suites vector contents (validated: even length).
    pub(crate) cipher_suites: &'a [u8],
    /// The extensions vector contents (validated: well-formed, no duplicates).
    pub(crate) extensions: &'a [u8],
    /// protocol_name_list contents (validated), empty when absent.
    pub(crate) alpn: &'a [u8],
    /// supported_versions contents (validated), `None` when absent.
    pub(crate) supported_versions: Option<&'a [u8]>,
    /// key_share client_shares contents (validated), empty when absent.
    pub(crate) key_shares: &'a [u8],
    /// pre_shared_key identities contents (validated), empty when absent.
    pub(crate) psk_identities: &'a [u8],
    /// signature_algorithms contents (validated), empty when absent.
    pub(crate) signature_algorithms: &'a [u8],
}

/// Remembers which extension types were seen, without allocating: a
/// 256-bit filter answers "new" for almost every type of a real hello at
/// once, a short inline list settles the rest, and past 40 distinct types
/// a 64 Ki-bit set takes over.
pub(crate) struct SeenTypes {
    /// Bit `slot(t)` is set for every type seen; a clear bit means "new".
    filter: [u64; 4],
    small: [u16; 40],
    n: usize,
    big: Option<Box<[u64; 1024]>>,
}

impl SeenTypes {
    pub(crate) fn new() -> Self {
        SeenTypes {
            filter: [0; 4],
            small: [0; 40],
            n: 0,
            big: None,
        }
    }

    /// Where `t` falls in the filter. Folding the high byte in keeps the
    /// common code points (0..=64, 0xff01, GREASE 0x?a?a) mostly apart.
    fn slot(t: u16) -> (usize, u64) {
        let h = (t ^ (t >> 8).rotate_left(3)) as u8;
        (usize::from(h >> 6), 1u64 << (h & 63))
    }

    /// Records `t`; false when it was already there.
    pub(crate) fn insert(&mut self, t: u16) -> bool {
        if let Some(big) = &mut self.big {
            return set_bit(big, t);
        }
        let (word, mask) = Self::slot(t);
        let Some(bits) = self.filter.get_mut(word) else {
            return false;
        };
        let maybe_seen = *bits & mask != 0;
        *bits |= mask;
        if maybe_seen && self.small.iter().take(self.n).any(|&s| s == t) {
            return false;
        }
        if let Some(slot) = self.small.get_mut(self.n) {
            *slot = t;
            self.n += 1;
            return true;
        }
        // More than 40 distinct extensions: only hostile input gets here,
        // and the bit set is bounded (8 KiB), not proportional to input.
        let mut big = Box::new([0u64; 1024]);
        for &s in &self.small {
            set_bit(&mut big, s);
        }
        let fresh = set_bit(&mut big, t);
        self.big = Some(big);
        fresh
    }
}

fn set_bit(bits: &mut [u64; 1024], t: u16) -> bool {
    let word = usize::from(t >> 6);
    let mask = 1u64 << (t & 63);
    match bits.get_mut(word) {
        Some(w) => {
            let fresh = *w & mask == 0;
            *w |= mask;
            fresh
        }
        None => false,
    }
}

/// Where each field of a validated ClientHello lies in its body, so a
/// kept hello is read again without parsing it again.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spans {
    legacy_version: u16,
    session_id: Span,
    sni: Option<Span>,
    session_ticket: Option<Span>,
    has_psk: bool,
    early_data: bool,
    ech: bool,
    cipher_suites: Span,
    extensions: Span,
    alpn: Span,
    supported_versions: Option<Span>,
    key_shares: Span,
    psk_identities: Span,
    signature_algorithms: Span,
}

/// `(start, len)` of a sub-slice of the body.
type Span = (usize, usize);

impl<'a> ClientHello<'a> {
    /// Parses a ClientHello handshake message body. Error offsets are
    /// relative to the start of `body`.
    ///
    /// ```text
    /// struct {
    ///     ProtocolVersion legacy_version;
    ///     Random random;
    ///     opaque legacy_session_id<0..32>;
    ///     CipherSuite cipher_suites<2..2^16-2>;
    ///     opaque legacy_compression_methods<1..2^8-1>;
    ///     Extension extensions<8..2^16-1>;   // absent in old TLS 1.0-1.2 hellos
    /// } ClientHello;
    /// ```
    pub fn parse(body: &'a [u8]) -> Result<Self, InspectError> {
        Self::grammar(body).map_err(|e| error_in(body, e))
    }

    fn grammar(body: &'a [u8]) -> Result<Self, nom::Err<WireError<'a>>> {
        let i = body;
        let (i, legacy_version) = ctx("ClientHello truncated in legacy_version", be_u16)(i)?;
        let (i, _random) = ctx("ClientHello truncated in random", take(32usize))(i)?;
        let (i, session_id) = vec8("ClientHello truncated in session_id")(i)?;
        if session_id.len() > 32 {
            return fail(session_id, "ClientHello session_id longer than 32 bytes");
        }
        let (i, cipher_suites) = vec16("ClientHello truncated in cipher_suites")(i)?;
        if cipher_suites.is_empty() || cipher_suites.len() % 2 != 0 {
            return fail(
                cipher_suites,
                "ClientHello cipher_suites empty or of odd length",
            );
        }
        let (i, compression) = vec8("ClientHello truncated in compression_methods")(i)?;
        if compression.is_empty() {
            return fail(compression, "ClientHello compression_methods empty");
        }
        let mut ch = ClientHello {
            body,
            legacy_version,
            session_id,
            sni: None,
            session_ticket: None,
            has_psk: false,
            early_data: false,
            ech: false,
            cipher_suites,
            extensions: &[],
            alpn: &[],
            supported_versions: None,
            key_shares: &[],
            psk_identities: &[],
            signature_algorithms: &[],
        };
        if i.is_empty() {
            return Ok(ch);
        }
        let (rest, extensions) = vec16("ClientHello truncated in extensions")(i)?;
        empty(rest, "trailing bytes after the ClientHello extensions")?;
        ch.extensions = extensions;
        let mut seen = SeenTypes::new();
        let mut i = extensions;
        while !i.is_empty() {
            let at = i;
            let (rest, (typ, data)) = client_extension(i)?;
            if !seen.insert(typ) {
                return fail(at, "duplicate extension in ClientHello");
            }
            if ch.has_psk {
                return fail(at, "pre_shared_key is not the last ClientHello extension");
            }
            ch.extension(typ, data)?;
            i = rest;
        }
        Ok(ch)
    }

    /// Where every field lies in `body`, for [`ClientHello::from_spans`].
    pub(crate) fn spans(&self) -> Spans {
        // Every field is a sub-slice of `body`; `from_spans` checks the
        // range all the same.
        let span = |s: &[u8]| (offset_in(self.body, s), s.len());
        Spans {
            legacy_version: self.legacy_version,
            session_id: span(self.session_id),
            sni: self.sni.map(span),
            session_ticket: self.session_ticket.map(span),
            has_psk: self.has_psk,
            early_data: self.early_data,
            ech: self.ech,
            cipher_suites: span(self.cipher_suites),
            extensions: span(self.extensions),
            alpn: span(self.alpn),
            supported_versions: self.supported_versions.map(span),
            key_shares: span(self.key_shares),
            psk_identities: span(self.psk_identities),
            signature_algorithms: span(self.signature_algorithms),
        }
    }

    /// The hello `spans` was taken from, read back from the same `body`
    /// without parsing it again.
    pub(crate) fn from_spans(body: &'a [u8], s: &Spans) -> Self {
        let at = |(start, len): Span| {
            start
                .checked_add(len)
                .and_then(|end| body.get(start..end))
                .unwrap_or_default()
        };
        ClientHello {
            body,
            legacy_version: s.legacy_version,
            session_id: at(s.session_id),
            sni: s.sni.map(at),
            session_ticket: s.session_ticket.map(at),
            has_psk: s.has_psk,
            early_data: s.early_data,
            ech: s.ech,
            cipher_suites: at(s.cipher_suites),
            extensions: at(s.extensions),
            alpn: at(s.alpn),
            supported_versions: s.supported_versions.map(at),
            key_shares: at(s.key_shares),
            psk_identities: at(s.psk_identities),
            signature_algorithms: at(s.signature_algorithms),
        }
    }

    /// Reads the extensions the inspector uses; the others are skipped
    /// unread (their framing was checked by [`client_extension`]).
    fn extension(&mut self, typ: u16, data: &'a [u8]) -> Result<(), nom::Err<WireError<'a>>> {
        match typ {
            ext::SERVER_NAME => {
                // struct { NameType name_type; select (name_type) {
                //     case host_name: HostName; } name; } ServerName;
                // opaque HostName<1..2^16-1>;
                // struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
                let (rest, list) = vec16("server_name truncated in server_name_list")(data)?;
                empty(rest, "trailing bytes after server_name_list")?;
                let (list, name_type) = ctx("server_name_list empty or truncated", be_u8)(list)?;
                if name_type != 0 {
                    return fail(list, "server_name entry is not a host_name");
                }
                let (list, name) = vec16("server_name truncated in host_name")(list)?;
                if name.is_empty() {
                    return fail(name, "server_name host_name is empty");
                }
                empty(list, "server_name holds more than one name")?;
                self.sni = Some(name);
            }
            ext::ALPN => {
                // opaque ProtocolName<1..2^8-1>;
                // struct { ProtocolName protocol_name_list<2..2^16-1> } ProtocolNameList;
                let (rest, list) = vec16("ALPN truncated in protocol_name_list")(data)?;
                empty(rest, "trailing bytes after ALPN protocol_name_list")?;
                if list.is_empty() {
                    return fail(list, "ALPN protocol_name_list is empty");
                }
                let mut i = list;
                while !i.is_empty() {
                    let (rest, name) = vec8("ALPN protocol name truncated")(i)?;
                    if name.is_empty() {
                        return fail(name, "ALPN protocol name is empty");
                    }
                    i = rest;
                }
                self.alpn = list;
            }
            ext::SUPPORTED_VERSIONS => {
                // ProtocolVersion versions<2..254>;
                let (rest, list) = vec8("supported_versions truncated")(data)?;
                empty(rest, "trailing bytes after supported_versions")?;
                if list.is_empty() || list.len() % 2 != 0 {
                    return fail(list, "supported_versions empty or of odd length");
                }
                self.supported_versions = Some(list);
            }
            ext::SESSION_TICKET => {
                // opaque SessionTicket<0..2^16-1>, the whole extension body.
                self.session_ticket = Some(data);
            }
            ext::PRE_SHARED_KEY => {
                // struct { opaque identity<1..2^16-1>; uint32 obfuscated_ticket_age; } PskIdentity;
                // opaque PskBinderEntry<32..255>;
                // struct { PskIdentity identities<7..2^16-1>;
                //          PskBinderEntry binders<33..2^16-1>; } OfferedPsks;
                let (rest, ids) = vec16("pre_shared_key truncated in identities")(data)?;
                let (rest, binders) = vec16("pre_shared_key truncated in binders")(rest)?;
                empty(rest, "trailing bytes after pre_shared_key binders")?;
                if ids.is_empty() {
                    return fail(ids, "pre_shared_key has no identities");
                }
                let mut n_ids = 0usize;
                let mut i = ids;
                while !i.is_empty() {
                    let (rest, id) = vec16("pre_shared_key identity truncated")(i)?;
                    if id.is_empty() {
                        return fail(id, "pre_shared_key identity is empty");
                    }
                    let (rest, _age) =
                        ctx("pre_shared_key obfuscated_ticket_age truncated", be_u32)(rest)?;
                    n_ids += 1;
                    i = rest;
                }
                let mut n_binders = 0usize;
                let mut i = binders;
                while !i.is_empty() {
                    let (rest, binder) = vec8("pre_shared_key binder truncated")(i)?;
                    if binder.len() < 32 {
                        return fail(binder, "pre_shared_key binder shorter than 32 bytes");
                    }
                    n_binders += 1;
                    i = rest;
                }
                if n_ids != n_binders {
                    return fail(i, "pre_shared_key binder count differs from identity count");
                }
                self.psk_identities = ids;
                self.has_psk = true;
            }
            ext::EARLY_DATA => {
                empty(data, "early_data in a ClientHello must be empty")?;
                self.early_data = true;
            }
            ext::KEY_SHARE => {
                // struct { NamedGroup group; opaque key_exchange<1..2^16-1>; } KeyShareEntry;
                // struct { KeyShareEntry client_shares<0..2^16-1>; } KeyShareClientHello;
                let (rest, list) = vec16("key_share truncated in client_shares")(data)?;
                empty(rest, "trailing bytes after key_share client_shares")?;
                let mut i = list;
                while !i.is_empty() {
                    let (rest, _group) = ctx("key_share entry truncated in its group", be_u16)(i)?;
                    let (rest, kx) = vec16("key_share entry truncated in key_exchange")(rest)?;
                    if kx.is_empty() {
                        return fail(kx, "key_share key_exchange is empty");
                    }
                    i = rest;
                }
                self.key_shares = list;
            }
            ext::SIGNATURE_ALGORITHMS => {
                // SignatureScheme supported_signature_algorithms<2..2^16-2>;
                let (rest, list) = vec16("signature_algorithms truncated")(data)?;
                empty(rest, "trailing bytes after signature_algorithms")?;
                if list.len() % 2 != 0 {
                    return fail(list, "signature_algorithms of odd length");
                }
                self.signature_algorithms = list;
            }
            ext::ENCRYPTED_CLIENT_HELLO => {
                self.ech = true;
            }
            _ => {}
        }
        Ok(())
    }

    /// PSK identities in order (the identity bytes only).
    pub fn psk_identities(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let mut i = self.psk_identities;
        std::iter::from_fn(move || {
            let (rest, (id, _age)) = psk_identity(i).ok()?;
            i = rest;
            Some(id)
        })
    }

    /// The number of PSK identities offered.
    pub fn psk_identity_count(&self) -> usize {
        self.psk_identities().count()
    }

    /// ALPN protocol names in order.
    pub fn alpn(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let mut i = self.alpn;
        std::iter::from_fn(move || {
            let (rest, name) = vec8("")(i).ok()?;
            i = rest;
            Some(name)
        })
    }

    /// supported_versions, in order (GREASE included).
    pub fn supported_versions(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.supported_versions.unwrap_or_default())
    }

    /// key_share groups, in order.
    pub fn key_share_groups(&self) -> impl Iterator<Item = u16> + '_ {
        let mut i = self.key_shares;
        std::iter::from_fn(move || {
            let (rest, (group, _kx)) = key_share_entry(i).ok()?;
            i = rest;
            Some(group)
        })
    }

    /// Cipher suites in order (GREASE included).
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.cipher_suites)
    }

    /// Extension types in the order sent (GREASE included).
    pub fn extension_types(&self) -> impl Iterator<Item = u16> + '_ {
        self.extensions().map(|(typ, _)| typ)
    }

    /// Every extension in the order sent, as its type and raw data
    /// (GREASE and the ones the inspector does not read included).
    pub fn extensions(&self) -> impl Iterator<Item = (u16, &'a [u8])> + '_ {
        let mut i = self.extensions;
        std::iter::from_fn(move || {
            let (rest, e) = client_extension(i).ok()?;
            i = rest;
            Some(e)
        })
    }

    /// signature_algorithms in order (GREASE included).
    pub fn signature_algorithms(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.signature_algorithms)
    }

    /// Whether the supported_versions extension was present.
    pub fn has_supported_versions(&self) -> bool {
        self.supported_versions.is_some()
    }

    /// Whether TLS 1.3 is offered in supported_versions.
    pub fn offers_tls13(&self) -> bool {
        self.supported_versions().any(|v| v == TLS13)
    }

    /// Whether a TLS 1.3 server could resume an offered PSK with this
    /// hello in the one mode servers commonly allow: psk_key_exchange_modes
    /// lists psk_dhe_ke (1), and a key_share extension is present (RFC 8446
    /// 4.2.9; rustls and many servers refuse psk_ke).
    ///
    /// ```text
    /// enum { psk_ke(0), psk_dhe_ke(1), (255) } PskKeyExchangeMode;
    /// struct { PskKeyExchangeMode ke_modes<1..255>; } PskKeyExchangeModes;
    /// ```
    pub fn offers_psk_dhe_ke(&self) -> bool {
        let mut key_share = false;
        let mut dhe = false;
        for (typ, data) in self.extensions() {
            match typ {
                ext::KEY_SHARE => key_share = true,
                ext::PSK_KEY_EXCHANGE_MODES => {
                    dhe = vec8("")(data).is_ok_and(|(_, modes)| modes.contains(&1));
                }
                _ => {}
            }
        }
        key_share && dhe
    }

    /// JA4 per the FoxIO specification.
    pub fn ja4(&self) -> String {
        super::ja4::ja4(self, false)
    }

    /// JA4 without GREASE, padding (21), session_ticket (35),
    /// pre_shared_key (41) and early_data (42): the same for a client's
    /// full and resumed hellos (rustls drops session_ticket when it resumes
    /// a TLS 1.3 session).
    pub fn ja4_stable(&self) -> String {
        super::ja4::ja4(self, true)
    }
}

/// ```text
/// struct {
///     ExtensionType extension_type;
///     opaque extension_data<0..2^16-1>;
/// } Extension;
/// ```
fn client_extension(i: &[u8]) -> PResult<'_, (u16, &[u8])> {
    let (i, typ) = ctx("ClientHello extension truncated in its type", be_u16)(i)?;
    let (i, data) = vec16("ClientHello extension truncated in its data")(i)?;
    Ok((i, (typ, data)))
}

/// `struct { opaque identity<1..2^16-1>; uint32 obfuscated_ticket_age; } PskIdentity;`
fn psk_identity(i: &[u8]) -> PResult<'_, (&[u8], u32)> {
    let (i, id) = vec16("pre_shared_key identity truncated")(i)?;
    let (i, age) = ctx("pre_shared_key obfuscated_ticket_age truncated", be_u32)(i)?;
    Ok((i, (id, age)))
}

/// `struct { NamedGroup group; opaque key_exchange<1..2^16-1>; } KeyShareEntry;`
fn key_share_entry(i: &[u8]) -> PResult<'_, (u16, &[u8])> {
    let (i, group) = ctx("key_share entry truncated in its group", be_u16)(i)?;
    let (i, kx) = vec16("key_share entry truncated in key_exchange")(i)?;
    Ok((i, (group, kx)))
}

/// Big-endian u16s of an even-length, already validated slice.
fn u16s(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes
        .chunks_exact(2)
        .map(|c| c.try_into().map_or(0, u16::from_be_bytes))
}
