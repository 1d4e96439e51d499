//! Learning from what a backend confirmed. Nothing is ever learned from the
//! client's claim alone: a client flooding random session IDs or tickets
//! teaches the table nothing, because only the server's reply (an echoed or
//! assigned session ID, a cleartext NewSessionTicket, an accepted PSK)
//! creates entries.

use std::sync::Arc;

use tracing::{debug, info};

use crate::affinity::clients::{ClientPrefix, Confirmed};
use crate::affinity::{Binding, Key, KeyKind, KeyState};
use crate::backend::Backend;
use crate::inspect::{Learned, Outcome, ticket_key_name};
use crate::pool::PoolState;
use crate::route::{Decision, Offer, Rule};

/// Updates the table and the client index from one finished handshake.
pub fn learn(
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

    if outcome.resumed {
        if let Some(r) = outcome.resumption {
            pool.stats.resumed(r);
        }
    } else {
        if let (Rule::Key(kind), Some(key)) = (decision.rule, decision.matched) {
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
                if let Some(b) = pool.table.get(&name) {
                    if b.backend == backend.name && b.state != KeyState::Shared {
                        pool.table.update(
                            &name,
                            Binding {
                                backend: b.backend,
                                state: KeyState::Rejected,
                            },
                        );
                    }
                }
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

    pool.clients.record(
        client,
        &Confirmed {
            backend: backend.name.clone(),
            tls12: !tls13,
            fingerprint: offer.fingerprint,
            new_session: !outcome.resumed,
        },
    );
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
/// was confirmed on `backend`.
fn confirm_key_name(pool: &PoolState, name: Key, backend: &Arc<Backend>, tag: u16) {
    let current = pool.table.get(&name);
    let (owner, next) = match &current {
        None => (backend.name.clone(), KeyState::Candidate { tag }),
        Some(b) if b.backend != backend.name => {
            if b.state != KeyState::Shared {
                info!(first = %b.backend, second = %backend.name, key_name = %name.short_hex(),
                    "ticket key name confirmed on two backends: a shared ticket key, never routed on");
            }
            // Keep the first owner's name: a shared name routes nowhere.
            (b.backend.clone(), KeyState::Shared)
        }
        Some(b) => match b.state {
            KeyState::Candidate { tag: first } if first != tag => {
                (b.backend.clone(), KeyState::Routable)
            }
            state => (b.backend.clone(), state),
        },
    };
    if current.as_ref().map(|b| b.state) != Some(next) {
        pool.stats.learned(KeyKind::TicketKeyName);
    }
    let binding = Binding {
        backend: owner,
        state: next,
    };
    if current.is_none() || !pool.table.update(&name, binding.clone()) {
        pool.table.put(name, binding);
    }
}
