//! The admin API reference (`docs/api-reference.md`), written from the OpenAPI document
//! the server serves, so the page cannot drift from the routes: a test compares the two
//! (`HAMEAU_BLESS=1 cargo test -p hameau-http api_reference` writes it again).

use std::fmt::Write;

use serde_json::Value;

/// The reference as Markdown: the endpoints by tag, then every schema.
pub fn markdown(openapi: &Value) -> String {
    let mut out = String::new();
    let info = &openapi["info"];
    let _ = writeln!(out, "# {} — référence / reference\n", text(&info["title"]));
    out.push_str(
        "<!-- Written from the OpenAPI document by crates/http/src/reference.rs; do not edit. -->\n\n\
         *Français.* L'API d'administration de Hameau : JSON sur HTTPS, clé d'API en \
         `Authorization: Bearer …`, erreurs au format `application/problem+json` (RFC 9457). \
         Le document OpenAPI complet est servi à `/api/v1/openapi.json`. L'opérateur voit \
         tout ; l'administrateur d'une commune ne voit que sa commune (ce qui est hors de sa \
         portée répond 404, comme ce qui n'existe pas).\n\n\
         *English.* Hameau's admin API: JSON over HTTPS, an API key as \
         `Authorization: Bearer …`, errors as `application/problem+json` (RFC 9457). The whole \
         OpenAPI document is served at `/api/v1/openapi.json`. The operator sees everything; a \
         commune's administrator sees only its commune (what is outside its scope answers 404, \
         as what does not exist).\n\n",
    );
    let _ = writeln!(out, "{}\n", text(&info["description"]));
    let operations = operations(openapi);
    let mut tags: Vec<&str> = operations.iter().map(|op| op.tag).collect();
    tags.dedup();
    tags.sort_unstable();
    tags.dedup();
    out.push_str("## Endpoints\n\n");
    for tag in &tags {
        let _ = writeln!(out, "### {tag}\n");
        for op in operations.iter().filter(|op| op.tag == *tag) {
            write_operation(&mut out, op);
        }
    }
    out.push_str("## Schemas\n\n");
    if let Some(schemas) = openapi["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            write_schema(&mut out, name, schema);
        }
    }
    out
}

struct Operation<'a> {
    tag: &'a str,
    method: &'a str,
    path: &'a str,
    body: &'a Value,
}

/// Every operation, in the document's path order.
fn operations(openapi: &Value) -> Vec<Operation<'_>> {
    let mut found = Vec::new();
    let Some(paths) = openapi["paths"].as_object() else { return found };
    for (path, item) in paths {
        let Some(methods) = item.as_object() else { continue };
        for (method, body) in methods {
            let tag = body["tags"].get(0).and_then(Value::as_str).unwrap_or("other");
            found.push(Operation { tag, method, path, body });
        }
    }
    found
}

fn write_operation(out: &mut String, op: &Operation<'_>) {
    let _ = writeln!(out, "#### `{} {}`\n", op.method.to_uppercase(), op.path);
    let _ = writeln!(out, "Operation `{}`.", text(&op.body["operationId"]));
    for key in ["summary", "description"] {
        if let Some(value) = op.body[key].as_str() {
            let _ = writeln!(out, "{}", one_line(value));
        }
    }
    out.push('\n');
    if let Some(parameters) = op.body["parameters"].as_array().filter(|list| !list.is_empty()) {
        out.push_str("| Parameter | In | Required | Type | Description |\n|---|---|---|---|---|\n");
        for parameter in parameters {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                text(&parameter["name"]),
                text(&parameter["in"]),
                if parameter["required"].as_bool() == Some(true) { "yes" } else { "no" },
                type_of(&parameter["schema"]),
                cell(parameter["description"].as_str().unwrap_or("")),
            );
        }
        out.push('\n');
    }
    if let Some(content) = op.body["requestBody"]["content"].as_object() {
        for (media, body) in content {
            let _ = writeln!(out, "Request body: `{media}`, {}.\n", type_of(&body["schema"]));
        }
    }
    if let Some(responses) = op.body["responses"].as_object() {
        out.push_str("| Status | Body |\n|---|---|\n");
        for (status, response) in responses {
            let body = match response["content"].as_object() {
                Some(content) => content
                    .iter()
                    .map(|(media, body)| format!("`{media}`: {}", type_of(&body["schema"])))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => response["description"].as_str().map_or_else(|| "(none)".to_string(), cell),
            };
            let _ = writeln!(out, "| {status} | {body} |");
        }
        out.push('\n');
    }
}

fn write_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = writeln!(out, "### {name}\n");
    if let Some(description) = schema["description"].as_str() {
        let _ = writeln!(out, "{}\n", one_line(description));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|value| format!("`{}`", text(value))).collect();
        let _ = writeln!(out, "One of {}.\n", values.join(", "));
    }
    if let Some(properties) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str("| Field | Type | Required | Description |\n|---|---|---|---|\n");
        for (field, property) in properties {
            let _ = writeln!(
                out,
                "| `{field}` | {} | {} | {} |",
                type_of(property),
                if required.contains(&field.as_str()) { "yes" } else { "no" },
                cell(property["description"].as_str().unwrap_or("")),
            );
        }
        out.push('\n');
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(variants) = schema[key].as_array() {
            let variants: Vec<String> = variants.iter().map(type_of).collect();
            let _ = writeln!(out, "{key}: {}.\n", variants.join(", "));
        }
    }
}

/// A schema's type in a few words: a link to a named schema, `array of …`, or its type.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        Value::Array(kinds) => kinds.iter().map(text).collect::<Vec<_>>().join(" or "),
        _ => {
            for key in ["oneOf", "anyOf", "allOf"] {
                if let Some(variants) = schema[key].as_array() {
                    return variants.iter().map(type_of).collect::<Vec<_>>().join(" or ");
                }
            }
            return "any".to_string();
        }
    };
    if kind.starts_with("array") {
        return format!("array of {}", type_of(&schema["items"]));
    }
    match schema["format"].as_str() {
        Some(format) => format!("{kind} ({format})"),
        None => kind,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text that stays in one Markdown table cell.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    /// `docs/api-reference.md` is the reference of the routes as they are.
    #[test]
    fn api_reference_is_current() {
        let (_, openapi) = crate::api::api().split_for_parts();
        let openapi = serde_json::to_value(&openapi).expect("the OpenAPI document serialises");
        let written = super::markdown(&openapi);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api-reference.md");
        if std::env::var_os("HAMEAU_BLESS").is_some() {
            std::fs::write(path, &written).expect("write docs/api-reference.md");
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == written,
            "docs/api-reference.md is not the reference of the routes: \
             run HAMEAU_BLESS=1 cargo test -p hameau-http api_reference"
        );
        assert!(written.contains("#### `POST /api/v1/accounts`"), "{written}");
        assert!(written.contains("### Account\n"), "{written}");
    }
}
