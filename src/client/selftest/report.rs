//! What selftest found, per resumption kind and issuing backend, and why
//! each miss missed: as an aligned table for people and as JSON.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;

use serde_json::{Value, json};

use super::{Identify, Kind};

/// Everything one run found.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The router tested.
    pub target: SocketAddr,
    /// How backends were told apart.
    pub identify: Identify,
    /// Sessions made per kind.
    pub sessions: usize,
    /// The pass mark, per kind.
    pub min_rate: f64,
    /// Where connections came from, in words.
    pub sources: String,
    /// Every backend seen, indexed by [`Attempt::issuer`] and the outcomes.
    pub backends: Vec<BackendSeen>,
    /// One entry per kind tested.
    pub kinds: Vec<KindResult>,
}

/// A backend as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendSeen {
    /// Short unique name: the certificate's CN, the header's value, the
    /// body's first line.
    pub label: String,
    /// What identifies it exactly (subject and fingerprint, header, body
    /// digest).
    pub detail: String,
    /// Full handshakes it answered.
    pub full_handshakes: usize,
    /// Resumed handshakes counted on it (with certificates: on the issuer).
    pub resumed_handshakes: usize,
}

/// One kind's sessions and resumptions.
#[derive(Debug, Clone)]
pub(crate) struct KindResult {
    /// The kind.
    pub kind: Kind,
    /// Sessions whose first connection gave the client a session of this
    /// kind.
    pub sessions_made: usize,
    /// Sessions that could not be made, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// TLS 1.3 only: the first resumption of each session, from its own
    /// address (not in the pass mark).
    pub warm_up: Vec<Attempt>,
    /// The resumptions from another address: what the pass mark is about.
    pub attempts: Vec<Attempt>,
}

/// One resumption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// The backend that held the session offered.
    pub issuer: usize,
    /// What happened.
    pub outcome: Outcome,
}

/// What one resumption came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Reached its issuer, which resumed it: what stickiness means.
    Resumed,
    /// Reached its issuer, which answered with a full handshake.
    IssuerDidNotResume,
    /// Reached another backend (this one), which did a full handshake.
    OtherBackend(usize),
    /// Another backend (this one) resumed it: the backends share session
    /// state. Only `--http` can see this.
    ResumedElsewhere(usize),
    /// The answer did not say who answered.
    Unidentified {
        /// Whether it resumed, wherever that was.
        resumed: bool,
    },
    /// The client had no session of this kind left to offer (a failed
    /// connection had used it up): not a resumption attempt.
    NotOffered,
    /// The connection failed.
    Failed(String),
}

impl Outcome {
    fn reached_issuer(&self) -> bool {
        matches!(self, Outcome::Resumed | Outcome::IssuerDidNotResume)
    }

    fn resumed(&self) -> bool {
        matches!(
            self,
            Outcome::Resumed
                | Outcome::ResumedElsewhere(_)
                | Outcome::Unidentified { resumed: true }
        )
    }
}

/// One line of the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Resumptions offered.
    pub attempts: usize,
    /// ... that reached the backend holding the session.
    pub reached_issuer: usize,
    /// ... that were resumed, wherever.
    pub resumed: usize,
    /// ... that reached it and were resumed there.
    pub ok: usize,
}

impl Counts {
    fn of<'a>(attempts: impl Iterator<Item = &'a Attempt>) -> Counts {
        let mut c = Counts::default();
        for a in attempts.filter(|a| a.outcome != Outcome::NotOffered) {
            c.attempts += 1;
            c.reached_issuer += usize::from(a.outcome.reached_issuer());
            c.resumed += usize::from(a.outcome.resumed());
            c.ok += usize::from(a.outcome == Outcome::Resumed);
        }
        c
    }

    /// Share of attempts that reached the issuer and resumed; `None`
    /// without attempts.
    pub fn rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.ok as f64 / self.attempts as f64)
    }
}

impl KindResult {
    pub(super) fn new(kind: Kind) -> KindResult {
        KindResult {
            kind,
            sessions_made: 0,
            skipped: BTreeMap::new(),
            warm_up: Vec::new(),
            attempts: Vec::new(),
        }
    }

    pub(super) fn skip(&mut self, reason: String) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    /// All resumptions from another address together.
    pub fn total(&self) -> Counts {
        Counts::of(self.attempts.iter())
    }

    /// Per issuing backend, in backend order, those with attempts.
    pub fn by_issuer(&self, backends: usize) -> Vec<(usize, Counts)> {
        (0..backends)
            .map(|b| {
                (
                    b,
                    Counts::of(self.attempts.iter().filter(|a| a.issuer == b)),
                )
            })
            .filter(|(_, c)| c.attempts > 0)
            .collect()
    }

