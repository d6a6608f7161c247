//! The one error type of the hub. Every handler returns `Result<_, HubError>`; it renders
//! as `{"error": "<message a person can act on>", "code": "<stable_snake_code>"}`.
//! Inner layers use `diesel::result::Error` and convert here, at the edge.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// 401 naming what is wrong with a credential presented in a body (a registration
    /// token, a recovery credential, a bindSecret).
    #[error("{0}")]
    BadCredential(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// 405 with `Allow`: the path exists, the method does not.
    #[error("{method} is not allowed here; use {allowed}")]
    MethodNotAllowed { method: String, allowed: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// 429 with `Retry-After`: the client may try again after that many seconds.
    #[error("{0}")]
    Throttled(String, u64),
    #[error("kill switch engaged")]
    KillSwitch,
    /// The hub is overloaded or shutting down; the client should retry shortly.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of the hub, not of the client. The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HubError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::BadCredential(message.into())
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal(message.to_string())
    }

    /// The stable machine-readable name of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized | Self::BadCredential(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Unprocessable(_) => "unprocessable",
            Self::TooManyRequests(_) | Self::Throttled(..) => "too_many_requests",
            Self::KillSwitch => "kill_switch",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<diesel::result::Error> for HubError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::NotFound => Self::not_found("not found"),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::conflict(format!("already exists ({})", info.message()))
            }
            // PostgreSQL's text cannot hold U+0000 (SQLite's can): the client's text, not
            // the hub, is at fault.
            Error::DatabaseError(_, info) if info.message().contains("0x00") => {
                Self::Unprocessable("text may not contain the NUL character (\\u0000)".into())
            }
            other => Self::internal(format!("database: {other}")),
        }
    }
}

impl From<diesel::r2d2::PoolError> for HubError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(format!("database pool unavailable: {error}"))
    }
}

impl From<actix_web::error::BlockingError> for HubError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        Self::Unavailable("the hub is shutting down".into())
    }
}

impl From<actix::MailboxError> for HubError {
    fn from(error: actix::MailboxError) -> Self {
        Self::Unavailable(format!("the hub is busy or shutting down ({error})"))
    }
}

impl ResponseError for HubError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::BadCredential(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) | Self::Throttled(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::KillSwitch | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            Self::Internal(detail) => {
                tracing::error!(error.detail = %detail, "request failed inside the hub");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            Self::Throttled(_, seconds) => {
                response.insert_header((header::RETRY_AFTER, seconds.max(&1).to_string()));
            }
            Self::MethodNotAllowed { allowed, .. } => {
                response.insert_header((header::ALLOW, allowed.as_str()));
            }
            _ => {}
        }
        if matches!(self, Self::Unauthorized | Self::BadCredential(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(json!({ "error": message, "code": self.code() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn errors_render_as_json_with_the_right_status() {
        let response = HubError::not_found("no task 7").error_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = to_bytes(response.into_body()).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"], "no task 7");
        assert_eq!(value["code"], "not_found");
    }

    #[actix_web::test]
    async fn internal_details_are_not_sent() {
        let response = HubError::internal("disk I/O error at /secret/path").error_response();
        let body = to_bytes(response.into_body()).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }

    #[test]
    fn a_missing_row_is_a_404() {
        let error = diesel::result::Error::NotFound;
        assert!(matches!(HubError::from(error), HubError::NotFound(_)));
    }
}
