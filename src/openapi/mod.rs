//! The OpenAPI 3.1 document of every route, generated from the handlers'
//! `#[utoipa::path]` annotations and the wire types' `ToSchema`; each
//! feature contributes its `…ApiDoc`. Served at `GET /openapi.json`,
//! with a Swagger UI at `GET /docs` whose assets are vendored in
//! `assets/swagger-ui` (copied from the pinned npm package
//! `swagger-ui-dist`; `scripts/check-artifacts` keeps the copy exact).
//! Both take the internal key. `docs/api.md` is rendered from the same
//! document ([`markdown`]).

#[cfg(test)]
mod markdown;

use rocket::http::ContentType;
use rocket::response::content::RawHtml;
use rocket::serde::json::Json;
use rocket::{Route, get};
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{
    Content, Header, OpenApi as Document, PathItem, Ref, RefOr, ServerBuilder,
};
use utoipa::{Modify, OpenApi};

use crate::auth::{API_KEY_HEADER, InternalAuth};
use crate::http::ErrorBody;

/// Security scheme names used by the handlers' `security(...)`.
pub const ALPACA_SCHEME: &str = "alpaca_api_key";
pub const INTERNAL_SCHEME: &str = "internal_api_key";

const SWAGGER_UI_JS: &str =
    include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &str =
    include_str!("../../assets/swagger-ui/swagger-ui.css");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "issuance-bot",
        description = "The Issuer in Alpaca's Instant Tokenization Network: \
            the endpoints Alpaca calls (all three wire versions), the \
            operators' internal endpoints and the health checks. Every \
            error body is `{\"error\": \"<message>\"}`; every response \
            carries `X-Request-Id`. A request to no route is 404 `no such \
            endpoint: <METHOD> <path>`. SPEC.md is the full contract."
    ),
    paths(openapi_json, swagger_ui, swagger_ui_js, swagger_ui_css),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "alpaca", description = "Called by Alpaca (its API key, or \
            its RFC 9421 signature with `auth.alpaca.scheme = \"signature\"`)"),
        (name = "internal", description = "Operators (the internal API key)"),
        (name = "health", description = "Liveness, readiness and metrics (no key)"),
        (name = "docs", description = "This document and its Swagger UI \
            (the internal API key)"),
    )
)]
struct RootDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ALPACA_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(
                ApiKeyValue::with_description(
                    API_KEY_HEADER,
                    "`auth.alpaca.api_key` (scheme `api_key`, the default). \
                     With `auth.alpaca.scheme = \"signature\"` Alpaca signs \
                     instead (`Signature-Input`, `Signature`, and \
                     `Content-Digest` on a body; RFC 9421/9530, see \
                     SPEC.md) and this header is refused.",
                ),
            )),
        );
        components.add_security_scheme(
            INTERNAL_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(
                ApiKeyValue::with_description(
                    API_KEY_HEADER,
                    "`auth.internal.api_key`, from an address in \
                     `auth.internal.allowed_cidrs`.",
                ),
            )),
        );
    }
}

/// The whole document: the root (info, security schemes, these docs'
/// own routes) merged with every feature's routes, then the answers
/// every guarded route may give added to each of them.
pub fn document() -> Document {
    let mut doc = RootDoc::openapi();
    for part in [
        crate::http::health::HealthApiDoc::openapi(),
        crate::account::AccountApiDoc::openapi(),
        crate::tokenized_asset::TokenizedAssetApiDoc::openapi(),
        crate::tokenized_asset::CustodyApiDoc::openapi(),
        crate::mint::MintApiDoc::openapi(),
        crate::mint::MintAdminApiDoc::openapi(),
        crate::redemption::RedemptionApiDoc::openapi(),
        crate::redemption::RedemptionAdminApiDoc::openapi(),
        crate::admin::AdminApiDoc::openapi(),
        crate::receipt_inventory::ReceiptApiDoc::openapi(),
    ] {
        doc.merge(part);
    }
    doc.paths
        .paths
        .insert("/metrics".to_owned(), metrics_path());
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                add_guard_answers(operation);
            }
        }
    }
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    )
}

