//! What the pass-through to SMS (`serve --proxy`) lets through: which paths, and
//! which headers go on. Paths are passed on exactly as sent, so anything an HTTP
//! library or a server behind SMS might resolve differently (dot segments, encoded
//! separators, matrix parameters) is refused rather than rewritten.

use percent_encoding::percent_decode_str;

/// A path under `/v3/` that is safe to send on byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPath {
    raw: String,
    /// The percent-decoded segments after the leading `/` (`v3` first, but for
    /// `/`, which has none, and `/v<N>`).
    segments: Vec<String>,
}

/// Why a path is not passed on even before its operation is looked up.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PathRefusal {
    /// Not under `/v3/`, nor `/` or `/v<N>` (the API's versions).
    #[error(
        "only SMS's paths (under /v3/, and / and /v<N> for its API versions) are passed on to SMS"
    )]
    OutsideV3,
    /// A `.` or `..` segment, which a server further on could resolve.
    #[error("the path has a dot segment ({0:?}); paths are passed on as sent and may not climb")]
    DotSegment(String),
    /// An encoded `/` or `\`, which could be decoded into another path.
    #[error("the path has an encoded slash or backslash in {0:?}")]
    EncodedSeparator(String),
    /// An empty segment (`//`).
    #[error("the path has an empty segment (\"//\" or a trailing \"/\")")]
    EmptySegment,
    /// A `%25`, which could be decoded twice.
    #[error("the path has an encoded % in {0:?} (a path decoded twice would change)")]
    DoubleEncoded(String),
    /// A character a path may not hold (control, space, non-ASCII, …).
    #[error("the path has a character that must be percent-encoded (a space, a backslash, a semicolon, {{ }} and the like) or a broken %-escape")]
    BadCharacter,
}

/// What a call is about, for credentials limited to some tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A template that names a task: `/v3/tasks/{task_id}…`,
    /// `/v3/{task_id}/update-network-check-info`.
    Task(&'a str),
    /// A template that names a source server: `/v3/sources/{source_id}…`.
    Source(&'a str),
    /// Every task or source of the project: `/v3/tasks`, `/v3/sources` (reading),
    /// and the bulk operations (`…/delete`, `…/overview`, the results export).
    Project,
    /// `POST /v3/sources`: an agent registering its own source server.
    NewSource,
    /// Not about a task or a source (`/v3/config`, `/v3/migprojects…`, …).
    Unscoped,
}

/// The SMS API's operations (method, path template), as the official SDK's
/// `SmsClient` names them; the pass-through takes no other. Literal segments
/// match exactly (case too); `{…}` matches one segment.
pub const OPERATIONS: &[(&str, &str)] = &[
    // ListApiVersion and ShowApiVersion.
    ("GET", "/"),
    ("GET", "/{version}"),
    ("GET", "/v3/config"),
    ("GET", "/v3/errors"),
    ("GET", "/v3/migprojects"),
    ("POST", "/v3/migprojects"),
    ("GET", "/v3/migprojects/{mig_project_id}"),
    ("PUT", "/v3/migprojects/{mig_project_id}"),
    ("DELETE", "/v3/migprojects/{mig_project_id}"),
    ("PUT", "/v3/migprojects/{mig_project_id}/default"),
    ("GET", "/v3/privacy-agreements"),
    ("POST", "/v3/privacy-agreements"),
    ("GET", "/v3/sources"),
    ("POST", "/v3/sources"),
    ("POST", "/v3/sources/delete"),
    ("GET", "/v3/sources/overview"),
    ("GET", "/v3/sources/{source_id}"),
    ("PUT", "/v3/sources/{source_id}"),
    ("DELETE", "/v3/sources/{source_id}"),
    ("PUT", "/v3/sources/{source_id}/changestate"),
    ("PUT", "/v3/sources/{source_id}/diskinfo"),
    ("GET", "/v3/sources/{source_id}/command"),
    ("POST", "/v3/sources/{source_id}/command_result"),
    ("GET", "/v3/tasks"),
    ("POST", "/v3/tasks"),
    ("POST", "/v3/tasks/delete"),
    ("POST", "/v3/tasks/consistency-results/export"),
    ("GET", "/v3/tasks/{task_id}"),
    ("PUT", "/v3/tasks/{task_id}"),
    ("DELETE", "/v3/tasks/{task_id}"),
    ("POST", "/v3/tasks/{task_id}/action"),
    ("GET", "/v3/tasks/{task_id}/certkey"),
    ("GET", "/v3/tasks/{task_id}/configuration-setting"),
    ("POST", "/v3/tasks/{task_id}/configuration-setting"),
    ("GET", "/v3/tasks/{task_id}/consistency-result"),
    ("POST", "/v3/tasks/{task_id}/log"),
    ("GET", "/v3/tasks/{task_id}/passphrase"),
    ("PUT", "/v3/tasks/{task_id}/progress"),
    ("GET", "/v3/tasks/{task_id}/speed-limit"),
    ("POST", "/v3/tasks/{task_id}/speed-limit"),
    ("GET", "/v3/vm/templates"),
    ("POST", "/v3/vm/templates"),
    ("POST", "/v3/vm/templates/delete"),
    ("GET", "/v3/vm/templates/{id}"),
    ("PUT", "/v3/vm/templates/{id}"),
    ("DELETE", "/v3/vm/templates/{id}"),
    ("GET", "/v3/vm/templates/{id}/target-password"),
    ("POST", "/v3/{task_id}/update-network-check-info"),
];

/// Why a call that is well formed is still not passed on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OperationRefusal {
    /// No SMS operation has this path.
    #[error("{0} is not a path of the SMS API (paths are matched exactly, case too)")]
    UnknownPath(String),
    /// SMS has the path, but not with this method.
    #[error("{method} is not an SMS operation on {template}")]
    Method {
        /// As sent.
        method: String,
        /// The operation's path template.
        template: &'static str,
        /// The methods SMS takes there, for `Allow`.
        allow: String,
    },
}

