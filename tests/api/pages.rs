//! The HTML pages: login, every page's key content, escaping, auth and CSRF
//! refusals, paging and filters, export.

use sms_audit::domain::Role;

use crate::helpers::{
    body_with_problems, card_value, eventually, form_value, no_redirects, set_cookie, TestApp,
    EXAMPLE, PATIENCE, TASK,
};

const XSS: &str = "<script>alert(1)</script>";

#[tokio::test]
async fn pages_need_a_login_and_agents_cannot_log_in() {
    let app = TestApp::spawn().await;
    let client = no_redirects();
    for path in [
        "/",
        &format!("/tasks/{TASK}"),
        "/uploads/1",
        "/compare?a=1&b=2",
        "/audit",
    ] {
        let reply = app.send(client.get(format!("{}{path}", app.address))).await;
        assert_eq!(reply.status, 303, "{path}");
        let location = reply.headers["location"].to_str().unwrap();
        assert!(
            location.starts_with("/login?next=%2F"),
            "{path}: {location}"
        );
    }

    let agent = app.add_credential("agent", Role::Agent, None, false);
    let refused = app
        .login(&agent.token)
        .await
        .err()
        .expect("agents cannot log in");
    assert_eq!(refused.status, 403);
    assert!(
        refused.text.contains("agents upload but cannot log in"),
        "{}",
        refused.text
    );
    assert!(set_cookie(&refused.headers, "sms_audit_session").is_none());

    let wrong = app
        .login("not-a-token")
        .await
        .err()
        .expect("unknown token refused");
    assert_eq!(wrong.status, 401);
    assert!(wrong.text.contains("not valid"));

    // A login form posted without its CSRF cookie is refused.
    let form = app.send(client.get(format!("{}/login", app.address))).await;
    let csrf = form_value(&form.text, "csrf_token").unwrap();
    let forged = app
        .send(client.post(format!("{}/login", app.address)).form(&[
            ("token", app.admin_token.as_str()),
            ("csrf_token", csrf.as_str()),
        ]))
        .await;
    assert_eq!(forged.status, 403);
    assert!(set_cookie(&forged.headers, "sms_audit_session").is_none());

    let auditor = app.add_credential("auditor", Role::Auditor, None, false);
    let browser = app
        .login(&auditor.token)
        .await
        .ok()
        .expect("auditors log in");
    let reply = browser.get("/").await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("auditor <small>(auditor)</small>"));
}

#[tokio::test]
async fn session_cookie_is_http_only_strict_and_logout_needs_csrf() {
    let app = TestApp::spawn().await;
    let client = no_redirects();
    let form = app.send(client.get(format!("{}/login", app.address))).await;
    let csrf = form_value(&form.text, "csrf_token").unwrap();
    let login_cookie = set_cookie(&form.headers, "sms_audit_login_csrf").unwrap();
    let reply = app
        .send(
            client
                .post(format!("{}/login", app.address))
                .header("Cookie", login_cookie.split(';').next().unwrap())
                .form(&[
                    ("token", app.admin_token.as_str()),
                    ("csrf_token", csrf.as_str()),
                    ("next", "/audit"),
                ]),
        )
        .await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.headers["location"], "/audit");
    let cookie = set_cookie(&reply.headers, "sms_audit_session").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP here: {cookie}");
    let stored: i64 = app
        .write_conn()
        .query_row(
            "SELECT count(*) FROM sessions WHERE id_sha256 = ?1",
            [sms_audit::domain::signing::sha256_hex(
                cookie
                    .split(';')
                    .next()
                    .unwrap()
                    .split('=')
                    .nth(1)
                    .unwrap()
                    .as_bytes(),
            )],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1, "only the cookie's hash is stored");

    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let refused = browser.post("/logout", &[("csrf_token", "forged")]).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.text.contains("<header class=\"top\">"),
        "403 page in the site's layout"
    );
    assert_eq!(browser.get("/").await.status, 200, "still logged in");
    let out = browser
        .post("/logout", &[("csrf_token", &browser.csrf)])
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(browser.get("/").await.status, 303, "logged out");
}

#[tokio::test]
async fn revoking_a_credential_ends_its_sessions() {
    let app = TestApp::spawn().await;
    let auditor = app.add_credential("auditor", Role::Auditor, None, false);
    let browser = app.login(&auditor.token).await.ok().unwrap();
    assert_eq!(browser.get("/").await.status, 200);
    sms_audit::storage::credentials::revoke(&app.write_conn(), "auditor").unwrap();
    assert_eq!(browser.get("/").await.status, 303);
}

