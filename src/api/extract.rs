//! Request body and query extraction with errors a person can act on: the JSON is read
//! whatever the Content-Type says (seed 000's curl examples send none), a wrong type
//! names the field it is in, and an oversized body is a 413.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::HubError;
use crate::startup::Hub;

/// A JSON request body of type `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = HubError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, HubError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<Hub>>()
            .map(|hub| hub.core.settings.max_body_bytes)
            .unwrap_or(262_144);
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > limit) {
                return Err(too_large(limit));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e: PayloadError| {
                    HubError::bad_request(format!("could not read the body: {e}"))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            parse_json(&body).map(Json)
        })
    }
}

fn too_large(limit: usize) -> HubError {
    HubError::PayloadTooLarge(format!("request body exceeds {limit} bytes"))
}

/// Parses a JSON document, naming the offending field on a type error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HubError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(HubError::bad_request(
                "the request body is empty; a JSON object is expected",
            ))
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(HubError::bad_request(
                "the request body must be a JSON object",
            ))
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            HubError::bad_request(format!("malformed JSON: {inner}"))
        } else if path == "." {
            HubError::bad_request(format!("invalid body: {inner}"))
        } else {
            HubError::bad_request(format!("invalid field {path}: {inner}"))
        }
    })?;
    // Only whitespace may follow the object.
    deserializer
        .end()
        .map_err(|e| HubError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Query string parameters of type `T`, with the same kind of errors.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = HubError;
    type Future = std::future::Ready<Result<Self, HubError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            web::Query::<T>::from_query(req.query_string())
                .map(|q| Query(q.into_inner()))
                .map_err(|e| HubError::bad_request(format!("invalid query string: {e}"))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[allow(dead_code)]
        priority: i32,
    }

    #[test]
    fn type_errors_name_the_field() {
        let error = parse_json::<Body>(br#"{"priority": "high"}"#).unwrap_err();
        assert!(error.to_string().contains("priority"), "{error}");
    }

    #[test]
    fn arrays_and_garbage_are_refused_clearly() {
        assert!(parse_json::<Body>(b"[1,2]")
            .unwrap_err()
            .to_string()
            .contains("JSON object"));
        assert!(parse_json::<Body>(b"{nope")
            .unwrap_err()
            .to_string()
            .contains("malformed JSON"));
        assert!(parse_json::<Body>(b"")
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
