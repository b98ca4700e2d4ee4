//! ARCHITECTURE.md's "Function size": no function in `src/` is longer than 80
//! lines, from its `fn` line to its closing brace. Reads the sources as text.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 80;

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
