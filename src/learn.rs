//! Learning from what a backend confirmed. Nothing is ever learned from the
//! client's claim alone: a client flooding random session IDs or tickets
//! teaches the table nothing, because only the server's reply (an echoed or
//! assigned session ID, a cleartext NewSessionTicket, an accepted PSK)
//! creates entries.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::sync::Arc;

use tracing::{debug, info};

use crate::affinity::clients::{ClientPrefix, Confirmed};
use crate::affinity::{Binding, Key, KeyKind, KeyState, Session};
use crate::backend::Backend;
use crate::inspect::{Learned, Outcome, ticket_key_name};
use crate::metrics::{KEY_NAME_REFUSALS, UNRESUMABLE_OFFERS};
use crate::pool::PoolState;
use crate::route::{Decision, Offer, Rule};

/// Updates the table and the client index from one finished handshake.
pub(crate) fn learn(
    pool: &PoolState,
    client: ClientPrefix,
    offer: &Offer,
    decision: &Decision,
    backend: &Arc<Backend>,
    outcome: &Outcome,
) {
    let tls13 = outcome.version >= 0x0304;
    if tls13 && offer.session_id.is_some() {
        // A TLS 1.3 legacy_session_id is a random echo, never a session.
        pool.stats.tls13_session_id_ignored();
    }

    // Routed by a key to its owner and reached it. Otherwise (a failover,
    // or the owner was down and the balancer chose) the backend reached is
    // not the key's owner, and what it answers says nothing of the owner.
    let reached_owner = matches!(decision.rule, Rule::Key(_))
        && decision
            .candidates
            .first()
            .is_some_and(|first| Arc::ptr_eq(first, backend));
    if outcome.resumed {
        if let Some(r) = outcome.resumption {
            pool.stats.resumed(r);
        }
    } else {
        match (reached_owner, decision.rule, decision.matched) {
            // Routed by a key name alone: handled with the other names
            // offered, below.
            (true, Rule::Key(KeyKind::TicketKeyName), _) => {}
            (true, Rule::Key(kind), Some(key)) => {
                refused_key(pool, offer, backend, outcome, kind, key)
            }
            _ => {}
        }
        if offer.offers_resumption() {
            for name in offer.key_names() {
                refused_name(pool, backend, name);
            }
        }
    }

    let session = Session {
        version: outcome.version,
        cipher: outcome.cipher_suite,
    };
    let owned = || Binding::owned(backend.name.clone(), session);
    for l in &outcome.learned {
        match l.kind {
            KeyKind::SessionId | KeyKind::Ticket | KeyKind::PskIdentity => {
                let (key, name) = keys_of(offer, outcome, l);
                if l.offered && !reached_owner && owned_by_another_down(pool, &key, backend) {
                    // A farm sharing its session keys resumed the session
                    // here while its owner is down: the entry stays the
                    // owner's, for when it is back.
                    debug!(backend = %backend.name, kind = l.kind.as_str(), key = %key.short_hex(),
                        "resumed away from its owner, which is down: entry kept");
                    continue;
                }
                pool.table.put(key, owned());
                pool.stats.learned(l.kind);
                if let Some(name) = name {
                    confirm_key_name(pool, name, backend, key.tag());
                }
                debug!(backend = %backend.name, kind = l.kind.as_str(), key = %key.short_hex(), "learned");
            }
            // Derived from the tickets and identities above, where the
            // full ticket tells two confirmations apart.
            KeyKind::TicketKeyName => {}
        }
    }

    let confirmed = Confirmed {
        backend: backend.name.clone(),
        tls12: !tls13,
        fingerprint: offer.fingerprint,
        new_session: !outcome.resumed,
    };
    pool.clients.record(client, &confirmed);
    pool.table.share_client(client, &confirmed);
}

/// Routed by session ID, ticket or identity `key` to its owner, which
/// answered with a full handshake: the owner no longer knows the session
/// and the entry goes, if this exchange could have resumed it; otherwise
/// (another version or cipher suite than the session's, or a PSK offered
/// without a key exchange mode the server can use) the hello could not
/// resume it whoever sent it, so the entry stays and the event is counted:
/// a client that copies a victim's key into such a hello cannot make the
/// router forget the victim.
fn refused_key(
    pool: &PoolState,
    offer: &Offer,
    backend: &Backend,
    outcome: &Outcome,
    kind: KeyKind,
    key: Key,
) {
    let session = pool.table.peek(&key).map(|p| p.binding.session);
    let resumable = session.is_none_or(|s| s.could_resume(outcome.version, outcome.cipher_suite))
        && (kind != KeyKind::PskIdentity || offer.psk_dhe_ke);
    if !resumable {
        metrics::counter!(UNRESUMABLE_OFFERS, "pool" => pool.config.name.clone(), "kind" => kind.as_str())
            .increment(1);
        debug!(backend = %backend.name, kind = kind.as_str(), key = %key.short_hex(),
            "a full handshake for a hello that could not resume the session: entry kept");
        return;
    }
    pool.stats.affinity_lost();
    backend.counters.affinity_lost();
    pool.table.remove(&key);
    info!(backend = %backend.name, kind = kind.as_str(), key = %key.short_hex(),
        "affinity lost: the owner backend answered a known key with a full handshake");
}

