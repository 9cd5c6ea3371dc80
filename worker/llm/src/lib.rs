//! `llm.prompt`: each row asked of a model behind an OpenAI-compatible API (chat completions or
//! responses), concurrently, within the job's rate limits, with retries, and with answers kept
//! beside the checkpoint so that work done again does not pay twice.
//!
//! # Guarantees
//! - A request is retried on 408, 409, 429, 5xx, timeouts, broken connections and unreadable 200
//!   answers, after an exponential, jittered delay or the server's `Retry-After`, whichever is
//!   longer; any other status fails the row at once. A row that fails is a row error under the
//!   job's error policy.
//! - Requests in flight per worker adapt: halved on 429/503, grown back by one per round.
//! - The API key is read from the environment ([`weir_crds::LlmSecretRef::env_name`]) and sent
//!   only as the `Authorization` header to `endpoint.baseUrl`; redirects are not followed.

pub mod answers;
pub mod client;
pub mod images;
pub mod limits;
pub mod metrics;
pub mod request;
pub mod secret;
pub mod step;
pub mod structured;

use std::sync::Arc;
use std::time::Duration;

use weir_core::{BuildError, Step};
use weir_crds::{ImageMode, LlmPrompt, TemplatePart, json_shape, template_parts, usage_column};
use weir_io::StoreRegistry;
use weir_ops::image::decode::{DEFAULT_MAX_PIXELS, DecodeImages};

use crate::answers::AnswerStore;
use crate::client::{Client, ClientSettings};
use crate::limits::Bucket;
use crate::metrics::StepMetrics;
use crate::request::RequestShape;
use crate::step::{LlmPromptStep, Piece};
use weir_core::share::pool_share;

/// Default requests in flight per worker.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 32;
/// Default retries of a transient failure.
pub const DEFAULT_RETRIES: u32 = 5;
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 60;
/// Default longest side of an image sent.
pub const DEFAULT_MAX_IMAGE_SIDE: u32 = 1024;

/// Builds `llm.prompt` from its config. Answers are kept under `<checkpoint_uri>/llm/<output>/`.
///
/// # Errors
/// [`BuildError`] naming the field: a template or schema that cannot be used, an API key that
/// is not set, a checkpoint URI that cannot be resolved.
pub fn build(config: &LlmPrompt, stores: &StoreRegistry, checkpoint_uri: &str) -> Result<Arc<dyn Step>, BuildError> {
    if let Some((field, message)) = config.problems().into_iter().next() {
        return Err(BuildError::new(&field, message));
    }
    let templates = config
        .messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let parts = template_parts(&message.content)
                .map_err(|m| BuildError::new(&format!("messages[{i}].content"), m))?
                .into_iter()
                .map(|part| match part {
                    TemplatePart::Literal(text) => Piece::Text(text.into_owned()),
                    TemplatePart::Column(name) => Piece::Column(name.to_string()),
                })
                .collect();
            Ok((message.role, parts))
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    let structured = match &config.json_schema {
        Some(schema) => {
            Some(json_shape(schema).map_err(|(path, m)| BuildError::new(&format!("jsonSchema.{path}"), m))?)
        }
        None => None,
    };
    let key = match &config.endpoint.api_key_secret {
        Some(secret) => Some(secret::api_key(secret).map_err(|m| BuildError::new("endpoint.apiKeySecret", m))?),
        None => None,
    };
    let metrics = StepMetrics::new(&config.output);
    let max_in_flight = config.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1) as usize;
    let client = Client::new(ClientSettings {
        base_url: config.endpoint.base_url.clone(),
        api: config.endpoint.api.unwrap_or_default(),
        key,
        timeout: Duration::from_secs(u64::from(config.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))),
        retries: config.retries.unwrap_or(DEFAULT_RETRIES),
        max_in_flight,
        requests: config.requests_per_minute.map(|n| Bucket::new(n, pool_share().clone())),
        tokens: config.tokens_per_minute.map(|n| Bucket::new(n, pool_share().clone())),
        metrics: metrics.clone(),
    })
    .map_err(|e| BuildError::new("endpoint", format!("cannot make an HTTP client: {e}")))?;
    let location = stores.resolve(checkpoint_uri).map_err(|e| BuildError::new("checkpoint", e.to_string()))?;
    let answers = AnswerStore::new(location.store, location.path.clone().join("llm").join(config.output.as_str()));
    Ok(Arc::new(LlmPromptStep {
        output: config.output.clone(),
        usage_output: usage_column(&config.output),
        templates,
        images: config.images.clone().unwrap_or_default(),
        max_image_side: config.max_image_side.unwrap_or(DEFAULT_MAX_IMAGE_SIDE),
        decoder: DecodeImages {
            input: String::new(),
            output: String::new(),
            mode: ImageMode::Rgb,
            max_pixels: DEFAULT_MAX_PIXELS,
            apply_orientation: true,
            draft: None,
        },
        shape: RequestShape {
            api: config.endpoint.api.unwrap_or_default(),
            model: config.endpoint.model.clone(),
            generation: config.generation.clone().unwrap_or_default(),
            json_schema: config.json_schema.clone(),
            schema_format: config.endpoint.schema_format.unwrap_or_default(),
        },
        structured,
        client,
        answers: Some(answers),
        metrics,
        max_in_flight,
    }))
}