#[tokio::test]
async fn fresh_dashboard_explains_how_to_point_an_agent_here() {
    let app = TestApp::spawn().await;
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("point an agent here"));
    let host = app.address.trim_start_matches("http://");
    assert!(
        page.text.contains(&format!(
            "http://{host}/v3/tasks/TASK_ID/consistency-result"
        )),
        "{}",
        page.text
    );
    assert!(page.text.contains("curl -X POST"));
    assert!(!page.text.contains("id=\"tasks\""));
    // The hint names the running database: run elsewhere, a credential made
    // without it would go to a new one the service does not know.
    let db_flag = sms_audit::domain::shell_word(&format!("--db={}", app.db_path.display()));
    let hint = format!(
        "sms-audit credentials add {} --name agent-01",
        askama_escape(&db_flag)
    );
    assert!(page.text.contains(&hint), "{hint}: {}", page.text);
    let login = reqwest::get(format!("{}/login", app.address))
        .await
        .unwrap();
    let login = login.text().await.unwrap();
    assert!(
        login.contains(&format!(
            "sms-audit credentials add {} --name NAME",
            askama_escape(&db_flag)
        )),
        "{login}"
    );
    for header in [
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert!(page.headers.contains_key(header), "{header}");
    }
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline")
            && !csp.contains("script-src")
    );
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert!(!page.text.contains("<script"), "no script at all");
}

#[tokio::test]
async fn dashboard_lists_tasks_with_totals_trend_regressions_search_sort_and_paging() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    // web-01 gets better, db-02 gets worse.
    for (task, different) in [("web-01", 5), ("db-02", 1), ("web-01", 2), ("db-02", 7)] {
        assert_eq!(
            app.upload(task, &t, &body_with_problems("/data", different))
                .await
                .status,
            200
        );
    }
    let task = sms_audit::domain::TaskId::parse("db-02").unwrap();
    sms_audit::storage::tasks::register_task(&app.write_conn(), &task, Some("Database server"))
        .unwrap();
    let browser = app.login(&t).await.ok().unwrap();

    let page = browser.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"total-tasks\">2<"), "totals");
    assert!(page.text.contains("id=\"total-uploads\">4<"));
    assert!(page.text.contains("Database server"));
    let db_row = row_of(&page.text, "db-02");
    assert!(db_row.contains("regressed"), "{db_row}");
    assert!(db_row.contains("<svg class=\"spark\""), "sparkline");
    assert!(
        db_row.contains("latest 8"),
        "7 different + 1 missing: {db_row}"
    );
    assert!(!row_of(&page.text, "web-01").contains("badge bad"));
    // Default order: latest upload first.
    assert!(page.text.find("db-02").unwrap() < page.text.find("web-01").unwrap());

    let sorted = browser.get("/?sort=task&dir=asc").await;
    assert!(sorted.text.find(">db-02<").unwrap() < sorted.text.find(">web-01<").unwrap());
    let sorted = browser.get("/?sort=task&dir=desc").await;
    assert!(sorted.text.find(">web-01<").unwrap() < sorted.text.find(">db-02<").unwrap());

    let search = browser.get("/?q=database").await;
    assert!(search.text.contains(">db-02<") && !search.text.contains(">web-01<"));
    let search = browser.get("/?q=web").await;
    assert!(!search.text.contains(">db-02<") && search.text.contains(">web-01<"));
    let none = browser.get("/?q=%25").await;
    assert!(
        none.text.contains("No task matches"),
        "LIKE wildcards are literal"
    );

    // 50 tasks a page.
    for i in 0..50 {
        assert_eq!(
            app.upload(&format!("bulk-{i:02}"), &t, EXAMPLE)
                .await
                .status,
            200
        );
    }
    let first = browser.get("/?sort=task&dir=asc").await;
    assert!(first.text.contains("1–50 of 52"), "{}", first.text);
    assert!(first.text.contains("rel=\"next\""));
    let second = browser.get("/?sort=task&dir=asc&page=2").await;
    assert!(second.text.contains("51–52 of 52"));
    assert!(second.text.contains(">web-01<") && second.text.contains("rel=\"prev\""));
}

/// The table row holding `needle`.
fn row_of<'a>(html: &'a str, needle: &str) -> &'a str {
    let at = html
        .find(&format!(">{needle}<"))
        .unwrap_or_else(|| panic!("{needle} not on the page"));
    let start = html[..at].rfind("<tr").unwrap();
    let end = at + html[at..].find("</tr>").unwrap();
    &html[start..end]
}

