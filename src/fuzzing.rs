//! Entry points for the fuzz targets of the router's own parsers of outside
//! bytes (`fuzz/fuzz_targets/{proxy_header,state_file,store_values,
//! takeover_messages}.rs` call these; the inspector's are in
//! `stickytls_inspect::fuzzing`). Each asserts properties, not merely that
//! nothing panicked: the same answer in every chunking, what we write
//! parses back to what was written, what decodes encodes back to bytes
//! that decode the same, and allocation bounded by the input.
//!
//! Built with the `fuzzing` feature (the fuzz crate turns it on) and in the
//! library's own tests, which replay every committed seed and regression
//! (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`) through them.
#![deny(clippy::indexing_slicing)]

/// A cursor over the fuzzer's bytes that reads zeros once they run out,
/// so that every input builds a value (the structured halves of the
/// targets).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.u8();
        }
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    /// At most `n` bytes, fewer when fewer are left.
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// The PROXY header parser ([`crate::proxy`]), as `read_header` drives it.
///
/// Input: a client's first bytes. The same bytes also build a header of
/// our own (addresses, rule, key kind, v1 or v2; [`crate::proxy_out`]).
pub mod proxy_header {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use super::Bytes;
    use crate::config::SendProxy;
    use crate::decision::Rule;
    use crate::inspect::KeyKind;
    use crate::proxy::{MAX_HEADER, Proxied, ProxyError, parse};
    use crate::proxy_out::{Origin, header_then, local, same_family};

    /// What reading a header from a stream ended in, comparable across
    /// chunkings: the header and its length, or the error's whole text.
    type Outcome = Result<(Proxied, usize), String>;

    fn peer() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 5000)
    }

    /// Reads `stream` as `read_header` does (parse what is there, stop at
    /// an answer, give up at [`MAX_HEADER`], ask for at most what a header
    /// could still need), each read returning at most `chunk(read number)`
    /// bytes: the outcome and how many bytes had been read when it came.
    fn read(stream: &[u8], chunk: impl Fn(usize) -> usize) -> (Outcome, usize) {
        let mut buf = Vec::new();
        for n in 0.. {
            match parse(&buf, peer()) {
                Ok(Some(found)) => return (Ok(found), buf.len()),
                Err(e) => return (Err(format!("{e:?}")), buf.len()),
                Ok(None) => {}
            }
            if buf.len() >= MAX_HEADER {
                return (Err("TooLong".into()), buf.len());
            }
            let start = buf.len();
            let want = if start < 16 {
                16 - start
            } else {
                (MAX_HEADER - start).min(512)
            };
            let rest = stream.get(start..).unwrap_or_default();
            if rest.is_empty() {
                return (Err(format!("{:?}", ProxyError::Closed)), buf.len());
            }
            let take = want.min(chunk(n).max(1)).min(rest.len());
            buf.extend_from_slice(rest.get(..take).unwrap_or_default());
        }
        unreachable!("the loop returns once the stream is read")
    }

    /// Every chunking of `stream` gives one outcome; a header is
    /// recognised as soon as its last byte is in and never needs more;
    /// the header's own bytes, alone, are the same header.
    fn agrees_in_every_chunking(stream: &[u8]) -> Outcome {
        let (whole, read_whole) = read(stream, |_| usize::MAX);
        let odd = stream.first().map_or(1, |&b| usize::from(b % 29) + 2);
        let (one, read_one) = read(stream, |_| 1);
        assert_eq!(one, whole, "1-byte reads against whole reads");
        for (name, size) in [
            ("3-byte", &(|_| 3usize) as &dyn Fn(usize) -> usize),
            ("derived", &|_| odd),
            ("growing", &|n| n + 1),
        ] {
            let (got, _) = read(stream, size);
            assert_eq!(got, whole, "{name} reads against whole reads");
        }
        if let Ok((_, len)) = whole {
            assert!(
                len <= read_whole,
                "consumed {len} of {read_whole} bytes read"
            );
            assert_eq!(len, read_one, "recognised only {read_one} bytes in");
            let alone = parse(stream.get(..len).unwrap_or_default(), peer())
                .map_err(|e| format!("{e:?}"))
                .map(|r| r.expect("a whole header is not incomplete"));
            assert_eq!(alone, whole, "the header alone");
        }
        whole
    }

    /// An origin built from the fuzzer's bytes.
    fn origin(b: &mut Bytes<'_>) -> (SendProxy, Origin) {
        let flags = b.u8();
        let mut addr = |v6: bool| {
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from(b.array::<16>()))
            } else {
                IpAddr::V4(Ipv4Addr::from(b.array::<4>()))
            };
            SocketAddr::new(ip, b.u16())
        };
        let client = addr(flags & 1 != 0);
        let destination = addr(flags & 2 != 0);
        let kind = match (flags >> 4) & 3 {
            0 => KeyKind::SessionId,
            1 => KeyKind::Ticket,
            2 => KeyKind::PskIdentity,
            _ => KeyKind::TicketKeyName,
        };
        let rule = match (flags >> 6) & 3 {
            0 => Rule::Key(kind),
            1 => Rule::Rebind,
            2 => Rule::SourceIp,
            _ => Rule::Balancer,
        };
        let key_kind = (matches!(rule, Rule::Key(_) | Rule::Rebind)).then_some(kind);
        let send = if flags & 4 != 0 {
            SendProxy::V2
        } else {
            SendProxy::V1
        };
        (
            send,
            Origin {
                client,
                destination,
                rule,
                key_kind,
            },
        )
    }

    /// The entry point: `data` as a client's first bytes, then a header of
    /// our own built from `data`, and the probes' headers, read back.
    pub fn proxy_header(data: &[u8]) {
        let _ = agrees_in_every_chunking(data);

        let mut b = Bytes(data);
        let (send, origin) = origin(&mut b);
        let payload = b.0;
        let written = header_then(send, &origin, payload);
        let (read, len) = agrees_in_every_chunking(&written)
            .unwrap_or_else(|e| panic!("our own {send:?} header is refused: {e}"));
        let (client, destination) = same_family(origin.client, origin.destination);
        assert_eq!(read.client, client, "client of our {send:?} header");
        assert_eq!(read.destination, Some(destination));
        assert_eq!(written.get(len..), Some(payload), "payload after it");

        for send in [SendProxy::V1, SendProxy::V2] {
            let probe = local(send);
            let (read, len) = agrees_in_every_chunking(probe).expect("a probe's header parses");
            assert_eq!(
                (read.client, read.destination, len),
                (peer(), None, probe.len())
            );
        }
    }
}

