//! The router's top-level modules (`src/X.rs`, `src/X/`) form no import
//! cycle: each stage depends on the pool and what is below it, never on the
//! orchestrator or on a later stage. A cycle makes every module in it
//! impossible to read, test or move alone, so one added by mistake fails
//! here, with the cycle and the lines that make it.
//!
//! The module graph is read from the sources with std only: every
//! `crate::X` path (including `use crate::{X, Y::Z}` groups) and every
//! `super::` path that climbs to the crate root is an edge to top-level
//! module `X`. Comments are left out, so intra-doc links are not edges.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A source file as the scanner sees it: its top-level module, how deep
/// its own module sits below the crate root, and its text.
struct Source {
    module: String,
    depth: usize,
    path: String,
    text: String,
}

/// Where an edge was first seen, for the failure message.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn src_modules_have_no_import_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = read_sources(&root.join("src"));
    let graph = module_graph(&sources);

    // The scan must see the real structure, or an empty graph would pass.
    let edge = |a: &str, b: &str| graph.get(a).is_some_and(|to| to.contains_key(b));
    assert!(edge("router", "pool"), "router → pool not found: {graph:?}");
    assert!(edge("route", "pool"), "route → pool not found: {graph:?}");
    assert!(edge("connection", "route"), "connection → route not found");

    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "import cycles between src/ modules (each step names the first line that makes it):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_check_finds_a_planted_cycle() {
    let file = |path: &str, depth: usize, text: &str| Source {
        module: path.split(['/', '.']).next().unwrap().to_string(),
        depth,
        path: format!("src/{path}"),
        text: text.to_string(),
    };
    let sources = [
        file("a.rs", 1, "use crate::{\n    b,\n    c::{D, E},\n};\n"),
        // A comment naming crate::a is not an edge.
        file("b.rs", 1, "// see crate::a\nuse std::fmt;\n"),
        file(
            "c/mod.rs",
            1,
            "mod tests {\n    use super::*;\n    use super::super::e;\n}\n",
        ),
        file("c/inner.rs", 2, "use super::super::b;\nuse super::x;\n"),
        file("e.rs", 1, "fn f() -> crate::a::T { todo!() }\n"),
    ];
    let graph = module_graph(&sources);
    let targets = |m: &str| -> Vec<&str> {
        graph
            .get(m)
            .map(|to| to.keys().map(String::as_str).collect())
            .unwrap_or_default()
    };
    assert_eq!(targets("a"), ["b", "c"]);
    assert!(targets("b").is_empty(), "comments are not edges");
    assert_eq!(targets("c"), ["b", "e"], "super:: that reaches the root");
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("a → c (src/a.rs:1) → e (src/c/mod.rs:3) → a (src/e.rs:1)"),
        "{}",
        found[0]
    );
}

