//! A strict reader of the Prometheus text exposition format (0.0.4), for
//! the tests that scrape `/metrics`: every line must parse, every sample
//! must belong to a family whose TYPE came first, no series may repeat,
//! and histograms must be whole (cumulative buckets ending in `+Inf` equal
//! to `_count`, with `_sum`).

use std::collections::{BTreeMap, HashMap};

/// One series: its labels, sorted.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → its TYPE.
    pub types: HashMap<String, String>,
    /// (sample name, labels) → value.
    pub samples: HashMap<(String, Labels), f64>,
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y"}` at the start of `s`: the labels and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_name(name) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

/// The family a sample name belongs to, given the declared types.
fn family<'a>(types: &HashMap<String, String>, name: &'a str) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return Some(base);
            }
        }
    }
    None
}

/// Parses a whole exposition or says which line is wrong.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_name(name) {
                        return Err(at("bad metric name".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if e.types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(at("TYPE given twice".into()));
                    }
                }
                (Some("HELP"), Some(name), _) if valid_name(name) => {}
                (Some("HELP"), ..) => return Err(at("bad HELP".into())),
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !valid_name(name) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (Labels::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let fam = family(&e.types, name).ok_or_else(|| at("sample before its TYPE".into()))?;
        if e.types[fam] == "counter" && (value < 0.0 || value.is_nan()) {
            return Err(at("negative counter".into()));
        }
        if e.samples
            .insert((name.to_string(), labels), value)
            .is_some()
        {
            return Err(at("series given twice".into()));
        }
    }
    check_histograms(&e)?;
    Ok(e)
}

fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (fam, _) in e.types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket = format!("{fam}_bucket");
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, labels), v) in &e.samples {
            if *name == bucket {
                let mut base = labels.clone();
                let le = base
                    .remove("le")
                    .ok_or(format!("{fam}: bucket without le"))?;
                series
                    .entry(base)
                    .or_default()
                    .push((parse_value(&le)?, *v));
            }
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{fam}{labels:?}: buckets not cumulative"));
            }
            let last = buckets.last().ok_or(format!("{fam}: no buckets"))?;
            if last.0 != f64::INFINITY {
                return Err(format!("{fam}{labels:?}: no +Inf bucket"));
            }
            let count = e
                .samples
                .get(&(format!("{fam}_count"), labels.clone()))
                .ok_or(format!("{fam}{labels:?}: no _count"))?;
            if *count != last.1 {
                return Err(format!(
                    "{fam}{labels:?}: +Inf bucket {} != count {count}",
                    last.1
                ));
            }
            if !e
                .samples
                .contains_key(&(format!("{fam}_sum"), labels.clone()))
            {
                return Err(format!("{fam}{labels:?}: no _sum"));
            }
        }
    }
    Ok(())
}

impl Exposition {
    /// The value of the series `name` whose labels include `with` (0 when
    /// absent, as Prometheus treats a series not yet created).
    pub fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|((n, labels), _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| *v)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {with:?} matches {} series",
            matching.len()
        );
        matching.first().copied().unwrap_or(0.0)
    }

    /// The sum over every series of `name` whose labels include `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, labels), _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// Every label set of `name`.
    pub fn series(&self, name: &str) -> Vec<&Labels> {
        self.samples
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l)
            .collect()
    }
}

#[test]
fn the_reader_refuses_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";
    let e = parse(ok).unwrap();
    assert_eq!(e.value("a_total", &[("x", "1")]), 3.0);
    for bad in [
        "a_total 1\n",
        "# TYPE a counter\na{x=1} 1\n",
        "# TYPE a counter\na 1\na 2\n",
        "# TYPE a counter\na -1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",
        "# TYPE a gauge\na 1 2 3\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
