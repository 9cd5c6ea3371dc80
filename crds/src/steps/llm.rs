//! `llm.prompt`: ask a model behind an OpenAI-compatible API about each row, and the templates
//! its messages are written in.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{ColumnType, PoolName, StepConfig, StructField};

/// Longest message template.
pub const MAX_MESSAGE: usize = 32_768;
/// Most messages of one prompt.
pub const MAX_MESSAGES: usize = 16;
/// Most image columns one prompt sends.
pub const MAX_IMAGES: usize = 8;

step_config!(
    /// Send each row to a model behind an OpenAI-compatible API (vLLM, llama.cpp, OpenAI, ...):
    /// the messages with `{column}` filled in, and images from image or encoded-image columns;
    /// the answer's text (or, with `jsonSchema`, its fields as a struct) becomes the output, and
    /// the tokens it cost `<output>_usage`. Requests run concurrently, within the job's rate
    /// limits, retried on 408, 409, 429, 5xx, timeouts and broken connections (`Retry-After`
    /// honoured); answers are kept with the checkpoint, so a unit that runs again does not ask
    /// again.
    LlmPrompt {
        /// Where the model is served.
        endpoint: LlmEndpoint,
        /// The conversation, in order; `{column}` in a message's content is replaced by that
        /// row's value (`{{` and `}}` write a brace). At least one `user` message.
        #[schemars(length(min = 1, max = 16))]
        messages: Vec<LlmMessage>,
        /// Columns whose images go with the last user message: image columns (`image.decode`'s,
        /// sent as JPEG, or PNG when they have alpha) or encoded JPEG, PNG, WebP or GIF bytes
        /// (sent as they are, or decoded and sent as JPEG when larger than `maxImageSide`); each
        /// as a data URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 8), inner(length(max = 128)))]
        images: Option<Vec<String>>,
        /// Longest side, in pixels, of an image sent; larger ones are scaled down; default 1024.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 16, max = 8192))]
        max_image_side: Option<u32>,
        /// Sampling settings sent with every request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<LlmGeneration>,
        /// A JSON Schema (an object whose properties are strings, numbers, integers, booleans,
        /// lists or objects of those) the answer must follow: the output is then a struct column
        /// of its properties. An answer that breaks it is sent back once for repair, then is a
        /// row error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "free_form_object")]
        json_schema: Option<serde_json::Value>,
        /// The column the answer goes to; `<output>_usage` gets `{prompt, completion}` tokens.
        output: String,
        /// Requests a minute for the whole job, shared by its workers; default no limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        requests_per_minute: Option<u32>,
        /// Tokens a minute (prompt and completion) for the whole job, shared by its workers;
        /// default no limit. A request is charged its estimate before it is sent, and corrected
        /// by the usage its answer reports.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        tokens_per_minute: Option<u32>,
        /// Requests in flight at once per worker; default 32.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1024))]
        max_connections: Option<u32>,
        /// Retries of a transient failure, with exponential backoff; default 5.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(max = 100))]
        retries: Option<u32>,
        /// Per-request timeout; default 60.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        timeout_seconds: Option<u32>,
    }
    rules {
        "self.endpoint.baseUrl.matches('^https?://[^/]+')"
            => "needs endpoint.baseUrl as an http:// or https:// URL (`http://vllm.ml.svc:8000/v1`)",
        "self.messages.exists(m, m.role == 'user')"
            => "needs at least one message with role user",
    }
);
impl_step_config!(LlmPrompt, inputs(s) => s.columns_read(), output(s) => Some(&s.output), extra(s) => vec![usage_column(&s.output)]);

impl LlmPrompt {
    /// Every column the step reads: those its messages' templates name, then its image columns.
    /// A template that does not parse names none (validation reports it).
    pub fn columns_read(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = Vec::new();
        for message in &self.messages {
            for part in template_parts(&message.content).unwrap_or_default() {
                if let TemplatePart::Column(name) = part
                    && !columns.contains(&name)
                {
                    columns.push(name);
                }
            }
        }
        for image in self.images.iter().flatten() {
            if !columns.contains(&image.as_str()) {
                columns.push(image);
            }
        }
        columns
    }
}

