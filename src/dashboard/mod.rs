//! The operator dashboard: plain HTML, CSS and JavaScript modules embedded in the binary
//! and served as they are (no build step). Each file has a strong ETag and is revalidated
//! on every load, so a new binary's files are used at once and an unchanged file costs a
//! 304; a gzip copy is made once, for clients that accept it. Every response carries a
//! policy that lets the page load and fetch from this hub alone, and never be framed.

use std::io::Write;
use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use sha2::{Digest, Sha256};

use crate::error::HubError;

/// Nothing from another origin, no inline script or style, no framing, no plugins.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

struct File {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! file {
    ($name:literal, $mime:expr) => {
        File {
            name: $name,
            mime: $mime,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the dashboard has; `/ui/{name}` serves them, `/` serves `index.html`.
const FILES: &[File] = &[
    file!("index.html", "text/html; charset=utf-8"),
    file!("app.css", "text/css; charset=utf-8"),
    file!("icon.svg", "image/svg+xml"),
    file!("preact-htm.js", JS),
    file!("app.js", JS),
    file!("api.js", JS),
    file!("live.js", JS),
    file!("parts.js", JS),
    file!("signin.js", JS),
    file!("overview.js", JS),
    file!("agents.js", JS),
    file!("agent.js", JS),
    file!("tasks.js", JS),
    file!("task.js", JS),
    file!("pipelines.js", JS),
    file!("decisions.js", JS),
    file!("onboarding.js", JS),
    file!("audit.js", JS),
    file!("schedules.js", JS),
    file!("exchanges.js", JS),
];

/// What is worked out once per file: its ETag and its gzip copy (when that is smaller).
struct Prepared {
    etag: String,
    /// Shared by every response (a clone is a reference count).
    gzip: Option<web::Bytes>,
}

fn prepared() -> &'static [Prepared] {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| FILES.iter().map(prepare).collect())
}

fn prepare(file: &File) -> Prepared {
    let digest = Sha256::digest(file.body);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let gzip = encoder
        .write_all(file.body)
        .and_then(|()| encoder.finish())
        .ok()
        .filter(|gz| gz.len() < file.body.len())
        .map(web::Bytes::from);
    Prepared {
        etag: format!("\"{}\"", hex::encode(&digest[..12])),
        gzip,
    }
}

#[utoipa::path(get, path = "/", tag = "dashboard", security(()),
    responses((status = 200, description = "The operator dashboard", content_type = "text/html")))]
pub async fn page(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

#[utoipa::path(get, path = "/approve/{verification_code}", tag = "dashboard", security(()),
    params(("verification_code" = String, Path, description = "A preregistration's verification code")),
    responses((status = 303, description = "To the dashboard's approval page for this preregistration (seed 002's verification_uri)")))]
pub async fn approve_link(code: web::Path<String>) -> HttpResponse {
    // Only the code's own characters go into the Location header.
    let code: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/#/onboarding/{code}")))
        .finish()
}

#[utoipa::path(get, path = "/ui/{file}", tag = "dashboard", security(()),
    params(("file" = String, Path, description = "A dashboard file: app.js, app.css, …")),
    responses((status = 200, description = "The file", content_type = "text/javascript")))]
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    serve(&req, &file)
}

fn serve(req: &HttpRequest, name: &str) -> HttpResponse {
    let Some(index) = FILES.iter().position(|f| f.name == name) else {
        return HubError::not_found(format!("no dashboard file {name:?}")).error_response();
    };
    let (file, prepared) = (&FILES[index], &prepared()[index]);
    // Each encoding is its own representation, with its own strong ETag.
    let gzip = prepared
        .gzip
        .as_ref()
        .filter(|_| accepts_gzip(req.headers().get(header::ACCEPT_ENCODING)));
    let etag = match gzip {
        Some(_) => format!("{}-gz\"", prepared.etag.trim_end_matches('"')),
        None => prepared.etag.clone(),
    };
    let not_modified = fresh(req, &etag);
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if not_modified {
        return response.finish();
    }
    response.insert_header((header::CONTENT_TYPE, file.mime));
    match gzip {
        Some(gzip) => response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(gzip.clone()),
        None => response.body(file.body),
    }
}

/// True when the client's `If-None-Match` names this version.
fn fresh(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| {
            list.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        })
}

/// True when `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(accept: Option<&HeaderValue>) -> bool {
    let Some(list) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // The quality the client gives gzip by name, else the one it gives `*`; none: refused.
    let mut named = None;
    let mut any = None;
    for entry in list.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let quality = parts
            .find_map(|p| p.strip_prefix("q="))
            .map_or(Some(1.0), |q| q.parse::<f32>().ok())
            .unwrap_or(0.0);
        if coding.eq_ignore_ascii_case("gzip") {
            named = Some(quality);
        } else if coding == "*" {
            any = Some(quality);
        }
    }
    named.or(any).is_some_and(|q| q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> bool {
        accepts_gzip(Some(&HeaderValue::from_str(value).unwrap()))
    }

    #[test]
    fn gzip_is_sent_only_where_it_is_accepted() {
        assert!(accept("gzip, deflate, br"));
        assert!(accept("br;q=1.0, gzip;q=0.8"));
        assert!(accept("*"));
        assert!(!accept("gzip;q=0"));
        assert!(
            !accept("gzip;q=0, *"),
            "a refusal by name beats the wildcard"
        );
        assert!(!accept("br, deflate"));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn every_file_is_prepared_and_the_big_ones_shrink() {
        let all = prepared();
        assert_eq!(all.len(), FILES.len());
        let script = FILES
            .iter()
            .position(|f| f.name == "preact-htm.js")
            .unwrap();
        let gzip = all[script].gzip.as_ref().expect("a gzip copy");
        assert!(gzip.len() * 2 < FILES[script].body.len());
    }
}
