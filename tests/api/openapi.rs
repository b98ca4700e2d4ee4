//! `/api/v1/openapi.json`: generated from the handlers; every route the app
//! registers outside the HTML pages is described, and nothing else.
//! (`scripts/openapi-check.sh` validates the document with openapi-spec-validator.)

use std::collections::BTreeSet;

use crate::helpers::TestApp;

/// The route patterns registered in `src/http` (read from the source, as the
/// layering test reads it), parameters without their regular expressions.
fn registered_routes() -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/http"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices('"') {
                let rest = &text[i + 1..];
                let Some(end) = rest.find('"') else { continue };
                let literal = &rest[..end];
                let before = text[..i].trim_end();
                let registered = before.ends_with("get_resource(")
                    || before.ends_with("web::resource(")
                    || (before.ends_with('[') || before.ends_with(','))
                        && literal.ends_with("}/consistency-result");
                if registered && literal.starts_with('/') {
                    routes.insert(without_regex(literal));
                }
            }
        }
    }
    routes
}

fn without_regex(pattern: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for c in pattern.chars() {
        match c {
            ':' if out.rfind('{') > out.rfind('}') => skipping = true,
            '}' => {
                skipping = false;
                out.push('}');
            }
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

/// What is not an HTML page: the SMS endpoint, the API, the log, operations.
fn is_api(route: &str) -> bool {
    route.starts_with("/api/")
        || route.starts_with("/v3/")
        || route.starts_with("/tile/")
        || matches!(route, "/healthz" | "/readyz" | "/metrics" | "/checkpoint")
}

#[tokio::test]
async fn every_registered_api_route_is_described_and_nothing_else() {
    let app = TestApp::spawn().await;
    let reply = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "open to anyone, like /healthz");
    let doc: serde_json::Value = reply.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // Every operation has an id of its own (validators and client generators
    // refuse a document where two share one).
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(
                ids.insert(id.clone()),
                "{method} {path}: operationId {id:?} is taken"
            );
        }
    }
    let described: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let registered: BTreeSet<String> = registered_routes()
        .into_iter()
        .filter(|r| is_api(r))
        .collect();
    assert!(registered.len() >= 25, "{registered:#?}");
    let missing: Vec<_> = registered.difference(&described).collect();
    assert!(
        missing.is_empty(),
        "registered but not described: {missing:#?}"
    );
    let stale: Vec<_> = described.difference(&registered).collect();
    assert!(stale.is_empty(), "described but not registered: {stale:#?}");

    // The upload endpoint with its error table, its body and how to authenticate.
    let upload = &doc["paths"]["/v3/tasks/{task_id}/consistency-result"]["post"];
    for status in [
        "200", "400", "401", "403", "404", "413", "429", "500", "503",
    ] {
        assert!(
            upload["responses"][status].is_object(),
            "no {status}: {upload}"
        );
    }
    assert!(upload["responses"]["401"]["description"]
        .as_str()
        .unwrap()
        .contains("APIGW.0301"));
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["UploadBodyDoc"]["properties"]["consistency_result"].is_object(),
        "{schemas}"
    );
    for scheme in ["token", "aksk", "session"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    // Every operation says what it answers.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"]["200"]["description"].is_string(),
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn the_upload_bodys_documented_limits_are_the_parsers() {
    use sms_audit::domain::upload_body::{
        COUNT_FIELDS, DEFAULT_MAX_RESULTS, MAX_COUNT, MAX_DIR_CHECK_CHARS, MAX_FINISHED_TIME,
    };
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &doc["components"]["schemas"];
    let body = &schemas["UploadBodyDoc"];
    let item = &schemas["ConsistencyResultDoc"];
    let results = &body["properties"]["consistency_result"];
    assert_eq!(
        results["maxItems"].as_u64(),
        Some(DEFAULT_MAX_RESULTS as u64),
        "{results}"
    );
    let required: Vec<&str> = body["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        !required.contains(&"consistency_result"),
        "null or absent means no results: {body}"
    );
    let finished = &body["properties"]["finished_time"];
    assert_eq!(finished["minimum"].as_u64(), Some(0), "{finished}");
    assert_eq!(
        finished["maximum"].as_u64(),
        Some(MAX_FINISHED_TIME),
        "{finished}"
    );
    let dir = &item["properties"]["dir_check"];
    assert_eq!(
        dir["maxLength"].as_u64(),
        Some(MAX_DIR_CHECK_CHARS as u64),
        "{dir}"
    );
    for name in COUNT_FIELDS {
        let count = &item["properties"][name];
        assert_eq!(count["minimum"].as_u64(), Some(0), "{name}: {count}");
        assert_eq!(
            count["maximum"].as_u64(),
            Some(MAX_COUNT),
            "{name}: {count}"
        );
    }
    let item_required: Vec<&str> = item["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for name in COUNT_FIELDS.iter().chain(&["dir_check"]) {
        assert!(item_required.contains(name), "{name} is required: {item}");
    }

    // And the parser agrees at each limit: the longest directory and the largest
    // count are stored, one more is refused.
    let item_with = |dir: &str, total: u64| {
        format!(
            r#"{{"consistency_result":[{{"dir_check":"{dir}","num_total_files":{total},"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}}]}}"#
        )
    };
    let longest = "d".repeat(MAX_DIR_CHECK_CHARS);
    let token = app.admin_token.clone();
    assert_eq!(
        app.upload(
            crate::helpers::TASK,
            &token,
            &item_with(&longest, MAX_COUNT)
        )
        .await
        .status,
        200
    );
    for refused in [
        item_with(&format!("{longest}d"), 0),
        item_with("/", MAX_COUNT + 1),
    ] {
        assert_eq!(
            app.upload(crate::helpers::TASK, &token, &refused)
                .await
                .status,
            400
        );
    }
}
