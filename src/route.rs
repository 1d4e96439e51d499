//! Choosing a backend for a ClientHello. The rules, in order
//! (docs/routing.md):
//!
//! 1. a known key → its owner: PSK identity, ticket, ticket key name,
//!    session ID;
//! 2. a resumption attempt with unknown keys → the backend of this client
//!    address's most recent confirmed connection (on a shared address, only
//!    one with the same resumption-stable fingerprint);
//! 3. a fresh client → its address's recent backend, unless the address is
//!    shared by many clients;
//! 4. the balancer.
//!
//! The answer is every usable backend in preference order, so connect
//! failover just takes the next one.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::sync::Arc;

use crate::affinity::clients::{ClientPrefix, ClientView};
use crate::affinity::{Key, KeyKind, KeyState};
use crate::backend::{AdminState, Backend};
pub(crate) use crate::decision::Rule;
use crate::inspect::{ClientHello, ticket_key_name};
use crate::pool::PoolState;

/// The keys a ClientHello offers, digested once, owned by the connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Offer {
    /// PSK identities, each with its key-name key (empty for ECH outer
    /// hellos, whose identities are GREASE).
    pub psk_identities: Vec<(Key, Option<Key>)>,
    /// A non-empty session ticket and its key-name key.
    pub ticket: Option<(Key, Option<Key>)>,
    /// A non-empty legacy session ID.
    pub session_id: Option<Key>,
    /// The hello offers TLS 1.3 and nothing older: its legacy_session_id
    /// can only be answered in TLS 1.3, where it is a random echo, so no
    /// backend can have assigned it and no store can hold it.
    pub tls13_only: bool,
    /// With PSK identities: the hello lets a server resume one with a key
    /// exchange (psk_dhe_ke and a key_share), the mode servers allow.
    pub psk_dhe_ke: bool,
    /// Hash of the resumption-stable fingerprint: tells clients behind one
    /// address apart when re-binding.
    pub fingerprint: u32,
}

/// Most PSK identities looked up: clients offer one or two; a hello with
/// hundreds must not buy hundreds of table lookups.
const MAX_IDENTITIES: usize = 4;

impl Offer {
    pub fn from_hello(hello: &ClientHello<'_>) -> Offer {
        let with_name = |kind: KeyKind, bytes: &[u8]| {
            (
                Key::new(kind, bytes),
                ticket_key_name(bytes).map(|n| Key::new(KeyKind::TicketKeyName, n)),
            )
        };
        let psk_identities = if hello.ech {
            Vec::new()
        } else {
            hello
                .psk_identities()
                .take(MAX_IDENTITIES)
                .map(|id| with_name(KeyKind::PskIdentity, id))
                .collect()
        };
        let ticket = hello
            .session_ticket
            .filter(|t| !t.is_empty())
            .map(|t| with_name(KeyKind::Ticket, t));
        let session_id = Some(hello.session_id)
            .filter(|s| !s.is_empty())
            .map(|s| Key::new(KeyKind::SessionId, s));
        // GREASE versions (0x?a?a) are above TLS 1.3's 0x0304: only SSL 3.0
        // to TLS 1.2 count as older.
        let tls13_only = hello.offers_tls13()
            && !hello
                .supported_versions()
                .any(|v| (0x0300..0x0304).contains(&v));
        Offer {
            psk_dhe_ke: !psk_identities.is_empty() && hello.offers_psk_dhe_ke(),
            psk_identities,
            ticket,
            session_id,
            tls13_only,
            fingerprint: stable_fingerprint(hello),
        }
    }

    /// Offers a ticket or PSK: the client believes it has a session.
    pub fn offers_resumption(&self) -> bool {
        !self.psk_identities.is_empty() || self.ticket.is_some()
    }

    /// The kind of key a resumption attempt offers, by precedence: what a
    /// re-bind is counted as.
    pub fn resumption_kind(&self) -> KeyKind {
        if !self.psk_identities.is_empty() {
            KeyKind::PskIdentity
        } else if self.ticket.is_some() {
            KeyKind::Ticket
        } else {
            KeyKind::SessionId
        }
    }