#[tokio::test]
async fn task_page_charts_pages_and_filters_its_history() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    let differents = [
        3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3,
    ];
    for d in differents {
        assert_eq!(
            app.upload(TASK, &t, &body_with_problems("/data", d))
                .await
                .status,
            200
        );
    }
    let browser = app.login(&t).await.ok().unwrap();
    let page = browser.get(&format!("/tasks/{TASK}")).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<figure class=\"chart\""));
    assert_eq!(page.text.matches("<polyline").count(), 4, "four series");
    assert!(page.text.contains("latest 28 uploads"));
    assert!(
        page.text.contains("option value=\"/data\""),
        "directory choice"
    );
    // Newest first, 25 a page.
    let first_row = page.text.find("href=\"/uploads/28\"").unwrap();
    assert!(first_row < page.text.find("href=\"/uploads/27\"").unwrap());
    assert!(!page.text.contains("href=\"/uploads/3\""));
    assert!(page.text.contains("before_id=4"), "next page link");
    let older = browser.get(&format!("/tasks/{TASK}?before_id=4")).await;
    assert!(
        older.text.contains("href=\"/uploads/3\"") && older.text.contains("href=\"/uploads/1\"")
    );
    assert!(!older.text.contains("href=\"/uploads/4\""));

    // Regressed only: each upload with more different files than the one before.
    let regressions = differents.windows(2).filter(|w| w[1] > w[0]).count();
    let only = browser.get(&format!("/tasks/{TASK}?regressed=true")).await;
    assert_eq!(
        only.text.matches("class=\"regressed\"").count(),
        regressions
    );
    assert_eq!(only.text.matches("name=\"a\"").count(), regressions);

    // One directory's chart.
    let dir = browser.get(&format!("/tasks/{TASK}?dir=%2Fvar")).await;
    assert!(dir.text.contains("in <span class=\"mono\">/var</span>"));
    // Time filter: nothing before 2000, everything since.
    let none = browser
        .get(&format!("/tasks/{TASK}?until=2000-01-01"))
        .await;
    assert!(
        none.text.contains("No uploads match") && none.text.contains("No uploads in this range")
    );
    let bad = browser.get(&format!("/tasks/{TASK}?since=yesterday")).await;
    assert_eq!(bad.status, 400);
    let unknown = browser.get("/tasks/no-such-task").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.text.contains("<header class=\"top\">") && unknown.text.contains("Not found"));
}

#[tokio::test]
async fn upload_page_shows_metadata_results_body_hashes_and_neighbours() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent-9", Role::Agent, None, false);
    for _ in 0..2 {
        assert_eq!(app.upload(TASK, &agent.token, EXAMPLE).await.status, 200);
    }
    assert_eq!(
        app.upload(TASK, &agent.token, &body_with_problems("/x", 1))
            .await
            .status,
        200
    );
    let record = app.get("/api/v1/uploads/2", &app.admin_token).await.json();
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser.get("/uploads/2").await;
    assert_eq!(page.status, 200);
    for expected in [
        "agent-9",
        "token",
        record["request_id"].as_str().unwrap(),
        record["body_sha256"].as_str().unwrap(),
        record["prev_hash"].as_str().unwrap(),
        record["entry_hash"].as_str().unwrap(),
        record["received_at"].as_str().unwrap(),
        "href=\"/uploads/1\">#1</a> (identical body)",
        "rel=\"prev\"",
        "rel=\"next\"",
        "/root/data",
        "1,235",
    ] {
        assert!(page.text.contains(expected), "missing {expected}");
    }
    assert!(
        page.text.contains(
            "{\n&#34;consistency_result&#34; : [ {\n&#34;dir_check&#34; : &#34;/root/data&#34;,\n"
        ),
        "the raw body as stored, not re-serialized"
    );
    let missing = browser.get("/uploads/999").await;
    assert_eq!(missing.status, 404);
    assert!(missing.text.contains("<header class=\"top\">"));
}

/// The upload page says what the dashboard and task page mark: the verdict
/// against the task's previous upload (with the comparison a click away), and
/// the task's name.
#[tokio::test]
async fn the_upload_page_gives_its_verdict_against_the_previous_upload() {
    let app = TestApp::spawn().await;
    let agent = app.add_credential("agent", Role::Agent, None, false).token;
    for different in [3, 5, 5, 1] {
        let body = body_with_problems("/x", different);
        assert_eq!(app.upload(TASK, &agent, &body).await.status, 200);
    }
    let task = sms_audit::domain::TaskId::parse(TASK).unwrap();
    sms_audit::storage::tasks::register_task(&app.write_conn(), &task, Some("web-01 → ECS"))
        .unwrap();
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let verdict = |html: &str| {
        let at = html.find("id=\"verdict\"").expect("a verdict line");
        html[at..at + html[at..].find("</p>").unwrap()].to_string()
    };
    let first = browser.get("/uploads/1").await.text;
    assert!(verdict(&first).contains("first upload"), "{first}");
    for (id, word) in [(2, "regressed"), (3, "unchanged"), (4, "improved")] {
        let page = browser.get(&format!("/uploads/{id}")).await.text;
        let line = verdict(&page);
        assert!(line.contains(&format!(">{word}</span>")), "#{id}: {line}");
        assert!(
            line.contains(&format!("/compare?a={}&amp;b={id}", id - 1)),
            "#{id}: {line}"
        );
        assert!(page.contains("id=\"task-name\">(web-01 → ECS)"), "{page}");
    }
    // The same verdict as the task page's mark for the upload that regressed.
    let path = format!("/api/v1/tasks/{TASK}/uploads");
    let uploads = app.get(&path, &app.admin_token).await.json()["uploads"].clone();
    let regressed: Vec<i64> = uploads
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["regressed"] == true)
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(regressed, [2]);
}