/// The state-file decoder ([`crate::state::decode`]), past its checksum.
///
/// Input: byte 0 even, the rest is a body that gets the header and the
/// checksum of a file of this build's version, so that the fuzzer reaches
/// the body's parser rather than SHA-256; byte 0 odd, the rest is a whole
/// file as it is.
pub mod state_file {
    use sha2::{Digest, Sha256};

    use crate::affinity::clients::SavedClient;
    use crate::state::{
        self, MAGIC, Saved, VERSION, encode_client, encode_entry, put_str, put_u16, put_u32,
    };

    /// What a decode may allocate, per byte of the file, at most. The
    /// largest ratio the format allows is a backend name's: 2 bytes on disk
    /// (an empty name), a 24-byte `String` in memory.
    pub const ALLOCATION_PER_BYTE: usize = 16;

    /// A file of this build's format around `body`, with its checksum.
    pub fn signed(written_at: u64, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&written_at.to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(body);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// `saved` in the file format, as the writer lays it out (the writer
    /// itself walks live tables; this walks what a decode gave).
    pub fn encode(saved: &Saved) -> Vec<u8> {
        let mut body = Vec::new();
        put_u32(&mut body, saved.pools.len());
        for p in &saved.pools {
            put_str(&mut body, &p.name);
            put_u16(&mut body, p.backends.len());
            for b in &p.backends {
                put_str(&mut body, b);
            }
            put_u32(&mut body, p.entries.len());
            for e in &p.entries {
                body.extend_from_slice(&encode_entry(e));
            }
            put_u32(&mut body, p.clients.len());
            for c in p.clients.iter() {
                encode_client(&mut body, &c, 0);
            }
        }
        signed(saved.written_at, &body)
    }

    /// The bytes a decoded state holds on the heap, as far as its own
    /// vectors and strings show (client records: their smallest size in
    /// the file, the copy they are kept as).
    pub fn heap_bytes(saved: &Saved) -> usize {
        use std::mem::size_of;
        let mut n = saved.pools.capacity() * size_of::<state::SavedPool>();
        for p in &saved.pools {
            n += p.name.capacity();
            n += p.backends.capacity() * size_of::<String>();
            n += p.backends.iter().map(String::capacity).sum::<usize>();
            n += p.entries.capacity() * size_of::<crate::affinity::SavedEntry>();
            // Client records stay in the file's own bytes until applied
            // (`SavedClients`), a copy of at most the file.
            n += p.clients.len() * 14;
        }
        n
    }

    /// A decoded state with its client records decoded.
    fn view(saved: &Saved) -> (u64, Vec<PoolView<'_>>) {
        let pools = saved.pools.iter();
        let pools = pools.map(|p| (&p.name, &p.backends, &p.entries, p.clients.iter().collect()));
        (saved.written_at, pools.collect())
    }

    type PoolView<'a> = (
        &'a String,
        &'a Vec<String>,
        &'a Vec<crate::affinity::SavedEntry>,
        Vec<SavedClient>,
    );

