//! The JSON report behind `stickytls inspect`: what the inspector sees in
//! a captured client stream and, optionally, the server's reply.
//!
//! Each side's `status` is the one a router acts on: `complete`,
//! `incomplete`, `malformed`, `not_tls` or `alert`, the [`Status`] that
//! `feed_client` / `feed_server` answer (the capture fed as it is, in one
//! piece; every chunking gives the same answer). A hello that was parsed
//! but that the router refuses (a record whose declared length runs past
//! the hello: "handshake data after the ClientHello in its record") says
//! so, with its fields; it is never `complete`.
#![deny(clippy::indexing_slicing)]

use serde_json::{Value, json};

use super::{ClientHello, Handshake, Limits, Status};

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn hex16(v: u16) -> String {
    format!("0x{v:04x}")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A status as the report names it: `complete`, `incomplete`, `not_tls`,
/// `malformed` or `alert`.
pub fn status_name(st: &Status) -> &'static str {
    match st {
        Status::Done => "complete",
        Status::NeedMore => "incomplete",
        Status::NotTls(_) => "not_tls",
        Status::Malformed(_) => "malformed",
        Status::Alert(_) => "alert",
    }
}

/// A status's name and its error text.
fn status_fields(st: &Status) -> (&'static str, Value) {
    let error = match st {
        Status::Done | Status::NeedMore => Value::Null,
        Status::NotTls(n) => n.reason.into(),
        Status::Malformed(e) => e.to_string().into(),
        Status::Alert(a) => format!("alert level {} description {}", a.level, a.description).into(),
    };
    (status_name(st), error)
}