impl LlmPrompt {
    /// What the CRD's schema cannot say about this step: templates that do not parse, a
    /// `jsonSchema` we cannot make a column of, settings the chosen API does not take, and
    /// `extraBody` fields that would replace the prompt. Each is `(field, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (i, message) in self.messages.iter().enumerate() {
            if let Err(e) = template_parts(&message.content) {
                problems.push((format!("messages[{i}].content"), e));
            }
        }
        if let Some(schema) = &self.json_schema
            && let Err((path, message)) = crate::json_shape::json_shape(schema)
        {
            problems.push((format!("jsonSchema.{path}"), message));
        }
        let generation = self.generation.as_ref();
        if self.endpoint.api == Some(LlmApi::Responses)
            && self.endpoint.schema_format == Some(LlmSchemaFormat::JsonObject)
        {
            problems.push((
                "endpoint.schemaFormat".into(),
                "json_object is a chat API form: remove it, or use `api: chat`".into(),
            ));
        }
        if self.endpoint.api == Some(LlmApi::Responses) {
            for (field, set) in [
                ("seed", generation.is_some_and(|g| g.seed.is_some())),
                ("stop", generation.is_some_and(|g| g.stop.is_some())),
            ] {
                if set {
                    problems.push((
                        format!("generation.{field}"),
                        "the Responses API does not take it: remove it, or use `api: chat`".into(),
                    ));
                }
            }
        }
        if let Some(serde_json::Value::Object(extra)) = generation.and_then(|g| g.extra_body.as_ref()) {
            for key in extra.keys().filter(|k| RESERVED_BODY_FIELDS.contains(&k.as_str())) {
                problems.push((
                    format!("generation.extraBody.{key}"),
                    format!("`{key}` is set by the step itself and cannot be replaced"),
                ));
            }
        }
        problems
    }
}

/// Request body fields `generation.extraBody` may not set.
pub const RESERVED_BODY_FIELDS: &[&str] = &["model", "messages", "input", "stream"];

/// The type of `<output>_usage`: the tokens the server counted for the row's answer (a repaired
/// answer counts both requests).
pub const USAGE_TYPE: ColumnType = ColumnType::Struct(&[
    StructField { name: "prompt", ty: ColumnType::UInt32 },
    StructField { name: "completion", ty: ColumnType::UInt32 },
]);

/// The token-count column `llm.prompt` adds beside `output`.
pub fn usage_column(output: &str) -> String {
    format!("{output}_usage")
}

/// Where an `llm.prompt` model is served.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmEndpoint {
    /// The API's base URL, up to and including its version (`https://api.openai.com/v1`,
    /// `http://vllm.ml.svc:8000/v1`); requests go to `<baseUrl>/chat/completions` or
    /// `<baseUrl>/responses`.
    #[schemars(length(max = 2048))]
    pub base_url: String,
    /// The model name the server knows.
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
    /// Which API; default `chat` (chat completions, which every compatible server speaks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<LlmApi>,
    /// The Secret key holding the API key, sent as `Authorization: Bearer`. The operator gives it
    /// to the workers as an environment variable ([`LlmSecretRef::env_name`]); `weir run` reads
    /// that variable. It never appears in status, events, logs or errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<LlmSecretRef>,
    /// How a chat request asks for `jsonSchema`: `json_schema` (default; OpenAI, vLLM, llama.cpp's
    /// own server) or `json_object` (`{type: json_object, schema}`, as llama-cpp-python's server
    /// wants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_format: Option<LlmSchemaFormat>,
}

/// The form of a chat request's `response_format` when the answer must follow a schema.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum LlmSchemaFormat {
    /// `{type: json_schema, json_schema: {name, schema}}`.
    #[default]
    #[serde(rename = "json_schema")]
    JsonSchema,
    /// `{type: json_object, schema}`.
    #[serde(rename = "json_object")]
    JsonObject,
}

/// The API an endpoint speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LlmApi {
    /// `POST /chat/completions`.
    #[default]
    Chat,
    /// `POST /responses` (OpenAI's Responses API).
    Responses,
}