    /// The file the input stands for (see the module's doc).
    pub fn file(data: &[u8]) -> Option<Vec<u8>> {
        let (&mode, rest) = data.split_first()?;
        Some(if mode & 1 == 0 {
            signed(1_765_000_000, rest)
        } else {
            rest.to_vec()
        })
    }

    /// The entry point, without an allocation counter.
    pub fn state_file(data: &[u8]) {
        state_file_counted(data, None);
    }

    /// The entry point; `allocated`, when given, is the process's count of
    /// bytes allocated so far (the fuzz target's counting allocator), and
    /// the decode may add at most [`ALLOCATION_PER_BYTE`] per byte of the
    /// file to it, plus a page.
    pub fn state_file_counted(data: &[u8], allocated: Option<&dyn Fn() -> u64>) {
        let Some(file) = file(data) else { return };
        let before = allocated.map(|count| count());
        let decoded = state::decode(&file);
        if let (Some(count), Some(before)) = (allocated, before) {
            let used = count().saturating_sub(before);
            let bound = (ALLOCATION_PER_BYTE * file.len() + 4096) as u64;
            assert!(
                used <= bound,
                "decoding {} bytes allocated {used}",
                file.len()
            );
        }
        let Ok(saved) = decoded else { return };
        let held = heap_bytes(&saved);
        assert!(
            held <= ALLOCATION_PER_BYTE * file.len(),
            "{} bytes decode to {held} on the heap",
            file.len()
        );
        let again = encode(&saved);
        match state::decode(&again) {
            Ok(back) => {
                // Client records are kept as the file's bytes: compared
                // as what they decode to (an IPv4-mapped IPv6 client is
                // the IPv4 one, and is written back as such).
                assert_eq!(view(&back), view(&saved), "decode(encode(decoded))");
                assert_eq!(encode(&back), again, "encode is a fixed point");
            }
            Err(e) => panic!("a decoded state encodes to a file that does not decode: {e}"),
        }
        // Only an IPv4-mapped IPv6 client (never written: the writer's
        // prefixes are canonical) is written back shorter, as IPv4; a file
        // of an older version is written back in this one.
        if file.get(8..10) == Some(&VERSION.to_be_bytes()[..]) {
            assert!(again.len() <= file.len(), "encoded back longer");
        }
    }
}

/// The decoders of the values the shared store keeps in Redis
/// ([`crate::affinity::redis`]).
///
/// Input: byte 0 picks the decoder (modulo 6): 0 an entry's binding, 1 a
/// key name's, 2 a session count, 3 a client record, each on the rest of
/// the input as a value read from Redis; 4 and 5 build a binding or a
/// client record from the rest and put it through its encoder first.
pub mod store_values {
    use std::sync::Arc;

    use super::Bytes;
    use crate::affinity::clients::Confirmed;
    use crate::affinity::redis::{
        MAX_VALUE, decode_binding, decode_client, decode_count, encode_binding, encode_client,
    };
    use crate::affinity::{Binding, KeyState, Session};

    /// A value that decodes encodes back to at most its own length (only
    /// leading zeros are lost) and decodes again to the same.
    fn binding(v: &[u8], name: bool) {
        let Ok((b, at)) = decode_binding(v, name) else {
            return;
        };
        assert!(v.len() <= MAX_VALUE);
        let again = encode_binding(&b, at).expect("a decoded binding encodes");
        assert!(again.len() <= v.len(), "{again:?} from {v:?}");
        assert_eq!(decode_binding(again.as_bytes(), name), Ok((b, at)));
    }

    fn count(v: &[u8]) {
        let Ok(n) = decode_count(v) else { return };
        assert_eq!(decode_count(n.to_string().as_bytes()), Ok(n));
        let digits = std::str::from_utf8(v).expect("counted digits");
        match digits.trim_start_matches('0').parse::<u64>() {
            Ok(exact) => assert_eq!(u64::from(n), exact.min(u64::from(u32::MAX))),
            // Past u64, or all zeros.
            Err(_) => assert!(n == u32::MAX || n == 0, "{n} from {digits}"),
        }
    }