/// One hello's entry: its status, and its fields when it was parsed
/// (also when the router refuses it, so that the report shows what was
/// refused). Complete only when the status is `Done` and the hello is
/// there.
fn hello_json(st: &Status, hello: Option<(ClientHello<'_>, u64)>) -> (Value, bool) {
    let complete = *st == Status::Done && hello.is_some();
    let (status, error) = match st {
        // Done without this hello: it has not come yet.
        Status::Done if !complete => ("incomplete", Value::Null),
        st => status_fields(st),
    };
    let Some((ch, records)) = hello else {
        return (json!({ "status": status, "error": error }), false);
    };
    let v = json!({
        "status": status,
        "error": error,
        "legacy_version": hex16(ch.legacy_version),
        "session_id": hex(ch.session_id),
        "sni": ch.sni.map(text),
        "alpn": ch.alpn().map(text).collect::<Vec<_>>(),
        "supported_versions": ch.supported_versions().map(hex16).collect::<Vec<_>>(),
        "session_ticket": ch.session_ticket.map(hex),
        "psk_identities": ch.psk_identities().map(hex).collect::<Vec<_>>(),
        "key_share_groups": ch.key_share_groups().map(hex16).collect::<Vec<_>>(),
        "ech": ch.ech,
        "ja4": ch.ja4(),
        "ja4_stable": ch.ja4_stable(),
        "records": records,
        "length": ch.body.len(),
    });
    (v, complete)
}

/// Runs the inspector over a client stream and, when given, the server's,
/// and describes what it saw. The bool is true when every side given is
/// complete (both hellos after a HelloRetryRequest).
///
/// The first hello's status is what `feed_client` answers on the whole
/// client stream, before any server byte: what a router routes on (or
/// refuses). A second hello read ahead of the server is speculative, and
/// only counts, with its errors, after a HelloRetryRequest; the second
/// hello's status is the client side's once the server's bytes are in.
pub fn report(client: &[u8], server: Option<&[u8]>, limits: Limits) -> (Value, bool) {
    let mut h = Handshake::new(limits);
    // The whole client stream first: a second hello after a retry is read
    // speculatively and kept until the server's bytes say it counts.
    let first_status = h.feed_client(client);
    let server_status = server.map(|s| h.feed_server(s));

    let first = h.client_hello().zip(h.client_hello_records());
    let mut out = serde_json::Map::new();
    let (v, mut all) = hello_json(&first_status, first);
    out.insert("client".into(), v);
    if h.hello_retry_request() {
        let second = h.second_client_hello().zip(h.second_client_hello_records());
        let (v, complete) = hello_json(&h.client_status(), second);
        all &= complete;
        out.insert("client2".into(), v);
    }
    if let Some(st) = server_status {
        all &= st == Status::Done;
        let (status, error) = status_fields(&st);
        // Keys in the order of the schema.
        let mut m = serde_json::Map::new();
        m.insert("status".into(), status.into());
        m.insert("error".into(), error);
        let outcome = h.outcome();
        if let Some(o) = outcome {
            m.insert("version".into(), hex16(o.version).into());
            m.insert("session_id".into(), hex(&o.session_id).into());
            m.insert("cipher_suite".into(), hex16(o.cipher_suite).into());
        }
        m.insert("hello_retry_request".into(), h.hello_retry_request().into());
        let mut learned = Vec::new();
        if let Some(o) = outcome {
            m.insert("psk_selected".into(), o.psk_selected.into());
            m.insert(
                "new_session_tickets".into(),
                o.new_session_tickets
                    .iter()
                    .map(|t| hex(&t.ticket))
                    .collect::<Vec<_>>()
                    .into(),
            );
            m.insert("resumed".into(), o.resumed.into());
            m.insert("resumption".into(), o.resumption.map(|r| r.as_str()).into());
            learned = o
                .learned
                .iter()
                .map(|l| json!({ "kind": l.kind.as_str(), "key": hex(&l.key) }))
                .collect();
        }
        out.insert("server".into(), Value::Object(m));
        out.insert("learned".into(), learned.into());
    }
    (Value::Object(out), all)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn report_of_a_tls12_ticket_handshake_names_everything_learned() {
        let ch = ChBuilder::new().sni("r.example").ticket(&[]).record();
        let server = [
            ShBuilder::tls12(&[0x51; 32]).record(),
            handshake_record(&server_hello_done()),
            handshake_record(&nst(60, &[0x7e; 20])),
            ccs(),
        ]
        .concat();
        let (v, ok) = report(&ch, Some(&server), Limits::default());
        assert!(ok, "{v}");
        assert_eq!(v["client"]["sni"], "r.example");
        assert_eq!(v["client"]["session_ticket"], "");
        assert_eq!(v["client"]["records"], 1);
        assert_eq!(v["server"]["version"], "0x0303");
        assert_eq!(v["server"]["cipher_suite"], "0xc030");
        assert_eq!(v["server"]["resumption"], Value::Null);
        assert_eq!(v["learned"][0]["kind"], "session_id");
        assert_eq!(v["learned"][1]["key"], hex(&[0x7e; 20]));
        assert_eq!(v["learned"][2]["kind"], "ticket_key_name");
        assert!(v.get("client2").is_none());
    }

    #[test]
    fn report_of_an_incomplete_hello_is_not_complete() {
        let ch = ChBuilder::new().record();
        let (v, ok) = report(&ch[..20], None, Limits::default());
        assert!(!ok);
        assert_eq!(v["client"]["status"], "incomplete");
        assert!(v.get("server").is_none());
        let (v, ok) = report(b"GET / HTTP/1.1\r\n", None, Limits::default());
        assert!(!ok);
        assert_eq!(v["client"]["status"], "not_tls");
        assert_eq!(v["client"]["error"], "HTTP request");
    }

    #[test]
    fn a_hello_the_router_refuses_is_never_complete() {
        const WHAT: &str = "handshake data after the ClientHello in its record";
        let msg = ChBuilder::tls13("past.example").message();
        // The record declares one byte more than the hello: with that byte
        // and without it (not arrived yet), the router refuses it.
        for stream in [
            record(22, &[&msg[..], &[0x16]].concat()),
            record(22, &[&msg[..], &[0x16]].concat())[..5 + msg.len()].to_vec(),
        ] {
            let mut router = Handshake::new(Limits::default());
            assert!(matches!(router.feed_client(&stream), Status::Malformed(_)));
            let (v, ok) = report(&stream, None, Limits::default());
            assert!(!ok, "{v}");
            assert_eq!(v["client"]["status"], "malformed", "{v}");
            assert!(v["client"]["error"].as_str().unwrap().contains(WHAT), "{v}");
            // What was refused is still shown.
            assert_eq!(v["client"]["sni"], "past.example");
            assert_eq!(v["client"]["alpn"][0], "h2");
        }
    }

    #[test]
    fn a_valid_hello_is_complete_in_any_chunking_into_records() {
        let msg = ChBuilder::tls13("split.example").message();
        let (whole, ok) = report(&record(22, &msg), None, Limits::default());
        assert!(ok, "{whole}");
        for max in [1, 2, 7, 100, msg.len() - 1] {
            let stream = records(22, &msg, max);
            let (v, ok) = report(&stream, None, Limits::default());
            assert!(ok, "records of {max} bytes: {v}");
            assert_eq!(v["client"]["status"], "complete");
            assert_eq!(v["client"]["records"], msg.len().div_ceil(max) as u64);
            assert_eq!(v["client"]["ja4"], whole["client"]["ja4"]);
            // And the bytes in any chunking give the router the same answer.
            crate::fuzzing::feed_all_chunkings(&stream, |chunks| {
                let mut h = Handshake::new(Limits::default());
                chunks.iter().map(|c| h.feed_client(c)).last()
            });
        }
    }

    #[test]
    fn after_a_retry_each_hello_has_its_own_status() {
        let sid = [0x5a; 32];
        let ch1 = ChBuilder::tls13("h.example").record();
        let ch2 = ChBuilder::tls13("h.example").message();
        // The second hello's record runs past it: the first one was routed
        // on, the second is the backend's to refuse.
        let client = [ch1, ccs(), record(22, &[&ch2[..], &[0x16, 0]].concat())].concat();
        let server = ShBuilder::hrr(&sid, 0x17).record();
        let (v, ok) = report(&client, Some(&server), Limits::default());
        assert!(!ok, "{v}");
        assert_eq!(v["client"]["status"], "complete", "{v}");
        assert_eq!(v["client2"]["status"], "malformed", "{v}");
        assert_eq!(v["client2"]["sni"], "h.example", "{v}");
        // Without the server's bytes nothing says a second hello counts.
        let (v, ok) = report(&client, None, Limits::default());
        assert!(ok, "{v}");
        assert!(v.get("client2").is_none());
        // A second hello cut short is incomplete.
        let (v, ok) = report(
            &client[..client.len() - 20],
            Some(&server),
            Limits::default(),
        );
        assert!(!ok, "{v}");
        assert_eq!(v["client2"]["status"], "incomplete", "{v}");
    }

    #[test]
    fn report_of_a_retry_has_both_hellos() {
        let sid = [0x5a; 32];
        let ch1 = ChBuilder::tls13("h.example").record();
        let ch2 = ChBuilder::tls13("h.example").psk(&[&[3; 8]]).record();
        let client = [ch1, ccs(), ch2].concat();
        let server = [
            ShBuilder::hrr(&sid, 0x17).record(),
            ccs(),
            ShBuilder::tls13(&sid).psk(0).record(),
        ]
        .concat();
        let (v, ok) = report(&client, Some(&server), Limits::default());
        assert!(ok, "{v}");
        assert_eq!(v["client2"]["psk_identities"][0], "0303030303030303");
        assert_eq!(v["server"]["hello_retry_request"], true);
        assert_eq!(v["server"]["resumption"], "tls13-psk");
        assert_eq!(v["learned"][0]["kind"], "psk_identity");
        assert_eq!(v["learned"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn report_keys_come_in_schema_order() {
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        let ch = ChBuilder::tls13("o.example").psk(&[&[7; 20]]).record();
        let server = ShBuilder::tls13(&[0x5a; 32]).psk(0).record();
        let (v, ok) = report(&ch, Some(&server), Limits::default());
        assert!(ok, "{v}");
        assert_eq!(keys(&v), ["client", "server", "learned"]);
        assert_eq!(
            keys(&v["client"]),
            [
                "status",
                "error",
                "legacy_version",
                "session_id",
                "sni",
                "alpn",
                "supported_versions",
                "session_ticket",
                "psk_identities",
                "key_share_groups",
                "ech",
                "ja4",
                "ja4_stable",
                "records",
                "length",
            ]
        );
        assert_eq!(
            keys(&v["server"]),
            [
                "status",
                "error",
                "version",
                "session_id",
                "cipher_suite",
                "hello_retry_request",
                "psk_selected",
                "new_session_tickets",
                "resumed",
                "resumption",
            ]
        );
        assert_eq!(keys(&v["learned"][0]), ["kind", "key"]);
        let text = serde_json::to_string(&v).unwrap();
        let at = |k: &str| text.find(k).unwrap();
        assert!(at("\"client\"") < at("\"server\"") && at("\"server\"") < at("\"learned\""));
    }
}
