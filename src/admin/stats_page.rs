//! `GET /stats`: the router at a glance, as one self-contained HTML page in
//! the spirit of HAProxy's: a table per pool, a row per backend with its
//! state coloured, the affinity table's fill, the top rejection reasons
//! and the last routing decisions.
//!
//! [`render`] is a pure function of an [`Overview`] (the same views the
//! JSON API answers with), so it is tested without a server. The page
//! loads nothing (no script, no font, no image, no stylesheet from
//! elsewhere): it works on a host with no network, and its answer carries
//! a Content-Security-Policy that forbids scripts, so even text that
//! escaped [`Esc`] could not run. Every string that comes from a client
//! (SNI) or from the configuration (pool and backend names) goes through
//! [`Esc`].

use std::fmt::{self, Write};

use super::control::{BackendView, DecisionView, Overview, PoolOverview, StatsView};

/// Decisions shown per pool: enough to see a pattern, few enough to read.
pub(crate) const PAGE_DECISIONS: usize = 20;
/// The page reloads itself this often unless `?refresh=N` says otherwise.
pub(crate) const DEFAULT_REFRESH_SECS: u32 = 5;
/// Longest refresh period accepted (an hour); 0 turns refreshing off.
pub(crate) const MAX_REFRESH_SECS: u32 = 3600;

/// Text made safe for HTML element content and quoted attribute values:
/// `&`, `<`, `>`, `"` and `'` become character references, so a hostile
/// SNI or name can neither open a tag nor leave an attribute.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `s` escaped for HTML (see [`Esc`]): the tests' view of it.
#[cfg(test)]
fn escape(s: &str) -> String {
    Esc(s).to_string()
}

/// The whole page. `refresh_secs` 0 leaves out the refresh.
pub(crate) fn render(o: &Overview, refresh_secs: u32) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail: the results are ignored.
    let _ = page(&mut out, o, refresh_secs);
    out
}

