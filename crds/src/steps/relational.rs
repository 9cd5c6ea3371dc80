//! Row and column steps: filter, select, rename, explode and the vector comparisons (kernels in
//! `weir-ops::relational` and `weir-ops::vector`).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{PoolName, StepConfig};

step_config!(
    /// Keep the rows for which every predicate holds (a null compares as false).
    Filter {
        #[serde(rename = "where")]
        #[schemars(length(min = 1, max = 32))]
        predicates: Vec<Predicate>,
    }
);
impl_step_config!(Filter,
    inputs(s) => s.predicates.iter().map(|p| p.column.split('.').next().unwrap_or_default()).collect(),
    output(_s) => None);

step_config!(
    /// Keep only these columns, in this order.
    Select {
        #[schemars(length(min = 1))]
        columns: Vec<String>,
    }
);
impl_step_config!(Select, inputs(s) => s.columns.iter().map(String::as_str).collect(), output(_s) => None);

step_config!(
    /// Rename columns (`old: new`).
    Rename {
        mapping: BTreeMap<String, String>,
    }
);
impl_step_config!(Rename, inputs(s) => s.mapping.keys().map(String::as_str).collect(), output(_s) => None);

step_config!(
    /// One row per element of a list column; the other columns repeat. Empty and null lists drop the row.
    Explode {
        input: String,
        /// The element column; default the input's name (the list column is replaced).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    }
);
impl_step_config!(Explode,
    inputs(s) => vec![s.input.as_str()],
    output(s) => Some(s.output.as_deref().unwrap_or(&s.input)));

step_config!(
    /// Compare a vector column (a list of floats) with a literal `vector` or another column
    /// (`other`); the result is a float64 per row. Used by `vector.cosine_similarity`, `vector.dot`
    /// and `vector.l2` (Euclidean distance).
    VectorCompare {
        input: String,
        output: String,
        /// The column to compare with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        other: Option<String>,
        /// The literal vector to compare with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1))]
        vector: Option<Vec<f32>>,
    }
    rules {
        "has(self.other) != has(self.vector)"
            => "needs exactly one of other (a column) or vector (a literal)",
    }
);
impl_step_config!(VectorCompare,
    inputs(s) => std::iter::once(s.input.as_str()).chain(s.other.as_deref()).collect(),
    output(s) => Some(&s.output));

/// `column op value`, e.g. `{column: image.width, op: ge, value: 224}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Predicate {
    /// A column, or a struct field as `column.field`.
    pub column: String,
    pub op: CmpOp,
    /// A scalar (a list for `in`); cast to the column's type. Not used by `isNull`/`notNull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub value: Option<Value>,
}

/// A comparison.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    IsNull,
    NotNull,
    Contains,
    StartsWith,
    EndsWith,
}

fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}