impl ProxyPath {
    /// `raw` is the path as it came on the wire (still percent-encoded).
    pub fn parse(raw: &str) -> Result<Self, PathRefusal> {
        if raw == "/" {
            return Ok(Self {
                raw: raw.to_string(),
                segments: Vec::new(),
            });
        }
        let version = raw
            .strip_prefix("/v")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !version && !raw.starts_with("/v3/") {
            return Err(PathRefusal::OutsideV3);
        }
        let mut segments = Vec::new();
        for segment in raw[1..].split('/') {
            if segment.is_empty() {
                return Err(PathRefusal::EmptySegment);
            }
            if !segment.bytes().all(is_path_byte) || !well_escaped(segment) {
                return Err(PathRefusal::BadCharacter);
            }
            // `%25` decodes to `%`: a server that decodes twice sees another path.
            if segment.to_ascii_lowercase().contains("%25") {
                return Err(PathRefusal::DoubleEncoded(segment.to_string()));
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

    /// The SMS operation `method` on this path is, and what it is about; the
    /// most literal template wins (`/v3/tasks/delete` over `/v3/tasks/{task_id}`).
    /// HEAD goes wherever GET does.
    pub fn operation(&self, method: &str) -> Result<(&'static str, Subject<'_>), OperationRefusal> {
        let raw: Vec<&str> = self.raw[1..].split('/').collect();
        let mut best: Option<(Vec<bool>, &'static str)> = None;
        for (_, template) in OPERATIONS {
            let parts: Vec<&str> = template[1..].split('/').collect();
            if parts.len() != raw.len() {
                continue;
            }
            let fits = parts
                .iter()
                .zip(&raw)
                .all(|(part, got)| part.starts_with('{') || part == got);
            if !fits {
                continue;
            }
            let literal: Vec<bool> = parts.iter().map(|p| !p.starts_with('{')).collect();
            if best.as_ref().is_none_or(|(b, _)| literal > *b) {
                best = Some((literal, template));
            }
        }
        let Some((_, template)) = best else {
            return Err(OperationRefusal::UnknownPath(self.raw.clone()));
        };
        let methods: Vec<&str> = OPERATIONS
            .iter()
            .filter(|(_, t)| *t == template)
            .map(|(m, _)| *m)
            .collect();
        let wanted = if method == "HEAD" { "GET" } else { method };
        if !methods.contains(&wanted) {
            let mut allow = methods.clone();
            if allow.contains(&"GET") {
                allow.push("HEAD");
            }
            return Err(OperationRefusal::Method {
                method: method.to_string(),
                template,
                allow: allow.join(", "),
            });
        }
        let placeholder = |name: &str| {
            template[1..]
                .split('/')
                .position(|p| p == name)
                .map(|i| self.segments[i].as_str())
        };
        let subject = if let Some(task) = placeholder("{task_id}") {
            Subject::Task(task)
        } else if let Some(source) = placeholder("{source_id}") {
            Subject::Source(source)
        } else {
            match (wanted, template) {
                ("POST", "/v3/sources") => Subject::NewSource,
                (
                    _,
                    "/v3/tasks"
                    | "/v3/sources"
                    | "/v3/tasks/delete"
                    | "/v3/sources/delete"
                    | "/v3/sources/overview"
                    | "/v3/tasks/consistency-results/export",
                ) => Subject::Project,
                _ => Subject::Unscoped,
            }
        };
        Ok((template, subject))
    }

    /// The path as received.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The task of `GET /v3/tasks/{task_id}/consistency-result` (ShowConsistencyResult),
    /// whose answer the passive reconciliation reads.
    pub fn consistency_result_task(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [v3, tasks, task, last]
                if v3 == "v3" && tasks == "tasks" && last == "consistency-result" =>
            {
                Some(task.as_str())
            }
            _ => None,
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
        "via",
        // Headers some servers and gateways take as the real path, method or client.
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "true-client-ip",
        "x-real-ip",
        "x-client-ip",
    ];
    let name = name.to_ascii_lowercase();
    DROPPED.contains(&name.as_str())
        || name.starts_with("x-forwarded-")
        || connection_tokens.contains(&name)
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
        let subject = |method: &str, path: &str| {
            let p = ProxyPath::parse(path).unwrap();
            p.operation(method).map(|(_, s)| format!("{s:?}"))
        };
        let p = ProxyPath::parse("/v3/tasks/abc-1/progress").unwrap();
        assert_eq!(p.as_str(), "/v3/tasks/abc-1/progress");
        for (method, path, expected) in [
            ("PUT", "/v3/tasks/abc-1/progress", "Task(\"abc-1\")"),
            ("GET", "/v3/tasks", "Project"),
            ("POST", "/v3/tasks/delete", "Project"),
            ("POST", "/v3/tasks/consistency-results/export", "Project"),
            ("POST", "/v3/t1/update-network-check-info", "Task(\"t1\")"),
            ("GET", "/v3/config", "Unscoped"),
            ("HEAD", "/v3/config", "Unscoped"),
            ("PUT", "/v3/sources/s1/changestate", "Source(\"s1\")"),
            ("POST", "/v3/sources", "NewSource"),
            ("GET", "/v3/sources", "Project"),
            ("GET", "/v3/sources/overview", "Project"),
            ("GET", "/v3/tasks/a%2Db", "Task(\"a-b\")"),
            ("GET", "/", "Unscoped"),
            ("GET", "/v3", "Unscoped"),
            ("GET", "/v1", "Unscoped"),
        ] {
            assert_eq!(
                subject(method, path).as_deref(),
                Ok(expected),
                "{method} {path}"
            );
        }
        assert!(ProxyPath::parse("/v3/tasks/x/certkey")
            .unwrap()
            .answer_is_secret());
        assert!(!ProxyPath::parse("/v3/tasks/x").unwrap().answer_is_secret());
        let task = |p: &str| {
            ProxyPath::parse(p)
                .unwrap()
                .consistency_result_task()
                .map(str::to_string)
        };
        assert_eq!(
            task("/v3/tasks/t-1/consistency-result").as_deref(),
            Some("t-1")
        );
        assert_eq!(
            task("/v3/tasks/t%2D1/consistency-result").as_deref(),
            Some("t-1")
        );
        assert_eq!(task("/v3/tasks/t-1/progress"), None);
        assert_eq!(task("/v3/tasks/consistency-result"), None);
    }

    #[test]
    fn only_the_sms_operations_exactly_as_spelled_are_passed_on() {
        for path in [
            "/v3/Tasks/t2",
            "/v3/TASKS/t2/certkey",
            "/v3/tasks.json",
            "/v3/tasks%20/t2",
            "/v3/tasks~/t2",
            "/v3/t2/Update-Network-Check-Info",
            "/v3/tasks/t1/Consistency-Result",
            "/v3/tasks/t1/consistency-result%20",
            "/v3/%74asks/t2",
            "/v3/tasks/t1/unknown",
        ] {
            let refusal = ProxyPath::parse(path).and_then(|p| {
                p.operation("GET")
                    .map(|_| ())
                    .map_err(|_| PathRefusal::OutsideV3)
            });
            assert!(refusal.is_err(), "{path}");
        }
        let p = ProxyPath::parse("/v3/tasks/t1").unwrap();
        for method in ["TRACE", "PATCH", "OPTIONS", "POST", "PROPFIND"] {
            assert!(
                matches!(p.operation(method), Err(OperationRefusal::Method { .. })),
                "{method}"
            );
        }
        let Err(OperationRefusal::Method { allow, .. }) = p.operation("TRACE") else {
            unreachable!()
        };
        assert_eq!(allow, "GET, PUT, DELETE, HEAD");
        assert_eq!(
            ProxyPath::parse("/v3/tasks/t1/%252e%252e/t2"),
            Err(PathRefusal::DoubleEncoded("%252e%252e".into()))
        );
    }

    #[test]
    fn paths_that_could_climb_or_split_are_refused() {
        for (path, refusal) in [
            ("/v4/x", PathRefusal::OutsideV3),
            ("/v3x", PathRefusal::OutsideV3),
            ("/v", PathRefusal::OutsideV3),
            ("/v3%2f", PathRefusal::OutsideV3),
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
            "X-Original-URL",
            "X-Rewrite-URL",
            "X-HTTP-Method-Override",
            "X-Forwarded-Prefix",
            "X-Forwarded-Server",
            "X-Forwarded-Port",
            "Via",
            "True-Client-IP",
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
