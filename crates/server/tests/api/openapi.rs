//! Keeps `openapi.json`, the hand-written document served at `GET /openapi.json`, true to the server:
//! every documented operation is routed, every registered route is documented, and its error codes and
//! their statuses are those of the error table.

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tactful_domain::catalog::Catalog;
use tactful_server::error::ErrorCode;

use crate::common::Harness;

/// The document as the server serves it.
const DOCUMENT: &str = include_str!("../../openapi.json");

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
}

async fn harness() -> Harness {
    Harness::open(Catalog::parse(Catalog::example_text()).expect("the example catalog"), 64, None).await
}

/// Every operation of the document: path, method, operation.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let paths = document["paths"].as_object().expect("paths is an object");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&method.as_str()) {
                operations.push((path.clone(), method.clone(), operation.clone()));
            }
        }
    }
    operations
}

/// What a `$ref` inside the document points at.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} is not local"));
            document.pointer(pointer).unwrap_or_else(|| panic!("{reference} points at nothing"))
        }
        None => value,
    }
}

/// A plausible value for a path parameter, so the request reaches its handler.
fn sample(parameter: &str) -> &'static str {
    match parameter {
        "id" => "sub_nobody",
        "receipt" => "cr_nothing",
        "write_key" => "wk_web_fernhill_demo",
        other => panic!("openapi.json has a path parameter {{{other}}}: give it a sample value here"),
    }
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
            Some(parameter) => sample(parameter),
            None => segment,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn request(method: &str, path: &str) -> Request<Body> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("an HTTP method");
    Request::builder().method(method).uri(path).body(Body::empty()).unwrap()
}

/// Whether an answer is the router's: nothing at this path, or not with this method.
fn unrouted(status: StatusCode, body: &Value) -> bool {
    let code = body["error"]["code"].as_str();
    (status == StatusCode::NOT_FOUND && code == Some("not_found"))
        || status == StatusCode::METHOD_NOT_ALLOWED
        || code == Some("method_not_allowed")
}

#[tokio::test]
async fn the_document_is_served() {
    let harness = harness().await;
    let (status, headers, body) = harness.send(request("get", "/openapi.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(
        body["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")),
        "{}",
        body["openapi"]
    );
    // The catalog's own keys replace the generic patterns; everything else is served as written.
    let mut expected = document();
    for name in [
        "PurposeKey",
        "RecommendationPurpose",
        "ChannelKey",
        "ChannelPurpose",
        "SubjectReference",
        "IdentifierReference",
        "ObjectablePurpose",
    ] {
        expected["components"]["schemas"][name] = body["components"]["schemas"][name].clone();
    }
    for name in ["RequestExtension", "ConsentChange", "NewRequest"] {
        expected["components"]["schemas"][name] = body["components"]["schemas"][name].clone();
    }
    assert_eq!(body, expected, "the server serves openapi.json as it is, but for the catalog's keys");
    let schemas = &body["components"]["schemas"];
    assert!(
        schemas["PurposeKey"]["enum"]
            .as_array()
            .is_some_and(|keys| keys.contains(&json!("analytics.reporting")))
    );
    assert_eq!(schemas["RecommendationPurpose"]["enum"], json!(["personalize.content"]));
    let pattern = schemas["SubjectReference"]["pattern"].as_str().unwrap_or_default();
    assert!(pattern.contains("|loyalty_card):") && pattern.contains("|email:"), "{pattern}");
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let harness = harness().await;
    // What "not routed" looks like, so the check below cannot pass for a wrong reason.
    let (status, _, body) = harness.send(request("get", "/v1/nothing-here")).await;
    assert!(unrouted(status, &body), "{status} {body}");
    let (status, _, body) = harness.send(request("delete", "/healthz")).await;
    assert!(unrouted(status, &body), "{status} {body}");

    let operations = operations(&document());
    assert!(!operations.is_empty());
    for (path, method, _) in operations {
        let uri = concrete(&path);
        let (status, _, body) = harness.send(request(&method, &uri)).await;
        assert!(!unrouted(status, &body), "{} {path} (sent as {uri}) is not routed: {status} {body}", method);
    }
}

