//! `docs/api.md`, rendered from the OpenAPI document: an index of the
//! routes, each route with its parameters, body and answers, then every
//! schema. A test keeps the committed file equal to this rendering
//! (`UPDATE_API_DOCS=1 cargo test --lib openapi::` rewrites it).

use serde_json::{Map, Value};

const METHODS: [&str; 4] = ["get", "put", "post", "delete"];

/// The Markdown text of `doc` (the OpenAPI document as JSON).
pub fn render(doc: &Value) -> String {
    let mut out = String::new();
    let title = text(&doc["info"]["title"]);
    line(&mut out, &format!("# {title} HTTP API"));
    line(&mut out, "");
    line(
        &mut out,
        "<!-- Generated from the OpenAPI document (src/openapi) by \
         `UPDATE_API_DOCS=1 cargo test --lib openapi::`; do not edit. -->",
    );
    line(&mut out, "");
    line(&mut out, &text(&doc["info"]["description"]));
    line(&mut out, "");
    line(
        &mut out,
        &format!(
            "OpenAPI {}, version {} of the service. The document itself is \
             served at `GET /openapi.json` and a Swagger UI at `GET /docs`, \
             both with the internal key.",
            text(&doc["openapi"]),
            text(&doc["info"]["version"])
        ),
    );
    line(&mut out, "");
    render_security(&mut out, doc);
    let operations = operations(doc);
    render_index(&mut out, &operations);
    for operation in &operations {
        render_operation(&mut out, operation);
    }
    render_schemas(&mut out, doc);
    out
}

struct Op<'a> {
    method: &'static str,
    path: &'a str,
    body: &'a Value,
}

fn operations(doc: &Value) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if item.get(method).is_some() {
                    ops.push(Op {
                        method,
                        path,
                        body: &item[method],
                    });
                }
            }
        }
    }
    ops
}

