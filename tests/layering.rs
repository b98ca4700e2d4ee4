//! The layers of ARCHITECTURE.md, checked: `domain` ← `storage` ← `services` ←
//! `http` ← `cli`/`startup`. A module may use only its own layer and the layers
//! below it, and the modules of the crate (units: `storage::writer`,
//! `http::pages`, …) form no cycle. Reads the sources and the templates (which
//! askama compiles into the module that renders them), as text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn layer(top: &str) -> Option<usize> {
    match top {
        "domain" => Some(0),
        "storage" => Some(1),
        "services" => Some(2),
        "http" => Some(3),
        "cli" | "startup" => Some(4),
        _ => None,
    }
}

/// `src/a/b/mod.rs` → `[a, b]`; `src/a/b.rs` → `[a, b]`; `src/lib.rs` → `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code without comments (doc links may name any module).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names with `crate::` or `super::`, resolved to segments.
fn references(module: &[String], is_mod_rs: bool, text: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        if text[..i].ends_with("sms_audit::") || text[..i].ends_with('$') {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`
            for item in group.split('}').next().unwrap_or("").split(',') {
                let segs: Vec<String> = item.trim().split("::").map(ident).collect();
                if !segs[0].is_empty() {
                    out.push(segs);
                }
            }
        } else {
            out.push(rest.split("::").take(2).map(ident).collect());
        }
    }
    for (i, _) in text.match_indices("super::") {
        if text[..i].ends_with("super::") {
            continue; // counted from the first `super`
        }
        let mut rest = &text[i..];
        // In `a/b.rs` (module a::b) `super` is `a`; in `a/b/mod.rs` (also a::b) too.
        let mut base: Vec<String> = module.to_vec();
        let _ = is_mod_rs;
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        let mut items = Vec::new();
        if let Some(group) = rest.strip_prefix('{') {
            for item in group.split('}').next().unwrap_or("").split(',') {
                items.push(ident(item.trim()));
            }
        } else {
            items.push(ident(rest));
        }
        for item in items.into_iter().filter(|s| !s.is_empty() && s != "self") {
            let mut path = base.clone();
            path.push(item);
            out.push(path);
        }
    }
    out
}

#[test]
fn modules_use_only_their_own_and_lower_layers_and_form_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let is_module = |segs: &[String]| {
        let dir = segs.iter().fold(src.clone(), |p, s| p.join(s));
        dir.with_extension("rs").is_file() || dir.join("mod.rs").is_file()
    };
    // The unit of a path: its first two segments when those name a module.
    let unit = |segs: &[String]| -> String {
        if segs.len() >= 2 && is_module(&segs[..2]) {
            segs[..2].join("::")
        } else {
            segs[0].clone()
        }
    };

    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut checked = 0;
    for file in &files {
        let module = module_path(&src, file);
        let Some(top) = module.first() else { continue };
        let Some(own_layer) = layer(top) else {
            violations.push(format!("{}: module {top} is in no layer", file.display()));
            continue;
        };
        let mut text = code(&std::fs::read_to_string(file).unwrap());
        // Templates are compiled into the module that names them.
        for template in text
            .match_indices("#[template(path = \"")
            .map(|(i, _)| text[i + 19..].split('"').next().unwrap_or("").to_string())
            .collect::<Vec<_>>()
        {
            text.push_str(&template_code(&root.join("templates"), &template));
        }
        let is_mod_rs = file.ends_with("mod.rs");
        let from = unit(&module);
        for target in references(&module, is_mod_rs, &text) {
            checked += 1;
            let Some(target_layer) = layer(&target[0]) else {
                violations.push(format!(
                    "{}: names crate::{}",
                    file.display(),
                    target.join("::")
                ));
                continue;
            };
            if target_layer > own_layer {
                violations.push(format!(
                    "{} ({top}) uses {} from a higher layer",
                    file.display(),
                    target.join("::")
                ));
            }
            let to = unit(&target);
            // A layer's root module assembles its children; they may use its items.
            if to != from && !to.starts_with(&format!("{from}::")) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} references found: is the parser broken?"
    );
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "modules import each other in a circle: {}",
            cycle.join(" → ")
        );
    }
}

/// A template's text and that of the templates it extends or includes.
fn template_code(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let mut all = text.clone();
    for key in ["{% extends \"", "{% include \""] {
        for (i, _) in text.match_indices(key) {
            let parent = text[i + key.len()..].split('"').next().unwrap_or("");
            all.push_str(&template_code(dir, parent));
        }
    }
    all
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_checker_sees_a_violation_and_a_cycle() {
    let module = vec!["storage".to_string(), "writer".to_string()];
    let refs = references(
        &module,
        false,
        "use crate::services::outbox::Sender;\nuse super::{queries, ReadPool};",
    );
    assert!(refs.contains(&vec!["services".to_string(), "outbox".to_string()]));
    assert!(refs.contains(&vec!["storage".to_string(), "queries".to_string()]));
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&edges).is_some());
    edges.remove("b");
    assert!(find_cycle(&edges).is_none());
}

// The code's size (ARCHITECTURE.md, "Function size"): no function in `src/` over
// 80 lines, no template line over 160 characters.

const MAX_LINES: usize = 80;

/// The line's code without strings, characters and comments, enough to count
/// braces.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '\'' => {
                // A character literal ('{', '\n'); a lifetime has no closing quote.
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                }
            }
            '/' if chars.peek() == Some(&'/') => break,
            c => out.push(c),
        }
    }
    out
}

/// `(file, line, name, length)` of every function longer than `MAX_LINES`.
fn long_functions(file: &Path) -> Vec<(String, usize, String, usize)> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let code = code_of(line);
        let Some(at) = code.find("fn ") else { continue };
        let before = code[..at].trim();
        let is_item = before
            .split_whitespace()
            .all(|w| matches!(w, "pub" | "async" | "const" | "unsafe") || w.starts_with("pub("));
        if !is_item {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened) = (0i64, false);
        for (end, line) in lines.iter().enumerate().skip(start) {
            let code = code_of(line);
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if !opened && code.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            if opened && depth <= 0 {
                let length = end - start + 1;
                if length > MAX_LINES {
                    long.push((file.display().to_string(), start + 1, name.clone(), length));
                }
                break;
            }
        }
    }
    long
}

#[test]
fn no_function_is_longer_than_80_lines() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let long: Vec<_> = files.iter().flat_map(|f| long_functions(f)).collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines (split them into named steps): {long:#?}"
    );
}

#[test]
fn the_count_sees_a_long_function() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.rs");
    let body = "    let x = '{';\n".repeat(MAX_LINES);
    std::fs::write(
        &file,
        format!("pub fn long() {{\n{body}}}\nfn short() {{}}\n"),
    )
    .unwrap();
    let long = long_functions(&file);
    assert_eq!(long.len(), 1, "{long:?}");
    assert_eq!(long[0].2, "long");
    assert_eq!(long[0].3, MAX_LINES + 2);
}

/// Templates stay readable: no line over 160 characters (long lines are broken
/// before a tag with `{{-`/`{%-`, which keeps the output the same).
#[test]
fn no_template_line_is_longer_than_160_characters() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut long = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.chars().count() > 160 {
                long.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "template lines over 160 characters: {long:#?}"
    );
}

/// Plural nouns a count is written with.
const COUNTED_NOUNS: [&str; 16] = [
    "tasks",
    "uploads",
    "entries",
    "checkpoints",
    "calls",
    "deliveries",
    "problems",
    "directories",
    "items",
    "results",
    "files",
    "days",
    "attempts",
    "bytes",
    "rows",
    "pages",
];

/// Whether `line` writes a value (closed by `close`: `}` of a format string,
/// `}}` of a template) straight before a plural noun: "1 uploads" when it is 1.
fn counts_without_the_helper(line: &str, close: &str) -> bool {
    let mut rest = line;
    while let Some(i) = rest.find(close) {
        let after = &rest[i + close.len()..];
        rest = after;
        let Some(words) = after.strip_prefix(' ') else {
            continue;
        };
        let words = ["open ", "newer ", "new "]
            .iter()
            .find_map(|q| words.strip_prefix(q))
            .unwrap_or(words);
        let counted = COUNTED_NOUNS.iter().any(|noun| {
            words
                .strip_prefix(noun)
                .is_some_and(|tail| !tail.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
        });
        if counted {
            return true;
        }
    }
    false
}

/// Counts go through one helper (`domain::counted`, the `count` filter), so no
/// message or page says "1 uploads". The exceptions are not counts: a progress
/// bar's `{pos}/{len}` and a command line's `--db {} credentials add`.
#[test]
fn every_count_agrees_with_its_noun() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let not_a_count = line.contains("{pos}/{len}") || line.contains("} credentials add");
            if !not_a_count && line.contains('"') && counts_without_the_helper(line, "}") {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    for entry in std::fs::read_dir(root.join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if counts_without_the_helper(line, "}}") {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "counts written without domain::counted or |count: {found:#?}"
    );
}

#[test]
fn the_plural_checker_sees_a_count() {
    assert!(counts_without_the_helper(r#"say!("{n} uploads")"#, "}"));
    assert!(counts_without_the_helper(
        "{{ n|thousands }} open problems",
        "}}"
    ));
    assert!(!counts_without_the_helper(
        r#"say!("{}", counted(n, "upload"))"#,
        "}"
    ));
    assert!(!counts_without_the_helper(
        "{{ n|count(\"upload\") }} of",
        "}}"
    ));
    assert!(!counts_without_the_helper(r#"format!("{} uploadsx")"#, "}"));
}