const STYLE: &str = "
:root{--up:#1a7f37;--down:#cf222e;--drain:#9a6700;--maint:#57606a;--line:#d0d7de;--head:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:16px;color:#1f2328;background:#fff}
h1{font-size:1.4em;margin:0 0 4px}
h2{font-size:1.15em;margin:24px 0 6px}
h3{font-size:1em;margin:14px 0 4px}
.meta{color:#57606a;margin:0 0 12px}
.meta a{margin-left:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5rem,1fr));gap:8px;margin:8px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 10px}
.card .label{color:#57606a;font-size:.85em}
.card .value{font-size:1.2em;font-variant-numeric:tabular-nums;white-space:nowrap}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;margin:4px 0;white-space:nowrap}
caption{text-align:left;font-weight:600;padding:2px 0}
#breakdowns .scroll{display:inline-block;vertical-align:top;margin-right:24px}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left}
th{background:var(--head);font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;min-width:4.5em;text-align:center;border-radius:4px;padding:0 6px;color:#fff;font-weight:600}
.state-up{background:var(--up)}
.state-down{background:var(--down)}
.state-drain{background:var(--drain)}
.state-maint{background:var(--maint)}
tr.row-down td{background:#ffebe9}
tr.row-drain td{background:#fff8c5}
tr.row-maint td{background:#eaeef2}
.health-failed{color:var(--down);font-weight:600}
.health-passed{color:var(--up)}
.none{color:#8c959f}
.bar{display:inline-block;vertical-align:middle;width:10rem;max-width:40vw;height:.8em;border:1px solid var(--line);border-radius:3px;background:var(--head);margin-right:6px}
.bar span{display:block;height:100%;background:var(--up)}
.bar.high span{background:var(--down)}
@media (max-width:600px){body{margin:8px;font-size:13px}th,td{padding:2px 5px}h1{font-size:1.2em}}
";

fn page(out: &mut String, o: &Overview, refresh_secs: u32) -> fmt::Result {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    if refresh_secs > 0 {
        writeln!(
            out,
            "<meta http-equiv=\"refresh\" content=\"{refresh_secs}\">"
        )?;
    }
    out.push_str("<title>stickytls stats</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<h1>stickytls</h1>\n");
    write!(
        out,
        "<p class=\"meta\">read at <span id=\"generated\">{}</span> · up {} · ",
        Esc(&o.generated),
        uptime(o.stats.uptime_secs)
    )?;
    if refresh_secs > 0 {
        write!(out, "refreshes every {refresh_secs} s")?;
    } else {
        out.push_str("refresh off");
    }
    out.push_str(
        " · <a href=\"?refresh=0\">off</a><a href=\"?refresh=5\">5 s</a><a href=\"?refresh=30\">30 s</a></p>\n",
    );
    // What a glance needs first: the totals, then each pool's backends;
    // the breakdowns and the decision logs below them.
    cards(out, &o.stats)?;
    if let Some(st) = &o.stats.store {
        store(out, st)?;
    }
    for p in &o.pools {
        pool(out, p)?;
    }
    breakdowns(out, &o.stats)?;
    for p in &o.pools {
        decisions(out, p)?;
    }
    out.push_str("</body>\n</html>\n");
    Ok(())
}

/// The router-wide totals, one card each.
fn cards(out: &mut String, s: &StatsView) -> fmt::Result {
    let c = &s.counters;
    // Over every lookup of every kind, as `stickytls_affinity_hits_total`
    // over hits and misses would give it: one hello may look up several
    // keys (a fresh TLS 1.3 PSK identity misses, then its ticket's key
    // name hits), so the per-kind table below says which kind carries it.
    let hits: u64 = c.hits.iter().sum();
    let misses: u64 = c.misses.iter().sum();
    out.push_str("<section id=\"summary\">\n<h2>Router</h2>\n<div class=\"cards\">\n");
    let cards: [(&str, &str, String); 10] = [
        ("connections", "connections", c.connections.to_string()),
        ("active", "open now", c.active.to_string()),
        (
            "open-to-backends",
            "open to backends",
            s.open_to_backends.to_string(),
        ),
        ("rejected", "rejected", c.rejected.to_string()),
        (
            "hit-ratio",
            "affinity hit ratio (lookups)",
            percent(hits, hits + misses),
        ),
        ("rebinds", "re-binds by address", c.rebinds.to_string()),
        ("resumed", "resumed handshakes", c.resumed.to_string()),
        (
            "affinity-lost",
            "affinity lost",
            c.affinity_lost.to_string(),
        ),
        ("failovers", "failovers", c.failovers.to_string()),
        ("no-backend", "no backend", c.no_backend.to_string()),
    ];
    for (id, label, value) in cards {
        writeln!(
            out,
            "<div class=\"card\" id=\"card-{id}\"><div class=\"label\">{label}</div><div class=\"value\" data-field=\"{id}\">{value}</div></div>"
        )?;
    }
    writeln!(
        out,
        "<div class=\"card\" id=\"card-bytes\"><div class=\"label\">bytes in / out</div><div class=\"value\">{} / {}</div></div>",
        bytes(c.to_backend_bytes),
        bytes(c.to_client_bytes)
    )?;
    out.push_str("</div>\n</section>\n");
    Ok(())
}

/// The shared store (Redis or Redis Cluster): whether this router reaches
/// it now, and what its lookups and writes came to. Shown only when one is
/// configured: the in-process table has nothing to report here.
fn store(out: &mut String, st: &crate::affinity::StoreStatus) -> fmt::Result {
    let (class, state) = if st.up {
        ("up", "connected")
    } else {
        ("down", "unreachable: routing from local state")
    };
    let lookups = st.lookups_hit + st.lookups_miss + st.lookups_timeout + st.lookups_error;
    writeln!(
        out,
        "<section id=\"store\">\n<h2>Shared store ({kind})</h2>\n<p><span class=\"state state-{class}\" data-field=\"store-up\">{state}</span></p>",
        kind = Esc(st.kind)
    )?;
    out.push_str("<div class=\"scroll\"><table id=\"store-counters\">\n<tr><th>lookups</th><th class=\"num\">hit</th><th class=\"num\">miss</th><th class=\"num\">over budget</th><th class=\"num\">error</th><th class=\"num\">hit ratio</th><th class=\"num\">corrupt values</th><th class=\"num\">writes</th><th class=\"num\">writes dropped</th><th class=\"num\">errors (connect / lookup / write)</th></tr>\n");
    writeln!(
        out,
        "<tr><td>{lookups}</td><td class=\"num\" data-field=\"store-hit\">{}</td><td class=\"num\">{}</td><td class=\"num\" data-field=\"store-timeout\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\" data-field=\"store-writes\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {} / {}</td></tr>",
        st.lookups_hit,
        st.lookups_miss,
        st.lookups_timeout,
        st.lookups_error,
        percent(st.lookups_hit, lookups),
        st.corrupt_values,
        st.writes,
        st.writes_dropped,
        st.errors_connect,
        st.errors_lookup,
        st.errors_write,
    )?;
    out.push_str("</table></div>\n</section>\n");
    Ok(())
}

/// Session key lookups by kind and rejections by reason, all pools.
fn breakdowns(out: &mut String, s: &StatsView) -> fmt::Result {
    let c = &s.counters;
    out.push_str("<section id=\"breakdowns\">\n<h2>Session keys and rejections, all pools</h2>\n<div class=\"scroll\"><table id=\"affinity\">\n<caption>Session keys looked up</caption>\n<tr><th>key kind</th><th class=\"num\">hits</th><th class=\"num\">misses</th><th class=\"num\">hit ratio</th><th class=\"num\">learned</th></tr>\n");
    let kinds = ["psk_identity", "ticket", "ticket_key_name", "session_id"];
    for (i, kind) in kinds.iter().enumerate() {
        writeln!(
            out,
            "<tr><td>{kind}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            c.hits[i],
            c.misses[i],
            percent(c.hits[i], c.hits[i] + c.misses[i]),
            c.learned[i]
        )?;
    }
    out.push_str("</table></div>\n");

    let mut reasons: Vec<(&str, u64)> = c
        .rejected_by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (*r, *n))
        .collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    out.push_str("<div class=\"scroll\"><table id=\"rejections\">\n<caption>Top rejection reasons</caption>\n<tr><th>reason</th><th class=\"num\">connections</th><th class=\"num\">share</th></tr>\n");
    if reasons.is_empty() {
        out.push_str("<tr><td class=\"none\" colspan=\"3\">none</td></tr>\n");
    }
    for (reason, n) in reasons {
        writeln!(
            out,
            "<tr data-reason=\"{r}\"><td>{r}</td><td class=\"num\">{n}</td><td class=\"num\">{}</td></tr>",
            percent(n, c.rejected),
            r = Esc(reason)
        )?;
    }
    out.push_str("</table></div>\n</section>\n");
    Ok(())
}

fn pool(out: &mut String, p: &PoolOverview) -> fmt::Result {
    let v = &p.pool;
    let name = Esc(&v.name);
    writeln!(
        out,
        "<section class=\"pool\" data-pool=\"{name}\">\n<h2>Pool {name}</h2>"
    )?;
    writeln!(
        out,
        "<p class=\"meta\">{} · inspection {} · {} of {} backends up · {} clients tracked</p>",
        v.balance,
        if v.inspect { "on" } else { "off" },
        v.backends_up,
        v.backends,
        v.clients_tracked
    )?;
    // Fill in tenths of a percent, in integers: no float formatting quirks.
    let per_mille = fraction_per_mille(v.affinity_entries as u64, v.affinity_capacity as u64);
    writeln!(
        out,
        "<p class=\"fill\">affinity table <span class=\"bar{}\"><span style=\"width:{}.{}%\"></span></span><span class=\"num\" data-field=\"affinity\">{} / {}</span> ({}.{}%), {} evicted</p>",
        if per_mille >= 900 || v.affinity_evictions > 0 {
            " high"
        } else {
            ""
        },
        per_mille / 10,
        per_mille % 10,
        v.affinity_entries,
        v.affinity_capacity,
        per_mille / 10,
        per_mille % 10,
        v.affinity_evictions
    )?;

    out.push_str("<div class=\"scroll\"><table class=\"backends\">\n<tr><th>backend</th><th>address</th><th>state</th><th class=\"num\">weight</th><th class=\"num\">active</th><th class=\"num\">total</th><th class=\"num\">handshakes</th><th class=\"num\">resumed</th><th class=\"num\">resumption rate</th><th class=\"num\">affinity lost</th><th>last health check</th><th class=\"num\">connect failures</th></tr>\n");
    for b in &p.backends {
        backend(out, &v.name, b)?;
    }
    out.push_str("</table></div>\n");

    out.push_str("</section>\n");
    Ok(())
}

/// A pool's last decisions, newest first.
fn decisions(out: &mut String, p: &PoolOverview) -> fmt::Result {
    let name = Esc(&p.pool.name);
    writeln!(
        out,
        "<section class=\"decisions\" data-pool=\"{name}\">\n<h2>Pool {name}: last {PAGE_DECISIONS} decisions, newest first</h2>"
    )?;
    if p.decisions.is_empty() {
        out.push_str("<p class=\"none\">none yet</p>\n");
    } else {
        out.push_str("<div class=\"scroll\"><table class=\"decisions\">\n<tr><th>time (UTC)</th><th>client</th><th>SNI</th><th>rule</th><th>key kind</th><th>backend</th><th>reason</th></tr>\n");
        for d in &p.decisions {
            decision(out, d)?;
        }
        out.push_str("</table></div>\n");
    }
    out.push_str("</section>\n");
    Ok(())
}

fn backend(out: &mut String, pool: &str, b: &BackendView) -> fmt::Result {
    let failures: u64 = b
        .connect_failures
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    let why: Vec<String> = b
        .connect_failures
        .iter()
        .filter_map(|(r, n)| n.as_u64().filter(|n| *n > 0).map(|n| format!("{r} {n}")))
        .collect();
    let health = match b.health {
        Some(h) => format!("<span class=\"health-{h}\">{h}</span>"),
        None => "<span class=\"none\">—</span>".to_string(),
    };
    writeln!(
        out,
        "<tr class=\"row-{state}\" data-pool=\"{pool}\" data-backend=\"{name}\"><td>{name}</td><td>{addr}</td>\
<td><span class=\"state state-{state}\" data-field=\"state\">{state}</span></td>\
<td class=\"num\" data-field=\"weight\">{weight}</td><td class=\"num\" data-field=\"active\">{active}</td>\
<td class=\"num\" data-field=\"total\">{total}</td><td class=\"num\" data-field=\"handshakes\">{handshakes}</td>\
<td class=\"num\" data-field=\"resumed\">{resumed}</td><td class=\"num\" data-field=\"resumption-rate\">{rate}</td>\
<td class=\"num\" data-field=\"affinity-lost\">{lost}</td><td data-field=\"health\">{health}</td>\
<td class=\"num\" data-field=\"failures\" title=\"{why}\">{failures}</td></tr>",
        pool = Esc(pool),
        name = Esc(&b.name),
        addr = Esc(&b.address),
        state = Esc(b.state),
        weight = b.weight,
        active = b.active,
        total = b.total,
        handshakes = b.handshakes,
        resumed = b.resumed,
        rate = percent(b.resumed, b.handshakes),
        lost = b.affinity_lost,
        why = Esc(&why.join(", ")),
    )
}

fn decision(out: &mut String, d: &DecisionView) -> fmt::Result {
    let dash = "<span class=\"none\">—</span>";
    let sni = d
        .sni
        .as_deref()
        .map_or_else(|| dash.to_string(), |s| Esc(s).to_string());
    let kind = d
        .kind
        .map_or_else(|| dash.to_string(), |k| Esc(k).to_string());
    // The date is the same for a screenful of rows: the time says enough.
    let time = d
        .time
        .split_once('T')
        .map_or(d.time.as_str(), |(_, t)| t.trim_end_matches('Z'));
    writeln!(
        out,
        "<tr class=\"decision\"><td class=\"num\" title=\"{full}\">{time}</td><td>{client}</td><td data-field=\"sni\">{sni}</td><td>{rule}</td><td>{kind}</td><td data-field=\"backend\">{backend}</td><td>{reason}</td></tr>",
        full = Esc(&d.time),
        time = Esc(time),
        client = Esc(&d.client),
        rule = Esc(d.rule),
        backend = Esc(&d.backend),
        reason = Esc(d.reason),
    )
}

/// `part / whole` in thousandths, rounded to the nearest and capped at
/// 1000; 0 for an empty whole.
fn fraction_per_mille(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    (u128::from(part) * 2000 / u128::from(whole))
        .div_ceil(2)
        .min(1000) as u64
}

/// `part / whole` as a percentage with one decimal, or `—` when there is
/// nothing to divide by (a rate of nothing is not 0%).
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".to_string();
    }
    let m = fraction_per_mille(part, whole);
    format!("{}.{}%", m / 10, m % 10)
}

/// `3d 04:05:06`, or `04:05:06` under a day.
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `3.2 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut whole = n;
    while whole >= 1024 && unit < UNITS.len() - 1 {
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    let tenths = u128::from(n) * 10 / 1024u128.pow(unit as u32);
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Snapshot;

    #[test]
    fn escape_neutralises_markup_quotes_and_ampersands() {
        assert_eq!(escape(""), "");
        assert_eq!(escape("plain.example"), "plain.example");
        assert_eq!(
            escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("\" onmouseover=\"x"), "&quot; onmouseover=&quot;x");
        // Already-escaped text is escaped again, not trusted.
        assert_eq!(escape("&lt;"), "&amp;lt;");
        // Multi-byte text around the escapes stays whole.
        assert_eq!(escape("é<ü>✓&"), "é&lt;ü&gt;✓&amp;");
        assert_eq!(escape("<<>>"), "&lt;&lt;&gt;&gt;");
    }

    #[test]
    fn escaped_text_never_holds_a_special_character() {
        let hostile = [
            "</td></tr></table><img src=x onerror=alert(1)>",
            "a\"b'c<d>e&f",
            "'><svg/onload=alert(1)>",
            "\u{0}<\u{202e}>",
        ];
        for h in hostile {
            let e = escape(h);
            assert!(!e.contains(['<', '>', '"', '\'']), "{h:?} escaped to {e:?}");
            // Every & starts one of our references.
            for (i, _) in e.match_indices('&') {
                let rest = &e[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                        .iter()
                        .any(|r| rest.starts_with(r)),
                    "{h:?} escaped to {e:?}"
                );
            }
        }
    }

    fn backend(name: &str, state: &'static str) -> BackendView {
        BackendView {
            name: name.to_string(),
            address: "127.0.0.1:8443".to_string(),
            state,
            weight: 1,
            active: 2,
            total: 40,
            handshakes: 40,
            resumed: 30,
            affinity_lost: 1,
            health: Some("failed"),
            connect_failures: [("refused".to_string(), 3.into())].into_iter().collect(),
        }
    }

    fn overview(sni: &str, backend_name: &str) -> Overview {
        let mut counters = Snapshot {
            connections: 45,
            rejected: 3,
            hits: [10, 20, 0, 0],
            misses: [0, 5, 7, 5],
            ..Default::default()
        };
        counters.rejected_by_reason.insert("not_tls", 2);
        counters.rejected_by_reason.insert("malformed", 1);
        counters.rejected_by_reason.insert("alert", 0);
        Overview {
            generated: "2026-11-30T07:12:03.042Z".to_string(),
            stats: StatsView {
                uptime_secs: 90_061,
                pools: 1,
                backends: 2,
                open_to_backends: 2,
                store: None,
                counters,
            },
            pools: vec![PoolOverview {
                pool: super::super::control::PoolView {
                    name: "web".to_string(),
                    balance: "roundrobin",
                    inspect: true,
                    backends: 2,
                    backends_up: 1,
                    affinity_entries: 250,
                    affinity_capacity: 1000,
                    affinity_evictions: 0,
                    clients_tracked: 4,
                },
                backends: vec![backend(backend_name, "up"), backend("b", "maint")],
                decisions: vec![DecisionView {
                    time: "2026-11-30T07:12:01.001Z".to_string(),
                    client: "127.0.0.9:50000".to_string(),
                    sni: Some(sni.to_string()),
                    rule: "key",
                    kind: Some("ticket"),
                    backend: backend_name.to_string(),
                    reason: "owner",
                }],
            }],
        }
    }

    #[test]
    fn the_page_shows_every_backend_with_its_figures_and_state() {
        let html = render(&overview("www.example", "a"), 5);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("name=\"viewport\""));
        assert!(
            html.contains(
                "<tr class=\"row-maint\" data-pool=\"web\" data-backend=\"b\"><td>b</td>"
            )
        );
        assert!(html.contains("class=\"state state-maint\" data-field=\"state\">maint<"));
        assert!(html.contains("class=\"state state-up\" data-field=\"state\">up<"));
        assert!(html.contains("data-field=\"active\">2</td>"));
        assert!(html.contains("data-field=\"total\">40</td>"));
        assert!(html.contains("data-field=\"resumption-rate\">75.0%</td>"));
        assert!(html.contains("<span class=\"health-failed\">failed</span>"));
        assert!(html.contains("title=\"refused 3\">3</td>"));
        assert!(html.contains("250 / 1000</span> (25.0%)"));
        // 30 hits over 30 + 17 lookups.
        assert!(html.contains("data-field=\"hit-ratio\">63.8%</div>"));
        // Rejections ranked, zero reasons left out.
        let not_tls = html.find("data-reason=\"not_tls\"").unwrap();
        let malformed = html.find("data-reason=\"malformed\"").unwrap();
        assert!(not_tls < malformed);
        assert!(!html.contains("data-reason=\"alert\""));
        assert!(html.contains("<td data-field=\"sni\">www.example</td>"));
        assert!(html.contains(">07:12:01.001</td>"));
        assert!(html.contains("up 1d 01:01:01"));
        // Every element opened is closed.
        for tag in ["section", "table", "tr", "div"] {
            assert_eq!(
                html.matches(&format!("<{tag}")).count(),
                html.matches(&format!("</{tag}>")).count(),
                "<{tag}> balanced"
            );
        }
        // Nothing is fetched: no script, no external reference.
        assert!(!html.contains("<script"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn the_shared_store_shows_only_when_configured_with_its_state_and_counts() {
        let mut o = overview("x", "a");
        assert!(!render(&o, 5).contains("id=\"store\""));
        o.stats.store = Some(crate::affinity::StoreStatus {
            kind: "redis-cluster",
            up: false,
            lookups_hit: 7,
            lookups_miss: 2,
            lookups_timeout: 1,
            lookups_error: 0,
            corrupt_values: 3,
            errors_connect: 4,
            errors_lookup: 0,
            errors_write: 1,
            writes: 42,
            writes_dropped: 5,
        });
        let html = render(&o, 5);
        assert!(html.contains("<h2>Shared store (redis-cluster)</h2>"));
        assert!(html.contains("class=\"state state-down\" data-field=\"store-up\">unreachable"));
        assert!(html.contains("data-field=\"store-hit\">7<"));
        assert!(html.contains("data-field=\"store-timeout\">1<"));
        assert!(html.contains("data-field=\"store-writes\">42<"));
        assert!(html.contains(">70.0%<"), "7 hits of 10 lookups");
        assert!(html.contains(">4 / 0 / 1<"));
    }

    #[test]
    fn refresh_zero_leaves_the_refresh_out() {
        let html = render(&overview("x", "a"), 0);
        assert!(!html.contains("http-equiv"));
        assert!(html.contains("refresh off"));
    }

    #[test]
    fn a_quiet_router_says_none_rather_than_showing_empty_tables() {
        let mut o = overview("x", "a");
        o.stats.counters.rejected = 0;
        o.stats.counters.rejected_by_reason.clear();
        o.pools[0].decisions.clear();
        let html = render(&o, 5);
        assert!(html.contains("<td class=\"none\" colspan=\"3\">none</td>"));
        assert!(html.contains("<p class=\"none\">none yet</p>"));
        assert!(!html.contains("class=\"decision\""));
    }

    #[test]
    fn hostile_sni_and_names_are_escaped_in_the_page() {
        let sni = "<script>alert(1)</script>\"'&";
        let name = "<b onclick=\"x\">a</b>";
        let html = render(&overview(sni, name), 5);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b onclick"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        assert!(html.contains("data-backend=\"&lt;b onclick=&quot;x&quot;&gt;a&lt;/b&gt;\""));
    }

    #[test]
    fn figures_are_formatted_without_dividing_by_zero() {
        assert_eq!(percent(0, 0), "—");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(2, 3), "66.7%", "rounded, not truncated");
        assert_eq!(percent(3, 3), "100.0%");
        assert_eq!(percent(u64::MAX, u64::MAX), "100.0%");
        assert_eq!(
            fraction_per_mille(5, 2),
            1000,
            "a fill over its size is capped"
        );
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(u64::MAX), "16383.9 PiB");
        assert_eq!(uptime(59), "00:00:59");
        assert_eq!(uptime(86_400 * 3 + 3_600 * 4 + 65), "3d 04:01:05");
    }
}
