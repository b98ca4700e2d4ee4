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