    fn client(v: &[u8]) {
        let Ok((c, at)) = decode_client(v) else {
            return;
        };
        assert!(v.len() <= MAX_VALUE);
        assert!(!c.new_session, "a stored record is never a new session");
        let again = encode_client(&c, at).expect("a decoded client record encodes");
        assert!(again.len() <= v.len(), "{again:?} from {v:?}");
        let (back, back_at) = decode_client(again.as_bytes()).expect("decodes again");
        assert_eq!(
            (&*back.backend, back.tls12, back.fingerprint, back_at),
            (&*c.backend, c.tls12, c.fingerprint, at)
        );
    }

    /// Every binding the encoder agrees to write decodes to itself, under
    /// the class of key it belongs to (and only that one).
    fn built_binding(b: &mut Bytes<'_>) {
        let state = KeyState::from_bits(b.u16());
        let at = b.u64();
        let offered = Session {
            version: b.u16(),
            cipher: b.u16(),
        };
        let backend: Arc<str> = Arc::from(String::from_utf8_lossy(b.0));
        // Only an entry's value carries its session; a key name has none.
        let session = if state == KeyState::Owned {
            offered
        } else {
            Session::UNKNOWN
        };
        let binding = Binding {
            backend,
            state,
            session,
        };
        let Some(v) = encode_binding(&binding, at) else {
            return;
        };
        let name = state != KeyState::Owned;
        assert_eq!(
            decode_binding(v.as_bytes(), name),
            Ok((binding, at)),
            "{v:?}"
        );
        assert!(decode_binding(v.as_bytes(), !name).is_err(), "{v:?}");
    }

    fn built_client(b: &mut Bytes<'_>) {
        let flags = b.u8();
        let at = b.u64();
        let fingerprint = b.u32();
        let c = Confirmed {
            backend: Arc::from(String::from_utf8_lossy(b.take(usize::MAX))),
            tls12: flags & 1 != 0,
            fingerprint,
            new_session: flags & 2 != 0,
        };
        let Some(v) = encode_client(&c, at) else {
            return;
        };
        let (back, back_at) = decode_client(v.as_bytes()).expect("our own record decodes");
        assert_eq!(
            (&*back.backend, back.tls12, back.fingerprint, back_at),
            (&*c.backend, c.tls12, c.fingerprint, at),
            "{v:?}"
        );
    }

    /// The entry point.
    pub fn store_values(data: &[u8]) {
        let Some((&mode, v)) = data.split_first() else {
            return;
        };
        match mode % 6 {
            0 => binding(v, false),
            1 => binding(v, true),
            2 => count(v),
            3 => client(v),
            4 => built_binding(&mut Bytes(v)),
            _ => built_client(&mut Bytes(v)),
        }
    }
}

/// The takeover conversation as the new process reads it
/// ([`crate::takeover`]), from a fake old process on a real Unix socket:
/// the parser and its socket calls are one piece, so they are fuzzed as
/// one.
///
/// Input: messages, each a flag byte (its low two bits: how many copies
/// of a listening TCP socket ride with it), a big-endian u16 length and
/// that many bytes (fewer at the end of the input); at most 64 messages.
/// The fake old process sends them all once the new one has said
/// `TAKEOVER 1`, then closes.
pub mod takeover_messages {
    use std::net::SocketAddr;
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::PathBuf;
    use std::sync::mpsc::{Receiver, Sender, channel};
    use std::sync::{Mutex, OnceLock};

    use super::Bytes;
    use crate::takeover::{self, Inherited};

    /// Most messages read from one input.
    const MAX_MESSAGES: usize = 64;
    /// The most state the new process takes: more than any input holds.
    const STATE_CAP: u64 = 1 << 20;
    /// Replaced, in every message, by the address of the listening socket
    /// the fake old process hands over: `check_listener` takes a socket
    /// only at the address its `LISTENER` line announces.
    const BOUND: &[u8] = b"BOUND";

    /// One message of the fake old process.
    #[derive(Debug, Clone)]
    pub struct Message {
        pub text: Vec<u8>,
        /// Copies of the listening socket sent with it.
        pub sockets: u8,
    }

    /// `data` as messages (see the module's doc).
    pub fn messages(data: &[u8]) -> Vec<Message> {
        let mut b = Bytes(data);
        let mut out = Vec::new();
        while !b.0.is_empty() && out.len() < MAX_MESSAGES {
            let flags = b.u8();
            let len = usize::from(b.u16());
            out.push(Message {
                text: b.take(len).to_vec(),
                sockets: flags & 3,
            });
        }
        out
    }