    /// Lookups in precedence order.
    fn keys(&self) -> impl Iterator<Item = (KeyKind, Key)> + '_ {
        let psk = self
            .psk_identities
            .iter()
            .map(|(k, _)| (KeyKind::PskIdentity, *k));
        let ticket = self.ticket.iter().map(|(k, _)| (KeyKind::Ticket, *k));
        let names = self
            .psk_identities
            .iter()
            .chain(self.ticket.iter())
            .filter_map(|(_, n)| n.map(|n| (KeyKind::TicketKeyName, n)));
        let sid = self.session_id.iter().map(|k| (KeyKind::SessionId, *k));
        psk.chain(ticket).chain(names).chain(sid)
    }

    /// What a shared store is asked for when this process knows none of
    /// the keys: the session keys offered, then their key names. Not the
    /// session ID of a hello that offers TLS 1.3 only: no store can hold
    /// it (a round trip for nothing, and a lookup any client can make for
    /// IDs it copied from others' hellos).
    pub fn lookup_keys(&self) -> (Vec<Key>, Vec<Key>) {
        let session_id = self.session_id.filter(|_| !self.tls13_only);
        let keys = self
            .psk_identities
            .iter()
            .map(|(k, _)| *k)
            .chain(self.ticket.iter().map(|(k, _)| *k))
            .chain(session_id)
            .collect();
        (keys, self.key_names().collect())
    }

    /// Every key-name key offered.
    pub fn key_names(&self) -> impl Iterator<Item = Key> + '_ {
        self.psk_identities
            .iter()
            .chain(self.ticket.iter())
            .filter_map(|(_, n)| *n)
    }
}

/// A hash of what the resumption-stable JA4 variant reads (offered TLS
/// 1.3, cipher suites, extension types, signature algorithms, first ALPN),
/// with GREASE, padding (21), session_ticket (35), pre_shared_key (41) and
/// early_data (42) left out, so a client's full and resumed hellos agree
/// (rustls drops session_ticket when it resumes a TLS 1.3 session). Suites and extension
/// types are combined order-independently (sums of mixed values), as JA4
/// sorts them: browsers shuffle their extension order on every connection.
/// Computed straight from the hello, without building JA4's strings and
/// SHA-256 digests, which cost a fifth of a connection's instructions.
pub(crate) fn stable_fingerprint(hello: &ClientHello<'_>) -> u32 {
    use crate::balance::{fmix64, fnv1a64};
    use crate::inspect::ext::{EARLY_DATA, PADDING, PRE_SHARED_KEY, SESSION_TICKET};
    use crate::inspect::is_grease;
    let mut suites = 0u64;
    for s in hello.cipher_suites().filter(|s| !is_grease(*s)) {
        suites = suites.wrapping_add(fmix64(u64::from(s) | 1 << 32));
    }
    let mut exts = 0u64;
    for e in hello.extension_types().filter(|e| {
        !is_grease(*e) && ![PADDING, SESSION_TICKET, PRE_SHARED_KEY, EARLY_DATA].contains(e)
    }) {
        exts = exts.wrapping_add(fmix64(u64::from(e) | 2 << 32));
    }
    let mut ordered = fnv1a64(
        0,
        &[
            &[u8::from(hello.offers_tls13())],
            hello.alpn().next().unwrap_or(&[]),
        ],
    );
    for a in hello.signature_algorithms().filter(|a| !is_grease(*a)) {
        ordered = fnv1a64(ordered, &[&a.to_be_bytes()]);
    }
    let h = fmix64(suites ^ exts.rotate_left(21) ^ ordered.rotate_left(42));
    (h ^ (h >> 32)) as u32
}

/// Where to send a connection and why.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// Usable backends, the chosen one first, then the balancer's order
    /// for failover.
    pub candidates: Vec<Arc<Backend>>,
    pub rule: Rule,
    /// The table key that decided it (rule 1).
    pub matched: Option<Key>,
    /// Why, for logs: e.g. "ticket known", "renegotiated session re-bound".
    pub reason: &'static str,
}

