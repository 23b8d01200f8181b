use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::Client;
use serde_json::Value;

use super::*;
use crate::config::{Config, TEST_ALPACA_KEY, TEST_INTERNAL_KEY};

async fn client() -> Client {
    let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
    crate::migrate(&pool).await.unwrap();
    let rocket = crate::build_rocket_with(
        Config::for_tests("sqlite::memory:"),
        crate::Deps::production(pool),
    )
    .await
    .unwrap();
    Client::tracked(rocket).await.unwrap()
}

fn json_document() -> Value {
    serde_json::to_value(document()).unwrap()
}

/// `(METHOD, /path/{param})` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                found.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    found
}

#[rocket::async_test]
async fn every_mounted_route_is_documented_and_only_those() {
    let client = client().await;
    let mut mounted: BTreeSet<(String, String)> = client
        .rocket()
        .routes()
        .map(|route| {
            let path = route.uri.path().replace('<', "{").replace('>', "}");
            (route.method.as_str().to_owned(), path)
        })
        .collect();
    // Served by the metrics listener, not this server.
    mounted.insert(("GET".to_owned(), "/metrics".to_owned()));
    assert_eq!(documented(&json_document()), mounted);
}

#[test]
fn document_is_openapi_3_1_with_both_keys_and_the_error_body() {
    let doc = json_document();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    for scheme in [ALPACA_SCHEME, INTERNAL_SCHEME] {
        assert_eq!(schemes[scheme]["type"], "apiKey", "{scheme}");
        assert_eq!(schemes[scheme]["in"], "header");
        assert_eq!(schemes[scheme]["name"], "X-API-KEY");
    }
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
}

#[test]
fn every_guarded_operation_documents_the_guard_answers() {
    let doc = json_document();
    let mut guarded = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("200"), "{method} {path}");
            let Some(security) = op["security"].as_array() else {
                continue;
            };
            guarded += 1;
            assert_eq!(security.len(), 1, "{method} {path}");
            for status in ["401", "403", "429", "500"] {
                let response = &responses[status];
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
            assert!(
                responses["429"]["headers"].get("Retry-After").is_some(),
                "{method} {path}"
            );
            // Alpaca's routes take Alpaca's key, every other guarded
            // route the internal one.
            let tag = op["tags"][0].as_str().unwrap();
            let scheme = if tag == "alpaca" {
                ALPACA_SCHEME
            } else {
                INTERNAL_SCHEME
            };
            assert!(security[0].get(scheme).is_some(), "{method} {path}");
        }
    }
    assert!(guarded > 20, "{guarded}");
}

#[test]
fn the_wire_unions_are_one_of_their_versions() {
    let doc = json_document();
    let schemas = &doc["components"]["schemas"];
    let one_of = |name: &str| -> Vec<String> {
        schemas[name]["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is not a oneOf"))
            .iter()
            .map(|part| part["$ref"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(one_of("MintRequestBody").len(), 4);
    assert_eq!(one_of("ConfirmBody").len(), 2);
    assert_eq!(one_of("ConnectBody").len(), 2);
    // The answer to a link has the request's shape: either name, not both.
    let answer = &schemas["ConnectResponse"]["oneOf"];
    assert_eq!(answer[0]["required"][0], "client_external_account_id");
    assert_eq!(answer[1]["required"][0], "client_id");
    for strict in ["ConnectMiddle", "ConnectCurrent", "RegisterRequest"] {
        assert_eq!(schemas[strict]["additionalProperties"], false, "{strict}");
    }
    let mint = &doc["paths"]["/tokenization/mint"]["post"];
    assert_eq!(
        mint["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/MintRequestBody"
    );
}

/// `docs/api.md` is the rendering of this document; with
/// `UPDATE_API_DOCS=1` the test writes it instead.
#[test]
fn docs_api_md_is_generated_from_the_document() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
    let rendered = markdown::render(&json_document());
    if std::env::var_os("UPDATE_API_DOCS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/api.md is stale: run `UPDATE_API_DOCS=1 cargo test --lib \
         openapi::` and commit it"
    );
}

#[rocket::async_test]
async fn document_and_ui_take_the_internal_key_only() {
    let client = client().await;
    for path in [
        "/openapi.json",
        "/docs",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
    ] {
        let anonymous = client.get(path).dispatch().await;
        assert_eq!(anonymous.status(), Status::Unauthorized, "{path}");
        let alpaca = client
            .get(path)
            .header(Header::new("X-API-KEY", TEST_ALPACA_KEY))
            .dispatch()
            .await;
        assert_eq!(alpaca.status(), Status::Unauthorized, "{path}");
    }
    // The internal audience admits loopback only.
    let internal = |path: &'static str| {
        client
            .get(path)
            .header(Header::new("X-API-KEY", TEST_INTERNAL_KEY))
            .remote(SocketAddr::from(([127, 0, 0, 1], 40_000)))
    };
    let response = internal("/openapi.json").dispatch().await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(response.content_type(), Some(ContentType::JSON));
    let served: Value = response.into_json().await.unwrap();
    assert_eq!(served, json_document());

    let page = internal("/docs").dispatch().await;
    assert_eq!(page.content_type(), Some(ContentType::HTML));
    let page = page.into_string().await.unwrap();
    assert!(page.contains("<script src=\"/docs/swagger-ui-bundle.js\">"));
    assert!(page.contains("\"openapi\":\"3.1.0\""));

    let script = internal("/docs/swagger-ui-bundle.js").dispatch().await;
    assert_eq!(script.content_type(), Some(ContentType::JavaScript));
    assert!(
        script
            .into_string()
            .await
            .unwrap()
            .contains("SwaggerUIBundle")
    );
    let style = internal("/docs/swagger-ui.css").dispatch().await;
    assert_eq!(style.content_type(), Some(ContentType::CSS));
}

#[test]
fn the_inline_document_cannot_end_its_script_element() {
    let page = swagger_page(r#"{"description":"</script><b>"}"#);
    assert_eq!(page.matches("</script>").count(), 2);
    assert!(page.contains(r#"{"description":"\u003c/script>\u003cb>"}"#));
}
