//! What the pass-through to SMS (`serve --proxy`) lets through: which paths, and
//! which headers go on. Paths are passed on exactly as sent, so anything an HTTP
//! library or a server behind SMS might resolve differently (dot segments, encoded
//! separators, matrix parameters) is refused rather than rewritten.

use percent_encoding::percent_decode_str;

/// A path under `/v3/` that is safe to send on byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPath {
    raw: String,
    /// The percent-decoded segments after `/v3/`.
    segments: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PathRefusal {
    #[error("only paths under /v3/ are passed on to SMS")]
    OutsideV3,
    #[error("the path has a dot segment ({0:?}); paths are passed on as sent and may not climb")]
    DotSegment(String),
    #[error("the path has an encoded slash or backslash in {0:?}")]
    EncodedSeparator(String),
    #[error("the path has an empty segment (\"//\" or a trailing \"/\")")]
    EmptySegment,
    #[error("the path has a character that must be percent-encoded (a space, a backslash, a semicolon, {{ }} and the like) or a broken %-escape")]
    BadCharacter,
}

/// Which task a path is about, for credentials limited to some tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRef<'a> {
    /// `/v3/tasks/{id}…`, `/v3/{id}/update-network-check-info`,
    /// `/v3/{id}/consistency-result`.
    Named(&'a str),
    /// `/v3/tasks` itself: every task of the project.
    Collection,
    /// Not about a task (`/v3/config`, `/v3/sources/…`).
    None,
}

impl ProxyPath {
    /// `raw` is the path as it came on the wire (still percent-encoded).
    pub fn parse(raw: &str) -> Result<Self, PathRefusal> {
        let rest = raw.strip_prefix("/v3/").ok_or(PathRefusal::OutsideV3)?;
        let mut segments = Vec::new();
        for segment in rest.split('/') {
            if segment.is_empty() {
                return Err(PathRefusal::EmptySegment);
            }
            if !segment.bytes().all(is_path_byte) || !well_escaped(segment) {
                return Err(PathRefusal::BadCharacter);
            }
            let decoded: Vec<u8> = percent_decode_str(segment).collect();
            if decoded.iter().any(|b| *b == b'/' || *b == b'\\') {
                return Err(PathRefusal::EncodedSeparator(segment.to_string()));
            }
            if decoded.iter().any(|b| *b == b';' || b.is_ascii_control()) {
                return Err(PathRefusal::BadCharacter);
            }
            let decoded = String::from_utf8(decoded).map_err(|_| PathRefusal::BadCharacter)?;
            if decoded == "." || decoded == ".." {
                return Err(PathRefusal::DotSegment(segment.to_string()));
            }
            segments.push(decoded);
        }
        Ok(Self {
            raw: raw.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn task(&self) -> TaskRef<'_> {
        match self.segments.as_slice() {
            [tasks] if tasks == "tasks" => TaskRef::Collection,
            [tasks, id, ..] if tasks == "tasks" => TaskRef::Named(id),
            [id, action]
                if action == "update-network-check-info" || action == "consistency-result" =>
            {
                TaskRef::Named(id)
            }
            _ => TaskRef::None,
        }
    }

    /// Answers that carry secrets (a task's certificate key, its passphrase) are
    /// never kept in the proxy log, even with `--proxy-log-bodies`.
    pub fn answer_is_secret(&self) -> bool {
        matches!(
            self.segments.last().map(String::as_str),
            Some("certkey" | "passphrase")
        )
    }
}

/// The bytes RFC 3986 allows in a path segment as they are (unreserved, `%`,
/// sub-delimiters but `;`, `:` and `@`): anything else an HTTP client would
/// re-encode, and the path would no longer go on as sent.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,=:@".contains(&b)
}

/// Every `%` is followed by two hex digits.
fn well_escaped(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if i + 2 >= bytes.len() {
                return false;
            }
            if !(bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Headers that belong to one connection, never passed on (RFC 9110, 7.6.1), and
/// those sms-audit replaces or must not pass on: the agent's own credentials
/// (sms-audit signs with the upstream's), its cookies, and the framing the HTTP
/// client sets itself.
pub fn is_request_header_dropped(name: &str, connection_tokens: &[String]) -> bool {
    const DROPPED: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "host",
        "content-length",
        "authorization",
        "x-auth-token",
        "x-security-token",
        "x-sdk-date",
        "x-sdk-content-sha256",
        "cookie",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    ];
    let name = name.to_ascii_lowercase();
    DROPPED.contains(&name.as_str()) || connection_tokens.contains(&name)
}

/// Response headers not returned to the agent: the connection's own, the framing
/// (sms-audit frames the answer itself), and cookies (they would be set for
/// sms-audit's own site).
pub fn is_response_header_dropped(name: &str, connection_tokens: &[String]) -> bool {
    const DROPPED: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "set-cookie",
    ];
    let name = name.to_ascii_lowercase();
    DROPPED.contains(&name.as_str()) || connection_tokens.contains(&name)
}

/// The header names listed in `Connection` values (they are hop-by-hop too).
pub fn connection_tokens<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_v3_pass_as_sent() {
        let p = ProxyPath::parse("/v3/tasks/abc-1/progress").unwrap();
        assert_eq!(p.as_str(), "/v3/tasks/abc-1/progress");
        assert_eq!(p.task(), TaskRef::Named("abc-1"));
        assert_eq!(
            ProxyPath::parse("/v3/tasks").unwrap().task(),
            TaskRef::Collection
        );
        assert_eq!(
            ProxyPath::parse("/v3/t1/update-network-check-info")
                .unwrap()
                .task(),
            TaskRef::Named("t1")
        );
        assert_eq!(
            ProxyPath::parse("/v3/config").unwrap().task(),
            TaskRef::None
        );
        assert_eq!(
            ProxyPath::parse("/v3/sources/s1/changestate")
                .unwrap()
                .task(),
            TaskRef::None
        );
        assert_eq!(
            ProxyPath::parse("/v3/tasks/a%2Db").unwrap().task(),
            TaskRef::Named("a-b"),
            "scope checks see the decoded id"
        );
        assert!(ProxyPath::parse("/v3/tasks/x/certkey")
            .unwrap()
            .answer_is_secret());
        assert!(!ProxyPath::parse("/v3/tasks/x").unwrap().answer_is_secret());
    }

