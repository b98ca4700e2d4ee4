//! Property tests of the upload body parser: arbitrary input never panics and never
//! maps to a 5xx, and it accepts exactly what the manual's body rules (docs/agents.md) accept.

use actix_web::ResponseError;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sms_audit::domain::upload_body::{UploadBody, DEFAULT_MAX_RESULTS};
use sms_audit::http::error::ApiError;

/// The manual's body rules ("The upload endpoint"), written against serde_json's
/// model independently of the parser.
fn oracle_accepts(v: &Value) -> bool {
    let Value::Object(top) = v else { return false };
    let count_ok = |v: Option<&Value>| v.and_then(Value::as_u64).is_some_and(|n| n <= 1_000_000);
    let items_ok = match top.get("consistency_result") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => {
            items.len() <= DEFAULT_MAX_RESULTS
                && items.iter().all(|item| {
                    let Value::Object(o) = item else { return false };
                    o.get("dir_check")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.chars().count() <= 1024)
                        && [
                            "num_total_files",
                            "num_different_files",
                            "num_target_miss_files",
                            "num_target_more_files",
                        ]
                        .iter()
                        .all(|f| count_ok(o.get(*f)))
                })
        }
        Some(_) => false,
    };
    let finished_ok = match top.get("finished_time") {
        None | Some(Value::Null) => true,
        Some(v) => v.as_u64().is_some_and(|n| n <= 100_000_000_000),
    };
    items_ok && finished_ok
}

fn scalar() -> BoxedStrategy<Value> {
    (prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0u64..=1_000_000).prop_map(|n| json!(n)),
        prop_oneof![
            Just(0u64),
            Just(1_000_000),
            Just(1_000_001),
            Just(100_000_000_000),
            Just(100_000_000_001),
            Just(u64::MAX)
        ]
        .prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!(1.0)),
        Just(json!(5.0e3)),
        "[a-z/ ]{0,12}".prop_map(Value::String),
        Just(Value::String("5".into())),
    ])
    .boxed()
}

fn dir_check() -> BoxedStrategy<Value> {
    (prop_oneof![
        4 => "[/a-zé<>\"\\\\ ]{0,40}".prop_map(Value::String),
        1 => (1020usize..1030).prop_map(|n| Value::String("é".repeat(n))),
        1 => scalar(),
    ])
    .boxed()
}

fn count() -> BoxedStrategy<Value> {
    (prop_oneof![4 => (0u64..=1_000_000).prop_map(|n| json!(n)), 1 => scalar()]).boxed()
}

fn item() -> BoxedStrategy<Value> {
    let fields = (
        prop::option::weighted(0.95, dir_check()),
        prop::option::weighted(0.95, count()),
        prop::option::weighted(0.95, count()),
        prop::option::weighted(0.95, count()),
        prop::option::weighted(0.95, count()),
        prop::option::weighted(0.1, scalar()),
    );
    prop_oneof![
        10 => fields.prop_map(|(d, t, m, x, y, extra)| {
            let mut o = Map::new();
            let names = ["dir_check", "num_total_files", "num_different_files", "num_target_miss_files", "num_target_more_files", "comment"];
            for (name, v) in names.iter().zip([d, t, m, x, y, extra]) {
                if let Some(v) = v {
                    o.insert(name.to_string(), v);
                }
            }
            Value::Object(o)
        }),
        1 => scalar(),
    ]
    .boxed()
}

fn body() -> BoxedStrategy<Value> {
    let results = prop_oneof![
        8 => prop::collection::vec(item(), 0..34).prop_map(Value::Array),
        1 => scalar(),
    ];
    let top = (
        prop::option::weighted(0.9, results),
        prop::option::weighted(0.3, scalar()),
        prop::option::weighted(0.2, scalar()),
    )
        .prop_map(|(r, f, extra)| {
            let mut o = Map::new();
            if let Some(r) = r {
                o.insert("consistency_result".into(), r);
            }
            if let Some(f) = f {
                o.insert("finished_time".into(), f);
            }
            if let Some(e) = extra {
                o.insert("agent_version".into(), e);
            }
            Value::Object(o)
        });
    (prop_oneof![10 => top, 1 => scalar(), 1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array)])
    .boxed()
}

fn status_of(result: &Result<UploadBody, sms_audit::domain::BodyError>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(e) => ApiError::from(e.clone()).status_code().as_u16(),
    }
}

proptest! {
    // 10,000 cases a property; PROPTEST_CASES=N runs more (scripts/deep-proptest.sh).
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
    ))]

    #[test]
    fn arbitrary_bytes_never_panic_and_never_5xx(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let result = UploadBody::parse(&bytes, DEFAULT_MAX_RESULTS);
        let status = status_of(&result);
        prop_assert!(status == 200 || status == 400);
    }

    #[test]
    fn arbitrary_text_never_panics_and_never_5xx(text in "[\\[\\]{}\",:0-9a-z.eE+\\- \\\\]{0,200}") {
        let status = status_of(&UploadBody::parse(text.as_bytes(), DEFAULT_MAX_RESULTS));
        prop_assert!(status == 200 || status == 400);
    }

    #[test]
    fn accepts_exactly_what_the_rules_accept(value in body()) {
        let text = serde_json::to_string(&value).unwrap();
        let result = UploadBody::parse(text.as_bytes(), DEFAULT_MAX_RESULTS);
        prop_assert_eq!(result.is_ok(), oracle_accepts(&value), "{}", text);
        match result {
            Ok(parsed) => {
                let items = value.get("consistency_result").and_then(Value::as_array).cloned().unwrap_or_default();
                prop_assert_eq!(parsed.results.len(), items.len());
                for (r, v) in parsed.results.iter().zip(&items) {
                    prop_assert_eq!(r.dir_check.as_str(), v["dir_check"].as_str().unwrap());
                    prop_assert_eq!(u64::from(r.num_total_files.get()), v["num_total_files"].as_u64().unwrap());
                    prop_assert_eq!(u64::from(r.num_target_more_files.get()), v["num_target_more_files"].as_u64().unwrap());
                }
                prop_assert_eq!(parsed.finished_time.map(|t| t as u64), value.get("finished_time").and_then(Value::as_u64));
            }
            Err(e) => {
                prop_assert_eq!(status_of(&Err(e.clone())), 400);
                prop_assert!(!e.message().is_empty());
                if let Some(params) = e.params() {
                    prop_assert!(!params.is_empty());
                    prop_assert!(e.message().starts_with(&params[0]));
                }
            }
        }
    }

    #[test]
    fn a_duplicated_key_is_always_refused(value in body(), pick in any::<prop::sample::Index>()) {
        let Value::Object(top) = &value else { return Ok(()) };
        if top.is_empty() { return Ok(()) }
        let keys: Vec<&String> = top.keys().collect();
        let key = keys[pick.index(keys.len())];
        let text = serde_json::to_string(&value).unwrap();
        let dup = format!("{{{}:null,{}", serde_json::to_string(key).unwrap(), &text[1..]);
        let err = UploadBody::parse(dup.as_bytes(), DEFAULT_MAX_RESULTS).unwrap_err();
        prop_assert!(err.params().unwrap_or_default().contains(key), "{}", dup);
    }
}

/// The generator must produce both outcomes often, or the property above says little.
#[test]
fn generator_covers_accepted_and_refused_bodies() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = body();
    let accepted = (0..1000)
        .filter(|_| oracle_accepts(&strategy.new_tree(&mut runner).unwrap().current()))
        .count();
    assert!(
        (100..=900).contains(&accepted),
        "accepted {accepted} of 1000"
    );
}
