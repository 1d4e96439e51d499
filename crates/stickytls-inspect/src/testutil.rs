//! Tiny byte builders for tests: ClientHello, ServerHello,
//! NewSessionTicket and records, so a test reads like the handshake it
//! describes.
#![allow(clippy::indexing_slicing)] // test code: a panic is a failed test

pub(crate) fn u16be(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

/// An extensions block: each (type, body) in order, the whole with its
/// two-byte length.
pub(crate) fn extensions(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let all: Vec<u8> = exts
        .iter()
        .flat_map(|(t, body)| {
            let mut e = t.to_be_bytes().to_vec();
            e.extend(vec16(body));
            e
        })
        .collect();
    vec16(&all)
}

/// `len(u16) || body`.
pub(crate) fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = u16be(body.len()).to_vec();
    v.extend_from_slice(body);
    v
}

/// `len(u8) || body`.
pub(crate) fn vec8(body: &[u8]) -> Vec<u8> {
    let mut v = vec![body.len() as u8];
    v.extend_from_slice(body);
    v
}

pub(crate) fn u16s(vals: &[u16]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A handshake message: type, u24 length, body.
pub(crate) fn handshake_msg(typ: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut v = vec![typ, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    v.extend_from_slice(body);
    v
}

/// One record.
pub(crate) fn record(ctype: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![ctype, 3, 1];
    v.extend_from_slice(&u16be(payload.len()));
    v.extend_from_slice(payload);
    v
}

/// `payload` cut into records of at most `max` bytes.
pub(crate) fn records(ctype: u8, payload: &[u8], max: usize) -> Vec<u8> {
    payload.chunks(max).flat_map(|c| record(ctype, c)).collect()
}

pub(crate) fn handshake_record(msg: &[u8]) -> Vec<u8> {
    record(22, msg)
}

pub(crate) fn ccs() -> Vec<u8> {
    record(20, &[1])
}

pub(crate) fn alert(level: u8, description: u8) -> Vec<u8> {
    record(21, &[level, description])
}

pub(crate) fn app_data(n: usize) -> Vec<u8> {
    record(23, &vec![0x17; n])
}

#[derive(Debug, Clone)]
pub(crate) struct ChBuilder {
    pub(crate) version: u16,
    pub(crate) session_id: Vec<u8>,
    pub(crate) ciphers: Vec<u16>,
    pub(crate) exts: Vec<(u16, Vec<u8>)>,
    pub(crate) no_extensions: bool,
}

impl ChBuilder {
    pub(crate) fn new() -> Self {
        ChBuilder {
            version: 0x0303,
            session_id: Vec::new(),
            ciphers: vec![0x1301, 0x1302, 0xc02f],
            exts: Vec::new(),
            no_extensions: false,
        }
    }

    /// A typical TLS 1.3 hello: SNI, ALPN, versions, X25519 key share.
    pub(crate) fn tls13(name: &str) -> Self {
        ChBuilder::new()
            .session_id(&[0x5a; 32])
            .sni(name)
            .alpn(&["h2", "http/1.1"])
            .versions(&[0x0304, 0x0303])
            .key_share(&[(0x001d, 32)])
    }

    pub(crate) fn session_id(mut self, sid: &[u8]) -> Self {
        self.session_id = sid.to_vec();
        self
    }

    pub(crate) fn ext(mut self, typ: u16, body: &[u8]) -> Self {
        self.exts.push((typ, body.to_vec()));
        self
    }

    pub(crate) fn sni(self, name: &str) -> Self {
        let mut entry = vec![0];
        entry.extend(vec16(name.as_bytes()));
        self.ext(0, &vec16(&entry))
    }

    pub(crate) fn alpn(self, names: &[&str]) -> Self {
        let list: Vec<u8> = names.iter().flat_map(|n| vec8(n.as_bytes())).collect();
        self.ext(16, &vec16(&list))
    }

    pub(crate) fn versions(self, v: &[u16]) -> Self {
        self.ext(43, &vec8(&u16s(v)))
    }

    pub(crate) fn ticket(self, t: &[u8]) -> Self {
        self.ext(35, t)
    }

    pub(crate) fn key_share(self, groups: &[(u16, usize)]) -> Self {
        let list: Vec<u8> = groups
            .iter()
            .flat_map(|(g, n)| {
                let mut e = g.to_be_bytes().to_vec();
                e.extend(vec16(&vec![0x42; *n]));
                e
            })
            .collect();
        self.ext(51, &vec16(&list))
    }

    pub(crate) fn early_data(self) -> Self {
        self.ext(42, &[])
    }

    pub(crate) fn ech(self) -> Self {
        self.ext(0xfe0d, &[0, 0, 1, 0, 1, 7, 0, 0, 0, 0])
    }

    /// pre_shared_key with these identities and one 32-byte binder each.
    pub(crate) fn psk(self, ids: &[&[u8]]) -> Self {
        let idl: Vec<u8> = ids
            .iter()
            .flat_map(|id| {
                let mut e = vec16(id);
                e.extend([0, 0, 0, 7]);
                e
            })
            .collect();
        let binders: Vec<u8> = ids.iter().flat_map(|_| vec8(&[0xbb; 32])).collect();
        let mut body = vec16(&idl);
        body.extend(vec16(&binders));
        self.ext(41, &body)
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        let mut b = self.version.to_be_bytes().to_vec();
        b.extend([0x11; 32]);
        b.extend(vec8(&self.session_id));
        b.extend(vec16(&u16s(&self.ciphers)));
        b.extend(vec8(&[0]));
        if !self.no_extensions {
            b.extend(extensions(&self.exts));
        }
        b
    }

    /// The handshake message (header + body).
    pub(crate) fn message(&self) -> Vec<u8> {
        handshake_msg(1, &self.body())
    }

    /// The message in one record.
    pub(crate) fn record(&self) -> Vec<u8> {
        handshake_record(&self.message())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ShBuilder {
    pub(crate) random: [u8; 32],
    pub(crate) session_id: Vec<u8>,
    pub(crate) cipher: u16,
    pub(crate) exts: Vec<(u16, Vec<u8>)>,
}

impl ShBuilder {
    /// A TLS 1.2 ServerHello with this session ID.
    pub(crate) fn tls12(sid: &[u8]) -> Self {
        ShBuilder {
            random: [0x22; 32],
            session_id: sid.to_vec(),
            cipher: 0xc030,
            exts: vec![(0xff01, vec![0])],
        }
    }

    /// A TLS 1.3 ServerHello echoing `sid`.
    pub(crate) fn tls13(sid: &[u8]) -> Self {
        ShBuilder {
            random: [0x33; 32],
            session_id: sid.to_vec(),
            cipher: 0x1301,
            exts: vec![
                (43, vec![3, 4]),
                (51, {
                    let mut e = vec![0, 0x1d];
                    e.extend(vec16(&[0x44; 32]));
                    e
                }),
            ],
        }
    }

    /// A HelloRetryRequest asking for `group`.
    pub(crate) fn hrr(sid: &[u8], group: u16) -> Self {
        ShBuilder {
            random: super::server::HRR_RANDOM,
            session_id: sid.to_vec(),
            cipher: 0x1301,
            exts: vec![(43, vec![3, 4]), (51, group.to_be_bytes().to_vec())],
        }
    }

    pub(crate) fn psk(mut self, idx: u16) -> Self {
        self.exts.push((41, idx.to_be_bytes().to_vec()));
        self
    }

    pub(crate) fn message(&self) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend(self.random);
        b.extend(vec8(&self.session_id));
        b.extend(self.cipher.to_be_bytes());
        b.push(0);
        b.extend(extensions(&self.exts));
        handshake_msg(2, &b)
    }

    pub(crate) fn record(&self) -> Vec<u8> {
        handshake_record(&self.message())
    }
}

/// A TLS <= 1.2 NewSessionTicket message.
pub(crate) fn nst(lifetime: u32, ticket: &[u8]) -> Vec<u8> {
    let mut b = lifetime.to_be_bytes().to_vec();
    b.extend(vec16(ticket));
    handshake_msg(4, &b)
}

pub(crate) fn certificate(len: usize) -> Vec<u8> {
    handshake_msg(11, &vec![0xce; len])
}

pub(crate) fn server_hello_done() -> Vec<u8> {
    handshake_msg(14, &[])
}

/// An encrypted Finished as it looks on the wire after a CCS.
pub(crate) fn encrypted_finished() -> Vec<u8> {
    record(22, &[0xe7; 40])
}

pub(crate) use super::fuzzing::{feed_all_chunkings, run_client, run_server};