    #[test]
    fn paths_that_could_climb_or_split_are_refused() {
        for (path, refusal) in [
            ("/v4/x", PathRefusal::OutsideV3),
            ("/v3", PathRefusal::OutsideV3),
            ("/x/../v3/config", PathRefusal::OutsideV3),
            ("/v3/../x", PathRefusal::DotSegment("..".into())),
            ("/v3/./config", PathRefusal::DotSegment(".".into())),
            ("/v3/%2e%2e/x", PathRefusal::DotSegment("%2e%2e".into())),
            ("/v3/%2E./x", PathRefusal::DotSegment("%2E.".into())),
            ("/v3/tasks/..", PathRefusal::DotSegment("..".into())),
            ("/v3/..%2fx", PathRefusal::EncodedSeparator("..%2fx".into())),
            ("/v3/a%2Fb", PathRefusal::EncodedSeparator("a%2Fb".into())),
            ("/v3/a%5cb", PathRefusal::EncodedSeparator("a%5cb".into())),
            ("/v3//x", PathRefusal::EmptySegment),
            ("/v3/", PathRefusal::EmptySegment),
            ("/v3/tasks/", PathRefusal::EmptySegment),
            ("/v3/a\\b", PathRefusal::BadCharacter),
            ("/v3/..;/x", PathRefusal::BadCharacter),
            ("/v3/a%3bb", PathRefusal::BadCharacter),
            ("/v3/a%00b", PathRefusal::BadCharacter),
            ("/v3/a%zz", PathRefusal::BadCharacter),
            ("/v3/a%2", PathRefusal::BadCharacter),
            ("/v3/a%", PathRefusal::BadCharacter),
            ("/v3/%ff", PathRefusal::BadCharacter),
            ("/v3/a{b}", PathRefusal::BadCharacter),
            ("/v3/a b", PathRefusal::BadCharacter),
            ("/v3/a\"b", PathRefusal::BadCharacter),
        ] {
            assert_eq!(ProxyPath::parse(path), Err(refusal), "{path}");
        }
    }

    #[test]
    fn hop_by_hop_and_credential_headers_stay_behind() {
        let tokens = connection_tokens(["keep-alive, X-Private"].into_iter());
        for name in [
            "Connection",
            "Authorization",
            "X-Auth-Token",
            "x-private",
            "Host",
            "Cookie",
        ] {
            assert!(is_request_header_dropped(name, &tokens), "{name}");
        }
        for name in ["Content-Type", "X-Language", "X-Project-Id", "User-Agent"] {
            assert!(!is_request_header_dropped(name, &tokens), "{name}");
        }
        assert!(is_response_header_dropped("Set-Cookie", &[]));
        assert!(!is_response_header_dropped("X-Request-Id", &[]));
    }
}