    /// Tested (some attempt) and at or above the pass mark.
    fn verdict(&self, min_rate: f64) -> Option<bool> {
        self.total().rate().map(|r| r >= min_rate)
    }
}

impl Report {
    /// Puts the backends in label order (they were numbered in order of
    /// first sight, which concurrency makes random), renumbering every
    /// reference to them.
    pub(super) fn sort_backends(&mut self) {
        let mut order: Vec<usize> = (0..self.backends.len()).collect();
        order.sort_by(|&x, &y| self.backends[x].label.cmp(&self.backends[y].label));
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let renumber = |b: &mut usize| *b = new_index[*b];
        for k in &mut self.kinds {
            for a in k.warm_up.iter_mut().chain(k.attempts.iter_mut()) {
                renumber(&mut a.issuer);
                if let Outcome::OtherBackend(b) | Outcome::ResumedElsewhere(b) = &mut a.outcome {
                    renumber(b);
                }
            }
        }
        let old = std::mem::take(&mut self.backends);
        let mut slots: Vec<Option<BackendSeen>> = old.into_iter().map(Some).collect();
        self.backends = order.iter().filter_map(|&i| slots[i].take()).collect();
    }

    /// Every kind with attempts is at or above `min_rate`, and at least one
    /// kind had attempts.
    pub fn passed(&self) -> bool {
        let verdicts: Vec<bool> = self
            .kinds
            .iter()
            .filter_map(|k| k.verdict(self.min_rate))
            .collect();
        !verdicts.is_empty() && verdicts.iter().all(|&v| v)
    }

    fn label(&self, b: usize) -> &str {
        self.backends.get(b).map_or("?", |b| b.label.as_str())
    }

