//! Extractors that say in a handler's signature who may call it: a reader of the
//! JSON API (auditor or operator token, or a page session), an operator, a
//! logged-in page user, and a POST form checked against its session's CSRF token.
//!
//! Put them last in a handler's arguments: path and query errors then answer
//! before authentication, as they always have.

use crate::http::Access;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::auth::{self, CredentialName};
use super::error::ApiError;
use super::error::PageError;
use crate::domain::{Credential, Role, Session};
use crate::storage::{sessions, ReadPool};

/// The pages' session cookie.
pub const SESSION_COOKIE: &str = "sms_audit_session";
/// Double-submit cookie for the login form, which has no session yet.
pub const LOGIN_CSRF_COOKIE: &str = "sms_audit_login_csrf";

/// A piece of shared state `startup` registered.
pub(crate) fn registered<T: ?Sized + 'static>(req: &HttpRequest) -> web::Data<T> {
    req.app_data::<web::Data<T>>()
        .cloned()
        .expect("startup registers every piece of shared state")
}

/// A reader of the JSON API: an auditor's or operator's token, or the session
/// cookie of the HTML pages.
pub struct ApiReader(pub Credential);

impl FromRequest for ApiReader {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { api_reader(&req).await.map(ApiReader) })
    }
}

async fn api_reader(req: &HttpRequest) -> Result<Credential, ApiError> {
    let reads = registered::<ReadPool>(req);
    let credential = match req.cookie(SESSION_COOKIE) {
        Some(cookie) if req.headers().get(super::auth::X_AUTH_TOKEN).is_none() => {
            let value = cookie.value().to_string();
            let session = reads
                .with_blocking(move |c| sessions::find(c, &value))
                .await?
                .ok_or_else(|| {
                    ApiError::Unauthenticated("the session has expired; log in again".into())
                })?;
            req.extensions_mut()
                .insert(CredentialName(session.credential.name.clone()));
            session.credential
        }
        _ => {
            let presented = auth::presented(req, false)?;
            let found =
                auth::find(&presented, &registered::<Access>(req).credentials, &reads).await?;
            auth::authenticate(req, &presented, found, None)?
        }
    };
    if !credential.role.may_read() {
        return Err(ApiError::Forbidden(format!(
            "credential {:?} is an {} credential; reading needs an auditor or operator",
            credential.name, credential.role
        )));
    }
    Ok(credential)
}

/// An operator of the JSON API.
pub struct ApiOperator(pub Credential);

impl FromRequest for ApiOperator {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let credential = api_reader(&req).await?;
            require_operator(&credential)?;
            Ok(ApiOperator(credential))
        })
    }
}

pub fn require_operator(credential: &Credential) -> Result<(), ApiError> {
    if credential.role == Role::Operator {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "credential {:?} is an {} credential; replays need an operator",
            credential.name, credential.role
        )))
    }
}

/// A logged-in reader of the pages (auditor or operator); anyone else is sent to
/// the login page.
pub struct PageUser(pub Session);

impl FromRequest for PageUser {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { page_session(&req).await.map(PageUser) })
    }
}

/// The logged-in reader, or a redirect to the login page.
pub async fn page_session(req: &HttpRequest) -> Result<Session, PageError> {
    let here = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{q}", req.path()),
    };
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Err(PageError::LoginRequired(here));
    };
    let value = cookie.value().to_string();
    let session = registered::<ReadPool>(req)
        .with_blocking(move |c| sessions::find(c, &value))
        .await
        .map_err(ApiError::from)?
        .ok_or(PageError::LoginRequired(here))?;
    req.extensions_mut()
        .insert(CredentialName(session.credential.name.clone()));
    if !session.credential.role.may_read() {
        return Err(PageError::Forbidden(format!(
            "{} is an {} credential; the pages are for auditors and operators",
            session.credential.name, session.credential.role
        )));
    }
    Ok(session)
}

/// A logged-in operator of the pages.
pub struct PageOperator(pub Session);

impl FromRequest for PageOperator {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let session = page_session(&req).await?;
            require_operator(&session.credential)?;
            Ok(PageOperator(session))
        })
    }
}

/// The session behind a page extractor.
pub trait HasSession {
    fn session(&self) -> &Session;
}

impl HasSession for PageUser {
    fn session(&self) -> &Session {
        &self.0
    }
}

impl HasSession for PageOperator {
    fn session(&self) -> &Session {
        &self.0
    }
}

/// A form that carries the session's CSRF token back.
pub trait CarriesCsrf {
    fn csrf_token(&self) -> &str;
}

/// A POST form of a logged-in user (`Who`: [`PageUser`] or [`PageOperator`]),
/// refused unless it carries its session's CSRF token.
pub struct CsrfForm<T, Who = PageUser> {
    pub who: Who,
    pub form: T,
}

impl<T, Who> FromRequest for CsrfForm<T, Who>
where
    T: DeserializeOwned + CarriesCsrf + 'static,
    Who: FromRequest<Error = PageError> + HasSession + 'static,
{
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // The form is read first, as it always was: a malformed form is refused
        // before the session is looked up.
        let form = web::Form::<T>::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let form = form.await?.into_inner();
            let who = Who::extract(&req).await?;
            if !who.session().csrf_matches(form.csrf_token()) {
                return Err(PageError::Forbidden(
                    "the form's CSRF token does not match your session".into(),
                )
                .into());
            }
            Ok(CsrfForm { who, form })
        })
    }
}

/// A query string parsed into `T`, with errors that name the parameter
/// (`page: invalid digit found in string`) in the shape of the path's side.
/// Used instead of `web::Query`, whose errors do not say which parameter.
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// The highest page number a list page takes.
pub const MAX_PAGE: u32 = 1_000_000;

/// What a list's `page` must be, in words (held to [`MAX_PAGE`] by a test).
pub const PAGE_RANGE: &str = "page must be a whole number from 1 to 1,000,000";

/// A query parameter's parse error as a person reads it: what the value must be,
/// not what the parser found (`page must be a whole number from 1 to 1,000,000`,
/// not `invalid digit found in string`).
fn in_words(name: &str, parser_says: &str) -> String {
    let number = [
        "invalid digit",
        "number too large",
        "number too small",
        "empty string",
    ]
    .iter()
    .any(|s| parser_says.contains(s));
    match name {
        "." | "" => parser_says.to_string(),
        "page" if number => PAGE_RANGE.to_string(),
        name if number => format!("{name} must be a whole number"),
        name if parser_says.contains("`true` or `false`") => {
            format!("{name} must be true or false")
        }
        name => format!("{name}: {parser_says}"),
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let raw = req.query_string();
        let deserializer =
            serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(raw.as_bytes()));
        std::future::ready(
            serde_path_to_error::deserialize(deserializer)
                .map(Query)
                .map_err(|e| {
                    let name = e.path().to_string();
                    let detail = in_words(&name, &e.into_inner().to_string());
                    super::error::bad_input(req, "query", detail)
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_range_names_the_highest_page() {
        let digits = super::MAX_PAGE.to_string();
        let grouped: Vec<&str> = super::PAGE_RANGE
            .rsplit(' ')
            .next()
            .unwrap()
            .split(',')
            .collect();
        assert_eq!(grouped.concat(), digits, "{}", super::PAGE_RANGE);
    }
}