fn read_sources(src: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    files.sort();
    let mut sources = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        // The crate roots declare modules rather than depend on them.
        if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs") {
            continue;
        }
        let module = parts[0].trim_end_matches(".rs").to_string();
        // src/x.rs and src/x/mod.rs are crate::x (depth 1); each further
        // directory or non-mod file adds one.
        let depth = if parts.last().is_some_and(|p| p == "mod.rs") {
            parts.len() - 1
        } else {
            parts.len()
        };
        sources.push(Source {
            module,
            depth,
            path: format!("src/{}", rel.display()),
            text: fs::read_to_string(&file).unwrap(),
        });
    }
    assert!(
        sources.len() > 10,
        "found only {} files under {}",
        sources.len(),
        src.display()
    );
    sources
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules it names, each with the first
/// `file:line` naming it. Only names that are modules of the scanned tree
/// count (`crate::inspect`, a re-exported crate, is nobody's cycle).
fn module_graph(sources: &[Source]) -> Graph {
    let modules: BTreeSet<&str> = sources.iter().map(|s| s.module.as_str()).collect();
    let mut graph = Graph::new();
    for s in sources {
        let node = graph.entry(s.module.clone()).or_default();
        // The text without comments, and for each line where it starts and
        // how deep its module is: inline modules (`mod tests { .. }`) sit
        // one level deeper, and come last in a file, so a depth holds to
        // the file's end.
        let mut code = String::new();
        let mut lines: Vec<(usize, usize)> = Vec::new();
        let mut depth = s.depth;
        for raw in s.text.lines() {
            let line = raw.split("//").next().unwrap_or("");
            let trimmed = line.trim_start();
            let declaration = trimmed.strip_prefix("pub ").unwrap_or(trimmed);
            if declaration.starts_with("mod ") && line.trim_end().ends_with('{') {
                depth += 1;
            }
            lines.push((code.len(), depth));
            code.push_str(line);
            code.push('\n');
        }
        for (offset, target, climbs) in references(&code) {
            let line = lines.partition_point(|(start, _)| *start <= offset) - 1;
            let (_, depth) = lines[line];
            // `super::` counts only when it climbs to the crate root.
            let reaches_root = climbs.is_none_or(|n| n >= depth);
            if reaches_root && target != s.module && modules.contains(target.as_str()) {
                let at = format!("{}:{}", s.path, line + 1);
                node.entry(target).or_insert(at);
            }
        }
    }
    graph
}

/// Every path into the crate in `code`: `crate::x`, `crate::{x, y::z}`
/// (groups may span lines), or `super::`… as (byte offset, first segment,
/// how many `super::` it starts with).
fn references(code: &str) -> Vec<(usize, String, Option<usize>)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let word_start = i == 0 || !is_ident(bytes[i - 1]);
        if word_start && rest.starts_with("crate::") {
            let after = &rest["crate::".len()..];
            found.extend(path_heads(after).into_iter().map(|h| (i, h, None)));
            i += "crate::".len();
        } else if word_start && rest.starts_with("super::") {
            let mut climbs = 0;
            let mut after = rest;
            while let Some(r) = after.strip_prefix("super::") {
                climbs += 1;
                after = r;
            }
            found.extend(path_heads(after).into_iter().map(|h| (i, h, Some(climbs))));
            i += rest.len() - after.len();
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

/// The first segment of a path, or of each path of a `{..}` group.
fn path_heads(path: &str) -> Vec<String> {
    if let Some(group) = path.strip_prefix('{') {
        let mut heads = Vec::new();
        let mut nesting = 0;
        let mut at_item_start = true;
        for (k, c) in group.char_indices() {
            match c {
                '{' => nesting += 1,
                '}' if nesting == 0 => break,
                '}' => nesting -= 1,
                ',' if nesting == 0 => at_item_start = true,
                c if c.is_whitespace() => {}
                _ if at_item_start => {
                    heads.push(ident(&group[k..]));
                    at_item_start = false;
                }
                _ => {}
            }
        }
        heads
    } else {
        vec![ident(path)]
    }
}

fn ident(s: &str) -> String {
    s.bytes()
        .take_while(|b| is_ident(*b))
        .map(char::from)
        .collect()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// One cycle per strongly connected component of more than one module,
/// written `a → b (where a names b) → … → a (…)`.
fn cycles(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        if let Some(path) = shortest_cycle(graph, start) {
            let mut text = start.clone();
            for pair in path.windows(2) {
                let at = &graph[&pair[0]][&pair[1]];
                text.push_str(&format!(" → {} ({at})", pair[1]));
            }
            reported.extend(path.iter().cloned());
            out.push(text);
        }
    }
    out
}

/// The shortest path from `start` back to itself, breadth first, both
/// ends included.
fn shortest_cycle(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(&node).into_iter().flat_map(|to| to.keys()) {
            if next == start {
                let mut path = vec![node.clone()];
                let mut at = node.clone();
                while at != start {
                    at = came_from[&at].clone();
                    path.push(at.clone());
                }
                path.reverse();
                path.push(start.to_string());
                return Some(path);
            }
            if !came_from.contains_key(next) {
                came_from.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}