/// Applies the rules. A table entry naming a backend that is not in the
/// pool is a miss, and is deleted. One naming a backend that is down is a
/// miss too, but is kept: its resumption goes to the balancer's choice,
/// and once the owner is back within the entry's lifetime, the client
/// returns to it, where its session may still be valid.
pub(crate) fn decide(pool: &PoolState, offer: &Offer, client: &ClientPrefix) -> Decision {
    // Where existing state lives (rules 1 and 2), a backend has to be up
    // and not in maintenance: draining (or weight 0) keeps the sessions it
    // owns. New sessions (rules 3 and 4) need state `up` and a weight.
    let usable = |name: &str| {
        pool.backends
            .by_name(name)
            .filter(|b| b.serves_sessions(&pool.clock))
    };
    let takes_new = |name: &str| {
        pool.backends
            .by_name(name)
            .filter(|b| b.takes_new(&pool.clock))
    };

    // Rule 1.
    let mut owner_down = false;
    for (kind, key) in offer.keys() {
        let Some(binding) = pool.table.get(&key) else {
            pool.stats.miss(kind);
            continue;
        };
        if kind == KeyKind::TicketKeyName && binding.state != KeyState::Routable {
            // Known, but only as a hint not yet (or no longer) trusted.
            continue;
        }
        match pool.backends.by_name(&binding.backend) {
            Some(b) if b.serves_sessions(&pool.clock) => {
                pool.stats.hit(kind);
                return finish(
                    pool,
                    client,
                    b.clone(),
                    Rule::Key(kind),
                    Some(key),
                    kind_reason(kind),
                );
            }
            Some(b) if b.admin_state() == AdminState::Maint => {
                // An operator took the owner out of service: its clients
                // are re-pinned elsewhere, so the entry goes.
                pool.stats.miss(kind);
                pool.table.remove(&key);
            }
            Some(_) => {
                pool.stats.miss(kind);
                owner_down = true;
            }
            None => {
                pool.stats.miss(kind);
                pool.table.remove(&key);
            }
        }
    }
    if owner_down {
        // Not rules 2 and 3: the client's session is known, and lives on
        // a backend that is down. Nothing here rewrites its entry, and
        // `learn` keeps what the fallback backend confirms from doing so.
        return balanced(
            pool,
            client,
            "owner of the session is down: balanced, entry kept",
        );
    }

    let view: ClientView = pool.clients.view(client, offer.fingerprint);
    let last_tls12 = view.last.as_ref().is_some_and(|(_, tls12)| *tls12);
    let attempt = offer.offers_resumption() || (offer.session_id.is_some() && last_tls12);

    // Rule 2.
    if attempt {
        let target = if view.shared {
            view.same_fingerprint.clone()
        } else {
            view.last.as_ref().map(|(b, _)| b.clone())
        };
        if let Some(b) = target.as_deref().and_then(usable) {
            pool.stats.rebound(offer.resumption_kind());
            let reason = if offer.offers_resumption() {
                "unknown ticket or PSK re-bound by client address"
            } else {
                "unknown session ID re-bound by client address"
            };
            return finish(pool, client, b.clone(), Rule::Rebind, None, reason);
        }
    }

    // Rule 3.
    if !view.shared {
        if let Some(b) = view.last.as_ref().and_then(|(b, _)| takes_new(b)) {
            return finish(
                pool,
                client,
                b.clone(),
                Rule::SourceIp,
                None,
                "recent backend of this client address",
            );
        }
    }

    // Rule 4.
    let reason = if view.shared {
        "shared client address: balanced"
    } else {
        "no affinity: balanced"
    };
    balanced(pool, client, reason)
}

/// Rule 4: the balancer's order, backends that are up only (unless none
/// is). Also how a connection is placed without inspection.
pub(crate) fn balanced(pool: &PoolState, client: &ClientPrefix, reason: &'static str) -> Decision {
    let order = pool.balancer.order(pool.backends.all(), client);
    let mut candidates: Vec<Arc<Backend>> = order
        .iter()
        .filter(|b| b.is_up(&pool.clock))
        .cloned()
        .collect();
    // When every backend is marked down, try them all anyway: the marks may
    // be stale, and refusing the client outright helps nobody. (The order
    // holds only backends open to new sessions: never a drained or
    // maintained one.)
    if candidates.is_empty() {
        candidates = order;
    }
    Decision {
        candidates,
        rule: Rule::Balancer,
        matched: None,
        reason,
    }
}

fn kind_reason(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::PskIdentity => "PSK identity known",
        KeyKind::Ticket => "ticket known",
        KeyKind::TicketKeyName => "ticket key name routes to its backend",
        KeyKind::SessionId => "session ID known",
    }
}

