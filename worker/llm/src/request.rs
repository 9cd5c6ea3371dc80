//! The two OpenAI-style request bodies (chat completions, responses) and what an answer carries:
//! the text and the tokens the server counted.

use serde_json::{Map, Value, json};
use weir_crds::{LlmApi, LlmGeneration, LlmRole, LlmSchemaFormat};

/// One row's prompt, templates filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub messages: Vec<(LlmRole, String)>,
    /// Data URLs (`data:image/jpeg;base64,...`) sent with the last user message.
    pub images: Vec<String>,
}

/// What a request asks besides the prompt.
#[derive(Debug, Clone)]
pub struct RequestShape {
    pub api: LlmApi,
    pub model: String,
    pub generation: LlmGeneration,
    /// The JSON Schema the answer must follow, if any.
    pub json_schema: Option<Value>,
    /// How a chat request asks for it.
    pub schema_format: LlmSchemaFormat,
}

/// A failed answer sent back for repair: what the model said and why it does not do.
#[derive(Debug, Clone)]
pub struct Repair<'a> {
    pub answer: &'a str,
    pub problem: &'a str,
}

impl RequestShape {
    /// The request body for `prompt` (and, on a repair, the bad answer and the problem with it).
    pub fn body(&self, prompt: &Prompt, repair: Option<&Repair<'_>>) -> Value {
        let mut messages = self.messages(prompt);
        if let Some(repair) = repair {
            messages.push(json!({"role": "assistant", "content": repair.answer}));
            let ask = format!(
                "That answer does not follow the JSON Schema: {}. Answer again with only a JSON object that follows it.",
                repair.problem
            );
            messages.push(json!({"role": "user", "content": ask}));
        }
        let g = &self.generation;
        let mut body = Map::new();
        body.insert("model".into(), Value::from(self.model.clone()));
        let optional = |body: &mut Map<String, Value>, key: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        };
        optional(&mut body, "temperature", g.temperature.map(Value::from));
        optional(&mut body, "top_p", g.top_p.map(Value::from));
        match self.api {
            LlmApi::Chat => {
                body.insert("messages".into(), Value::Array(messages));
                optional(&mut body, "max_tokens", g.max_tokens.map(Value::from));
                optional(&mut body, "seed", g.seed.map(Value::from));
                optional(&mut body, "stop", g.stop.clone().map(Value::from));
                optional(
                    &mut body,
                    "response_format",
                    self.json_schema.as_ref().map(|schema| match self.schema_format {
                        LlmSchemaFormat::JsonSchema => {
                            json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
                        }
                        LlmSchemaFormat::JsonObject => json!({"type": "json_object", "schema": schema}),
                    }),
                );
            }
            LlmApi::Responses => {
                body.insert("input".into(), Value::Array(messages));
                optional(&mut body, "max_output_tokens", g.max_tokens.map(Value::from));
                optional(
                    &mut body,
                    "text",
                    self.json_schema
                        .as_ref()
                        .map(|schema| json!({"format": {"type": "json_schema", "name": "answer", "schema": schema}})),
                );
            }
        }
        if let Some(Value::Object(extra)) = &g.extra_body {
            for (key, value) in extra {
                if !weir_crds::RESERVED_BODY_FIELDS.contains(&key.as_str()) {
                    body.insert(key.clone(), value.clone());
                }
            }
        }
        Value::Object(body)
    }

    /// The messages in the API's form; the images go with the last user message.
    fn messages(&self, prompt: &Prompt) -> Vec<Value> {
        let last_user = prompt.messages.iter().rposition(|(role, _)| *role == LlmRole::User);
        let (text_part, image_part): (&str, fn(&str) -> Value) = match self.api {
            LlmApi::Chat => ("text", |url| json!({"type": "image_url", "image_url": {"url": url}})),
            LlmApi::Responses => ("input_text", |url| json!({"type": "input_image", "image_url": url})),
        };
        prompt
            .messages
            .iter()
            .enumerate()
            .map(|(i, (role, text))| {
                let content = if Some(i) == last_user && !prompt.images.is_empty() {
                    let mut parts = vec![json!({"type": text_part, "text": text})];
                    parts.extend(prompt.images.iter().map(|url| image_part(url)));
                    Value::Array(parts)
                } else {
                    Value::from(text.as_str())
                };
                json!({"role": role.as_str(), "content": content})
            })
            .collect()
    }

    /// Tokens a request is charged before it is sent: its text at about four characters a token
    /// (images at a flat 765, OpenAI's high-detail 512-pixel tile rate), plus the most the answer
    /// may have (`maxTokens`, else 256).
    pub fn estimate_tokens(&self, prompt: &Prompt) -> u32 {
        let chars: usize = prompt.messages.iter().map(|(_, text)| text.len()).sum();
        let text = u32::try_from(chars / 4).unwrap_or(u32::MAX);
        let images = u32::try_from(prompt.images.len()).unwrap_or(u32::MAX).saturating_mul(765);
        text.saturating_add(images).saturating_add(self.generation.max_tokens.unwrap_or(256))
    }
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// The answer in a successful response body.
///
/// # Errors
/// A message when the body is not the API's answer: not JSON, or no text in it.
pub fn parse_answer(api: LlmApi, body: &[u8]) -> Result<Answer, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let count =
        |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let usage = value.get("usage").cloned().unwrap_or(Value::Null);
    match api {
        LlmApi::Chat => {
            let message = value.pointer("/choices/0/message").ok_or("the answer has no choices[0].message")?;
            let text = match message.get("content") {
                Some(Value::String(text)) => text.clone(),
                _ => match message.get("refusal").and_then(Value::as_str) {
                    Some(refusal) => return Err(format!("the model refused: {}", shorten(refusal))),
                    None => return Err("the answer's message has no text content".into()),
                },
            };
            Ok(Answer {
                text,
                prompt_tokens: count(&usage, "prompt_tokens"),
                completion_tokens: count(&usage, "completion_tokens"),
            })
        }
        LlmApi::Responses => {
            let text = match value.get("output_text").and_then(Value::as_str) {
                Some(text) => text.to_string(),
                None => output_text(&value).ok_or("the answer has no output_text")?,
            };
            Ok(Answer {
                text,
                prompt_tokens: count(&usage, "input_tokens"),
                completion_tokens: count(&usage, "output_tokens"),
            })
        }
    }
}

