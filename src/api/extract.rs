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

use crate::domain::json_integer;
use crate::domain::Blank;
use crate::error::HubError;
use crate::startup::Hub;

/// A JSON request body of type `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = HubError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, HubError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move { parse_json(&body.await?).map(Json) })
    }
}

/// The whole body, refused (413) past `max_body_bytes`, declared or not.
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<web::BytesMut, HubError>> {
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
    async move {
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
        Ok(body)
    }
}

/// The header a create carries its idempotency key in.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// A create's `Idempotency-Key` and the SHA-256 of the exact body it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// A create's body (read whole, JSON left to the handler) and, when the request has one,
/// its idempotency key.
pub struct Keyed {
    pub body: web::Bytes,
    pub key: Option<IdempotencyKey>,
}

impl FromRequest for Keyed {
    type Error = HubError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, HubError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Printable ASCII and spaces only (a tab, say, is refused).
        let visible = |key: &str| key.bytes().all(|b| (0x20..=0x7E).contains(&b));
        let key = match req.headers().get(IDEMPOTENCY_HEADER).map(|v| v.to_str()) {
            // An empty header is no key, like none.
            None => Ok(None),
            Some(Ok(key)) if visible(key) && key.trim().is_empty() => Ok(None),
            Some(Ok(key)) if visible(key) && key.len() <= 255 => Ok(Some(key.trim().to_string())),
            Some(_) => Err(HubError::bad_request(
                "Idempotency-Key must be at most 255 visible ASCII characters",
            )),
        };
        let body = read_body(req, payload);
        Box::pin(async move {
            let key = key?;
            let body = body.await?.freeze();
            let key = key.map(|key| IdempotencyKey {
                key,
                request_hash: crate::crypto::tokens::hash_bytes(&body),
            });
            Ok(Keyed { body, key })
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
    let value = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(error) if is_type_error(&error) => {
            // JSON has one number type: 3.0 is an integer to every JSON Schema tool, so
            // read integral floats as integers before refusing the body (rarely taken).
            return match integral_floats_as_integers(bytes) {
                Some(normal) => serde_path_to_error::deserialize(normal).map_err(field_error),
                None => Err(field_error(error)),
            };
        }
        Err(error) => return Err(field_error(error)),
    };
    // Only whitespace may follow the object.
    deserializer
        .end()
        .map_err(|e| HubError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn is_type_error(error: &serde_path_to_error::Error<serde_json::Error>) -> bool {
    !(error.inner().is_syntax() || error.inner().is_eof())
}

/// A 400 naming the field a JSON error is in.
fn field_error(error: serde_path_to_error::Error<serde_json::Error>) -> HubError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        HubError::bad_request(format!("malformed JSON: {inner}"))
    } else if path == "." {
        HubError::bad_request(format!("invalid body: {inner}"))
    } else {
        HubError::bad_request(format!("invalid field {path}: {inner}"))
    }
}

/// The document with every float that is an integer ([`json_integer`]) made one; `None`
/// when there is none.
fn integral_floats_as_integers(bytes: &[u8]) -> Option<serde_json::Value> {
    use serde_json::Value;
    fn walk(value: &mut Value) -> bool {
        match value {
            Value::Number(n) if n.is_f64() => match json_integer(value) {
                Some(integer) => {
                    *value = Value::from(integer);
                    true
                }
                None => false,
            },
            Value::Array(items) => items.iter_mut().map(walk).fold(false, |a, b| a | b),
            Value::Object(fields) => fields.values_mut().map(walk).fold(false, |a, b| a | b),
            _ => false,
        }
    }
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    walk(&mut value).then_some(value)
}

/// A text field of at most `max` characters; `blank_ok` lets it be empty (a soul may be).
pub fn text(
    field: &str,
    value: Option<String>,
    max: usize,
    blank_ok: bool,
) -> Result<Option<String>, HubError> {
    let Some(value) = value else { return Ok(None) };
    if !blank_ok && value.trim_blank().is_empty() {
        return Err(HubError::bad_request(format!("{field} must not be blank")));
    }
    if value.chars().count() > max {
        return Err(HubError::bad_request(format!(
            "{field} exceeds {max} characters"
        )));
    }
    Ok(Some(if blank_ok {
        value
    } else {
        value.trim_blank().to_string()
    }))
}

/// An optional JSON body: nothing (or only whitespace, or `null`) is the default value.
pub fn optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, HubError> {
    let text = bytes.trim_ascii();
    if text.is_empty() || text == b"null" {
        Ok(T::default())
    } else {
        parse_json(text)
    }
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

/// The `X-Consumer-Id` header: the consumer lease an agent's write claims to hold
/// (seed 002). Paired with the caller by [`crate::domain::access::Principal::fence`].
pub struct ConsumerId(pub Option<String>);

/// The header an agent's writes carry its consumer lease in.
pub const CONSUMER_HEADER: &str = "x-consumer-id";

impl FromRequest for ConsumerId {
    type Error = HubError;
    type Future = std::future::Ready<Result<Self, HubError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Whatever it holds is compared with the live lease (anything else is stale); an
        // empty header is no lease, like none.
        let id = req
            .headers()
            .get(CONSUMER_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .filter(|id| !id.is_empty());
        std::future::ready(Ok(Self(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Body {
        priority: i32,
    }

    #[test]
    fn type_errors_name_the_field() {
        let error = parse_json::<Body>(br#"{"priority": "high"}"#).unwrap_err();
        assert!(error.to_string().contains("priority"), "{error}");
    }

    #[test]
    fn integral_floats_are_integers() {
        let body = parse_json::<Body>(br#"{"priority": 3.0}"#).unwrap();
        assert_eq!(body.priority, 3);
        let error = parse_json::<Body>(br#"{"priority": 3.5}"#).unwrap_err();
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
