//! The ClientHello view, parsed through a bounded cursor without allocating.
#![deny(clippy::indexing_slicing)]

use super::InspectError;
use super::codec::Reader;

/// Extension code points this module looks at (IANA "TLS ExtensionType").
pub(crate) mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    pub const ALPN: u16 = 16;
    pub const PADDING: u16 = 21;
    pub const SESSION_TICKET: u16 = 35;
    pub const PRE_SHARED_KEY: u16 = 41;
    pub const EARLY_DATA: u16 = 42;
    pub const SUPPORTED_VERSIONS: u16 = 43;
    pub const KEY_SHARE: u16 = 51;
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

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
        let mut r = Reader::new(body);
        let legacy_version = r.u16("ClientHello truncated in legacy_version")?;
        r.take(32, "ClientHello truncated in random")?;
        let mut sid = r.sub_u8("ClientHello truncated in session_id")?;
        if sid.left() > 32 {
            return Err(sid.err("ClientHello session_id longer than 32 bytes"));
        }
        let session_id = sid.rest();
        let mut cs = r.sub_u16("ClientHello truncated in cipher_suites")?;
        if cs.left() == 0 || cs.left() % 2 != 0 {
            return Err(cs.err("ClientHello cipher_suites empty or of odd length"));
        }
        let cipher_suites = cs.rest();
        let comp = r.sub_u8("ClientHello truncated in compression_methods")?;
        if comp.left() == 0 {
            return Err(comp.err("ClientHello compression_methods empty"));
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
        if r.is_empty() {
            return Ok(ch);
        }
        let mut exts = r.sub_u16("ClientHello truncated in extensions")?;
        r.expect_empty("trailing bytes after the ClientHello extensions")?;
        ch.extensions = exts.remaining();
        let mut seen = SeenTypes::new();
        while !exts.is_empty() {
            let at = exts.clone();
            let typ = exts.u16("ClientHello extension truncated in its type")?;
            let mut data = exts.sub_u16("ClientHello extension truncated in its data")?;
            if !seen.insert(typ) {
                return Err(at.err("duplicate extension in ClientHello"));
            }
            if ch.has_psk {
                return Err(at.err("pre_shared_key is not the last ClientHello extension"));
            }
            ch.parse_extension(typ, &mut data)?;
        }
        Ok(ch)
    }

    /// Where every field lies in `body`, for [`ClientHello::from_spans`].
    pub(crate) fn spans(&self) -> Spans {
        let base = self.body.as_ptr() as usize;
        // Every field is a sub-slice of `body`, so the subtraction cannot
        // wrap; `from_spans` checks the range all the same.
        let span = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(base);
        let span = |s: &[u8]| (span(s), s.len());
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

    fn parse_extension(&mut self, typ: u16, data: &mut Reader<'a>) -> Result<(), InspectError> {
        match typ {
            ext::SERVER_NAME => {
                // struct { NameType name_type; select (name_type) {
                //     case host_name: HostName; } name; } ServerName;
                // opaque HostName<1..2^16-1>;
                // struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
                let mut list = data.sub_u16("server_name truncated in server_name_list")?;
                data.expect_empty("trailing bytes after server_name_list")?;
                let typ = list.u8("server_name_list empty or truncated")?;
                if typ != 0 {
                    return Err(list.err("server_name entry is not a host_name"));
                }
                let mut name = list.sub_u16("server_name truncated in host_name")?;
                if name.is_empty() {
                    return Err(name.err("server_name host_name is empty"));
                }
                self.sni = Some(name.rest());
                list.expect_empty("server_name holds more than one name")?;
            }
            ext::ALPN => {
                // opaque ProtocolName<1..2^8-1>;
                // struct { ProtocolName protocol_name_list<2..2^16-1> } ProtocolNameList;
                let mut list = data.sub_u16("ALPN truncated in protocol_name_list")?;
                data.expect_empty("trailing bytes after ALPN protocol_name_list")?;
                if list.is_empty() {
                    return Err(list.err("ALPN protocol_name_list is empty"));
                }
                self.alpn = list.remaining();
                while !list.is_empty() {
                    let name = list.sub_u8("ALPN protocol name truncated")?;
                    if name.is_empty() {
                        return Err(name.err("ALPN protocol name is empty"));
                    }
                }
            }
            ext::SUPPORTED_VERSIONS => {
                // ProtocolVersion versions<2..254>;
                let mut list = data.sub_u8("supported_versions truncated")?;
                data.expect_empty("trailing bytes after supported_versions")?;
                if list.is_empty() || list.left() % 2 != 0 {
                    return Err(list.err("supported_versions empty or of odd length"));
                }
                self.supported_versions = Some(list.rest());
            }
            ext::SESSION_TICKET => {
                // opaque SessionTicket<0..2^16-1>, the whole extension body.
                self.session_ticket = Some(data.rest());
            }
            ext::PRE_SHARED_KEY => {
                // struct { opaque identity<1..2^16-1>; uint32 obfuscated_ticket_age; } PskIdentity;
                // opaque PskBinderEntry<32..255>;
                // struct { PskIdentity identities<7..2^16-1>;
                //          PskBinderEntry binders<33..2^16-1>; } OfferedPsks;
                let mut ids = data.sub_u16("pre_shared_key truncated in identities")?;
                let mut binders = data.sub_u16("pre_shared_key truncated in binders")?;
                data.expect_empty("trailing bytes after pre_shared_key binders")?;
                if ids.is_empty() {
                    return Err(ids.err("pre_shared_key has no identities"));
                }
                self.psk_identities = ids.remaining();
                let mut n_ids = 0usize;
                while !ids.is_empty() {
                    let id = ids.sub_u16("pre_shared_key identity truncated")?;
                    if id.is_empty() {
                        return Err(id.err("pre_shared_key identity is empty"));
                    }
                    ids.u32("pre_shared_key obfuscated_ticket_age truncated")?;
                    n_ids += 1;
                }
                let mut n_binders = 0usize;
                while !binders.is_empty() {
                    let b = binders.sub_u8("pre_shared_key binder truncated")?;
                    if b.left() < 32 {
                        return Err(b.err("pre_shared_key binder shorter than 32 bytes"));
                    }
                    n_binders += 1;
                }
                if n_ids != n_binders {
                    return Err(
                        binders.err("pre_shared_key binder count differs from identity count")
                    );
                }
                self.has_psk = true;
            }
            ext::EARLY_DATA => {
                data.expect_empty("early_data in a ClientHello must be empty")?;
                self.early_data = true;
            }
            ext::KEY_SHARE => {
                // struct { NamedGroup group; opaque key_exchange<1..2^16-1>; } KeyShareEntry;
                // struct { KeyShareEntry client_shares<0..2^16-1>; } KeyShareClientHello;
                let mut list = data.sub_u16("key_share truncated in client_shares")?;
                data.expect_empty("trailing bytes after key_share client_shares")?;
                self.key_shares = list.remaining();
                while !list.is_empty() {
                    list.u16("key_share entry truncated in its group")?;
                    let kx = list.sub_u16("key_share entry truncated in key_exchange")?;
                    if kx.is_empty() {
                        return Err(kx.err("key_share key_exchange is empty"));
                    }
                }
            }
            ext::SIGNATURE_ALGORITHMS => {
                // SignatureScheme supported_signature_algorithms<2..2^16-2>;
                let mut list = data.sub_u16("signature_algorithms truncated")?;
                data.expect_empty("trailing bytes after signature_algorithms")?;
                if list.left() % 2 != 0 {
                    return Err(list.err("signature_algorithms of odd length"));
                }
                self.signature_algorithms = list.rest();
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
        let mut r = Reader::new(self.psk_identities);
        std::iter::from_fn(move || {
            let id = r.sub_u16("").ok()?.rest();
            r.u32("").ok()?;
            Some(id)
        })
    }

    /// The number of PSK identities offered.
    pub fn psk_identity_count(&self) -> usize {
        self.psk_identities().count()
    }

    /// ALPN protocol names in order.
    pub fn alpn(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let mut r = Reader::new(self.alpn);
        std::iter::from_fn(move || Some(r.sub_u8("").ok()?.rest()))
    }

    /// supported_versions, in order (GREASE included).
    pub fn supported_versions(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.supported_versions.unwrap_or_default())
    }

    /// key_share groups, in order.
    pub fn key_share_groups(&self) -> impl Iterator<Item = u16> + '_ {
        let mut r = Reader::new(self.key_shares);
        std::iter::from_fn(move || {
            let g = r.u16("").ok()?;
            r.sub_u16("").ok()?;
            Some(g)
        })
    }

    /// Cipher suites in order (GREASE included).
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + '_ {
        u16s(self.cipher_suites)
    }

    /// Extension types in the order sent (GREASE included).
    pub fn extension_types(&self) -> impl Iterator<Item = u16> + '_ {
        let mut r = Reader::new(self.extensions);
        std::iter::from_fn(move || {
            let t = r.u16("").ok()?;
            r.sub_u16("").ok()?;
            Some(t)
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

/// Big-endian u16s of an even-length, already validated slice.
fn u16s(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes.chunks_exact(2).map(|c| {
        u16::from_be_bytes([
            c.first().copied().unwrap_or(0),
            c.get(1).copied().unwrap_or(0),
        ])
    })
}
