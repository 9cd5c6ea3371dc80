//! The runnable `llm.prompt` step: each row's prompt filled in, asked (or its kept answer
//! reused), and the answers and their token counts added as columns.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, StructArray, UInt32Array};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field, Fields};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use serde_json::Value;
use weir_core::batch::{self, column_path, row_ref, row_refs};
use weir_core::{RowFailure, Step, StepContext, StepError, StepOutput};
use weir_crds::{JsonShape, LlmRole};
use weir_ops::image::decode::DecodeImages;

use crate::answers::{AnswerKey, AnswerStore, UnitAnswers};
use crate::client::Client;
use crate::metrics::StepMetrics;
use crate::request::{Answer, Prompt, Repair, RequestShape};
use crate::structured::{read_answer, to_array};

/// A piece of a message template, owned.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    Text(String),
    Column(String),
}

/// The runnable `llm.prompt` step.
#[derive(Debug)]
pub struct LlmPromptStep {
    pub(crate) output: String,
    pub(crate) usage_output: String,
    pub(crate) templates: Vec<(LlmRole, Vec<Piece>)>,
    pub(crate) images: Vec<String>,
    pub(crate) max_image_side: u32,
    pub(crate) decoder: DecodeImages,
    pub(crate) shape: RequestShape,
    pub(crate) structured: Option<JsonShape>,
    pub(crate) client: Client,
    pub(crate) answers: Option<AnswerStore>,
    pub(crate) metrics: StepMetrics,
    pub(crate) max_in_flight: usize,
}

/// What one row needs.
enum Row {
    /// A column its prompt reads is null: no request, a null answer.
    Null,
    Failed(String),
    Ask {
        key: AnswerKey,
        prompt: Prompt,
        /// The request's JSON, written once: hashed for the key and sent as it is.
        body: Bytes,
    },
}

/// How one row ended.
enum Outcome {
    Null,
    Failed(String),
    /// Asked now (`fresh`) or taken from the checkpoint.
    Answered {
        key: AnswerKey,
        answer: Answer,
        json: Option<Value>,
        fresh: bool,
    },
}

impl Step for LlmPromptStep {
    fn concurrency(&self) -> Option<usize> {
        Some(4)
    }

    fn process(
        self: Arc<Self>,
        input: RecordBatch,
        ctx: StepContext,
    ) -> BoxFuture<'static, Result<StepOutput, StepError>> {
        Box::pin(async move {
            let rows = self.prepare(&input, &ctx).await?;
            let kept = self.kept_answers(&ctx).await;
            // Unordered, so that a row waiting out a long Retry-After does not hold back the
            // rows after it; put back in row order below.
            let mut outcomes: Vec<(usize, Outcome)> = stream::iter(rows.into_iter().enumerate())
                .map(|(index, row)| {
                    let (this, kept) = (self.clone(), kept.clone());
                    async move { (index, this.answer(row, &kept).await) }
                })
                .buffer_unordered(self.max_in_flight)
                .collect()
                .await;
            outcomes.sort_unstable_by_key(|(index, _)| *index);
            let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, outcome)| outcome).collect();
            self.keep_answers(&ctx, &outcomes).await;
            self.output(&input, outcomes)
        })
    }
}