fn line(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// A table cell: one line, pipes escaped.
fn cell(raw: &str) -> String {
    raw.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn anchor(name: &str) -> String {
    name.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn schema_link(name: &str) -> String {
    format!("[`{name}`](#{})", anchor(name))
}

fn auth_of(op: &Value) -> String {
    let names: Vec<String> = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|requirement| requirement.keys().cloned())
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn render_security(out: &mut String, doc: &Value) {
    let Some(schemes) = doc["components"]["securitySchemes"].as_object() else {
        return;
    };
    line(out, "## Authentication");
    line(out, "");
    line(out, "| Scheme | Header | Description |");
    line(out, "|---|---|---|");
    for (name, scheme) in schemes {
        line(
            out,
            &format!(
                "| `{name}` | `{}` | {} |",
                text(&scheme["name"]),
                cell(&text(&scheme["description"]))
            ),
        );
    }
    line(out, "");
}

fn heading(op: &Op<'_>) -> String {
    format!("{} {}", op.method.to_ascii_uppercase(), op.path)
}

fn render_index(out: &mut String, ops: &[Op<'_>]) {
    line(out, "## Routes");
    line(out, "");
    line(out, "| Route | Tag | Key | Summary |");
    line(out, "|---|---|---|---|");
    for op in ops {
        let title = heading(op);
        let tags: Vec<String> = op.body["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        line(
            out,
            &format!(
                "| [`{title}`](#{}) | {} | {} | {} |",
                anchor(&title),
                tags.join(", "),
                auth_of(op.body),
                cell(&text(&op.body["summary"]))
            ),
        );
    }
    line(out, "");
}

fn render_operation(out: &mut String, op: &Op<'_>) {
    line(out, &format!("### {}", heading(op)));
    line(out, "");
    // utoipa's summary is the description's first paragraph.
    let description = match text(&op.body["description"]) {
        full if full.is_empty() => text(&op.body["summary"]),
        full => full,
    };
    if !description.is_empty() {
        line(out, &description);
        line(out, "");
    }
    line(out, &format!("Key: {}.", auth_of(op.body)));
    line(out, "");
    if let Some(params) = op.body["parameters"].as_array() {
        line(out, "| Parameter | In | Type | Description |");
        line(out, "|---|---|---|---|");
        for param in params {
            line(
                out,
                &format!(
                    "| `{}` | {} | {} | {} |",
                    text(&param["name"]),
                    text(&param["in"]),
                    type_of(&param["schema"]),
                    cell(&text(&param["description"]))
                ),
            );
        }
        line(out, "");
    }
    if let Some(content) = op.body["requestBody"]["content"].as_object() {
        for (media, body) in content {
            line(
                out,
                &format!(
                    "Request body (`{media}`): {}",
                    type_of(&body["schema"])
                ),
            );
        }
        line(out, "");
    }
    line(out, "| Status | Body | Description |");
    line(out, "|---|---|---|");
    if let Some(responses) = op.body["responses"].as_object() {
        for (status, response) in responses {
            line(
                out,
                &format!(
                    "| {status} | {} | {} |",
                    response_body(response),
                    cell(&text(&response["description"]))
                ),
            );
        }
    }
    line(out, "");
}

fn response_body(response: &Value) -> String {
    let Some(content) = response["content"].as_object() else {
        return "–".to_owned();
    };
    content
        .iter()
        .map(|(media, body)| match body.get("schema") {
            Some(schema) => type_of(schema),
            None => format!("`{media}`"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A schema in a few words, references as links.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return schema_link(name);
    }
    for (key, word) in [("oneOf", "one of"), ("allOf", "all of")] {
        if let Some(parts) = schema[key].as_array() {
            let parts: Vec<String> = parts.iter().map(type_of).collect();
            return format!("{word} {}", parts.join(", "));
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .map(|value| format!("`{value}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many.iter().map(text).collect(),
        _ => Vec::new(),
    };
    let words: Vec<String> = types
        .iter()
        .map(|kind| match kind.as_str() {
            "array" => format!("array of {}", type_of(&schema["items"])),
            "object" => object_of(schema),
            other => other.to_owned(),
        })
        .collect();
    match (words.is_empty(), schema["format"].as_str()) {
        (true, _) => "any".to_owned(),
        (false, Some(format)) => format!("{} ({format})", words.join(" or ")),
        (false, None) => words.join(" or "),
    }
}

/// `{a, b?}` for an inline object (`?` = optional), `map of X` for a map.
fn object_of(schema: &Value) -> String {
    if let Some(properties) = schema["properties"].as_object() {
        let required = &schema["required"];
        let fields: Vec<String> = properties
            .keys()
            .map(|field| {
                let needed = required
                    .as_array()
                    .is_some_and(|all| all.iter().any(|r| r == field));
                if needed {
                    format!("`{field}`")
                } else {
                    format!("`{field}`?")
                }
            })
            .collect();
        return format!("object {{{}}}", fields.join(", "));
    }
    match schema.get("additionalProperties") {
        Some(value @ Value::Object(_)) => format!("map of {}", type_of(value)),
        _ => "object".to_owned(),
    }
}

fn render_schemas(out: &mut String, doc: &Value) {
    let Some(schemas) = doc["components"]["schemas"].as_object() else {
        return;
    };
    line(out, "## Schemas");
    line(out, "");
    for (name, schema) in schemas {
        line(out, &format!("### {name}"));
        line(out, "");
        render_schema(out, schema);
    }
}

fn render_schema(out: &mut String, schema: &Value) {
    let description = text(&schema["description"]);
    if !description.is_empty() {
        line(out, &description);
        line(out, "");
    }
    if let Some(parts) = schema["allOf"].as_array() {
        line(out, "All of:");
        line(out, "");
        for part in parts {
            if part.get("properties").is_some() {
                render_schema(out, part);
            } else {
                line(out, &format!("- {}", type_of(part)));
                line(out, "");
            }
        }
        return;
    }
    if let Some(properties) = schema["properties"].as_object() {
        render_properties(out, schema, properties);
        return;
    }
    let kind = type_of(schema);
    match schema["pattern"].as_str() {
        Some(pattern) => {
            line(out, &format!("Type: {kind}, matching `{pattern}`."));
        }
        None => line(out, &format!("Type: {kind}.")),
    }
    line(out, "");
}

fn render_properties(
    out: &mut String,
    schema: &Value,
    properties: &Map<String, Value>,
) {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    line(out, "| Field | Type | Required | Description |");
    line(out, "|---|---|---|---|");
    for (field, property) in properties {
        let required = if required.contains(&field.as_str()) {
            "yes"
        } else {
            "no"
        };
        line(
            out,
            &format!(
                "| `{field}` | {} | {required} | {} |",
                type_of(property),
                cell(&text(&property["description"]))
            ),
        );
    }
    line(out, "");
    if schema["additionalProperties"] == Value::Bool(false) {
        line(out, "Unknown fields are refused.");
        line(out, "");
    }
}