    /// The input for `messages`, the inverse of [`messages`].
    pub fn frame(messages: &[Message]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.push(m.sockets);
            out.extend_from_slice(&(m.text.len() as u16).to_be_bytes());
            out.extend_from_slice(&m.text);
        }
        out
    }

    /// The fake old process: a thread that, for each conversation it is
    /// given, accepts one connection on `path`, reads the hello and sends
    /// the messages.
    struct OldProcess {
        path: PathBuf,
        listening: std::net::TcpListener,
        talk: Sender<Vec<Message>>,
        done: Receiver<()>,
    }

    fn old_process() -> &'static Mutex<OldProcess> {
        static OLD: OnceLock<Mutex<OldProcess>> = OnceLock::new();
        OLD.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!(
                "stickytls-fuzz-takeover-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).expect("a temporary folder");
            let path = dir.join("takeover.sock");
            let socket = takeover::bind(&path).expect("the takeover socket");
            let listening = std::net::TcpListener::bind("127.0.0.1:0").expect("a TCP listener");
            let handed = listening.try_clone().expect("a copy of the TCP listener");
            let (talk, conversations) = channel::<Vec<Message>>();
            let (said, done) = channel();
            std::thread::spawn(move || {
                for msgs in conversations {
                    if let Ok(conn) = rustix::net::accept(&socket) {
                        speak(&conn, &handed, &msgs);
                    }
                    if said.send(()).is_err() {
                        return;
                    }
                }
            });
            Mutex::new(OldProcess {
                path,
                listening,
                talk,
                done,
            })
        })
    }

    /// The old process's side of one conversation; stops at the first
    /// message the new process no longer reads.
    fn speak(conn: &OwnedFd, handed: &std::net::TcpListener, msgs: &[Message]) {
        if takeover::recv(conn).is_err() {
            return;
        }
        let bound = handed
            .local_addr()
            .map(|a| a.to_string().into_bytes())
            .unwrap_or_default();
        for m in msgs {
            let fds = vec![handed.as_fd(); usize::from(m.sockets)];
            let text = with_bound(&m.text, &bound);
            if takeover::send(conn, &text, &fds).is_err() {
                return;
            }
        }
    }

    /// `text` with every [`BOUND`] replaced by `bound`.
    fn with_bound(text: &[u8], bound: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        while !rest.is_empty() {
            if rest.starts_with(BOUND) {
                out.extend_from_slice(bound);
                rest = rest.get(BOUND.len()..).unwrap_or_default();
            } else if let Some((&b, tail)) = rest.split_first() {
                out.push(b);
                rest = tail;
            }
        }
        out
    }

    /// `LISTENER` addresses, sockets sent with them, the state, and the
    /// messages after it.
    type Conversation<'m> = (Vec<SocketAddr>, usize, Vec<u8>, &'m [Message]);

    /// What the old process's messages say, as the protocol has it: the
    /// addresses of its `LISTENER` lines and the sockets sent with them,
    /// the state after its first `STATE <length>` line, and the rest of
    /// the messages. `None` where they do not follow the protocol.
    fn hand_over(msgs: &[Message]) -> Option<Conversation<'_>> {
        let (mut addrs, mut sockets) = (Vec::new(), 0);
        let mut rest = msgs;
        loop {
            let (m, tail) = rest.split_first()?;
            rest = tail;
            let text = std::str::from_utf8(&m.text).ok()?;
            if let Some(words) = text.strip_prefix("LISTENER ") {
                addrs.push(words.split(' ').next()?.parse().ok()?);
                sockets += usize::from(m.sockets);
                continue;
            }
            let (state, tail) = state(text, rest)?;
            return Some((addrs, sockets, state, tail));
        }
    }

    /// The state a `STATE <length>` line announces and the messages after
    /// it: exactly `length` bytes in whole messages.
    fn state<'m>(line: &str, mut rest: &'m [Message]) -> Option<(Vec<u8>, &'m [Message])> {
        let len: usize = line.strip_prefix("STATE ")?.parse().ok()?;
        let mut state = Vec::new();
        while state.len() < len {
            let (m, tail) = rest.split_first()?;
            if m.text.is_empty() {
                return None;
            }
            state.extend_from_slice(&m.text);
            rest = tail;
        }
        (state.len() == len).then_some((state, rest))
    }

    /// The entry point.
    pub fn takeover_messages(data: &[u8]) {
        let msgs = messages(data);
        let old = old_process().lock().unwrap_or_else(|e| e.into_inner());
        old.talk
            .send(msgs.clone())
            .expect("the old process listens");
        let listening = old.listening.local_addr().expect("its address");
        let bound = listening.to_string().into_bytes();
        let msgs: Vec<Message> = msgs
            .into_iter()
            .map(|m| Message {
                text: with_bound(&m.text, &bound),
                sockets: m.sockets,
            })
            .collect();
        let got = takeover::take_over(&old.path, STATE_CAP);
        let last = match &got {
            Ok(Some(new)) => Some(takeover::final_state(&new.conn, STATE_CAP)),
            _ => None,
        };
        let new: Option<Inherited> = match got {
            Ok(Some(new)) => Some(new),
            Ok(None) => panic!("the old process listens, yet nobody answered"),
            Err(_) => None,
        };
        let expected = hand_over(&msgs);
        if let Some(new) = &new {
            let Some((addrs, sockets, state, _)) = &expected else {
                panic!("took over from a conversation off the protocol: {msgs:?}");
            };
            assert_eq!(&new.state, state, "the state as sent");
            let mut got = 0;
            for (addr, socks) in &new.sockets {
                assert!(addrs.contains(addr), "{addr} named by no LISTENER line");
                for s in socks {
                    assert_eq!(s.local_addr().ok(), Some(listening), "a socket not sent");
                    got += 1;
                }
            }
            assert!(got <= *sockets, "{got} sockets of {sockets} sent");
        }
        if let (Some(Ok(last)), Some((_, _, _, rest))) = (&last, &expected) {
            // After SENT, the state the old process learned while it
            // drained, then DONE.
            let (sent, rest) = rest.split_first().expect("SENT");
            assert_eq!(sent.text, b"SENT");
            let (line, rest) = rest.split_first().expect("the last STATE line");
            let text = std::str::from_utf8(&line.text).expect("a STATE line");
            let (state, rest) = state(text, rest).expect("the last state as announced");
            assert_eq!(last, &state, "the last state as sent");
            let done = rest.first().expect("DONE");
            assert_eq!(done.text, b"DONE");
        }
        drop(new);
        old.done
            .recv()
            .expect("the old process ends its conversation");
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::affinity::clients::Confirmed;
    use crate::affinity::{Binding, Key, KeyKind, KeyState};
    use crate::config::{BackendConfig, PoolConfig};
    use crate::pool::PoolState;

    /// Each target's name and entry point.
    type Entry = fn(&[u8]);

    const TARGETS: [(&str, Entry); 4] = [
        ("proxy_header", proxy_header::proxy_header),
        ("state_file", state_file::state_file),
        ("store_values", store_values::store_values),
        ("takeover_messages", takeover_messages::takeover_messages),
    ];

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
    }

    /// Every regular file in `dir` except dot-files and READMEs, sorted.
    fn inputs(dir: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                !name.starts_with('.') && !name.ends_with(".md")
            })
            .collect();
        out.sort();
        out
    }

    /// Replays `fuzz/<folder>/<target>/*` through each target's entry
    /// point; how many inputs each target got.
    fn replay(folder: &str) -> Vec<(&'static str, usize)> {
        let mut counts = Vec::new();
        for (target, entry) in TARGETS {
            let mut n = 0;
            for path in inputs(&fuzz_dir().join(folder).join(target)) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| entry(&data));
                assert!(outcome.is_ok(), "{target} fails on {}", path.display());
                n += 1;
            }
            counts.push((target, n));
        }
        counts
    }

    #[test]
    fn every_seed_of_the_router_targets_keeps_the_fuzz_properties() {
        for (target, n) in replay("seeds") {
            assert!(n >= 4, "only {n} seeds for {target}");
        }
    }

    #[test]
    fn every_regression_of_the_router_targets_keeps_the_fuzz_properties() {
        replay("regressions");
    }

    /// The state seeds are files of this build's format: a format change
    /// that leaves them behind fails here (write them again with
    /// `write_seeds`).
    #[test]
    fn every_state_seed_is_a_file_this_build_reads() {
        let dir = fuzz_dir().join("seeds").join("state_file");
        for path in inputs(&dir) {
            let file = state_file::file(&std::fs::read(&path).unwrap()).unwrap();
            let decoded = crate::state::decode(&file);
            assert!(decoded.is_ok(), "{}: {decoded:?}", path.display());
        }
    }

    /// The fuzz target counts what a decode allocates, these tests do not
    /// (a counting allocator would count every test thread): its finding,
    /// a backend count past the file that sized a vector of names, must
    /// be refused at the count.
    #[test]
    fn a_backend_count_past_the_file_is_refused_before_it_sizes_anything() {
        let dir = fuzz_dir().join("regressions").join("state_file");
        let data =
            std::fs::read(dir.join("backend-count-past-the-file-sized-a-vector.bin")).unwrap();
        let decoded = crate::state::decode(&state_file::file(&data).unwrap());
        assert!(
            matches!(
                decoded,
                Err(crate::state::StateError::Malformed("backend count"))
            ),
            "{decoded:?}"
        );
    }

    /// `cargo test --lib fuzzing::tests::write_seeds -- --ignored` writes
    /// every target's seeds into fuzz/seeds/<target>/.
    #[test]
    #[ignore = "writes the committed seeds"]
    fn write_seeds() {
        for (target, seeds) in seeds() {
            let dir = fuzz_dir().join("seeds").join(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in seeds {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }

    /// The state file's own writer and ours in [`state_file::encode`] lay
    /// out the same bytes.
    #[test]
    fn the_fuzzing_encoder_writes_what_the_state_writer_writes() {
        let p = learned_pool();
        let (bytes, _, _) = crate::state::encode(std::slice::from_ref(&p), SystemTime::now());
        let saved = crate::state::decode(&bytes).unwrap();
        assert_eq!(state_file::encode(&saved), bytes);
    }

    fn learned_pool() -> Arc<PoolState> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let backends = ["alpha", "beta", "gamma"];
        let mut config = PoolConfig::new(
            "web",
            backends
                .iter()
                .map(|b| BackendConfig::new(b, addr))
                .collect(),
        );
        config.affinity.inactivity_timeout = Duration::from_secs(600);
        config.affinity.correlation_window = Duration::from_secs(600);
        let p = Arc::new(PoolState::for_test(config));
        let name = |b: &str| p.backends.by_name(b).unwrap().name.clone();
        let states = [
            KeyState::Owned,
            KeyState::Routable,
            KeyState::Candidate { tag: 77 },
            KeyState::Shared,
        ];
        for (i, state) in states.into_iter().enumerate() {
            let key = Key::new(KeyKind::SessionId, &(i as u32).to_le_bytes());
            let backend = name(backends[i % 3]);
            let session = crate::affinity::Session {
                version: 0x0304,
                cipher: 0x1301,
            };
            p.table.put(
                key,
                Binding {
                    backend,
                    state,
                    session: if state == KeyState::Owned {
                        session
                    } else {
                        crate::affinity::Session::UNKNOWN
                    },
                },
            );
        }
        for (i, ip) in ["192.0.2.7", "2001:db8::7"].iter().enumerate() {
            for fp in 0..3 {
                p.clients.record(
                    p.prefix(ip.parse().unwrap()),
                    &Confirmed {
                        backend: name(backends[(i + fp) % 3]),
                        tls12: fp % 2 == 0,
                        fingerprint: 42 + fp as u32,
                        new_session: true,
                    },
                );
            }
        }
        p
    }

    /// Every target's seeds by name, made with the writers.
    /// Seeds by file name.
    type Seeds = Vec<(String, Vec<u8>)>;

    fn seeds() -> Vec<(&'static str, Seeds)> {
        use crate::config::SendProxy;
        use crate::decision::Rule;
        use crate::proxy_out::{Origin, header_then, local};
        use takeover_messages::{Message, frame};

        let hello = [0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0];
        let mut proxy = Vec::new();
        for (name, client, destination, send, rule) in [
            (
                "v1-tcp4",
                "192.0.2.7:40000",
                "198.51.100.1:443",
                SendProxy::V1,
                Rule::Balancer,
            ),
            (
                "v1-tcp6",
                "[2001:db8::7]:40000",
                "[2001:db8::1]:443",
                SendProxy::V1,
                Rule::SourceIp,
            ),
            (
                "v2-tcp4-key",
                "192.0.2.7:40000",
                "198.51.100.1:443",
                SendProxy::V2,
                Rule::Key(KeyKind::Ticket),
            ),
            (
                "v2-tcp6-rebind",
                "[2001:db8::7]:40000",
                "[2001:db8::1]:443",
                SendProxy::V2,
                Rule::Rebind,
            ),
            (
                "v2-mixed",
                "192.0.2.7:40000",
                "[2001:db8::1]:443",
                SendProxy::V2,
                Rule::Balancer,
            ),
        ] {
            let origin = Origin {
                client: client.parse().unwrap(),
                destination: destination.parse().unwrap(),
                rule,
                key_kind: rule
                    .key_kind()
                    .or((rule == Rule::Rebind).then_some(KeyKind::SessionId)),
            };
            proxy.push((
                format!("{name}.bin"),
                header_then(send, &origin, &hello).into_owned(),
            ));
        }
        proxy.push(("v1-unknown.bin".into(), local(SendProxy::V1).to_vec()));
        proxy.push(("v2-local.bin".into(), local(SendProxy::V2).to_vec()));
        proxy.push(("no-header-tls.bin".into(), hello.to_vec()));

        let (file, _, _) = crate::state::encode(&[learned_pool()], SystemTime::now());
        let empty = crate::state::encode(&[], SystemTime::now()).0;
        let body = |f: &[u8]| f[26..f.len() - 32].to_vec();
        let state = vec![
            (
                "pool-body.bin".to_string(),
                [&[0u8][..], &body(&file)].concat(),
            ),
            (
                "empty-body.bin".to_string(),
                [&[0u8][..], &body(&empty)].concat(),
            ),
            ("pool-file.bin".to_string(), [&[1u8][..], &file].concat()),
            ("empty-file.bin".to_string(), [&[1u8][..], &empty].concat()),
        ];

        let mut store = Vec::new();
        let b = |state| Binding {
            backend: Arc::from("alpha"),
            state,
            session: if state == KeyState::Owned {
                crate::affinity::Session {
                    version: 0x0303,
                    cipher: 0xc02f,
                }
            } else {
                crate::affinity::Session::UNKNOWN
            },
        };
        let binding = |s| crate::affinity::redis::encode_binding(&b(s), 1_765_000_000).unwrap();
        store.push((
            "entry.bin".to_string(),
            [b"\x00", binding(KeyState::Owned).as_bytes()].concat(),
        ));
        store.push((
            "name-candidate.bin".to_string(),
            [b"\x01", binding(KeyState::Candidate { tag: 77 }).as_bytes()].concat(),
        ));
        store.push((
            "name-routable.bin".to_string(),
            [b"\x01", binding(KeyState::Routable).as_bytes()].concat(),
        ));
        store.push(("count.bin".to_string(), b"\x0212".to_vec()));
        store.push((
            "count-past-u32.bin".to_string(),
            b"\x0218446744073709551615".to_vec(),
        ));
        let c = Confirmed {
            backend: Arc::from("gamma"),
            tls12: true,
            fingerprint: 3_000_000_000,
            new_session: false,
        };
        let record = crate::affinity::redis::encode_client(&c, 1_765_000_000).unwrap();
        store.push((
            "client.bin".to_string(),
            [b"\x03", record.as_bytes()].concat(),
        ));
        store.push((
            "built-binding.bin".to_string(),
            b"\x04\x00\x02\x00\x00\x00\x00\x69\x35\x00\x00beta".to_vec(),
        ));
        store.push((
            "built-client.bin".to_string(),
            b"\x05\x01\x00\x00\x00\x00\x69\x35\x00\x00\x00\x00\x00\x2abeta".to_vec(),
        ));

        let m = |text: &[u8], sockets| Message {
            text: text.to_vec(),
            sockets,
        };
        let line = |n: usize| format!("STATE {n}").into_bytes();
        let (first, rest) = file.split_at(file.len() / 2);
        let takeover = vec![
            (
                "one-listener.bin".to_string(),
                frame(&[
                    m(b"LISTENER 127.0.0.1:8443 BOUND", 1),
                    m(&line(file.len()), 0),
                    m(&file, 0),
                    m(b"SENT", 0),
                    m(&line(empty.len()), 0),
                    m(&empty, 0),
                    m(b"DONE", 0),
                ]),
            ),
            (
                "two-listeners-state-in-chunks.bin".to_string(),
                frame(&[
                    m(b"LISTENER 127.0.0.1:8443 BOUND", 2),
                    m(b"LISTENER [::]:443 BOUND", 1),
                    m(&line(file.len()), 0),
                    m(first, 0),
                    m(rest, 0),
                    m(b"SENT", 0),
                    m(&line(file.len()), 0),
                    m(&file, 0),
                    m(b"DONE", 0),
                ]),
            ),
            (
                "no-listener.bin".to_string(),
                frame(&[m(&line(empty.len()), 0), m(&empty, 0), m(b"SENT", 0)]),
            ),
            (
                "closed-after-sent.bin".to_string(),
                frame(&[
                    m(b"LISTENER 0.0.0.0:8443 BOUND", 3),
                    m(&line(empty.len()), 0),
                    m(&empty, 0),
                    m(b"SENT", 0),
                ]),
            ),
        ];
        vec![
            ("proxy_header", proxy),
            ("state_file", state),
            ("store_values", store),
            ("takeover_messages", takeover),
        ]
    }
}
