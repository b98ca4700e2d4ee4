//! The documentation is generated where it can be, and held to the code:
//! `docs/cli.md` is what `sms-audit man --markdown` prints, the upload error
//! table in `docs/agents.md` is `http::refusals`'s, every relative link of the
//! README and the manual names a file (and heading) that exists, and every
//! picture of the manual is used and there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README and every Markdown file of the manual.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn the_cli_reference_is_what_the_code_generates() {
    let path = root().join("docs/cli.md");
    let committed = read(&path);
    let generated = sms_audit::cli::markdown_reference();
    assert!(
        committed == generated,
        "docs/cli.md differs from the code's: run `cargo run -- man --markdown > docs/cli.md`"
    );
    // The reference covers every command and the flags a reader looks for.
    for needle in [
        "## `sms-audit serve`",
        "--listen",
        "## `sms-audit evidence export`",
    ] {
        assert!(generated.contains(needle), "{needle}");
    }
}

/// The generated table between `<!-- upload-errors… -->` and
/// `<!-- /upload-errors -->`; `UPDATE_DOCS=1` writes it instead of comparing.
#[test]
fn the_upload_error_table_is_the_codes() {
    let path = root().join("docs/agents.md");
    let text = read(&path);
    let start = text.find("<!-- upload-errors").expect("the table's marker");
    let start = start + text[start..].find("-->\n").unwrap() + "-->\n".len();
    let end = text
        .find("<!-- /upload-errors -->")
        .expect("the table's end");
    let generated = sms_audit::http::refusals::markdown_table();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{generated}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        text[start..end] == generated,
        "docs/agents.md's error table differs from src/http/refusals.rs: run `UPDATE_DOCS=1 cargo test --test docs`"
    );
}

/// The OpenAPI description's upload errors are the same table's.
#[test]
fn the_openapi_upload_errors_are_the_tables() {
    use utoipa::OpenApi;
    let doc = sms_audit::http::openapi::ApiDoc::openapi();
    let json = serde_json::to_value(&doc).unwrap();
    for path in [
        "/v3/tasks/{task_id}/consistency-result",
        "/v3/{task_id}/consistency-result",
    ] {
        let responses = &json["paths"][path]["post"]["responses"];
        let statuses: BTreeSet<String> = responses
            .as_object()
            .unwrap()
            .keys()
            .filter(|s| *s != "200")
            .cloned()
            .collect();
        let expected: BTreeSet<String> = sms_audit::http::refusals::upload_statuses()
            .iter()
            .map(u16::to_string)
            .collect();
        assert_eq!(statuses, expected, "{path}");
        for status in expected {
            let described = responses[&status]["description"].as_str().unwrap();
            let code = sms_audit::http::refusals::describe_status(status.parse().unwrap());
            assert_eq!(Some(described.to_string()), code, "{path} {status}");
        }
    }
}

/// A heading's anchor as mdBook and code hosts make it.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Each Markdown document's text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `[text](target)` and `![alt](target)` targets, outside code.
fn links(text: &str) -> Vec<String> {
    let text = prose(text);
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            found.push(rest[..end].to_string());
        }
    }
    found
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_relative_link_of_the_readme_and_the_manual_resolves() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", doc.display()));
            } else if !fragment.is_empty()
                && target.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&target)).contains(fragment)
            {
                broken.push(format!("{}: {link}: no such heading", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_picture_of_the_manual_is_shown_and_there() {
    let images = root().join("docs/images");
    let mut shown = BTreeSet::new();
    for doc in documents() {
        for link in links(&read(&doc)) {
            if let Some(name) = link.rsplit_once("images/").map(|(_, n)| n.to_string()) {
                assert!(images.join(&name).exists(), "{}: {link}", doc.display());
                shown.insert(name);
            }
        }
    }
    for entry in std::fs::read_dir(&images).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(shown.contains(&name), "docs/images/{name} is shown nowhere");
    }
}

#[test]
fn the_readme_stays_a_guide() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    // The list of SMS operations (`--proxy`) is folded away under <details>.
    assert!(
        lines <= 270,
        "the README has {lines} lines; the manual is docs/"
    );
    for command in ["cargo run --release -- serve", "cargo test"] {
        assert!(readme.contains(command), "the README gives `{command}`");
    }
}

#[test]
fn the_readme_lists_every_sms_operation_the_proxy_passes_on() {
    let readme = read(&root().join("README.md"));
    // Code spans may wrap; the SDK names `{server_id}` what the proxy scopes as a
    // source.
    let readme = readme
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("{server_id}", "{source_id}");
    let mut listed = 0;
    for (method, template) in sms_audit::domain::proxy::OPERATIONS {
        assert!(
            readme.contains(&format!("`{method} {template}`")),
            "the README lists `{method} {template}`"
        );
        listed += 1;
    }
    assert!(readme.contains("`POST /v3/tasks/{task_id}/consistency-result`"));
    assert!(readme.contains(&format!("The {} operations", listed + 1)));
}