/// `backend` answered a hello offering a ticket or identity with key name
/// `name` with a full handshake. Anyone holding one ticket can offer the
/// name with garbage after it, so a refusal alone changes nothing and is
/// counted; the name stops routing to `backend` only when the backend has
/// rotated past it ([`crate::affinity::rotation::KeyNameLog::rotated_past`]:
/// it confirmed a newer name since), which no client can forge.
fn refused_name(pool: &PoolState, backend: &Backend, name: Key) {
    let ours = pool.table.peek(&name).is_some_and(|p| {
        p.binding.backend == backend.name && p.binding.state != KeyState::Rejected
    });
    if !ours {
        return;
    }
    let rotated = pool.key_names.rotated_past(&backend.name, name);
    let result = if rotated { "rejected" } else { "kept" };
    metrics::counter!(KEY_NAME_REFUSALS, "pool" => pool.config.name.clone(),
        "backend" => backend.name.to_string(), "result" => result)
    .increment(1);
    if rotated {
        pool.table.reject_key_name(&name, &backend.name);
        info!(backend = %backend.name, key_name = %name.short_hex(),
            "ticket key name refused by its backend, which confirmed a newer one: no longer routed there");
    }
}

/// Whether `key`'s entry names a backend of the pool other than `reached`
/// that is down now.
fn owned_by_another_down(pool: &PoolState, key: &Key, reached: &Backend) -> bool {
    pool.table.get(key).is_some_and(|b| {
        b.backend != reached.name
            && pool
                .backends
                .by_name(&b.backend)
                .is_some_and(|owner| !owner.is_up(&pool.clock))
    })
}

/// The table key of a confirmed session ID, ticket or identity and, for a
/// ticket or identity, the key of its key name. What the client offered was
/// hashed when its hello was read (`Offer`); a resumption confirms those
/// very bytes, so their digests are reused, and only what the server issued
/// is hashed here: one SHA-256 per key per connection, not two.
fn keys_of(offer: &Offer, outcome: &Outcome, l: &Learned) -> (Key, Option<Key>) {
    let reused = match l.kind {
        _ if !l.offered => None,
        KeyKind::SessionId => offer.session_id.map(|k| (k, None)),
        KeyKind::Ticket => offer.ticket,
        // After a HelloRetryRequest the index points into the second
        // hello, which the offer was not read from.
        KeyKind::PskIdentity if !outcome.hello_retry_request => outcome
            .psk_selected
            .and_then(|i| offer.psk_identities.get(usize::from(i)).copied()),
        _ => None,
    };
    let keys = reused.unwrap_or_else(|| {
        let name = match l.kind {
            KeyKind::SessionId => None,
            _ => ticket_key_name(&l.key).map(|n| Key::new(KeyKind::TicketKeyName, n)),
        };
        (Key::new(l.kind, &l.key), name)
    });
    debug_assert!(
        keys.0 == Key::new(l.kind, &l.key),
        "reused a digest of other bytes"
    );
    keys
}

