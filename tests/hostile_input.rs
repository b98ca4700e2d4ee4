//! Hostile input at scale for the parsers an attacker reaches first: the
//! `Authorization` header, the canonical request and signature check, the query
//! string, times, task ids, replay filters, and the paths the pass-through
//! (`--proxy`) sends on. 10,000 cases a property by default;
//! `PROPTEST_CASES=N` runs more (`scripts/deep-proptest.sh` runs 1,000,000).

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use proptest::prelude::*;
use sms_audit::domain::proxy::ProxyPath;
use sms_audit::domain::signing::{
    format_sdk_date, parse_query, sha256_hex, verify, AuthorizationHeader, CanonicalRequest,
    ReceivedRequest, SignatureError, Signer,
};
use sms_audit::domain::{parse_time_arg, parse_time_field, RawReplayFilter, TaskId};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A request as an SDK signs it, and the pieces to check it with.
struct Signed {
    method: String,
    path: String,
    raw_query: String,
    headers: Vec<(String, String)>,
    authorization: String,
}

fn signed(
    method: &str,
    segments: &[String],
    query: &[(String, String)],
    extra: &[(String, String)],
    body: &[u8],
    secret: &str,
) -> Signed {
    let path = format!("/{}", segments.join("/"));
    let raw_query = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let date = format_sdk_date(chrono::Utc::now());
    let mut headers = vec![
        ("host".to_string(), "sms.example".to_string()),
        ("x-sdk-date".to_string(), date.clone()),
    ];
    headers.extend(extra.iter().cloned());
    let authorization = Signer::new("AKHOSTILE", secret).authorization(
        &CanonicalRequest {
            method,
            path: &path,
            query,
            headers: &headers,
            payload_hash: &sha256_hex(body),
        },
        &date,
    );
    Signed {
        method: method.into(),
        path,
        raw_query,
        headers,
        authorization,
    }
}