    /// The table, the backends, the reasons for every failure class and a
    /// summary line.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "stickytls selftest against {}: {} session(s) per kind, backends told apart by {}",
            self.target, self.sessions, self.identify
        )?;
        writeln!(out, "sources: {}", self.sources)?;
        writeln!(out)?;
        self.write_table(out)?;
        for k in &self.kinds {
            if k.kind == Kind::Tls13Psk && !k.warm_up.is_empty() {
                let c = Counts::of(k.warm_up.iter());
                writeln!(
                    out,
                    "{}: resumptions from each session's own address first (not in the table): {}/{} reached their issuer and resumed.",
                    k.kind.title(),
                    c.ok,
                    c.attempts
                )?;
            }
        }
        writeln!(out)?;
        self.write_backends(out)?;
        self.write_reasons(out)?;
        writeln!(out)?;
        writeln!(out, "{}", self.summary())
    }

    fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let width = self
            .backends
            .iter()
            .map(|b| b.label.chars().count())
            .chain([9])
            .max()
            .unwrap_or(9);
        writeln!(
            out,
            "{:<18}  {:<width$}  {:>8}  {:>14}  {:>7}  {:>6}",
            "kind", "issued by", "attempts", "reached issuer", "resumed", "rate"
        )?;
        let line = |out: &mut dyn Write, kind: &str, who: &str, c: &Counts| {
            let rate = c
                .rate()
                .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
            writeln!(
                out,
                "{kind:<18}  {who:<width$}  {:>8}  {:>14}  {:>7}  {rate:>6}",
                c.attempts, c.reached_issuer, c.resumed
            )
        };
        for k in &self.kinds {
            let rows = k.by_issuer(self.backends.len());
            if rows.is_empty() {
                line(out, k.kind.title(), "-", &Counts::default())?;
                continue;
            }
            for (i, (b, c)) in rows.iter().enumerate() {
                let kind = if i == 0 { k.kind.title() } else { "" };
                line(out, kind, self.label(*b), c)?;
            }
            if rows.len() > 1 {
                line(out, "", "all", &k.total())?;
            }
        }
        Ok(())
    }

    fn write_backends(&self, out: &mut impl Write) -> io::Result<()> {
        match self.identify {
            Identify::Certificate => writeln!(
                out,
                "backends, told apart by their certificate (a resumed handshake shows none: it is counted on the backend that issued the session):"
            )?,
            _ => writeln!(out, "backends, told apart by {}:", self.identify)?,
        }
        let width = self
            .backends
            .iter()
            .map(|b| b.label.chars().count())
            .max()
            .unwrap_or(1);
        for b in &self.backends {
            writeln!(
                out,
                "  {:<width$}  full handshakes {:>4}  resumed {:>4}  {}",
                b.label, b.full_handshakes, b.resumed_handshakes, b.detail
            )?;
        }
        if self.backends.len() == 1 && self.identify == Identify::Certificate {
            writeln!(
                out,
                "  Only one certificate was seen. If the pool has several backends they share it, and selftest cannot tell them apart by certificate: use --http with a page or header that names the backend."
            )?;
        }
        Ok(())
    }

    fn write_reasons(&self, out: &mut impl Write) -> io::Result<()> {
        let reasons: Vec<(Kind, Reason)> = self
            .kinds
            .iter()
            .flat_map(|k| self.reasons(k).into_iter().map(move |r| (k.kind, r)))
            .collect();
        if reasons.is_empty() {
            return Ok(());
        }
        writeln!(out)?;
        writeln!(out, "why:")?;
        for (kind, r) in reasons {
            writeln!(out, "  {}: {} {}", kind.title(), r.count, r.what)?;
            if !r.breakdown.is_empty() {
                writeln!(out, "      {}", r.breakdown)?;
            }
            writeln!(out, "      {}", r.explain)?;
        }
        Ok(())
    }

    fn summary(&self) -> String {
        let (ok, n) = self.kinds.iter().fold((0, 0), |(ok, n), k| {
            let c = k.total();
            (ok + c.ok, n + c.attempts)
        });
        let pct = |r: f64| format!("{:.1}%", r * 100.0);
        let overall = if n > 0 {
            format!(
                "{ok}/{n} resumptions from another address reached their issuing backend and resumed ({})",
                pct(ok as f64 / n as f64)
            )
        } else {
            "no resumption could be attempted (see why above)".to_string()
        };
        let below: Vec<String> = self
            .kinds
            .iter()
            .filter(|k| k.verdict(self.min_rate) == Some(false))
            .map(|k| {
                format!(
                    "{} {}",
                    k.kind.title(),
                    pct(k.total().rate().unwrap_or(0.0))
                )
            })
            .collect();
        if self.passed() {
            format!(
                "PASS: {overall}; every kind tested is at or above --min-rate {}",
                pct(self.min_rate)
            )
        } else if below.is_empty() {
            format!("FAIL: {overall}")
        } else {
            format!(
                "FAIL: {overall}; below --min-rate {}: {}",
                pct(self.min_rate),
                below.join(", ")
            )
        }
    }

    /// One entry per failure class of a kind, largest first.
    fn reasons(&self, k: &KindResult) -> Vec<Reason> {
        let cert = self.identify == Identify::Certificate;
        let mut out = Vec::new();
        let elsewhere = |pick: fn(&Outcome) -> Option<usize>| {
            // issuer -> (count, landing backend -> count)
            let mut by: BTreeMap<usize, (usize, BTreeMap<usize, usize>)> = BTreeMap::new();
            for a in &k.attempts {
                if let Some(to) = pick(&a.outcome) {
                    let e = by.entry(a.issuer).or_default();
                    e.0 += 1;
                    *e.1.entry(to).or_default() += 1;
                }
            }
            let count = by.values().map(|(n, _)| n).sum::<usize>();
            let breakdown = by
                .iter()
                .map(|(from, (n, to))| {
                    let to: Vec<String> = to
                        .iter()
                        .map(|(b, m)| format!("{} {m}", self.label(*b)))
                        .collect();
                    format!(
                        "issued by {}: {n} (to {})",
                        self.label(*from),
                        to.join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            (count, breakdown)
        };
        let by_issuer = |pick: fn(&Outcome) -> bool| {
            let mut by: BTreeMap<usize, usize> = BTreeMap::new();
            for a in k.attempts.iter().filter(|a| pick(&a.outcome)) {
                *by.entry(a.issuer).or_default() += 1;
            }
            let count = by.values().sum::<usize>();
            let breakdown = by
                .iter()
                .map(|(b, n)| format!("issued by {}: {n}", self.label(*b)))
                .collect::<Vec<_>>()
                .join(", ");
            (count, breakdown)
        };

        let (count, breakdown) = elsewhere(|o| match o {
            Outcome::OtherBackend(b) => Some(*b),
            _ => None,
        });
        if count > 0 {
            out.push(Reason {
                count,
                what: "reached another backend and got a full handshake there".into(),
                breakdown,
                explain: match k.kind {
                    Kind::Tls13Psk => "The router did not send them to the backend that issued the session: inspection is off for this pool (inspect = false), or it could not tell the issuer from the identity, because the backend's ticket key name was not confirmed yet (two resumptions accepted on that backend confirm it), is shared by several backends, or the tickets carry no key name at all (stateful tickets from a session cache).",
                    _ => "The router did not send them to the backend that issued the session, so it did not know the session: inspection is off for this pool (inspect = false), the entry expired or was evicted, or the router restarted.",
                }
                .into(),
            });
        }
        let (count, breakdown) = by_issuer(|o| *o == Outcome::IssuerDidNotResume);
        if count > 0 {
            let mut explain = "The router sent them home, but the backend no longer knew the session: its session cache is too small or off, it restarted, or it rotated its ticket key.".to_string();
            if cert {
                explain.push_str(" Or several backends present the same certificate, so reaching a twin looks like reaching the issuer: use --http.");
            }
            out.push(Reason {
                count,
                what: "reached the backend that issued the session, which did not resume it".into(),
                breakdown,
                explain,
            });
        }
        let (count, breakdown) = elsewhere(|o| match o {
            Outcome::ResumedElsewhere(b) => Some(*b),
            _ => None,
        });
        if count > 0 {
            out.push(Reason {
                count,
                what: "were resumed by another backend than the one that issued the session".into(),
                breakdown,
                explain: "The backends share session state (one ticket key or a shared session cache), so any of them can resume, but the client's other state is not where it lands. The router marks a ticket key name seen on two backends as shared and never routes on it.".into(),
            });
        }
        let (count, breakdown) = by_issuer(|o| matches!(o, Outcome::Unidentified { .. }));
        if count > 0 {
            out.push(Reason {
                count,
                what: "got an answer that did not say which backend sent it".into(),
                breakdown,
                explain: format!(
                    "selftest tells backends apart by {}; these answers lacked it.",
                    self.identify
                ),
            });
        }
        let mut failed: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &k.attempts {
            if let Outcome::Failed(e) = &a.outcome {
                *failed.entry(e.as_str()).or_default() += 1;
            }
        }
        for (e, count) in failed {
            out.push(Reason {
                count,
                what: format!("failed: {e}"),
                breakdown: String::new(),
                explain: "The connection itself failed, so it could not resume anywhere: is the router or a backend down or overloaded?".into(),
            });
        }
        let not_offered = k
            .attempts
            .iter()
            .filter(|a| a.outcome == Outcome::NotOffered)
            .count();
        if not_offered > 0 {
            out.push(Reason {
                count: not_offered,
                what: "were not attempted: the client had no session of this kind left to offer".into(),
                breakdown: String::new(),
                explain: "An earlier connection of the session failed after taking its ticket; these are not counted as attempts.".into(),
            });
        }
        for (why, count) in &k.skipped {
            out.push(Reason {
                count: *count,
                what: format!("session(s) not made: {why}"),
                breakdown: String::new(),
                explain: "Without a session there is nothing to resume; these are not counted as attempts.".into(),
            });
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.count));
        out
    }

    /// The same findings as JSON.
    pub fn to_json(&self) -> Value {
        let counts = |c: &Counts| {
            json!({
                "attempts": c.attempts,
                "reached_issuer": c.reached_issuer,
                "resumed": c.resumed,
                "resumed_on_issuer": c.ok,
                "rate": c.rate(),
            })
        };
        let kinds: Vec<Value> = self
            .kinds
            .iter()
            .map(|k| {
                let mut v = json!({
                    "kind": k.kind.as_str(),
                    "sessions_made": k.sessions_made,
                    "passed": k.verdict(self.min_rate),
                });
                if let (Value::Object(v), Value::Object(c)) = (&mut v, counts(&k.total())) {
                    v.extend(c);
                }
                v["by_issuer"] = k
                    .by_issuer(self.backends.len())
                    .iter()
                    .map(|(b, c)| {
                        let mut row = json!({ "backend": self.label(*b) });
                        if let (Value::Object(row), Value::Object(c)) = (&mut row, counts(c)) {
                            row.extend(c);
                        }
                        row
                    })
                    .collect();
                if k.kind == Kind::Tls13Psk {
                    v["warm_up"] = counts(&Counts::of(k.warm_up.iter()));
                }
                v["reasons"] = self
                    .reasons(k)
                    .into_iter()
                    .map(|r| {
                        json!({
                            "count": r.count,
                            "what": r.what,
                            "breakdown": r.breakdown,
                            "explain": r.explain,
                        })
                    })
                    .collect();
                v
            })
            .collect();
        json!({
            "target": self.target.to_string(),
            "identify": match &self.identify {
                Identify::Certificate => json!({ "by": "certificate" }),
                Identify::HttpBody { path } => json!({ "by": "http-body", "path": path }),
                Identify::HttpHeader { path, header } => {
                    json!({ "by": "http-header", "path": path, "header": header })
                }
            },
            "sessions_per_kind": self.sessions,
            "min_rate": self.min_rate,
            "sources": self.sources,
            "passed": self.passed(),
            "kinds": kinds,
            "backends": self.backends.iter().map(|b| json!({
                "backend": b.label,
                "detail": b.detail,
                "full_handshakes": b.full_handshakes,
                "resumed_handshakes": b.resumed_handshakes,
            })).collect::<Vec<_>>(),
        })
    }
}

/// One failure class of one kind.
#[derive(Debug, Clone)]
struct Reason {
    /// How many attempts (or sessions) it covers.
    count: usize,
    /// What happened to them.
    what: String,
    /// Per issuing backend, where known.
    breakdown: String,
    /// Why that happens and what to look at.
    explain: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(attempts: Vec<Attempt>, min_rate: f64) -> Report {
        let backend = |l: &str| BackendSeen {
            label: l.into(),
            detail: format!("CN={l}"),
            full_handshakes: 0,
            resumed_handshakes: 0,
        };
        let mut k = KindResult::new(Kind::Tls12Ticket);
        k.sessions_made = attempts.len();
        k.attempts = attempts;
        Report {
            target: "127.0.0.1:443".parse().unwrap(),
            identify: Identify::Certificate,
            sessions: 3,
            min_rate,
            sources: "test".into(),
            backends: vec![backend("a"), backend("b")],
            kinds: vec![k],
        }
    }

    fn at(issuer: usize, outcome: Outcome) -> Attempt {
        Attempt { issuer, outcome }
    }

    #[test]
    fn rate_counts_only_resumptions_on_their_issuer() {
        let r = report(
            vec![
                at(0, Outcome::Resumed),
                at(0, Outcome::OtherBackend(1)),
                at(1, Outcome::IssuerDidNotResume),
                at(1, Outcome::ResumedElsewhere(0)),
                at(1, Outcome::NotOffered),
            ],
            0.2,
        );
        let c = r.kinds[0].total();
        assert_eq!(
            c,
            Counts {
                attempts: 4,
                reached_issuer: 2,
                resumed: 2,
                ok: 1
            }
        );
        assert_eq!(c.rate(), Some(0.25));
        assert!(r.passed());
        let rows = r.kinds[0].by_issuer(2);
        assert_eq!(rows[0].1.ok, 1);
        assert_eq!(rows[1].1.attempts, 2);
    }

    #[test]
    fn backends_are_renumbered_in_label_order() {
        let mut r = report(
            vec![at(0, Outcome::OtherBackend(1)), at(1, Outcome::Resumed)],
            0.5,
        );
        r.backends.swap(0, 1);
        // Now index 0 is "b", 1 is "a"; the attempts still mean what they did.
        r.sort_backends();
        assert_eq!(r.backends[0].label, "a");
        assert_eq!(r.kinds[0].attempts[0], at(1, Outcome::OtherBackend(0)));
        assert_eq!(r.kinds[0].attempts[1], at(0, Outcome::Resumed));
    }

    #[test]
    fn below_the_mark_or_nothing_attempted_fails() {
        assert!(
            !report(
                vec![at(0, Outcome::Resumed), at(0, Outcome::OtherBackend(1))],
                0.99
            )
            .passed()
        );
        assert!(report(vec![at(0, Outcome::Resumed)], 1.0).passed());
        assert!(!report(vec![], 0.0).passed());
        assert!(!report(vec![at(0, Outcome::NotOffered)], 0.0).passed());
    }

    #[test]
    fn text_names_each_failure_class_with_where_they_went() {
        let r = report(
            vec![
                at(0, Outcome::OtherBackend(1)),
                at(0, Outcome::OtherBackend(1)),
                at(1, Outcome::Failed("TCP connect failed: refused".into())),
            ],
            0.99,
        );
        let mut out = Vec::new();
        r.write_text(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("TLS 1.2 ticket: 2 reached another backend"),
            "{text}"
        );
        assert!(text.contains("issued by a: 2 (to b 2)"), "{text}");
        assert!(
            text.contains("1 failed: TCP connect failed: refused"),
            "{text}"
        );
        assert!(
            text.lines().last().unwrap().starts_with("FAIL: 0/3"),
            "{text}"
        );
        let json = r.to_json();
        assert_eq!(json["passed"], false);
        assert_eq!(json["kinds"][0]["attempts"], 3);
        assert_eq!(json["kinds"][0]["by_issuer"][0]["backend"], "a");
    }
}