/// A key of a Secret in the job's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within it.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl LlmSecretRef {
    /// The environment variable the key is read from: `WEIR_SECRET_<NAME>__<KEY>`, upper case,
    /// every character other than a letter or digit written `_` (Secret `openai`, key `api-key`:
    /// `WEIR_SECRET_OPENAI__API_KEY`).
    pub fn env_name(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
        };
        format!("WEIR_SECRET_{}__{}", clean(&self.name), clean(&self.key))
    }
}

/// One message of a prompt.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmMessage {
    pub role: LlmRole,
    /// The text, with `{column}` templates.
    #[schemars(length(max = 32768))]
    pub content: String,
}

/// Who says a message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LlmRole {
    System,
    User,
    Assistant,
}

impl LlmRole {
    /// The name the APIs use.
    pub fn as_str(self) -> &'static str {
        match self {
            LlmRole::System => "system",
            LlmRole::User => "user",
            LlmRole::Assistant => "assistant",
        }
    }
}

/// Sampling settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmGeneration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: Option<f64>,
    /// Most tokens an answer may have; also what the token limit charges for it up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Strings that end an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4), inner(length(max = 256)))]
    pub stop: Option<Vec<String>>,
    /// Fields merged into every request body as they are (a server's own options, e.g. vLLM's
    /// `top_k`); they cannot replace `model`, `messages` or `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub extra_body: Option<serde_json::Value>,
}

fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// One piece of a message template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart<'a> {
    /// Text sent as it is.
    Literal(Cow<'a, str>),
    /// The row's value of this column.
    Column(&'a str),
}

/// Splits `template` into literal text and `{column}` references; `{{` and `}}` are literal braces.
///
/// # Errors
/// Where the template is unusable: an unclosed `{`, an empty `{}`, or a lone `}` (with the byte
/// offset).
pub fn template_parts(template: &str) -> Result<Vec<TemplatePart<'_>>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            literal.push(tail.as_bytes()[0] as char);
            rest = &tail[2..];
            offset += i + 2;
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!("a lone `}}` at byte {}: write `}}}}` for a brace", offset + i));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!("`{{` at byte {} is not closed: write `{{{{` for a brace", offset + i));
        };
        let name = tail[1..end].trim();
        if name.contains('{') {
            return Err(format!("`{{` at byte {} is not closed: write `{{{{` for a brace", offset + i));
        }
        if name.is_empty() {
            return Err(format!("an empty `{{}}` at byte {}: name a column", offset + i));
        }
        if !literal.is_empty() {
            parts.push(TemplatePart::Literal(Cow::Owned(std::mem::take(&mut literal))));
        }
        parts.push(TemplatePart::Column(name));
        rest = &tail[end + 1..];
        offset += i + end + 1;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(Cow::Owned(literal)));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_columns_and_escape_braces() {
        let parts = template_parts("Breed of {name}? Answer {{\"breed\": ...}} in { lang }.").expect("parses");
        assert_eq!(
            parts,
            [
                TemplatePart::Literal("Breed of ".into()),
                TemplatePart::Column("name"),
                TemplatePart::Literal("? Answer {\"breed\": ...} in ".into()),
                TemplatePart::Column("lang"),
                TemplatePart::Literal(".".into()),
            ]
        );
        assert_eq!(template_parts("").expect("empty"), []);
        assert_eq!(template_parts("no braces").expect("plain"), [TemplatePart::Literal("no braces".into())]);
    }

    #[test]
    fn a_broken_template_says_where() {
        assert_eq!(template_parts("ab {name").unwrap_err(), "`{` at byte 3 is not closed: write `{{` for a brace");
        assert_eq!(template_parts("{{x}} }").unwrap_err(), "a lone `}` at byte 6: write `}}` for a brace");
        assert_eq!(template_parts("a {} b").unwrap_err(), "an empty `{}` at byte 2: name a column");
    }

    #[test]
    fn secret_env_names_are_upper_case_with_underscores() {
        let secret = LlmSecretRef { name: "openai-prod.v2".into(), key: "api-key".into() };
        assert_eq!(secret.env_name(), "WEIR_SECRET_OPENAI_PROD_V2__API_KEY");
    }
}