fn check(s: &Signed, body: &[u8], secret: &str) -> Result<(), SignatureError> {
    let auth = AuthorizationHeader::parse(&s.authorization)?;
    let lookup = |name: &str| {
        s.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    verify(
        &auth,
        &ReceivedRequest {
            method: &s.method,
            path: &s.path,
            raw_query: &s.raw_query,
            header: &lookup,
            body,
        },
        secret,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_authorization_parser_never_panics(value in any::<String>()) {
        let _ = AuthorizationHeader::parse(&value);
    }

    #[test]
    fn near_valid_authorization_headers_parse_only_when_whole(
        access in "[A-Z0-9]{0,24}",
        names in prop::collection::vec("[a-z0-9-]{0,12}", 0..6),
        signature in "[0-9a-fA-F]{0,70}",
        separator in prop::sample::select(vec![", ", ",", " , ", ",  "]),
        prefix in prop::sample::select(vec!["SDK-HMAC-SHA256 ", "SDK-HMAC-SHA256  ", "sdk-hmac-sha256 ", "SDK-HMAC-SHA256"]),
    ) {
        let value = format!(
            "{prefix}Access={access}{separator}SignedHeaders={}{separator}Signature={signature}",
            names.join(";")
        );
        if let Ok(parsed) = AuthorizationHeader::parse(&value) {
            prop_assert_eq!(&parsed.access_key, &access);
            prop_assert!(parsed.signed_headers.iter().any(|h| h == "host"));
            prop_assert!(parsed.signed_headers.iter().any(|h| h == "x-sdk-date"));
        }
    }

    #[test]
    fn a_signed_request_verifies_and_every_change_breaks_it(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        segments in prop::collection::vec("[a-zA-Z0-9._~-]{1,10}", 1..4),
        query in prop::collection::vec(("[a-z_]{1,6}", "[ -~]{0,8}"), 0..4),
        // Distinct names: a client sends each header once.
        extra in prop::collection::btree_map("x-[a-z]{1,8}", "[!-~]{0,16}", 0..3),
        body in prop::collection::vec(any::<u8>(), 0..200),
        flip in any::<prop::sample::Index>(),
    ) {
        let extra: Vec<(String, String)> = extra.into_iter().collect();
        let s = signed(method, &segments, &query, &extra, &body, "the-secret");
        prop_assert_eq!(check(&s, &body, "the-secret"), Ok(()));
        prop_assert_eq!(check(&s, &body, "another-secret"), Err(SignatureError::Mismatch));
        let mut changed = body.clone();
        if changed.is_empty() {
            changed.push(b'x');
        } else {
            let i = flip.index(changed.len());
            changed[i] ^= 1;
        }
        prop_assert_eq!(check(&s, &changed, "the-secret"), Err(SignatureError::Mismatch));
    }

    #[test]
    fn the_query_parser_never_panics(raw in any::<String>()) {
        for (k, v) in parse_query(&raw) {
            prop_assert!(!k.is_empty() || !v.is_empty() || raw.contains('='));
        }
    }

    #[test]
    fn time_parsers_never_panic(text in any::<String>(), structured in "[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}(T[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}(\\.[0-9]{1,12})?([+-][0-9]{2}:[0-9]{2}|Z)?)?") {
        let _ = parse_time_arg(&text);
        let _ = parse_time_field("since", Some(&text));
        let _ = parse_time_arg(&structured);
    }

    #[test]
    fn task_ids_are_exactly_the_allowed_ones(text in any::<String>(), shaped in "[A-Za-z0-9_-]{0,40}") {
        for s in [&text, &shaped] {
            let allowed = !s.is_empty()
                && s.len() <= 36
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            prop_assert_eq!(TaskId::parse(s).is_ok(), allowed, "{:?}", s);
        }
    }

    #[test]
    fn replay_filters_from_any_json_never_panic(
        tasks in prop::collection::vec("[ -~]{0,12}", 0..4),
        since in "[ -~]{0,30}",
        state in "[a-z]{0,12}",
        latest in prop::sample::select(vec!["true", "false", "\"true\"", "\"on\"", "1", "null"]),
    ) {
        let json = serde_json::json!({"tasks": tasks, "since": since, "state": state}).to_string();
        let json = json.trim_end_matches('}').to_string() + &format!(r#","latest_per_task":{latest}}}"#);
        if let Ok(raw) = serde_json::from_str::<RawReplayFilter>(&json) {
            let _ = raw.parse();
        }
    }

    /// A path the pass-through accepts reaches the upstream exactly as sent: the
    /// HTTP client's URL parser (which resolves dot segments, also encoded ones)
    /// changes nothing, and it stays under `/v3/`, also below an endpoint's prefix.
    #[test]
    fn accepted_proxy_paths_reach_the_upstream_unchanged(
        segments in prop::collection::vec(
            prop_oneof![
                Just(".".to_string()), Just("..".to_string()), Just("%2e".to_string()),
                Just("%2E%2e".to_string()), Just(".%2e".to_string()), Just("%2f".to_string()),
                Just("%5C".to_string()), Just("\\".to_string()), Just(";".to_string()),
                Just("..;".to_string()), Just(String::new()), Just("%".to_string()),
                Just("%00".to_string()), Just("tasks".to_string()),
                "[A-Za-z0-9._~%-]{1,12}",
                any::<String>(),
            ],
            0..6,
        ),
        prefix in prop::sample::select(vec!["", "/sms", "/a/b"]),
    ) {
        let raw = format!("/v3/{}", segments.join("/"));
        if let Ok(path) = ProxyPath::parse(&raw) {
            let url = url::Url::parse(&format!("https://sms.example.com{prefix}{}", path.as_str()));
            let url = url.expect("an accepted path makes a URL");
            prop_assert_eq!(url.path(), format!("{prefix}{raw}"));
            let under_v3 = format!("{}/v3/", prefix);
            prop_assert!(url.path().starts_with(&under_v3));
        }
    }
}