#[tokio::test]
async fn compare_marks_each_directory_and_gives_no_verdict_across_tasks() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    let a = serde_json::json!({"consistency_result": [
        {"dir_check": "/better", "num_total_files": 10, "num_different_files": 5, "num_target_miss_files": 0, "num_target_more_files": 0},
        {"dir_check": "/worse", "num_total_files": 10, "num_different_files": 0, "num_target_miss_files": 0, "num_target_more_files": 0},
        {"dir_check": "/same", "num_total_files": 10, "num_different_files": 1, "num_target_miss_files": 0, "num_target_more_files": 0},
        {"dir_check": "/gone", "num_total_files": 3, "num_different_files": 0, "num_target_miss_files": 0, "num_target_more_files": 0}]});
    let b = serde_json::json!({"consistency_result": [
        {"dir_check": "/better", "num_total_files": 10, "num_different_files": 1, "num_target_miss_files": 0, "num_target_more_files": 0},
        {"dir_check": "/worse", "num_total_files": 12, "num_different_files": 0, "num_target_miss_files": 2, "num_target_more_files": 1},
        {"dir_check": "/same", "num_total_files": 11, "num_different_files": 1, "num_target_miss_files": 0, "num_target_more_files": 0},
        {"dir_check": "/new", "num_total_files": 4, "num_different_files": 0, "num_target_miss_files": 0, "num_target_more_files": 0}]});
    assert_eq!(app.upload("task-a", &t, &a.to_string()).await.status, 200);
    assert_eq!(app.upload("task-a", &t, &b.to_string()).await.status, 200);
    assert_eq!(app.upload("task-b", &t, &b.to_string()).await.status, 200);

    let json = app.get("/api/v1/compare?a=1&b=2", &t).await.json();
    let verdict = |dir: &str| {
        json["directories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["dir_check"] == dir)
            .unwrap()["verdict"]
            .clone()
    };
    assert_eq!(verdict("/better"), "improved");
    assert_eq!(verdict("/worse"), "regressed");
    assert_eq!(verdict("/same"), "unchanged");
    let worse = json["directories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dir_check"] == "/worse")
        .unwrap();
    assert_eq!(worse["change"]["num_total_files"], 2);
    assert_eq!(worse["a"]["num_target_miss_files"], 0);
    assert_eq!(worse["b"]["num_target_miss_files"], 2);
    assert_eq!(json["only_in_a"][0]["dir_check"], "/gone");
    assert_eq!(json["only_in_b"][0]["dir_check"], "/new");
    assert_eq!(json["a"]["task_id"], "task-a");
    assert_eq!(json["b"]["task_id"], "task-a");
    assert_eq!(json["same_task"], true);
    assert_eq!(json["totals"]["a"]["num_different_files"], 6);
    assert_eq!(json["totals"]["b"]["num_target_more_files"], 1);
    assert_eq!(
        json["totals"]["verdict"], "improved",
        "6 problems before, 5 after: {json}"
    );

    app.get("/api/v1/compare?a=1&b=99", &t)
        .await
        .assert_error(404, "APIGW.0101");
    app.get("/api/v1/compare?a=x&b=1", &t)
        .await
        .assert_error(400, "SMS.9001");
    let agent = app.add_credential("agent", Role::Agent, None, false);
    app.get("/api/v1/compare?a=1&b=2", &agent.token)
        .await
        .assert_error(403, "SMS.9004");

    let browser = app.login(&t).await.ok().unwrap();
    let page = browser.get("/compare?a=1&b=2").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("<tr class=\"improved\">")
            && page.text.contains("<tr class=\"regressed\">")
            && page.text.contains("<tr class=\"unchanged\">")
    );
    assert!(
        page.text.contains("Only in A")
            && page.text.contains("/gone")
            && page.text.contains("Only in B")
            && page.text.contains("/new")
    );
    assert!(page.text.contains("+2"), "changes are signed");
    assert!(!page.text.contains("different-tasks"));

    // Two tasks measure two servers: the counts and deltas, and no verdict.
    let across = app.get("/api/v1/compare?a=1&b=3", &t).await.json();
    assert_eq!(across["same_task"], false, "{across}");
    assert_eq!(across["b"]["task_id"], "task-b");
    assert!(across["totals"]["verdict"].is_null(), "{across}");
    for d in across["directories"].as_array().unwrap() {
        assert!(d["verdict"].is_null(), "{d}");
    }
    assert_eq!(across["directories"][1]["change"]["num_total_files"], 2);
    let page = browser.get("/compare?a=1&b=3").await.text;
    assert!(page.contains("id=\"different-tasks\""), "{page}");
    for word in ["improved", "regressed", "unchanged"] {
        assert!(!page.contains(&format!(">{word}<")), "{word}: {page}");
    }
    assert_eq!(browser.get("/compare?a=1").await.status, 400);
    assert_eq!(browser.get("/compare?a=1&b=77").await.status, 404);
}

#[tokio::test]
async fn task_names_and_directories_are_escaped_everywhere() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    let body = body_with_problems(XSS, 1);
    assert_eq!(app.upload(TASK, &t, &body).await.status, 200);
    assert_eq!(
        app.upload(TASK, &t, &body_with_problems(XSS, 2))
            .await
            .status,
        200
    );
    let task = sms_audit::domain::TaskId::parse(TASK).unwrap();
    sms_audit::storage::tasks::register_task(&app.write_conn(), &task, Some(XSS)).unwrap();
    let browser = app.login(&t).await.ok().unwrap();
    for path in [
        "/".to_string(),
        format!("/tasks/{TASK}"),
        format!(
            "/tasks/{TASK}?dir={}",
            sms_audit::http::pages::urlencode(XSS)
        ),
        "/uploads/1".into(),
        "/compare?a=1&b=2".into(),
        format!("/?q={}", sms_audit::http::pages::urlencode(XSS)),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(!page.text.contains(XSS), "{path} renders markup from data");
        assert!(
            page.text
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{path} shows it as text"
        );
    }
}

