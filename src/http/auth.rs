//! Authenticating HTTP requests: `X-Auth-Token`, or AK/SK signatures verified with
//! the same [`crate::domain::signing`] module that signs upstream requests.

use std::time::Duration;

use actix_web::{HttpMessage, HttpRequest};
use chrono::Utc;

use super::error::ApiError;
use crate::domain::signing::{self, AuthorizationHeader, ReceivedRequest};
use crate::domain::{token_hash, AuthMethod, Credential};
use crate::storage::credentials;

pub const MAX_TOKEN_LEN: usize = 16384;

/// The token header (a name given as text is parsed, and copied, at each look-up).
pub const X_AUTH_TOKEN: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-auth-token");

/// The credential name of an authenticated request, kept in the request's
/// extensions for the rejection log.
#[derive(Clone, Debug)]
pub struct CredentialName(pub String);

/// What the caller presented, before any database lookup.
#[derive(Clone)]
pub enum PresentedCredential {
    Token(String),
    Aksk(AuthorizationHeader),
}

impl PresentedCredential {
    pub fn method(&self) -> AuthMethod {
        match self {
            PresentedCredential::Token(_) => AuthMethod::Token,
            PresentedCredential::Aksk(_) => AuthMethod::Aksk,
        }
    }
}

pub fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The caller leaves the body out of its signature (`X-Sdk-Content-Sha256:
/// UNSIGNED-PAYLOAD`, as the SDK signer allows).
pub fn unsigned_payload(req: &HttpRequest) -> bool {
    header(req, "x-sdk-content-sha256").is_some_and(|v| v.trim() == "UNSIGNED-PAYLOAD")
}

/// A header as a signature covers it. HTTP/2 carries the host as the
/// `:authority` pseudo-header, not as `Host`: the SDK signs it as `host`.
fn signed_header(req: &HttpRequest, name: &str) -> Option<String> {
    header(req, name).or_else(|| {
        (name == "host")
            .then(|| req.uri().authority().map(|a| a.as_str().to_string()))
            .flatten()
    })
}

fn unauthenticated(msg: impl Into<String>) -> ApiError {
    ApiError::Unauthenticated(msg.into())
}

/// Reads the credentials from the headers; checks everything that needs no lookup
/// (token length, Authorization syntax, signed headers, X-Sdk-Date window).
pub fn presented(req: &HttpRequest, allow_aksk: bool) -> Result<PresentedCredential, ApiError> {
    if let Some(token) = req.headers().get(X_AUTH_TOKEN) {
        let token = token
            .to_str()
            .map_err(|_| unauthenticated("X-Auth-Token is not a valid token"))?;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(unauthenticated(format!(
                "X-Auth-Token must be 1 to {MAX_TOKEN_LEN} characters"
            )));
        }
        return Ok(PresentedCredential::Token(token.to_string()));
    }
    let Some(authorization) = header(req, "authorization").filter(|_| allow_aksk) else {
        return Err(unauthenticated(if allow_aksk {
            "no credentials: send X-Auth-Token or an SDK-HMAC-SHA256 Authorization header"
        } else {
            "no credentials: send the X-Auth-Token of an auditor or operator"
        }));
    };
    let auth = AuthorizationHeader::parse(&authorization)
        .map_err(|e| unauthenticated(format!("Authorization: {e}")))?;
    let lookup = |name: &str| signed_header(req, name);
    let received = received_request(req, &lookup, &[]);
    signing::check_date(&received, Utc::now())
        .map_err(|e| unauthenticated(format!("Authorization: {e}")))?;
    Ok(PresentedCredential::Aksk(auth))
}

fn received_request<'a>(
    req: &'a HttpRequest,
    header: &'a dyn Fn(&str) -> Option<String>,
    body: &'a [u8],
) -> ReceivedRequest<'a> {
    ReceivedRequest {
        method: req.method().as_str(),
        path: req.uri().path(),
        raw_query: req.query_string(),
        header,
        body,
    }
}

/// A credential looked up for what was presented, with the AK's secret key.
#[derive(Clone)]
pub struct StoredCredential {
    pub credential: Credential,
    secret_key: Option<String>,
}

/// Looks the presented credential up. Blocking: run it on a blocking thread.
pub fn lookup(
    conn: &rusqlite::Connection,
    presented: &PresentedCredential,
) -> Result<Option<StoredCredential>, crate::storage::StorageError> {
    Ok(match presented {
        PresentedCredential::Token(token) => {
            credentials::find_by_token(conn, token)?.map(|credential| StoredCredential {
                credential,
                secret_key: None,
            })
        }
        PresentedCredential::Aksk(auth) => credentials::find_by_access_key(conn, &auth.access_key)?
            .map(|(credential, sk)| StoredCredential {
                credential,
                secret_key: Some(sk),
            }),
    })
}

/// Looks the presented credential up, through the cache.
pub async fn find(
    presented: &PresentedCredential,
    cache: &AuthCache,
    reads: &crate::storage::ReadPool,
) -> Result<Option<StoredCredential>, ApiError> {
    if let Some(found) = cache.credential(presented) {
        return Ok(Some(found));
    }
    let lookup_presented = presented.clone();
    let found = reads
        .with_blocking(move |conn| lookup(conn, &lookup_presented))
        .await?;
    cache.remember(presented, found.as_ref());
    Ok(found)
}

