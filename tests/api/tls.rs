//! Native TLS: `tls self-signed`, `serve --tls-cert --tls-key`, and everything
//! working over HTTPS with certificate verification on.

use std::os::unix::fs::PermissionsExt;

use sms_audit::startup::TlsFiles;
use sms_audit::{Application, ServeConfig};

use crate::helpers::{TestApp, EXAMPLE, TASK};

fn self_signed(dir: &std::path::Path, hosts: &[&str]) -> TlsFiles {
    let mut cmd = crate::helpers::command();
    cmd.args(["tls", "self-signed", "--out"]).arg(dir);
    for h in hosts {
        cmd.args(["--host", h]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

#[tokio::test]
async fn uploads_the_api_and_pages_work_over_https_with_verification_on() {
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed(dir.path(), &["localhost", "127.0.0.1"]);
    for f in [&files.cert, &files.key] {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let pem = std::fs::read(&files.cert).unwrap();
    let app = TestApp::spawn_with(move |c| c.tls = Some(files)).await;
    let base = app.address.replace("http://127.0.0.1", "https://localhost");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let upload = client
        .post(format!("{base}{}", TestApp::upload_path(TASK)))
        .header("X-Auth-Token", &app.admin_token)
        .header("Content-Type", "application/json")
        .body(EXAMPLE)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    let tasks = client
        .get(format!("{base}/api/v1/tasks"))
        .header("X-Auth-Token", &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(tasks.status(), 200);
    let login = client.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Secure"), "{cookie}");
    // Plain HTTP on the same port gets no page.
    let plain = reqwest::get(format!("{}/healthz", app.address)).await;
    assert!(plain.map_or(true, |r| r.status() != 200));
    // A client that does not trust the certificate is refused.
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
    assert_eq!(app.count("uploads"), 1);
}

#[tokio::test]
async fn a_missing_unreadable_or_mismatched_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let a = self_signed(&dir.path().join("a"), &["localhost"]);
    let b = self_signed(&dir.path().join("b"), &["localhost"]);
    let db = dir.path().join("audit.db");
    for (cert, key, says) in [
        (dir.path().join("none.pem"), a.key.clone(), "certificate"),
        (a.cert.clone(), dir.path().join("none.pem"), "key"),
        (
            a.cert.clone(),
            b.key.clone(),
            "do not make a certificate and its key",
        ),
        (a.key.clone(), a.cert.clone(), "TLS"),
    ] {
        let mut config = ServeConfig::new(&db);
        config.listen = "127.0.0.1:0".into();
        config.handle_signals = false;
        config.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
        let refused = Application::build(config).await.err().expect("refused");
        assert!(refused.to_string().contains(says), "{refused}");
        let out = crate::helpers::command()
            .arg("--db")
            .arg(&db)
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
    assert!(!db.exists(), "a refused start created the database");
}

#[tokio::test]
async fn signed_uploads_verify_over_http2_where_the_host_is_the_authority() {
    use sms_audit::domain::signing::{format_sdk_date, sha256_hex, CanonicalRequest, Signer};
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed(dir.path(), &["localhost"]);
    let pem = std::fs::read(&files.cert).unwrap();
    let app = TestApp::spawn_with(move |c| c.tls = Some(files)).await;
    let agent = app.add_credential("agent", sms_audit::domain::Role::Agent, None, true);
    let (ak, sk) = (agent.access_key.unwrap(), agent.secret_key.unwrap());
    let authority = app.address.replace("http://127.0.0.1", "localhost");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let path = TestApp::upload_path(TASK);
    let date = format_sdk_date(chrono::Utc::now());
    let headers = [
        ("content-type".to_string(), "application/json".to_string()),
        ("host".to_string(), authority.clone()),
        ("x-sdk-date".to_string(), date.clone()),
    ];
    let authorization = Signer::new(&ak, &sk).authorization(
        &CanonicalRequest {
            method: "POST",
            path: &path,
            query: &[],
            headers: &headers,
            payload_hash: &sha256_hex(EXAMPLE.as_bytes()),
        },
        &date,
    );
    let answer = client
        .post(format!("https://{authority}{path}"))
        .header("Content-Type", "application/json")
        .header("X-Sdk-Date", &date)
        .header("Authorization", authorization)
        .body(EXAMPLE)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    let status = answer.status();
    assert_eq!(status, 200, "{}", answer.text().await.unwrap());
    assert_eq!(app.count("uploads"), 1);
}