/// The chosen backend first, then the balancer's order for failover,
/// in the balancer's own vector: one allocation per decision, not two.
fn finish(
    pool: &PoolState,
    client: &ClientPrefix,
    chosen: Arc<Backend>,
    rule: Rule,
    matched: Option<Key>,
    reason: &'static str,
) -> Decision {
    let mut candidates = pool.balancer.failover_order(pool.backends.all(), client);
    candidates.retain(|b| !Arc::ptr_eq(b, &chosen) && b.is_up(&pool.clock));
    candidates.insert(0, chosen);
    Decision {
        candidates,
        rule,
        matched,
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use crate::inspect::{Handshake, Limits, Status};
    use stickytls_peers::backend::{Backend, BackendOptions};
    use stickytls_peers::client::{Client, ClientOptions};

    fn fingerprint_of(hello_bytes: &[u8]) -> (u32, String) {
        let mut hs = Handshake::new(Limits::default());
        assert_eq!(hs.feed_client(hello_bytes), Status::Done);
        let ch = hs.client_hello().unwrap();
        (stable_fingerprint(&ch), ch.ja4_stable())
    }

    #[test]
    fn draining_backend_keeps_its_sessions_but_takes_no_fresh_clients() {
        use crate::affinity::{Binding, Key};
        use crate::config::{BackendConfig, PoolConfig};
        use std::sync::Arc;

        let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        let mut draining = BackendConfig::new("a", addr(1));
        draining.weight = 0;
        let cfg = PoolConfig::new("p", vec![draining, BackendConfig::new("b", addr(2))]);
        let pool = PoolState::for_test(cfg);
        let client = pool.prefix("127.0.0.9".parse().unwrap());
        let sid = Key::new(KeyKind::SessionId, b"a session on a");
        pool.table.put(
            sid,
            Binding::owned(Arc::from("a"), crate::affinity::Session::UNKNOWN),
        );

        let resuming = Offer {
            session_id: Some(sid),
            ..Offer::default()
        };
        let d = decide(&pool, &resuming, &client);
        assert_eq!(
            &*d.candidates[0].name, "a",
            "the session stays on its draining owner"
        );
        assert_eq!(d.rule, Rule::Key(KeyKind::SessionId));

        for _ in 0..4 {
            let fresh = decide(&pool, &Offer::default(), &client);
            assert_eq!(&*fresh.candidates[0].name, "b");
            assert!(
                fresh.candidates.iter().all(|b| &*b.name != "a"),
                "no fresh client for a"
            );
        }
    }

    /// A pool of `a` and `b` where client 127.0.0.9 holds a session on `a`
    /// and last connected there (TLS 1.2).
    fn pool_with_a_session_on_a() -> (PoolState, ClientPrefix, Key) {
        use crate::affinity::Binding;
        use crate::affinity::clients::Confirmed;
        use crate::config::{BackendConfig, PoolConfig};

        let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        let cfg = PoolConfig::new(
            "p",
            vec![
                BackendConfig::new("a", addr(1)),
                BackendConfig::new("b", addr(2)),
            ],
        );
        let pool = PoolState::for_test(cfg);
        let client = pool.prefix("127.0.0.9".parse().unwrap());
        let sid = Key::new(KeyKind::SessionId, b"a session on a");
        let on_a = Binding::owned(Arc::from("a"), crate::affinity::Session::UNKNOWN);
        pool.table.put(sid, on_a);
        pool.clients.record(
            client,
            &Confirmed {
                backend: Arc::from("a"),
                tls12: true,
                fingerprint: 7,
                new_session: true,
            },
        );
        (pool, client, sid)
    }

    fn set_a(pool: &PoolState, state: crate::backend::AdminState) {
        pool.backends.by_name("a").unwrap().set_admin_state(state);
    }

    #[test]
    fn drain_keeps_sessions_and_rebinds_but_gives_no_new_session_even_to_its_clients() {
        let (pool, client, sid) = pool_with_a_session_on_a();
        set_a(&pool, crate::backend::AdminState::Drain);
        let by_key = Offer {
            session_id: Some(sid),
            ..Offer::default()
        };
        let d = decide(&pool, &by_key, &client);
        assert_eq!(
            (&*d.candidates[0].name, d.rule),
            ("a", Rule::Key(KeyKind::SessionId))
        );

        let unknown_ticket = Offer {
            ticket: Some((Key::new(KeyKind::Ticket, b"never seen"), None)),
            fingerprint: 7,
            ..Offer::default()
        };
        let d = decide(&pool, &unknown_ticket, &client);
        assert_eq!((&*d.candidates[0].name, d.rule), ("a", Rule::Rebind));

        for _ in 0..4 {
            let fresh = decide(&pool, &Offer::default(), &client);
            assert_eq!(
                fresh.rule,
                Rule::Balancer,
                "its address's fresh client is not pinned to a"
            );
            assert!(
                fresh.candidates.iter().all(|b| &*b.name != "a"),
                "no new session on a"
            );
        }
    }

    #[test]
    fn maint_takes_nothing_and_its_sessions_are_re_pinned_elsewhere() {
        let (pool, client, sid) = pool_with_a_session_on_a();
        set_a(&pool, crate::backend::AdminState::Maint);
        let by_key = Offer {
            session_id: Some(sid),
            ..Offer::default()
        };
        let d = decide(&pool, &by_key, &client);
        assert_eq!(&*d.candidates[0].name, "b");
        assert!(
            d.candidates.iter().all(|b| &*b.name != "a"),
            "not even for failover"
        );
        assert!(
            pool.table.peek(&sid).is_none(),
            "the entry pointing at a is gone"
        );

        let unknown_ticket = Offer {
            ticket: Some((Key::new(KeyKind::Ticket, b"never seen"), None)),
            fingerprint: 7,
            ..Offer::default()
        };
        let d = decide(&pool, &unknown_ticket, &client);
        assert_ne!(d.rule, Rule::Rebind);
        assert_eq!(&*d.candidates[0].name, "b");

        // Even with b marked down, a is not tried.
        let clock = pool.clock.clone();
        pool.backends
            .by_name("b")
            .unwrap()
            .mark_down(&clock, std::time::Duration::from_secs(60));
        let d = decide(&pool, &Offer::default(), &client);
        assert!(
            d.candidates.iter().all(|b| &*b.name != "a"),
            "{:?}",
            d.candidates
        );

        set_a(&pool, crate::backend::AdminState::Up);
        let d = decide(&pool, &Offer::default(), &client);
        assert_eq!(&*d.candidates[0].name, "a", "back in service");
    }

    #[tokio::test]
    async fn ja4_stable_ignores_what_a_tls13_resumption_drops() {
        // rustls's full hello carries session_ticket; its TLS 1.3 resumed
        // hello does not. Both fingerprints must still agree.
        let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
        let client = Client::new(ClientOptions::default()).unwrap();
        let full = fingerprint_of(&client.client_hello().unwrap());
        client.connect(backend.addr(), None).await.unwrap();
        let resumed = fingerprint_of(&client.client_hello().unwrap());
        assert_eq!(full.1, resumed.1);
        assert_eq!(full.0, resumed.0);
    }

    #[tokio::test]
    async fn fingerprint_is_the_same_for_a_clients_full_and_resumed_hellos() {
        let backend = Backend::start(BackendOptions::new("a")).await.unwrap();
        let client = Client::new(ClientOptions::default()).unwrap();
        let (full, _) = fingerprint_of(&client.client_hello().unwrap());
        client.connect(backend.addr(), None).await.unwrap();
        let resumed_bytes = client.client_hello().unwrap();
        let (resumed, _) = fingerprint_of(&resumed_bytes);
        let mut hs = Handshake::new(Limits::default());
        hs.feed_client(&resumed_bytes);
        assert!(
            hs.client_hello().unwrap().has_psk,
            "the second hello offers a resumption"
        );
        assert_eq!(full, resumed);

        let other = Client::new(ClientOptions {
            alpn: vec![b"h2".to_vec()],
            ..Default::default()
        })
        .unwrap();
        let (different, _) = fingerprint_of(&other.client_hello().unwrap());
        assert_ne!(
            full, different,
            "another client configuration fingerprints differently"
        );
    }

    #[test]
    fn an_owner_that_is_down_keeps_its_entry_and_gets_its_client_back_when_up() {
        use crate::affinity::Binding;

        let (pool, client, sid) = pool_with_a_session_on_a();
        let gone = Key::new(KeyKind::Ticket, b"a ticket of a removed backend");
        let removed = Binding::owned(Arc::from("removed"), crate::affinity::Session::UNKNOWN);
        pool.table.put(gone, removed);
        let a = pool.backends.by_name("a").unwrap().clone();
        let resuming = Offer {
            session_id: Some(sid),
            ..Offer::default()
        };

        a.health.set_down(true, 1);
        let d = decide(&pool, &resuming, &client);
        assert_eq!(d.rule, Rule::Balancer);
        assert!(d.candidates.iter().all(|b| &*b.name != "a"), "a is down");
        assert!(pool.table.get(&sid).is_some(), "the entry is kept");

        a.health.set_down(false, 2);
        let d = decide(&pool, &resuming, &client);
        assert_eq!(
            (&*d.candidates[0].name, d.rule),
            ("a", Rule::Key(KeyKind::SessionId))
        );

        // An entry naming a backend the pool no longer has is forgotten.
        let stale = Offer {
            ticket: Some((gone, None)),
            ..Offer::default()
        };
        decide(&pool, &stale, &client);
        assert!(pool.table.get(&gone).is_none());
    }
}