#[tokio::test]
async fn audit_page_verifies_on_demand_and_filters_rejections() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    for _ in 0..3 {
        assert_eq!(app.upload(TASK, &t, EXAMPLE).await.status, 200);
    }
    app.upload(TASK, "bad-token", EXAMPLE)
        .await
        .assert_error(401, "APIGW.0301");
    let auditor = app.add_credential("auditor", Role::Auditor, None, false);
    app.upload(TASK, &auditor.token, EXAMPLE)
        .await
        .assert_error(403, "SMS.9004");
    let browser = app.login(&t).await.ok().unwrap();

    let page = browser.get("/audit").await;
    assert!(page.text.contains("never verified"));
    let head = app.get("/api/v1/uploads/3", &t).await.json()["entry_hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(page.text.contains(&format!("id=\"head-hash\">{head}<")));

    let forged = browser
        .post("/audit/verify", &[("csrf_token", "nope")])
        .await;
    assert_eq!(forged.status, 403);
    let started = browser
        .post("/audit/verify", &[("csrf_token", &browser.csrf)])
        .await;
    assert_eq!(started.status, 303);
    let text = eventually("the verification on /audit", PATIENCE, || async {
        let text = browser.get("/audit").await.text;
        text.contains("badge good").then_some(text)
    })
    .await;
    assert!(
        text.contains("<span class=\"badge good\">intact</span> 3 entries up to #3"),
        "{text}"
    );
    assert!(text.contains("page:admin"));
    let dashboard = browser.get("/").await;
    assert!(dashboard.text.contains("badge good\">intact"));

    let all = browser.get("/audit").await.text;
    assert!(all.contains("APIGW.0301") && all.contains("SMS.9004"));
    let only_403 = browser.get("/audit?status=403").await.text;
    let table = &only_403[only_403.find("id=\"rejections\"").unwrap()..];
    assert!(
        table.contains("SMS.9004") && !table.contains("APIGW.0301"),
        "{table}"
    );
    let by_credential = browser.get("/audit?credential=auditor").await.text;
    let table = &by_credential[by_credential.find("id=\"rejections\"").unwrap()..];
    assert!(table.contains("SMS.9004") && !table.contains("APIGW.0301"));
    assert_eq!(browser.get("/audit?status=abc").await.status, 400);
}

#[tokio::test]
async fn export_streams_csv_and_jsonl_with_filters() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    assert_eq!(app.upload(TASK, &t, EXAMPLE).await.status, 200);
    assert_eq!(app.upload("other", &t, "{}").await.status, 200);
    assert_eq!(
        app.upload(TASK, &t, &body_with_problems("/a,\"quoted\"", 1))
            .await
            .status,
        200
    );

    let csv = app.get("/api/v1/export?format=csv", &t).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(csv.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("sms-audit-export.csv"));
    let mut reader = csv::Reader::from_reader(csv.text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        sms_audit::services::export::CSV_HEADER
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        2 + 1 + 2,
        "a row per result item, one for an upload without results"
    );
    assert_eq!(&rows[0][0], "1");
    assert_eq!(&rows[0][13], "/root/data");
    assert_eq!(&rows[2][0], "2");
    assert_eq!(&rows[2][13], "", "no results");
    assert_eq!(&rows[3][13], "/a,\"quoted\"", "CSV quoting round-trips");

    let jsonl = app
        .get(&format!("/api/v1/export?format=jsonl&task_id={TASK}"), &t)
        .await;
    assert_eq!(jsonl.status, 200);
    let lines: Vec<serde_json::Value> = jsonl
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[1]["id"], 3);
    for line in &lines {
        let raw = line["raw_body"].as_str().unwrap();
        assert_eq!(
            line["body_sha256"],
            sms_audit::domain::signing::sha256_hex(raw.as_bytes())
        );
    }
    assert_eq!(lines[0]["results"].as_array().unwrap().len(), 2);

    let none = app
        .get("/api/v1/export?format=jsonl&until=2000-01-01", &t)
        .await;
    assert_eq!(none.status, 200);
    assert_eq!(none.text, "");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let since = app
        .get(&format!("/api/v1/export?format=jsonl&since={today}"), &t)
        .await;
    assert_eq!(since.text.lines().count(), 3);
    app.get("/api/v1/export?format=xml", &t)
        .await
        .assert_error(400, "SMS.9001");
    let agent = app.add_credential("agent", Role::Agent, None, false);
    app.get("/api/v1/export?format=csv", &agent.token)
        .await
        .assert_error(403, "SMS.9004");

    // The CLI writes the same to a file.
    let out = app.db_path.with_file_name("export.jsonl");
    let status = crate::helpers::command()
        .args(["export", "--format", "jsonl", "--task", TASK, "--out"])
        .arg(&out)
        .arg("--db")
        .arg(&app.db_path)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), jsonl.text);
}

