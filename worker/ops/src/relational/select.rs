//! `select` (keep columns, in order) and `rename` (old name to new name).
//!
//! Internal `_weir_*` columns always survive a `select`: they carry row identity.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{INTERNAL_PREFIX, Step, StepError, StepOutput, batch};
use weir_crds::{Rename, Select};

use crate::BuildError;

/// The runnable `select` step.
#[derive(Debug, Clone)]
pub struct SelectColumns {
    pub columns: Vec<String>,
}

/// Builds `select`.
///
/// # Errors
/// When a column is listed twice.
pub fn build_select(config: &Select) -> Result<Arc<dyn Step>, BuildError> {
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = config.columns.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(BuildError::new("columns", format!("`{dup}` is listed twice")));
    }
    Ok(Arc::new(ComputeStep(SelectColumns { columns: config.columns.clone() })))
}

impl Kernel for SelectColumns {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let schema = input.schema();
        let mut indices = Vec::with_capacity(self.columns.len() + 1);
        for name in &self.columns {
            batch::column(input, name)?;
            indices.push(schema.index_of(name)?);
        }
        indices.extend(
            schema.fields().iter().enumerate().filter(|(_, f)| f.name().starts_with(INTERNAL_PREFIX)).map(|(i, _)| i),
        );
        Ok(StepOutput::ok(input.project(&indices)?))
    }
}

/// The runnable `rename` step.
#[derive(Debug, Clone)]
pub struct RenameColumns {
    pub mapping: BTreeMap<String, String>,
}

/// Builds `rename`.
///
/// # Errors
/// When two columns would get the same name, or an internal column is involved.
pub fn build_rename(config: &Rename) -> Result<Arc<dyn Step>, BuildError> {
    let mut targets = std::collections::BTreeSet::new();
    for (from, to) in &config.mapping {
        if from.starts_with(INTERNAL_PREFIX) || to.starts_with(INTERNAL_PREFIX) {
            return Err(BuildError::new("mapping", format!("names starting with `{INTERNAL_PREFIX}` are reserved")));
        }
        if !targets.insert(to.as_str()) {
            return Err(BuildError::new("mapping", format!("two columns renamed to `{to}`")));
        }
    }
    Ok(Arc::new(ComputeStep(RenameColumns { mapping: config.mapping.clone() })))
}

impl Kernel for RenameColumns {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        for from in self.mapping.keys() {
            batch::column(input, from)?;
        }
        let schema = input.schema();
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| match self.mapping.get(f.name()) {
                Some(to) => f.as_ref().clone().with_name(to),
                None => f.as_ref().clone(),
            })
            .collect();
        let renamed = Schema::new_with_metadata(fields, schema.metadata().clone());
        Ok(StepOutput::ok(RecordBatch::try_new(Arc::new(renamed), input.columns().to_vec())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int32Array, StringArray};

    fn batch() -> RecordBatch {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let b: ArrayRef = Arc::new(StringArray::from(vec!["x", "y"]));
        let r: ArrayRef = Arc::new(StringArray::from(vec!["r0", "r1"]));
        RecordBatch::try_from_iter([("a", a), ("b", b), (weir_core::ROW_REF_COLUMN, r)]).expect("batch")
    }

    fn names(batch: &RecordBatch) -> Vec<String> {
        batch.schema().fields().iter().map(|f| f.name().clone()).collect()
    }

    #[test]
    fn select_keeps_the_listed_columns_in_order_and_the_row_refs() {
        let out = SelectColumns { columns: vec!["b".into(), "a".into()] }.apply(&batch()).expect("select").batch;
        assert_eq!(names(&out), ["b", "a", "_weir_ref"]);
        let err = SelectColumns { columns: vec!["c".into()] }.apply(&batch()).expect_err("missing");
        assert_eq!(err.to_string(), "column `c`: no such column (have: a, b)");
    }

    #[test]
    fn rename_maps_names_and_refuses_collisions() {
        let step = RenameColumns { mapping: [("a".to_string(), "alpha".to_string())].into() };
        assert_eq!(names(&step.apply(&batch()).expect("rename").batch), ["alpha", "b", "_weir_ref"]);
        let clash = Rename {
            mapping: [("a".into(), "z".into()), ("b".into(), "z".into())].into(),
            pool: None,
            concurrency: None,
        };
        assert_eq!(
            build_rename(&clash).err().map(|e| e.to_string()),
            Some("mapping: two columns renamed to `z`".into())
        );
    }
}