/// What the auth guards answer (SPEC: Authentication and abuse limits)
/// and the generic 500, for an operation that takes a key.
fn add_guard_answers(operation: &mut Operation) {
    let retry_after = Header::new(Object::with_type(Type::Integer));
    let answers: [(&str, Response); 4] = [
        (
            "401",
            error_response(
                "`missing X-API-KEY header`, `invalid API key`, or a \
                 signature fault (Alpaca with `auth.alpaca.scheme = \
                 \"signature\"`; a `Content-Digest` that does not match \
                 the body)",
            )
            .build(),
        ),
        (
            "403",
            error_response(
                "`client address <ip> is not allowed` (outside the \
                 audience's `allowed_cidrs`), `client address could not \
                 be determined`",
            )
            .build(),
        ),
        (
            "429",
            error_response(
                "`too many failed authentication attempts; retry in <n> s` \
                 (per-address failure budget), or `request rate limit for \
                 this audience exceeded; retry in <n> s`",
            )
            .header("Retry-After", retry_after)
            .build(),
        ),
        (
            "500",
            error_response("`internal server error` (the cause is logged)")
                .build(),
        ),
    ];
    for (status, response) in answers {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert(RefOr::T(response));
    }
}

/// `GET /metrics` lives on its own listener (`metrics.bind`), so it is
/// described here rather than by a handler of the main server.
fn metrics_path() -> PathItem {
    let mut operation = OperationBuilder::new()
        .tag("health")
        .summary(Some("Prometheus metrics"))
        .description(Some(
            "Served only on the metrics listener (`metrics.bind`), never \
             on `server.bind`; no key (meant for a private interface).",
        ))
        .operation_id(Some("render_metrics"))
        .response(
            "200",
            ResponseBuilder::new()
                .description("Prometheus text exposition format")
                .content(
                    "text/plain; version=0.0.4; charset=utf-8",
                    Content::new(Some(Object::with_type(Type::String))),
                ),
        )
        .build();
    operation.servers = Some(vec![
        ServerBuilder::new()
            .url("http://{metrics_bind}")
            .description(Some("The metrics listener"))
            .parameter(
                "metrics_bind",
                utoipa::openapi::server::ServerVariableBuilder::new()
                    .default_value("127.0.0.1:9100")
                    .description(Some(
                        "`metrics.bind` (unset: no metrics listener)",
                    )),
            )
            .build(),
    ]);
    PathItem::new(HttpMethod::Get, operation)
}

pub fn routes() -> Vec<Route> {
    rocket::routes![openapi_json, swagger_ui, swagger_ui_js, swagger_ui_css]
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    security(("internal_api_key" = [])),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
#[get("/openapi.json")]
fn openapi_json(_auth: InternalAuth) -> Json<Document> {
    Json(document())
}

/// A Swagger UI over this document (its script and stylesheet are
/// `/docs/swagger-ui-bundle.js` and `/docs/swagger-ui.css`, same key).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    security(("internal_api_key" = [])),
    responses((status = 200, description = "The Swagger UI page, with this document inline", content_type = "text/html"))
)]
#[get("/docs")]
fn swagger_ui(
    _auth: InternalAuth,
) -> Result<RawHtml<String>, crate::http::ApiError> {
    let spec = serde_json::to_string(&document())
        .map_err(crate::http::ApiError::internal)?;
    Ok(RawHtml(swagger_page(&spec)))
}

/// The page carries the document inline, so the browser makes no second
/// keyed request for it. `<` is escaped (`\u003c`, valid in JSON strings
/// and absent outside them) so no text in it can end the script element.
fn swagger_page(spec: &str) -> String {
    let spec = spec.replace('<', "\\u003c");
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>issuance-bot API</title>\n\
         <link rel=\"stylesheet\" href=\"/docs/swagger-ui.css\">\n</head>\n\
         <body>\n<div id=\"swagger-ui\"></div>\n\
         <script src=\"/docs/swagger-ui-bundle.js\"></script>\n\
         <script>\nwindow.ui = SwaggerUIBundle({{ spec: {spec}, \
         dom_id: \"#swagger-ui\", deepLinking: true }});\n</script>\n\
         </body>\n</html>\n"
    )
}

/// The Swagger UI's script (vendored `swagger-ui-dist`).
#[utoipa::path(
    get,
    path = "/docs/swagger-ui-bundle.js",
    tag = "docs",
    security(("internal_api_key" = [])),
    responses((status = 200, description = "JavaScript", content_type = "text/javascript"))
)]
#[get("/docs/swagger-ui-bundle.js")]
fn swagger_ui_js(_auth: InternalAuth) -> (ContentType, &'static str) {
    (ContentType::JavaScript, SWAGGER_UI_JS)
}

/// The Swagger UI's stylesheet (vendored `swagger-ui-dist`).
#[utoipa::path(
    get,
    path = "/docs/swagger-ui.css",
    tag = "docs",
    security(("internal_api_key" = [])),
    responses((status = 200, description = "CSS", content_type = "text/css"))
)]
#[get("/docs/swagger-ui.css")]
fn swagger_ui_css(_auth: InternalAuth) -> (ContentType, &'static str) {
    (ContentType::CSS, SWAGGER_UI_CSS)
}

#[cfg(test)]
mod tests;