#[tokio::test]
async fn sessions_expire_and_cookies_are_secure_behind_https() {
    let app =
        TestApp::spawn_with(|c| c.http.session_lifetime = std::time::Duration::from_millis(300))
            .await;
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    assert_eq!(browser.get("/").await.status, 200);
    eventually("the session to expire", PATIENCE, || async {
        (browser.get("/").await.status == 303).then_some(())
    })
    .await;

    // Behind a TLS-terminating proxy the cookies get `Secure`.
    let client = no_redirects();
    let form = app
        .send(
            client
                .get(format!("{}/login", app.address))
                .header("X-Forwarded-Proto", "https"),
        )
        .await;
    let login_cookie = set_cookie(&form.headers, "sms_audit_login_csrf").unwrap();
    assert!(login_cookie.contains("Secure"), "{login_cookie}");
    let csrf = form_value(&form.text, "csrf_token").unwrap();
    let reply = app
        .send(
            client
                .post(format!("{}/login", app.address))
                .header("X-Forwarded-Proto", "https")
                .header("Cookie", login_cookie.split(';').next().unwrap())
                .form(&[
                    ("token", app.admin_token.as_str()),
                    ("csrf_token", csrf.as_str()),
                ]),
        )
        .await;
    assert_eq!(reply.status, 303);
    let session = set_cookie(&reply.headers, "sms_audit_session").unwrap();
    assert!(
        session.contains("Secure") && session.contains("HttpOnly"),
        "{session}"
    );
}