/// Advances a ticket key name's state after a ticket or identity with it
/// was confirmed on `backend` (the step is the store's, see
/// [`crate::affinity::AffinityStore::confirm_key_name`]).
fn confirm_key_name(pool: &PoolState, name: Key, backend: &Arc<Backend>, tag: u16) {
    pool.key_names.confirmed(&backend.name, name);
    let step = pool.table.confirm_key_name(name, &backend.name, tag);
    if let Some(b) = &step.before {
        if b.backend != backend.name && b.state != KeyState::Shared {
            info!(first = %b.backend, second = %backend.name, key_name = %name.short_hex(),
                "ticket key name confirmed on two backends: a shared ticket key, never routed on");
        }
    }
    if step.before.as_ref().map(|b| b.state) != Some(step.after.state) {
        pool.stats.learned(KeyKind::TicketKeyName);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use crate::config::{BackendConfig, PoolConfig};
    use crate::inspect::Resumption;

    /// Backends `a` and `b`; `a` owns `key` and is down (its checks say so).
    fn pool_with_a_down(key: Key) -> (PoolState, ClientPrefix) {
        let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        let cfg = PoolConfig::new(
            "p",
            vec![
                BackendConfig::new("a", addr(1)),
                BackendConfig::new("b", addr(2)),
            ],
        );
        let pool = PoolState::for_test(cfg);
        let a = Binding::owned(Arc::from("a"), Session::UNKNOWN);
        pool.table.put(key, a);
        pool.backends.by_name("a").unwrap().health.set_down(true, 1);
        let client = pool.prefix("127.0.0.9".parse().unwrap());
        (pool, client)
    }

    fn owner(pool: &PoolState, key: &Key) -> Option<String> {
        pool.table.get(key).map(|b| b.backend.to_string())
    }

    /// A TLS 1.2 session (ECDHE-RSA-AES128-GCM-SHA256) owned by `a`.
    const TLS12: Session = Session {
        version: 0x0303,
        cipher: 0xc02f,
    };

    /// A pool whose backend `a` owns `key`, whose session is `session`, and
    /// a decision routing to it by that key.
    fn routed_to_owner(key: Key, kind: KeyKind, session: Session) -> (PoolState, Decision) {
        let (pool, _) = pool_with_a_down(key);
        let a = pool.backends.by_name("a").unwrap();
        a.health.set_down(false, 2);
        pool.table.put(key, Binding::owned(a.name.clone(), session));
        let decision = Decision {
            candidates: vec![a.clone()],
            rule: Rule::Key(kind),
            matched: Some(key),
            reason: "known",
        };
        (pool, decision)
    }

    fn full(version: u16, cipher: u16) -> Outcome {
        Outcome {
            version,
            cipher_suite: cipher,
            ..Outcome::default()
        }
    }

    #[test]
    fn a_full_handshake_that_could_not_resume_the_session_keeps_its_entry() {
        let sid = Key::new(KeyKind::SessionId, b"a victim's session");
        let offer = Offer {
            session_id: Some(sid),
            ..Offer::default()
        };
        // A TLS 1.3 answer (the hello offered only 1.3), then a TLS 1.2
        // answer with another suite (the hello lacked the session's).
        for answer in [full(0x0304, 0x1301), full(0x0303, 0xc030)] {
            let (pool, decision) = routed_to_owner(sid, KeyKind::SessionId, TLS12);
            let a = pool.backends.by_name("a").unwrap().clone();
            let client = pool.prefix("127.0.0.9".parse().unwrap());
            learn(&pool, client, &offer, &decision, &a, &answer);
            assert_eq!(owner(&pool, &sid).as_deref(), Some("a"), "{answer:?}");
            assert_eq!(pool.stats.snapshot().affinity_lost, 0);
        }
    }

    #[test]
    fn a_full_handshake_that_could_have_resumed_removes_the_entry() {
        let sid = Key::new(KeyKind::SessionId, b"a forgotten session");
        let offer = Offer {
            session_id: Some(sid),
            ..Offer::default()
        };
        // Same version and suite; and an entry stored before sessions
        // were kept, whatever the answer.
        for (session, answer) in [
            (TLS12, full(0x0303, 0xc02f)),
            (Session::UNKNOWN, full(0x0304, 0x1301)),
        ] {
            let (pool, decision) = routed_to_owner(sid, KeyKind::SessionId, session);
            let a = pool.backends.by_name("a").unwrap().clone();
            let client = pool.prefix("127.0.0.9".parse().unwrap());
            learn(&pool, client, &offer, &decision, &a, &answer);
            assert_eq!(owner(&pool, &sid), None, "{session:?}");
            assert_eq!(pool.stats.snapshot().affinity_lost, 1);
        }
    }

    #[test]
    fn a_psk_offered_without_psk_dhe_ke_keeps_its_entry() {
        let id = Key::new(KeyKind::PskIdentity, b"a victim's identity");
        let tls13 = Session {
            version: 0x0304,
            cipher: 0x1301,
        };
        for (psk_dhe_ke, kept) in [(false, true), (true, false)] {
            let offer = Offer {
                psk_identities: vec![(id, None)],
                psk_dhe_ke,
                ..Offer::default()
            };
            let (pool, decision) = routed_to_owner(id, KeyKind::PskIdentity, tls13);
            let a = pool.backends.by_name("a").unwrap().clone();
            let client = pool.prefix("127.0.0.9".parse().unwrap());
            learn(&pool, client, &offer, &decision, &a, &full(0x0304, 0x1301));
            assert_eq!(owner(&pool, &id).is_some(), kept, "psk_dhe_ke {psk_dhe_ke}");
        }
    }

    #[test]
    fn a_key_name_is_rejected_only_after_its_backend_confirmed_a_newer_one() {
        let old = Key::new(KeyKind::TicketKeyName, b"old key name....");
        let (pool, decision) = routed_to_owner(old, KeyKind::TicketKeyName, Session::UNKNOWN);
        let a = pool.backends.by_name("a").unwrap().clone();
        pool.table
            .put(old, Binding::name(a.name.clone(), KeyState::Routable));
        pool.key_names.confirmed(&a.name, old);
        let client = pool.prefix("127.0.0.9".parse().unwrap());
        let offer = Offer {
            psk_identities: vec![(Key::new(KeyKind::PskIdentity, b"garbage"), Some(old))],
            psk_dhe_ke: true,
            ..Offer::default()
        };
        let refused = full(0x0304, 0x1301);
        for _ in 0..50 {
            learn(&pool, client, &offer, &decision, &a, &refused);
        }
        let state = |pool: &PoolState| pool.table.get(&old).map(|b| b.state);
        assert_eq!(state(&pool), Some(KeyState::Routable), "refusals alone");

        let new = Key::new(KeyKind::TicketKeyName, b"new key name....");
        pool.key_names.confirmed(&a.name, new);
        learn(&pool, client, &offer, &decision, &a, &refused);
        assert_eq!(state(&pool), Some(KeyState::Rejected));
    }

    #[test]
    fn a_full_handshake_after_failover_is_no_lost_affinity_and_keeps_the_owners_entry() {
        let sid = Key::new(KeyKind::SessionId, b"session of a");
        let (pool, client) = pool_with_a_down(sid);
        let offer = Offer {
            session_id: Some(sid),
            ..Offer::default()
        };
        // Routed by key to `a` (say, before it was seen down), then the
        // connect failed over to `b`.
        let a = pool.backends.by_name("a").unwrap().clone();
        let b = pool.backends.by_name("b").unwrap().clone();
        let decision = Decision {
            candidates: vec![a, b.clone()],
            rule: Rule::Key(KeyKind::SessionId),
            matched: Some(sid),
            reason: "session ID known",
        };
        let full = Outcome {
            version: 0x0303,
            session_id: b"new session of b".to_vec(),
            learned: vec![Learned {
                kind: KeyKind::SessionId,
                key: b"new session of b".to_vec(),
                offered: false,
            }],
            ..Outcome::default()
        };
        learn(&pool, client, &offer, &decision, &b, &full);
        assert_eq!(owner(&pool, &sid).as_deref(), Some("a"));
        let new = Key::new(KeyKind::SessionId, b"new session of b");
        assert_eq!(owner(&pool, &new).as_deref(), Some("b"));
        assert_eq!(pool.stats.snapshot().affinity_lost, 0);
    }

    #[test]
    fn a_resumption_on_a_fallback_sharing_session_keys_leaves_the_entry_to_its_down_owner() {
        let ticket = b"a ticket both backends can decrypt".to_vec();
        let key = Key::new(KeyKind::Ticket, &ticket);
        let (pool, client) = pool_with_a_down(key);
        let offer = Offer {
            ticket: Some((key, None)),
            ..Offer::default()
        };
        let b = pool.backends.by_name("b").unwrap().clone();
        let decision = Decision {
            candidates: vec![b.clone()],
            rule: Rule::Balancer,
            matched: None,
            reason: "owner of the session is down: balanced, entry kept",
        };
        let resumed = Outcome {
            version: 0x0303,
            resumed: true,
            resumption: Some(Resumption::Tls12Ticket),
            learned: vec![Learned {
                kind: KeyKind::Ticket,
                key: ticket,
                offered: true,
            }],
            ..Outcome::default()
        };
        learn(&pool, client, &offer, &decision, &b, &resumed);
        assert_eq!(owner(&pool, &key).as_deref(), Some("a"));

        // With its owner up again, the same confirmation on `b` is what it
        // always was: `b` holds the session now.
        pool.backends
            .by_name("a")
            .unwrap()
            .health
            .set_down(false, 2);
        learn(&pool, client, &offer, &decision, &b, &resumed);
        assert_eq!(owner(&pool, &key).as_deref(), Some("b"));
    }
}
