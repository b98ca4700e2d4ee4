//! The one authentication step of the upload endpoint and the pass-through, once
//! the credential is found (`auth::find`, before any byte of the body): a token is
//! verified and authorized before the body is read, a signature after, since it
//! covers the body. The body is read within its deadline and charged to the
//! budget of bodies held.

use std::time::Duration;

use actix_web::{web, HttpRequest};

use super::read_body;
use crate::domain::{AuthMethod, Credential};
use crate::http::auth::{self, PresentedCredential, StoredCredential};
use crate::http::body_budget::{BodyBudget, BodyHold};
use crate::http::error::ApiError;

/// What a route allows a verified credential to do.
pub(super) trait Authorize {
    async fn authorize(&self, credential: &Credential) -> Result<(), ApiError>;
}

/// How a body is read before its signature can be checked.
pub(super) struct BodyRules<'a> {
    pub limit: usize,
    pub timeout: Duration,
    pub budget: &'a BodyBudget,
}

/// The verified, authorized credential and the body (`None`: over the limit,
/// read no further), whatever way the caller proves who it is.
pub(super) async fn authenticate_with_body(
    req: &HttpRequest,
    presented: &PresentedCredential,
    found: StoredCredential,
    payload: web::Payload,
    rules: BodyRules<'_>,
    hold: &mut BodyHold,
    route: &impl Authorize,
) -> Result<(Credential, Option<Vec<u8>>), ApiError> {
    let by_token = match presented.method() {
        AuthMethod::Token => {
            let credential = auth::authenticate(req, presented, Some(found.clone()), Some(&[]))?;
            route.authorize(&credential).await?;
            Some(credential)
        }
        AuthMethod::Aksk => None,
    };
    let body = read_within(req, payload, &rules, hold).await?;
    let credential = match by_token {
        Some(credential) => credential,
        None => {
            let credential = auth::authenticate(req, presented, Some(found), body.as_deref())?;
            route.authorize(&credential).await?;
            credential
        }
    };
    Ok((credential, body))
}

/// A client that sends its body slowly holds a connection: it gets a deadline.
async fn read_within(
    req: &HttpRequest,
    payload: web::Payload,
    rules: &BodyRules<'_>,
    hold: &mut BodyHold,
) -> Result<Option<Vec<u8>>, ApiError> {
    let reading = read_body(req, payload, rules.limit, rules.budget, hold);
    tokio::time::timeout(rules.timeout, reading)
        .await
        .map_err(|_| ApiError::BodyTimeout(rules.timeout.as_secs()))?
}