#[tokio::test]
async fn the_task_page_lists_every_directory_and_exports_its_time_range() {
    let app = TestApp::spawn().await;
    let with_etc = crate::helpers::body_with_problems("/etc", 1);
    let without = crate::helpers::body_with_problems("/data", 0);
    assert_eq!(
        app.upload(TASK, &app.admin_token, &with_etc).await.status,
        200
    );
    assert_eq!(
        app.upload(TASK, &app.admin_token, &without).await.status,
        200
    );
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser
        .get(&format!("/tasks/{TASK}?since=2020-01-01"))
        .await;
    assert!(
        page.text.contains(r#"<option value="/etc""#),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(r#"<option value="/data""#),
        "{}",
        page.text
    );
    let export_link = link_starting(&page.text, "/api/v1/export?format=csv");
    assert!(
        export_link.contains("since=2020%2D01%2D01"),
        "{export_link}"
    );
    let csv = app.get(&export_link, &app.admin_token).await;
    assert_eq!(csv.status, 200, "{}", csv.text);
}

/// With a directory chosen, the uploads table shows that directory's counts, as
/// the charts do, and marks the uploads that did not report it.
#[tokio::test]
async fn the_task_pages_directory_filter_applies_to_its_uploads_table() {
    let app = TestApp::spawn().await;
    for body in [
        crate::helpers::body_with_problems("/etc", 3),
        crate::helpers::body_with_problems("/data", 0),
    ] {
        assert_eq!(app.upload(TASK, &app.admin_token, &body).await.status, 200);
    }
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let rows = |html: &str| -> Vec<String> {
        let table = html.split("<table id=\"uploads\">").nth(1).unwrap();
        let table = &table[..table.find("</table>").unwrap()];
        table.split("<tr").skip(2).map(str::to_string).collect()
    };
    let all = browser.get(&format!("/tasks/{TASK}")).await.text;
    assert!(!all.contains("id=\"table-dir\""));
    // Newest first: #2 then #1, each with its totals over /etc or /data and /var.
    let rows_all = rows(&all);
    assert!(rows_all[1].contains(">150<"), "{}", rows_all[1]);
    let etc = browser.get(&format!("/tasks/{TASK}?dir=%2Fetc")).await.text;
    assert!(etc.contains("id=\"table-dir\""), "{etc}");
    let rows_etc = rows(&etc);
    assert!(
        rows_etc[0].contains("not reported in this upload"),
        "{}",
        rows_etc[0]
    );
    assert!(
        rows_etc[1].contains(">100<") && rows_etc[1].contains(">3<"),
        "{}",
        rows_etc[1]
    );
    assert!(
        !rows_etc[1].contains(">150<"),
        "not the totals: {}",
        rows_etc[1]
    );
    assert!(
        etc.contains(&format!("href=\"/tasks/{TASK}?since=&#38;until=\"")),
        "{etc}"
    );
}

#[tokio::test]
async fn the_upload_page_shows_the_stored_bytes_exactly_and_hidden_characters_visibly() {
    let app = TestApp::spawn().await;
    let exact =
        r#"{"big":123456789012345678901234567890,"f":1.10,"g":0.1e1,"consistency_result":[]}"#;
    assert_eq!(app.upload(TASK, &app.admin_token, exact).await.status, 200);
    let hidden = r#"{"consistency_result":[
        {"dir_check":"/a\u0000b","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0},
        {"dir_check":"/a\nb","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0},
        {"dir_check":"/a\u202egnp.exe","num_total_files":1,"num_different_files":0,"num_target_miss_files":0,"num_target_more_files":0}]}"#;
    assert_eq!(app.upload(TASK, &app.admin_token, hidden).await.status, 200);
    let browser = app.login(&app.admin_token).await.ok().unwrap();

    let page = browser.get("/uploads/1").await;
    for token in ["123456789012345678901234567890", "1.10", "0.1e1"] {
        assert!(page.text.contains(token), "{token} changed on the page");
    }
    let page = browser.get("/uploads/2").await;
    for escaped in [r"/a\u0000b", r"/a\u000ab", r"/a\u202egnp.exe"] {
        assert!(
            page.text.contains(escaped),
            "{escaped} not shown: {}",
            page.text
        );
    }
    assert!(!page.text.contains('\u{0}') && !page.text.contains('\u{202e}'));
    let task = browser.get(&format!("/tasks/{TASK}")).await;
    assert!(
        !task.text.contains('\u{202e}'),
        "the task page shows a raw override"
    );

    let csv = app.get("/api/v1/export?format=csv", &app.admin_token).await;
    assert!(csv.text.contains(r"/a\u0000b") && csv.text.contains(r"/a\u202egnp.exe"));
    assert!(!csv.text.contains('\u{0}') && !csv.text.contains('\u{202e}'));
}

#[tokio::test]
async fn finished_time_is_shown_as_a_time() {
    let app = TestApp::spawn().await;
    let body = r#"{"finished_time": 1764400000, "consistency_result": []}"#;
    assert_eq!(app.upload(TASK, &app.admin_token, body).await.status, 200);
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser.get("/uploads/1").await;
    assert!(
        page.text.contains("2025-11-29T07:06:40.000Z"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn deliveries_page_says_when_no_upstream_is_configured() {
    let app = TestApp::spawn().await;
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let page = browser.get("/deliveries").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("not configured"), "{}", page.text);
    assert!(!page.text.contains(">healthy<"), "{}", page.text);
}

/// Text as askama escapes it in HTML.
fn askama_escape(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('\'', "&#39;")
        .replace('"', "&#34;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
}

/// The printed report opens with its verdict in one sentence and links the
/// evidence by an absolute URL (`--public-url`, else the address asked).
#[tokio::test]
async fn the_report_gives_its_verdict_and_an_absolute_evidence_link() {
    for public_url in [None, Some("https://audit.example.com")] {
        let app = TestApp::spawn_with(move |c| c.public_url = public_url.map(str::to_string)).await;
        let agent = app.add_credential("agent", Role::Agent, None, false).token;
        for body in [body_with_problems("/x", 2), body_with_problems("/x", 5)] {
            assert_eq!(app.upload(TASK, &agent, &body).await.status, 200);
        }
        assert_eq!(app.upload("t-empty", &agent, "{}").await.status, 200);
        let browser = app.login(&app.admin_token).await.ok().unwrap();
        let page = browser.get(&format!("/tasks/{TASK}/report")).await.text;
        let verdict = page.split("id=\"report-verdict\"><strong>").nth(1).unwrap();
        let verdict = &verdict[..verdict.find("</strong>").unwrap()];
        assert!(
            verdict.starts_with(&format!("Task {TASK}&#39;s latest upload (#2, "))
                && verdict.contains(
                    "reports 6 problems in 150 files checked, more than the upload before"
                ),
            "{verdict}"
        );
        let base = public_url.map_or(app.address.clone(), str::to_string);
        let link = format!(
            "{base}/api/v1/evidence?task_id={}",
            sms_audit::http::urlencode(TASK)
        );
        assert!(page.contains(&format!("href=\"{link}\"")), "{link}: {page}");
        let empty = browser.get("/tasks/t-empty/report").await.text;
        assert!(
            empty.contains("reported no results (an empty upload, not a clean one)"),
            "{empty}"
        );
    }
}

/// The first link on a page whose href starts with `prefix` (as escaped in the
/// HTML), unescaped.
fn link_starting(html: &str, prefix: &str) -> String {
    html.split("href=\"")
        .find(|h| h.starts_with(prefix))
        .unwrap_or_else(|| panic!("a link starting {prefix}"))
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&")
}

/// The figure on one of the dashboard's verdict cards.
#[tokio::test]
async fn the_dashboards_cards_count_tasks_by_their_latest_upload_and_filter_the_table() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    // a: problems, then more (regressed); b: clean; c: no results.
    for (task, body) in [
        ("task-a", body_with_problems("/data", 1)),
        ("task-a", body_with_problems("/data", 5)),
        (
            "task-b",
            r#"{"consistency_result": [{"dir_check": "/d", "num_total_files": 9, "num_different_files": 0,
                "num_target_miss_files": 0, "num_target_more_files": 0}]}"#
                .to_string(),
        ),
        ("task-c", r#"{"consistency_result": []}"#.to_string()),
    ] {
        assert_eq!(app.upload(task, &t, &body).await.status, 200);
    }
    let browser = app.login(&t).await.ok().unwrap();
    let page = browser.get("/").await;
    let card = |key: &str| card_value(&page.text, key);
    assert_eq!(card("problems"), "1");
    assert_eq!(card("regressed"), "1");
    assert_eq!(card("no_results"), "1");
    assert_eq!(card("clean"), "1");
    // The cards come before the task table, the trend after it.
    let (cards, table, trend) = (
        page.text.find("id=\"verdicts\"").unwrap(),
        page.text.find("id=\"tasks\"").unwrap(),
        page.text.find("id=\"trend-range\"").unwrap(),
    );
    assert!(cards < table && table < trend);
    for (state, only) in [
        ("problems", "task-a"),
        ("regressed", "task-a"),
        ("no_results", "task-c"),
        ("clean", "task-b"),
    ] {
        let page = browser.get(&format!("/?state={state}")).await;
        assert_eq!(page.status, 200);
        let rows = page.text.split("<tbody>").nth(1).unwrap();
        let rows = rows.split("</tbody>").next().unwrap();
        for task in ["task-a", "task-b", "task-c"] {
            assert_eq!(rows.contains(task), task == only, "{state}: {task}");
        }
        assert!(page.text.contains(&format!("id=\"card-{state}\"")));
        // Sorting and paging keep the filter.
        let sort_link = link_starting(&page.text, "/?q=&#38;sort=task");
        assert!(
            sort_link.contains(&format!("&state={state}")),
            "{sort_link}"
        );
    }
    // As of a moment, the cards count then.
    let page = browser.get("/?as_of=2001-01-01&state=clean").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"no-history\""), "no flat lines");
    // A new upload moves the counts (they are kept until the ledger grows).
    assert_eq!(
        app.upload("task-b", &t, &body_with_problems("/d", 3))
            .await
            .status,
        200
    );
    let page = browser.get("/").await;
    assert_eq!(
        (
            card_value(&page.text, "problems"),
            card_value(&page.text, "clean")
        ),
        ("2".into(), "0".into())
    );
    let refused = browser.get("/?state=broken").await;
    assert_eq!(refused.status, 400);
    assert!(refused
        .text
        .contains("one of problems, regressed, no_results or clean"));
}