/// The `output_text` parts of a Responses API answer's messages, joined.
fn output_text(value: &Value) -> Option<String> {
    let parts: Vec<&str> = value
        .get("output")?
        .as_array()?
        .iter()
        .filter_map(|item| item.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text"))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect();
    (!parts.is_empty()).then(|| parts.concat())
}

/// The error message of an OpenAI-style error body, or the body's start.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match parsed.as_ref().and_then(|v| v.pointer("/error/message").or_else(|| v.get("message"))).and_then(Value::as_str)
    {
        Some(message) => shorten(message),
        None => shorten(&String::from_utf8_lossy(body)),
    }
}

/// At most 300 characters of `text`, on one line.
pub fn shorten(text: &str) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(api: LlmApi) -> RequestShape {
        RequestShape {
            api,
            model: "m".into(),
            generation: LlmGeneration {
                temperature: Some(0.0),
                max_tokens: Some(20),
                seed: Some(7),
                extra_body: Some(json!({"top_k": 5, "model": "other"})),
                ..LlmGeneration::default()
            },
            json_schema: None,
            schema_format: LlmSchemaFormat::JsonSchema,
        }
    }

    fn prompt() -> Prompt {
        Prompt {
            messages: vec![(LlmRole::System, "Be brief.".into()), (LlmRole::User, "Breed?".into())],
            images: vec!["data:image/jpeg;base64,AAAA".into()],
        }
    }

    #[test]
    fn a_chat_body_puts_images_on_the_last_user_message_and_keeps_model_from_extra_body() {
        let body = shape(LlmApi::Chat).body(&prompt(), None);
        assert_eq!(
            body,
            json!({"model": "m", "temperature": 0.0, "max_tokens": 20, "seed": 7, "top_k": 5, "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Breed?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]}]})
        );
    }

    #[test]
    fn a_responses_body_uses_input_parts_and_max_output_tokens() {
        let mut shape = shape(LlmApi::Responses);
        shape.json_schema = Some(json!({"type": "object"}));
        let body = shape.body(&prompt(), Some(&Repair { answer: "nope", problem: "not JSON" }));
        assert_eq!(body["max_output_tokens"], json!(20));
        assert_eq!(body.get("seed"), None);
        assert_eq!(
            body["input"][1]["content"][1],
            json!({"type": "input_image", "image_url": "data:image/jpeg;base64,AAAA"})
        );
        assert_eq!(body["input"][2], json!({"role": "assistant", "content": "nope"}));
        assert!(body["input"][3]["content"].as_str().expect("text").contains("not JSON"));
        assert_eq!(body["text"]["format"]["type"], json!("json_schema"));
        let mut chat = self::shape(LlmApi::Chat);
        chat.json_schema = Some(json!({"type": "object"}));
        chat.schema_format = LlmSchemaFormat::JsonObject;
        let body = chat.body(&prompt(), None);
        assert_eq!(body["response_format"], json!({"type": "json_object", "schema": {"type": "object"}}));
    }

    #[test]
    fn answers_are_read_from_either_api_and_a_refusal_is_named() {
        let chat = br#"{"choices":[{"message":{"role":"assistant","content":"a pug"}}],"usage":{"prompt_tokens":9,"completion_tokens":2}}"#;
        assert_eq!(
            parse_answer(LlmApi::Chat, chat),
            Ok(Answer { text: "a pug".into(), prompt_tokens: 9, completion_tokens: 2 })
        );
        let responses = br#"{"output":[{"type":"message","content":[{"type":"output_text","text":"a "},{"type":"output_text","text":"pug"}]}],"usage":{"input_tokens":3,"output_tokens":2}}"#;
        assert_eq!(parse_answer(LlmApi::Responses, responses).expect("answer").text, "a pug");
        let refused = br#"{"choices":[{"message":{"content":null,"refusal":"I cannot"}}]}"#;
        assert_eq!(parse_answer(LlmApi::Chat, refused), Err("the model refused: I cannot".into()));
        assert!(
            parse_answer(LlmApi::Chat, b"{\"choices\": [").expect_err("broken").starts_with("the answer is not JSON")
        );
        assert_eq!(error_message(br#"{"error":{"message":"Rate limit reached"}}"#), "Rate limit reached");
    }
}
