//! The OpenAPI document describes exactly the routes the hub serves, and the reference
//! page renders it from embedded assets under a strict policy.

use std::collections::BTreeSet;

use awc::http::Method;
use serde_json::Value;

use crate::support::routes::route_table;
use crate::support::TestHub;

#[actix_web::test]
async fn the_document_names_every_route_and_no_other() {
    let hub = TestHub::spawn().await;
    let doc = hub
        .raw(Method::GET, "/api/openapi.json", None, None)
        .await
        .expect(200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .map(move |method| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let (routes, unreadable) = route_table();
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let served: BTreeSet<(String, String)> = routes.into_iter().collect();
    let undocumented: Vec<_> = served.difference(&described).collect();
    let invented: Vec<_> = described.difference(&served).collect();
    assert!(
        undocumented.is_empty() && invented.is_empty(),
        "routes missing from the document: {undocumented:?}\ndocumented routes that do not exist: {invented:?}"
    );
}

#[actix_web::test]
async fn every_operation_says_how_to_authenticate_and_how_it_fails() {
    let hub = TestHub::spawn().await;
    let doc = hub
        .raw(Method::GET, "/api/openapi.json", None, None)
        .await
        .expect(200);
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for scheme in [
        "bearer",
        "api_key",
        "cookie",
        "query_token",
        "federation_token",
    ] {
        assert!(schemes.contains_key(scheme), "{scheme} is described");
    }
    let stream = &doc["paths"]["/api/stream"]["get"]["security"];
    assert!(stream.to_string().contains("query_token"), "{stream}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses: &Value = &operation["responses"];
            for status in ["400", "401", "404", "503"] {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} answers {status} with the error body"
                );
            }
        }
    }
    let create = &doc["paths"]["/api/tasks"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/TaskBody"
    );
    assert!(doc["components"]["schemas"]["TaskBody"]["properties"]["prompt"].is_object());
}

#[actix_web::test]
async fn the_reference_page_is_served_from_the_binary() {
    let hub = TestHub::spawn().await;
    let client = awc::Client::new();
    let mut page = client
        .get(format!("{}/api/docs", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page
        .headers()
        .get("content-security-policy")
        .expect("a Content-Security-Policy")
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"));
    let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no other host: {html}"
    );
    for asset in ["docs.js", "swagger-ui-bundle.js", "swagger-ui.css"] {
        assert!(
            html.contains(&format!("/api/docs/{asset}")),
            "{asset} is linked"
        );
        let mut response = client
            .get(format!("{}/api/docs/{asset}", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(!response.body().limit(4 << 20).await.unwrap().is_empty());
    }
    let missing = client
        .get(format!("{}/api/docs/elsewhere.js", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
