//! Text and document steps: normalize, chunk, tokenize and document.text (kernels in `weir-ops::text`
//! and `weir-ops::document`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PoolName, StepConfig};

step_config!(
    /// Normalise text: Unicode whitespace collapsed to single spaces, trimmed, optionally lower-cased.
    TextNormalize {
        input: String,
        output: String,
        /// Lower-case the text; default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lowercase: Option<bool>,
    }
);
impl_step_config!(TextNormalize, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Split text into overlapping chunks, one row each (the chunk in `output`, plus
    /// `<output>_index` and `<output>_start`, a character offset), preferring to break at
    /// paragraphs, then lines, sentences and words.
    TextChunk {
        input: String,
        output: String,
        /// Most characters per chunk; default 2048.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        size: Option<u32>,
        /// Characters shared by consecutive chunks, at most; default 200.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlap: Option<u32>,
        /// Most rows one input row may make; default 1,000,000. An input row that would make more
        /// is a row error, not cut.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_rows_per_input: Option<u64>,
        /// Most bytes of an input row's other columns copied into the rows it makes, in bytes;
        /// default 268435456 (256 MiB). An input row that would copy more is a row error that says
        /// so; drop the columns no later step reads to stay under it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_bytes_per_input: Option<u64>,
    }
    rules {
        "!has(self.overlap) || self.overlap < (has(self.size) ? self.size : 2048)"
            => "needs overlap smaller than size",
    }
);
impl_step_config!(TextChunk, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => vec![format!("{}_index", s.output), format!("{}_start", s.output)]);

step_config!(
    /// Extract text from documents, one row per page (text in `output`, plus `<output>_page`,
    /// counting from 1): PDF per page; plain text, Markdown and HTML (tags stripped) as one page.
    /// A page with no text layer (a scan) gives a null text. The input is a bytes or text column.
    DocumentText {
        input: String,
        output: String,
        /// Default `auto` (by content).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        document_type: Option<DocumentType>,
        /// Most pages per document; default 1000. Longer documents are cut, not failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_pages: Option<u32>,
        /// Most bytes of an input row's other columns copied into the rows it makes, in bytes;
        /// default 268435456 (256 MiB). An input row that would copy more is a row error that says
        /// so; drop the columns no later step reads to stay under it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_bytes_per_input: Option<u64>,
    }
);
impl_step_config!(DocumentText, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => vec![format!("{}_page", s.output)]);

step_config!(
    /// Tokenize text with a Hugging Face `tokenizer.json` (path or object-store URI):
    /// `{ids: list<u32>, attentionMask: list<u8>}`.
    TextTokenize {
        input: String,
        output: String,
        /// Path or URI of `tokenizer.json`.
        tokenizer: String,
        /// Truncate to this many tokens; default the tokenizer's own setting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_length: Option<u32>,
        /// Pad every row to `maxLength`; default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pad_to_max_length: Option<bool>,
        /// Add the model's special tokens (`[CLS]`, `[SEP]`); default true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        add_special_tokens: Option<bool>,
    }
);
impl_step_config!(TextTokenize, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    objects(s) => vec![("tokenizer", s.tokenizer.as_str())]);

/// How `document.text` reads its input.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DocumentType {
    /// PDF by its `%PDF` header, HTML by a leading tag, otherwise plain text.
    #[default]
    Auto,
    Pdf,
    Text,
    Markdown,
    Html,
}
