//! `text.normalize`: whitespace runs (any Unicode whitespace) become one space, ends are trimmed,
//! and the text is optionally lower-cased.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput};
use weir_crds::TextNormalize;

use super::string_rows;
use crate::BuildError;

/// The runnable `text.normalize` step.
#[derive(Debug, Clone)]
pub struct NormalizeText {
    pub input: String,
    pub output: String,
    pub lowercase: bool,
}

/// Builds `text.normalize`.
///
/// # Errors
/// Never for a validated config.
pub fn build(config: &TextNormalize) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(NormalizeText {
        input: config.input.clone(),
        output: config.output.clone(),
        lowercase: config.lowercase.unwrap_or(false),
    })))
}

impl Kernel for NormalizeText {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let rows = string_rows(input, &self.input)?;
        let out: ArrayRef =
            Arc::new(StringArray::from_iter(rows.iter().map(|t| t.map(|t| normalize(t, self.lowercase)))));
        StepOutput::with_column(input, &self.output, out, Vec::new())
    }
}

/// Collapses whitespace, trims, and optionally lower-cases `text`.
pub fn normalize(text: &str, lowercase: bool) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if lowercase { joined.to_lowercase() } else { joined }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_collapses_and_case_folds_on_request() {
        assert_eq!(normalize("  Hello,\t\u{00A0}World \n\n Again ", false), "Hello, World Again");
        assert_eq!(normalize("ÉCOLE  Ünïcode", true), "école ünïcode");
        assert_eq!(normalize(" \n ", false), "");
    }
}
