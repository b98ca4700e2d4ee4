//! The one error type every HTTP handler returns, rendered as SMS renders errors:
//! `{"error_code": "...", "error_msg": "..."}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::BodyError;

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{msg}")]
    BadRequest {
        msg: String,
        params: Option<Vec<String>>,
    },
    #[error("{0}")]
    TaskNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Content-Type is missing; send application/json")]
    ContentTypeMissing,
    #[error("Content-Type {0:?} is not application/json")]
    ContentTypeWrong(String),
    #[error("body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("too many requests for this credential; slow down")]
    Throttled,
    #[error("no such path: {0}")]
    UnknownPath(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
}

impl SmsError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        SmsError::BadRequest {
            msg: msg.into(),
            params: None,
        }
    }

    pub fn error_code(&self) -> &'static str {
        match self {
            SmsError::Unauthenticated(_) => "APIGW.0301",
            SmsError::Forbidden(_) => "SMS.9004",
            SmsError::BadRequest { .. } => "SMS.9001",
            SmsError::TaskNotFound(_) => "SMS.7703",
            SmsError::ContentTypeMissing => "SMS.2005",
            SmsError::ContentTypeWrong(_) => "SMS.2006",
            SmsError::BodyTooLarge(_) => "SMS.2004",
            SmsError::Storage(_) => "SMS.2007",
            SmsError::Unavailable(_) => "SMS.0201",
            SmsError::Throttled => "APIGW.0308",
            SmsError::UnknownPath(_) | SmsError::NotFound(_) => "APIGW.0101",
            SmsError::MethodNotAllowed(_) => "SMS.2003",
        }
    }
}

impl From<BodyError> for SmsError {
    fn from(e: BodyError) -> Self {
        SmsError::BadRequest {
            msg: e.message(),
            params: e.params(),
        }
    }
}

/// Marks an error response with its code so the rejection log can record it.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

#[derive(Serialize)]
struct ErrorBody<'a> {
    error_code: &'a str,
    error_msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_param: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoded_authorization_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Vec<Detail<'a>>>,
}

#[derive(Serialize)]
struct Detail<'a> {
    error_code: &'a str,
    error_msg: String,
}

impl ResponseError for SmsError {
    fn status_code(&self) -> StatusCode {
        match self {
            SmsError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            SmsError::Forbidden(_) => StatusCode::FORBIDDEN,
            SmsError::BadRequest { .. }
            | SmsError::ContentTypeMissing
            | SmsError::ContentTypeWrong(_) => StatusCode::BAD_REQUEST,
            SmsError::TaskNotFound(_) | SmsError::NotFound(_) | SmsError::UnknownPath(_) => {
                StatusCode::NOT_FOUND
            }
            SmsError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SmsError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SmsError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SmsError::Throttled => StatusCode::TOO_MANY_REQUESTS,
            SmsError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.error_code();
        let empty: &[String] = &[];
        let forbidden = matches!(self, SmsError::Forbidden(_));
        let body = ErrorBody {
            error_code: code,
            error_msg: self.to_string(),
            error_param: match self {
                SmsError::BadRequest { params, .. } => params.as_deref(),
                SmsError::Forbidden(_) => Some(empty),
                _ => None,
            },
            encoded_authorization_message: forbidden.then_some(""),
            details: forbidden.then(|| {
                vec![Detail {
                    error_code: code,
                    error_msg: self.to_string(),
                }]
            }),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, SmsError::Throttled | SmsError::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        let mut response = response.json(body);
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}