/// What answers both an unknown access key and a signature that does not match:
/// the two are not told apart, so the key's existence is not given away.
pub const AKSK_REFUSED: &str =
    "Authorization: the access key is not known or the signature does not match";

/// 401 for a credential that is not known, before anything else of the request
/// (its body above all) is read.
pub fn require_known(
    presented: &PresentedCredential,
    found: Option<StoredCredential>,
) -> Result<StoredCredential, ApiError> {
    found.ok_or_else(|| {
        unauthenticated(match presented {
            PresentedCredential::Token(_) => "X-Auth-Token is not a known token",
            PresentedCredential::Aksk(_) => AKSK_REFUSED,
        })
    })
}

/// Finishes authentication once the body is known: unknown or revoked credentials
/// and bad signatures are 401. `body` is `None` when it was too large to read, in
/// which case the signature cannot be checked and the caller answers 413.
pub fn authenticate(
    req: &HttpRequest,
    presented: &PresentedCredential,
    found: Option<StoredCredential>,
    body: Option<&[u8]>,
) -> Result<Credential, ApiError> {
    let found = require_known(presented, found)?;
    // Known from here on, even if the signature turns out bad: the rejection log
    // then shows whose key was used.
    req.extensions_mut()
        .insert(CredentialName(found.credential.name.clone()));
    if let (PresentedCredential::Aksk(auth), Some(sk), Some(body)) =
        (presented, &found.secret_key, body)
    {
        let lookup = |name: &str| signed_header(req, name);
        let received = received_request(req, &lookup, body);
        signing::verify(auth, &received, sk).map_err(|e| match e {
            signing::SignatureError::Mismatch => unauthenticated(AKSK_REFUSED),
            other => unauthenticated(format!("Authorization: {other}")),
        })?;
    }
    if found.credential.revoked {
        return Err(unauthenticated("the credential has been revoked"));
    }
    Ok(found.credential)
}

/// Remembers credentials found (for `ttl`) and registered tasks (for good: tasks are
/// never removed), so most requests need no database read before the body is
/// checked. A revocation therefore takes effect within `ttl`.
pub struct AuthCache {
    /// `None` when credentials are not cached (`--credential-cache 0`).
    credentials: Option<moka::sync::Cache<String, StoredCredential>>,
    tasks: moka::sync::Cache<String, ()>,
}

/// Entries kept at most in each cache; the least used go first.
const CACHE_ENTRIES: u64 = 10_000;

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            credentials: (!ttl.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(CACHE_ENTRIES)
                    .time_to_live(ttl)
                    .build()
            }),
            tasks: moka::sync::Cache::new(CACHE_ENTRIES),
        }
    }

    fn key(presented: &PresentedCredential) -> String {
        match presented {
            PresentedCredential::Token(t) => token_hash(t),
            PresentedCredential::Aksk(a) => format!("ak:{}", a.access_key),
        }
    }

    pub fn credential(&self, presented: &PresentedCredential) -> Option<StoredCredential> {
        self.credentials.as_ref()?.get(&Self::key(presented))
    }

    /// Only credentials that exist are remembered; unknown ones are looked up
    /// every time.
    pub fn remember(&self, presented: &PresentedCredential, found: Option<&StoredCredential>) {
        if let (Some(cache), Some(found)) = (&self.credentials, found) {
            cache.insert(Self::key(presented), found.clone());
        }
    }

    pub fn task_known(&self, task_id: &str) -> bool {
        self.tasks.contains_key(task_id)
    }

    pub fn remember_task(&self, task_id: &str) {
        self.tasks.insert(task_id.to_string(), ());
    }
}

/// Signatures of uploads already received, for the window a signature is good
/// for (15 minutes either side of its `X-Sdk-Date`): a signed upload sent again
/// as it was is refused rather than stored twice. A signature is claimed when it
/// is verified and kept only once its upload is committed, so a request refused
/// or failed may be sent again.
pub struct SeenSignatures(moka::sync::Cache<u128, ()>);

/// How long a signature is remembered: the two 15-minute halves of its window.
const SEEN_FOR: Duration = Duration::from_secs(30 * 60);
/// The most remembered at once (tens of MB); beyond it the least used are forgotten.
const SEEN_AT_MOST: u64 = 1_000_000;

/// A claimed signature; given up when dropped unless [`SignatureClaim::keep`] is called.
pub struct SignatureClaim<'a> {
    seen: &'a SeenSignatures,
    key: Option<u128>,
}

impl SignatureClaim<'_> {
    /// The upload was stored: the signature stays used.
    pub fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for SignatureClaim<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.seen.0.invalidate(&key);
        }
    }
}

impl Default for SeenSignatures {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(SEEN_AT_MOST)
                .time_to_live(SEEN_FOR)
                .build(),
        )
    }
}

impl SeenSignatures {
    /// Claims `auth`'s signature (case does not matter), or 401 when it was
    /// received before.
    pub fn claim(&self, auth: &AuthorizationHeader) -> Result<SignatureClaim<'_>, ApiError> {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(auth.access_key.as_bytes())
            .chain_update(b"\n")
            .chain_update(auth.signature.to_ascii_lowercase().as_bytes())
            .finalize();
        let key = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        // One atomic step: of two copies arriving together, one claims it.
        if !self.0.entry(key).or_insert(()).is_fresh() {
            return Err(unauthenticated(
                "Authorization: this signed request was received before; sign each request anew",
            ));
        }
        Ok(SignatureClaim {
            seen: self,
            key: Some(key),
        })
    }
}
