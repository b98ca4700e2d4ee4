//! Logging in (a token exchanged for a session cookie) and out.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, Nav, PageError};
use crate::domain::{csrf_equal, random_hex};
use crate::http::auth::{self, PresentedCredential};
use crate::http::error::ErrorCode;
use crate::http::extract::Query;
use crate::http::extract::{
    page_session, CarriesCsrf, CsrfForm, PageUser, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use crate::http::Access;
use crate::storage::writer::WriterHandle;
use crate::storage::{sessions, ReadPool};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    csrf_token: String,
    next: String,
    error: Option<String>,
    /// `--db PATH` of the running database, for the hint.
    db_flag: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Where to go after logging in: only a path on this site, so a login link cannot
/// send anyone elsewhere. `next` is resolved as a browser would (tabs and newlines
/// dropped, `\\` read as `/`) against a fixed base; anything that leaves that
/// origin, or whose path a browser would read as `//host`, becomes `/`.
fn safe_next(next: Option<&str>) -> String {
    let base = url::Url::parse("http://sms-audit.invalid/").expect("a valid base");
    let Some(resolved) = next
        .filter(|n| n.starts_with('/'))
        .and_then(|n| base.join(n).ok())
        .filter(|u| u.origin() == base.origin())
    else {
        return "/".into();
    };
    let path = resolved.path();
    if path.starts_with("//") || path.starts_with("/\\") {
        return "/".into();
    }
    match resolved.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

fn secure(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

fn login_page(
    req: &HttpRequest,
    access: &Access,
    next: String,
    error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let csrf_token = random_hex(16);
    let body = LoginPage {
        nav: None,
        csrf_token: csrf_token.clone(),
        next,
        error,
        db_flag: access.db_flag.clone(),
    }
    .render()?;
    let cookie = Cookie::build(LOGIN_CSRF_COOKIE, csrf_token)
        .path("/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(req))
        .finish();
    let mut response = html(body);
    *response.status_mut() = status;
    response
        .add_cookie(&cookie)
        .map_err(|e| PageError::Internal(e.to_string()))?;
    if status == StatusCode::UNAUTHORIZED {
        response.extensions_mut().insert(ErrorCode("APIGW.0301"));
    } else if status == StatusCode::FORBIDDEN {
        response.extensions_mut().insert(ErrorCode("SMS.9004"));
    }
    Ok(response)
}

pub async fn form(
    req: HttpRequest,
    query: Query<NextQuery>,
    access: web::Data<Access>,
) -> Result<HttpResponse, PageError> {
    let next = safe_next(query.next.as_deref());
    if page_session(&req).await.is_ok() {
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, next))
            .finish());
    }
    login_page(&req, &access, next, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    csrf_token: String,
    next: Option<String>,
}

pub async fn submit(
    req: HttpRequest,
    form: web::Form<LoginForm>,
    reads: web::Data<ReadPool>,
    writer: web::Data<WriterHandle>,
    access: web::Data<Access>,
) -> Result<HttpResponse, PageError> {
    let next = safe_next(form.next.as_deref());
    let expected = req
        .cookie(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    if !csrf_equal(&expected, &form.csrf_token) {
        return login_page(
            &req,
            &access,
            next,
            Some("The form expired; please try again.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    let token = form.token.trim().to_string();
    if token.is_empty() || token.len() > auth::MAX_TOKEN_LEN {
        return login_page(
            &req,
            &access,
            next,
            Some("Enter a token.".into()),
            StatusCode::UNAUTHORIZED,
        );
    }
    let presented = PresentedCredential::Token(token);
    let p = presented.clone();
    let found = reads.with_blocking(move |c| auth::lookup(c, &p)).await?;
    let credential = match auth::authenticate(&req, &presented, found, None) {
        Ok(c) => c,
        Err(_) => {
            return login_page(
                &req,
                &access,
                next,
                Some("That token is not valid (unknown or revoked).".into()),
                StatusCode::UNAUTHORIZED,
            )
        }
    };
    if !credential.role.may_read() {
        return login_page(
            &req,
            &access,
            next,
            Some(format!("{} is an {} credential: agents upload but cannot log in. Use an auditor or operator token.", credential.name, credential.role)),
            StatusCode::FORBIDDEN,
        );
    }
    let lifetime = access.session_lifetime;
    let cookie_value = sessions::create(&writer, &credential.name, lifetime.as_millis() as i64)
        .await
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let cookie = Cookie::build(SESSION_COOKIE, cookie_value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(&req))
        .max_age(CookieDuration::seconds(lifetime.as_secs() as i64))
        .finish();
    let mut clear = Cookie::build(LOGIN_CSRF_COOKIE, "").path("/login").finish();
    clear.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .cookie(cookie)
        .cookie(clear)
        .finish())
}

/// A form that carries nothing but its CSRF token.
#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        for hostile in [
            "/\t/evil.example",
            "/\n/evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "/.//evil.example",
            "",
            "\r",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile:?}");
        }
        assert_eq!(safe_next(Some("/tasks/t?page=2")), "/tasks/t?page=2");
        assert_eq!(safe_next(Some("/%2F%2Fx")), "/%2F%2Fx");
        assert_eq!(safe_next(Some("/%5Cx")), "/%5Cx");
        assert_eq!(safe_next(None), "/");
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    pub csrf_token: String,
}

impl CarriesCsrf for CsrfOnly {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

pub async fn logout(
    req: HttpRequest,
    writer: web::Data<WriterHandle>,
    _: CsrfForm<CsrfOnly, PageUser>,
) -> Result<HttpResponse, PageError> {
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        sessions::delete(&writer, cookie.value())
            .await
            .map_err(|e| PageError::Internal(e.to_string()))?;
    }
    let mut clear = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    clear.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login"))
        .cookie(clear)
        .finish())
}