/// Every string literal passed to `.route(…)` in a Rust source file.
fn route_literals(source: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(") {
        rest = rest[start + ".route(".len()..].trim_start();
        if let Some(literal) = rest.strip_prefix('"') {
            let end = literal.find('"').expect("a closed string literal");
            literals.push(literal[..end].to_owned());
        }
    }
    literals
}

fn rust_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_registered_route_is_documented() {
    let document = document();
    let documented: BTreeSet<&str> =
        document["paths"].as_object().expect("paths is an object").keys().map(String::as_str).collect();
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes"), &mut files);
    let mut registered: BTreeSet<String> = BTreeSet::new();
    for file in &files {
        registered.extend(route_literals(&std::fs::read_to_string(file).unwrap()));
    }
    // The reading above must find the routes it is meant to find.
    for known in
        ["/healthz", "/openapi.json", "/v1/subjects/{id}/profile", "/v1/projects/{write_key}/settings"]
    {
        assert!(registered.contains(known), "{known} not found in the sources: {registered:?}");
    }
    registered.extend(tactful_server::TRACKING_PATHS.iter().map(|(path, _)| (*path).to_owned()));
    let missing: Vec<&String> =
        registered.iter().filter(|path| !documented.contains(path.as_str())).collect();
    assert!(missing.is_empty(), "routed but not in openapi.json: {missing:?}");
}

#[test]
fn the_error_codes_are_those_of_the_error_table() {
    let document = document();
    let listed: BTreeSet<&str> =
        document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the Error schema lists its codes")
            .iter()
            .map(|code| code.as_str().expect("a code is a string"))
            .collect();
    let table: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    assert_eq!(listed, table);

    // Every error a response shows is answered with the status the table gives its code.
    let mut checked = 0;
    for (path, method, operation) in operations(&document) {
        for (status, response) in operation["responses"].as_object().expect("responses") {
            let response = resolve(&document, response);
            let Some(content) = response["content"].as_object() else { continue };
            for media in content.values() {
                for example in
                    media["examples"].as_object().into_iter().flat_map(|examples| examples.values())
                {
                    let example = resolve(&document, example);
                    let Some(code) = example["value"]["error"]["code"].as_str() else { continue };
                    let code = ErrorCode::ALL
                        .iter()
                        .find(|known| known.as_str() == code)
                        .unwrap_or_else(|| panic!("{method} {path}: {code} is not in the error table"));
                    assert_eq!(
                        &code.status().to_string(),
                        status,
                        "{method} {path}: {} is answered with {}",
                        code.as_str(),
                        code.status()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn every_operation_is_named_and_described_and_every_reference_resolves() {
    let document = document();
    let mut ids = BTreeSet::new();
    for (path, method, operation) in operations(&document) {
        let id =
            operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let summary = operation["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty() && !summary.contains('\n'), "{method} {path}: a one-line summary");
        assert!(operation["description"].as_str().is_some_and(|text| !text.is_empty()), "{method} {path}");
    }
    fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("$ref") {
                    found.push(reference);
                }
                object.values().for_each(|child| references(child, found));
            }
            Value::Array(items) => items.iter().for_each(|child| references(child, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&document, &mut found);
    for reference in found {
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(document.pointer(pointer).is_some(), "{reference} points at nothing");
    }
}

#[test]
fn operations_that_take_a_body_document_its_timeout_and_every_503_its_deadline() {
    let document = document();
    let mut bodies = 0;
    for (path, method, operation) in operations(&document) {
        if path.starts_with("/v1") && operation.get("requestBody").is_some() {
            let timeout = resolve(&document, &operation["responses"]["408"]);
            assert!(
                timeout.pointer("/content/application~1json/examples/request_timeout").is_some(),
                "{method} {path} takes a body, so it may answer 408 request_timeout"
            );
            bodies += 1;
        }
        if let Some(unavailable) = operation["responses"].get("503") {
            let unavailable = resolve(&document, unavailable);
            assert!(
                unavailable.pointer("/content/application~1json/examples/deadline_exceeded").is_some(),
                "{method} {path}: a 503 may also be deadline_exceeded"
            );
        }
    }
    assert!(bodies > 10, "{bodies}");
}
