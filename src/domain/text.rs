//! Text that people read: whether it can hide or reorder what is shown, and how
//! to show it so that it cannot.

use std::borrow::Cow;

/// Text without control characters or bidirectional overrides and isolates,
/// which would hide or reorder what a page shows.
pub fn printable(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || is_bidi_control(c))
}

/// The Unicode bidirectional formatting characters (LRE…RLO, LRI…PDI, LRM, RLM, ALM).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Control characters and bidirectional formatting characters as visible
/// `\uXXXX` escapes (`\u0000`, `\u202e`), so that nothing is hidden, merged or
/// shown reversed; with `keep_lines`, line breaks and tabs stay as they are.
pub fn escape_invisible(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let hidden = |c: char| {
        (c.is_control() && !(keep_lines && matches!(c, '\n' | '\r' | '\t'))) || is_bidi_control(c)
    };
    if !text.chars().any(hidden) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if hidden(c) {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_become_visible() {
        assert_eq!(escape_invisible("/a\u{0}b", false), "/a\\u0000b");
        assert_eq!(escape_invisible("/a\nb", false), "/a\\u000ab");
        assert_eq!(escape_invisible("/a\nb", true), "/a\nb");
        assert_eq!(
            escape_invisible("/a\u{202e}gnp.exe", false),
            "/a\\u202egnp.exe"
        );
        assert_eq!(escape_invisible("/plain/path", false), "/plain/path");
        assert!(printable("db-01 name"));
        assert!(!printable("a\u{202e}b"));
        assert!(!printable("a\tb"));
    }
}

/// A URL as shown to people and logs: its user and password (`user:pass@`)
/// replaced by `***@`. Anything that is not a URL is not shown.
pub fn without_userinfo(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if !url.username().is_empty() || url.password().is_some() {
                let _ = url.set_username("***");
                let _ = url.set_password(None);
            }
            url.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "(not a URL; not shown)".into(),
    }
}

/// A webhook URL as shown to people: scheme, host and port only, since the
/// path and query usually are the hook's secret (`https://hooks.example/…`).
pub fn without_path(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => {
            let mut shown = format!("{}://", url.scheme());
            if !url.username().is_empty() || url.password().is_some() {
                shown.push_str("***@");
            }
            shown.push_str(url.host_str().unwrap_or_default());
            if let Some(port) = url.port() {
                shown.push_str(&format!(":{port}"));
            }
            if url.path() != "/" || url.query().is_some() {
                shown.push_str("/…");
            }
            shown
        }
        Err(_) => "(not a URL; not shown)".into(),
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_left_out() {
        assert_eq!(
            without_userinfo("https://user:pw@sms.example.com:8443/x"),
            "https://***@sms.example.com:8443/x"
        );
        assert_eq!(
            without_userinfo("https://sms.example.com"),
            "https://sms.example.com"
        );
        assert_eq!(
            without_path("https://hooks.example.com/services/T0/B0/SECRET?k=v"),
            "https://hooks.example.com/…"
        );
        assert_eq!(without_path("http://127.0.0.1:9/"), "http://127.0.0.1:9");
        assert_eq!(without_path("not a url"), "(not a URL; not shown)");
    }
}

/// `word` as one word for a POSIX shell: as it is when it holds only characters
/// no shell reads specially, else in single quotes.
pub fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-=+:,@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `noun` in the plural (`upload` → `uploads`, `entry` → `entries`); of several
/// words, the last (`open problem` → `open problems`).
pub fn plural(noun: &str) -> String {
    let consonant_y = noun.len() > 1
        && noun.ends_with('y')
        && !noun[..noun.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    if consonant_y {
        format!("{}ies", &noun[..noun.len() - 1])
    } else if noun.ends_with(['s', 'x']) || noun.ends_with("ch") || noun.ends_with("sh") {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

/// A count and its noun, the noun in the plural unless the count is one:
/// `1 upload`, `2 uploads`, `0 entries`. The one helper every message and page
/// counts with (a test holds the templates and messages to it).
pub fn counted(n: impl Into<i128>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {}", plural(noun))
    }
}