impl LlmPromptStep {
    /// Each row's prompt and request, or why it has none. Images are encoded on the compute pool.
    async fn prepare(&self, input: &RecordBatch, ctx: &StepContext) -> Result<Vec<Row>, StepError> {
        let texts = self.template_values(input)?;
        let mut images = {
            let (batch, names, side, decoder) =
                (input.clone(), self.images.clone(), self.max_image_side, self.decoder.clone());
            let encoded = ctx.compute.run(move || {
                names
                    .iter()
                    .map(|name| crate::images::data_urls(&batch, name, side, &decoder))
                    .collect::<Result<Vec<_>, _>>()
            });
            encoded.await.ok_or_else(|| StepError::Other("encoding the prompt's images panicked".into()))??
        };
        let refs = row_refs(input);
        let mut prepared = Vec::with_capacity(input.num_rows());
        'rows: for row in 0..input.num_rows() {
            let mut messages = Vec::with_capacity(self.templates.len());
            for (role, pieces) in &self.templates {
                let mut text = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(literal) => text.push_str(literal),
                        Piece::Column(name) => match &texts[name.as_str()][row] {
                            Some(value) => text.push_str(value),
                            None => {
                                prepared.push(Row::Null);
                                continue 'rows;
                            }
                        },
                    }
                }
                messages.push((*role, text));
            }
            let mut urls = Vec::with_capacity(images.len());
            for (name, column) in self.images.iter().zip(&mut images) {
                // Each data URL is moved into its prompt, not copied.
                match column[row].take() {
                    None => {
                        prepared.push(Row::Null);
                        continue 'rows;
                    }
                    Some(Err(problem)) => {
                        prepared.push(Row::Failed(format!("image column `{name}`: {problem}")));
                        continue 'rows;
                    }
                    Some(Ok(url)) => urls.push(url),
                }
            }
            let prompt = Prompt { messages, images: urls };
            let body = Bytes::from(self.shape.body(&prompt, None).to_string());
            let key = AnswerKey::new(&row_ref(refs.as_ref(), row), &body);
            prepared.push(Row::Ask { key, prompt, body });
        }
        Ok(prepared)
    }

    /// Each template column's values as text (`None` where null), by column name.
    fn template_values(&self, input: &RecordBatch) -> Result<HashMap<&str, Vec<Option<String>>>, StepError> {
        let mut values = HashMap::new();
        for name in self.templates.iter().flat_map(|(_, pieces)| pieces).filter_map(|p| match p {
            Piece::Column(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        }) {
            if values.contains_key(name) {
                continue;
            }
            let array = column_path(input, name)?;
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
                .map_err(|e| StepError::column(name, format!("cannot be written into a prompt: {e}")))?;
            let texts = (0..array.len())
                .map(|i| if array.is_null(i) { None } else { Some(formatter.value(i).to_string()) })
                .collect();
            values.insert(name, texts);
        }
        Ok(values)
    }

    /// The answers kept for the morsel's unit; none outside a unit, and none (with a warning)
    /// when they cannot be read: the rows are then asked again.
    async fn kept_answers(&self, ctx: &StepContext) -> Arc<UnitAnswers> {
        let (Some(store), Some(attempt)) = (&self.answers, ctx.attempt) else { return Arc::default() };
        match store.for_unit(attempt.unit).await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(unit = attempt.unit, error = %e, "cannot read the kept answers of the unit: its rows are asked again");
                Arc::default()
            }
        }
    }

    async fn answer(&self, row: Row, kept: &UnitAnswers) -> Outcome {
        let (key, prompt, body) = match row {
            Row::Null => return Outcome::Null,
            Row::Failed(message) => return Outcome::Failed(message),
            Row::Ask { key, prompt, body } => (key, prompt, body),
        };
        let kept = kept.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        if let Some(answer) = kept {
            self.metrics.reused(1);
            let json = match &self.structured {
                Some(shape) => match read_answer(&answer.text, shape) {
                    Ok(json) => Some(json),
                    Err(_) => return self.ask(key, &prompt, &body).await,
                },
                None => None,
            };
            return Outcome::Answered { key, answer, json, fresh: false };
        }
        self.ask(key, &prompt, &body).await
    }

    /// Asks; with a schema, sends a breaking answer back once for repair.
    async fn ask(&self, key: AnswerKey, prompt: &Prompt, body: &Bytes) -> Outcome {
        let estimate = self.shape.estimate_tokens(prompt);
        let answer = match self.client.ask(body, estimate).await {
            Ok(answer) => answer,
            Err(message) => return Outcome::Failed(message),
        };
        let Some(shape) = &self.structured else {
            return Outcome::Answered { key, answer, json: None, fresh: true };
        };
        let problem = match read_answer(&answer.text, shape) {
            Ok(json) => return Outcome::Answered { key, answer, json: Some(json), fresh: true },
            Err(problem) => problem,
        };
        let repair =
            Bytes::from(self.shape.body(prompt, Some(&Repair { answer: &answer.text, problem: &problem })).to_string());
        let second = match self.client.ask(&repair, estimate.saturating_add(answer.completion_tokens)).await {
            Ok(second) => second,
            Err(message) => {
                return Outcome::Failed(format!(
                    "the answer broke jsonSchema ({problem}); asking for a repair failed: {message}"
                ));
            }
        };
        let used = Answer {
            text: second.text.clone(),
            prompt_tokens: answer.prompt_tokens.saturating_add(second.prompt_tokens),
            completion_tokens: answer.completion_tokens.saturating_add(second.completion_tokens),
        };
        match read_answer(&second.text, shape) {
            Ok(json) => Outcome::Answered { key, answer: used, json: Some(json), fresh: true },
            Err(again) => {
                Outcome::Failed(format!("the answer broke jsonSchema: {problem}; the repaired answer too: {again}"))
            }
        }
    }

    /// Writes the morsel's new answers with the checkpoint; a failed write is logged, not fatal
    /// (the rows would be asked again if the unit runs again).
    async fn keep_answers(&self, ctx: &StepContext, outcomes: &[Outcome]) {
        let (Some(store), Some(attempt)) = (&self.answers, ctx.attempt) else { return };
        let fresh: Vec<(AnswerKey, &Answer)> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Answered { key, answer, fresh: true, .. } => Some((*key, answer)),
                _ => None,
            })
            .collect();
        if let Err(e) = store.keep(attempt, &fresh).await {
            tracing::warn!(unit = attempt.unit, error = %e, answers = fresh.len(), "cannot keep answers with the checkpoint");
        }
    }

    /// The answer column (text, or the schema's struct) and the usage column; failed rows dropped.
    fn output(&self, input: &RecordBatch, outcomes: Vec<Outcome>) -> Result<StepOutput, StepError> {
        let mut failures = Vec::new();
        let mut answers: Vec<Option<&Answer>> = Vec::with_capacity(outcomes.len());
        let mut json: Vec<Option<&Value>> = Vec::with_capacity(outcomes.len());
        for (row, outcome) in outcomes.iter().enumerate() {
            match outcome {
                Outcome::Answered { answer, json: value, .. } => {
                    answers.push(Some(answer));
                    json.push(value.as_ref());
                }
                Outcome::Failed(message) => {
                    failures.push(RowFailure::new(row, message.clone()));
                    answers.push(None);
                    json.push(None);
                }
                Outcome::Null => {
                    answers.push(None);
                    json.push(None);
                }
            }
        }
        let values: ArrayRef = match &self.structured {
            Some(shape) => to_array(shape, &json),
            None => Arc::new(StringArray::from_iter(answers.iter().map(|a| a.map(|a| a.text.as_str())))),
        };
        let with_answers = batch::with_column(input, &self.output, values)?;
        let with_usage = batch::with_column(&with_answers, &self.usage_output, usage_array(&answers))?;
        let failed: Vec<usize> = failures.iter().map(|f| f.row).collect();
        Ok(StepOutput::new(batch::drop_rows(&with_usage, &failed)?, failures))
    }
}

/// The Arrow type of `<output>_usage`.
pub fn usage_fields() -> Fields {
    Fields::from(vec![Field::new("prompt", DataType::UInt32, true), Field::new("completion", DataType::UInt32, true)])
}

fn usage_array(answers: &[Option<&Answer>]) -> ArrayRef {
    let prompt: ArrayRef = Arc::new(UInt32Array::from_iter(answers.iter().map(|a| a.map(|a| a.prompt_tokens))));
    let completion: ArrayRef = Arc::new(UInt32Array::from_iter(answers.iter().map(|a| a.map(|a| a.completion_tokens))));
    let nulls = arrow_buffer::NullBuffer::from_iter(answers.iter().map(Option::is_some));
    Arc::new(StructArray::new(usage_fields(), vec![prompt, completion], Some(nulls)))
}