#[tokio::test]
async fn refusals_keep_their_message_and_error_pages_their_navigation() {
    let app = TestApp::spawn().await;
    let refused = app.upload(TASK, "not-a-token", EXAMPLE).await;
    assert_eq!(refused.status, 401);
    let message = refused.json()["error_msg"].as_str().unwrap().to_string();
    let log = eventually("the refusal is logged", PATIENCE, || async {
        let reply = app.get("/api/v1/rejections", &app.admin_token).await;
        let json = reply.json();
        let first = json["rejections"][0].clone();
        (!first.is_null()).then_some(first)
    })
    .await;
    assert_eq!(log["error_code"], "APIGW.0301");
    assert_eq!(log["error_msg"], message.as_str());
    let browser = app.login(&app.admin_token).await.ok().unwrap();
    let audit = browser.get("/audit").await;
    assert!(audit.text.contains(&message), "{}", audit.text);

    // An error page keeps the navigation of the reader logged in; a stranger's has none.
    let missing = browser.get("/tasks/no-such-task").await;
    assert_eq!(missing.status, 404);
    assert!(missing.text.contains("<nav>") && missing.text.contains("Log out"));
    let stranger = no_redirects()
        .get(format!("{}/no-such-page", app.address))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 404);
    assert!(!stranger.text().await.unwrap().contains("<nav>"));

    // One side of a comparison says what to do.
    let one_side = browser.get("/compare?a=1").await;
    assert_eq!(one_side.status, 400);
    assert!(one_side
        .text
        .contains("Pick both uploads to compare (b is missing)"));
    assert!(one_side.text.contains("<nav>"));
}

#[tokio::test]
async fn forwarding_off_is_a_plain_note_and_only_operators_are_told_the_flags() {
    let app = TestApp::spawn().await;
    let auditor = app.add_credential("auditor", Role::Auditor, None, false);
    for (token, operator) in [(app.admin_token.clone(), true), (auditor.token, false)] {
        let browser = app.login(&token).await.ok().unwrap();
        let page = browser.get("/deliveries").await;
        assert!(page.text.contains("id=\"forwarding-off\""));
        assert!(!page.text.contains("flash bad"));
        assert_eq!(page.text.contains("--upstream-endpoint"), operator);
    }
}

#[tokio::test]
async fn the_changes_page_says_at_to_when_to_is_past_and_compare_counts_problems() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    for d in [1_500, 2_000] {
        assert_eq!(
            app.upload(TASK, &t, &body_with_problems("/data", d))
                .await
                .status,
            200
        );
    }
    let browser = app.login(&t).await.ok().unwrap();
    let now = browser.get("/changes").await;
    assert!(now.text.contains("Problems now"));
    let past = browser.get("/changes?from=2001-01-01&to=2002-01-01").await;
    assert!(past.text.contains("Problems at To") && !past.text.contains("Problems now"));
    let compare = browser.get("/compare?a=1&b=2").await;
    assert!(compare.text.contains(">Problems</th>"));
    // Different 1,500 → 2,000, one missing each: problems 1,501 → 2,001, +500.
    for figure in ["1,501", "2,001", "+500"] {
        assert!(compare.text.contains(figure), "{figure}");
    }
}
