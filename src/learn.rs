//! Learning from what a backend confirmed. Nothing is ever learned from the
//! client's claim alone: a client flooding random session IDs or tickets
//! teaches the table nothing, because only the server's reply (an echoed or
//! assigned session ID, a cleartext NewSessionTicket, an accepted PSK)
//! creates entries.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::sync::Arc;

use tracing::{debug, info};

use crate::affinity::clients::{ClientPrefix, Confirmed};
use crate::affinity::{Binding, Key, KeyKind, KeyState};
use crate::backend::Backend;
use crate::inspect::{Learned, Outcome, ticket_key_name};
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
        if let (true, Rule::Key(kind), Some(key)) = (reached_owner, decision.rule, decision.matched)
        {
            // Routed by a key to its owner, which no longer knew it.
            pool.stats.affinity_lost();
            backend.counters.affinity_lost();
            pool.table.remove(&key);
            info!(backend = %backend.name, kind = kind.as_str(), key = %key.short_hex(),
                "affinity lost: the owner backend answered a known key with a full handshake");
        }
        if offer.offers_resumption() {
            // Not routed to this backend again under these key names.
            for name in offer.key_names() {
                pool.table.reject_key_name(&name, &backend.name);
            }
        }
    }

    let owned = || Binding {
        backend: backend.name.clone(),
        state: KeyState::Owned,
    };
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
                // Learned on a resumed connection: the session was hit.
                if outcome.resumed {
                    pool.table.put_hit(key, owned());
                } else {
                    pool.table.put(key, owned());
                }
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
        let a = Binding {
            backend: Arc::from("a"),
            state: KeyState::Owned,
        };
        pool.table.put(key, a);
        pool.backends.by_name("a").unwrap().health.set_down(true, 1);
        let client = pool.prefix("127.0.0.9".parse().unwrap());
        (pool, client)
    }

    fn owner(pool: &PoolState, key: &Key) -> Option<String> {
        pool.table.get(key).map(|b| b.backend.to_string())
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
