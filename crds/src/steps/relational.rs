//! Row and column steps: filter, select, rename, explode and the vector comparisons (kernels in
//! `weir-ops::relational` and `weir-ops::vector`).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ColumnType, PoolName, StepConfig, reserved_name_problem};

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

impl Select {
    /// What weir-ops refuses when it builds the step, or what would spoil the output, each as
    /// `(field, message)` (`columns[2]`): a column listed twice, or a reserved `_weir_` name (an
    /// internal column passes every `select` anyway; listing it too would make it twice).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (j, column) in self.columns.iter().enumerate() {
            let field = format!("columns[{j}]");
            if let Some(message) = reserved_name_problem(column) {
                problems.push((field, message));
            } else if let Some(first) = self.columns[..j].iter().position(|c| c == column) {
                let message = format!("`{column}` is listed twice (also columns[{first}]): list each column once");
                problems.push((field, message));
            }
        }
        problems
    }
}

step_config!(
    /// Rename columns (`old: new`).
    Rename {
        mapping: BTreeMap<String, String>,
    }
);
impl_step_config!(Rename, inputs(s) => s.mapping.keys().map(String::as_str).collect(), output(_s) => None);

impl Rename {
    /// What weir-ops refuses when it builds the step, or what would make two columns of one name
    /// (a Parquet file pyarrow cannot read), each as `(field, message)` (`mapping.old`): a
    /// reserved `_weir_` name, two columns renamed to one name, and a column renamed onto one
    /// that `exists` where the step runs and that is not itself renamed away.
    pub fn problems(&self, exists: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut targets: BTreeMap<&str, &str> = BTreeMap::new();
        for (from, to) in &self.mapping {
            let field = format!("mapping.{from}");
            if let Some(message) = reserved_name_problem(from).or_else(|| reserved_name_problem(to)) {
                problems.push((field, message));
            } else if let Some(other) = targets.insert(to, from) {
                let message = format!(
                    "`{other}` and `{from}` are both renamed to `{to}`: the step refuses two columns of one name; rename them to different names"
                );
                problems.push((field, message));
            } else if from != to && exists(to) && !self.mapping.contains_key(to) {
                let message = format!(
                    "renames `{from}` to `{to}`, but a column `{to}` already exists here: the output would have two `{to}` columns, which Parquet readers such as pyarrow refuse; choose another name, rename `{to}` too, or leave it out with a select first"
                );
                problems.push((field, message));
            }
        }
        problems
    }
}

step_config!(
    /// One row per element of a list column; the other columns repeat. Empty and null lists drop the row.
    Explode {
        input: String,
        /// The element column; default the input's name (the list column is replaced).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
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
);
impl_step_config!(Explode,
    inputs(s) => vec![s.input.as_str()],
    output(s) => Some(s.output.as_deref().unwrap_or(&s.input)));

impl Explode {
    /// Why the run cannot explode the input, given its type where known: it is not a list.
    pub fn input_problem(&self, input_type: Option<ColumnType>) -> Option<String> {
        match input_type? {
            ColumnType::List(_) => None,
            other => Some(format!("explode needs a list column, but `{}` is a {other} column", self.input)),
        }
    }
}

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

impl CmpOp {
    /// Whether the operator matches text (`contains`, `startsWith`, `endsWith`).
    fn matches_text(self) -> bool {
        matches!(self, CmpOp::Contains | CmpOp::StartsWith | CmpOp::EndsWith)
    }
}

/// Where in a predicate a problem lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredicateField {
    Column,
    Value,
}

impl PredicateField {
    /// The field's name in manifests.
    pub fn name(self) -> &'static str {
        match self {
            PredicateField::Column => "column",
            PredicateField::Value => "value",
        }
    }
}

impl Predicate {
    /// What the run would refuse in this predicate, found from the manifest alone, each with the
    /// field it concerns. Always: a value missing or of the wrong shape for the operator (weir-ops
    /// refuses it when it builds the step, or on the first morsel for text matching). Given the
    /// type of the column the predicate names (`column_type`, where the pipeline fixes it): a
    /// field that column does not have, and a literal that cannot be cast to the type compared
    /// with (refused on the first morsel). The checks follow weir-ops' `relational::filter`.
    pub fn problems(&self, column_type: Option<ColumnType>) -> Vec<(PredicateField, String)> {
        let shape = self.value_shape().err().map(|m| (PredicateField::Value, m));
        let typed = column_type.and_then(|head| match self.compared_type(head) {
            Err(message) => Some((PredicateField::Column, message)),
            // A literal is cast only once its shape is right.
            Ok(ty) if shape.is_none() => self.literals_fit(ty).err().map(|m| (PredicateField::Value, m)),
            Ok(_) => None,
        });
        shape.into_iter().chain(typed).collect()
    }

    /// The value the operator needs: none for `isNull`/`notNull`, a list for `in`, a string for
    /// text matching, one scalar otherwise.
    fn value_shape(&self) -> Result<(), String> {
        match (self.op, &self.value) {
            (CmpOp::IsNull | CmpOp::NotNull, _) | (CmpOp::In, Some(Value::Array(_))) => Ok(()),
            (CmpOp::In, _) => Err("`in` needs a list of values".into()),
            (op, None | Some(Value::Null)) => Err(format!("`{}` needs a value", op_name(op))),
            (_, Some(Value::Array(_) | Value::Object(_))) => {
                Err("must be a single value (a string, number or boolean); only `in` takes a list".into())
            }
            (op, Some(v)) if op.matches_text() && !v.is_string() => {
                Err(format!("`{}` matches text: the value must be a string, found {v}", op_name(op)))
            }
            _ => Ok(()),
        }
    }

    /// The type the predicate compares: the column's, or that of the struct field it names.
    fn compared_type(&self, head: ColumnType) -> Result<ColumnType, String> {
        self.column.split('.').skip(1).try_fold(head, |ty, part| ty.field(part))
    }

    /// Whether every literal casts to `ty` as the run casts it.
    fn literals_fit(&self, ty: ColumnType) -> Result<(), String> {
        let literals: Vec<&Value> = match (self.op, &self.value) {
            (CmpOp::IsNull | CmpOp::NotNull, _) => Vec::new(),
            (op, _) if op.matches_text() => {
                return match ty {
                    ColumnType::Utf8 => Ok(()),
                    other => {
                        Err(format!("text matching needs a string column, but `{}` is a {other} column", self.column))
                    }
                };
            }
            (CmpOp::In, Some(Value::Array(items))) => items.iter().collect(),
            (_, value) => value.iter().collect(),
        };
        match literals.into_iter().map(literal_text).find(|text| !casts_to(text, ty)) {
            None => Ok(()),
            Some(text) => Err(format!(
                "value `{text}` cannot be compared with `{}`, a {ty} column (the run casts the value to the column's type); {}",
                self.column,
                what_fits(ty)
            )),
        }
    }
}

/// The operator as manifests spell it (`startsWith`).
fn op_name(op: CmpOp) -> String {
    serde_json::to_value(op).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The text the run casts: a string as it is, anything else as JSON (`224`, `true`).
fn literal_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether Arrow's cast of the string `text` to `ty` gives a value (the run's safe cast, which
/// makes anything else null and refuses it). Lists are left to the run: a scalar cast to a list
/// wraps it, and whether the comparison then runs is the kernel's business.
fn casts_to(text: &str, ty: ColumnType) -> bool {
    match ty {
        ColumnType::Utf8 | ColumnType::Binary | ColumnType::List(_) => true,
        ColumnType::Struct(_) => false,
        ColumnType::Boolean => parses_as_boolean(text),
        ColumnType::UInt8 => parses_as_unsigned(text, u64::from(u8::MAX)),
        ColumnType::UInt32 => parses_as_unsigned(text, u64::from(u32::MAX)),
        ColumnType::UInt64 => parses_as_unsigned(text, u64::MAX),
        ColumnType::Float32 | ColumnType::Float64 => text.trim_ascii().parse::<f64>().is_ok(),
    }
}

/// Arrow's string-to-boolean words (`cast_single_string_to_boolean`).
fn parses_as_boolean(text: &str) -> bool {
    let words = ["t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"]
        .into_iter()
        .chain(["f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0"]);
    let lower = text.to_ascii_lowercase();
    words.into_iter().any(|w| w == lower.trim())
}

/// Arrow's integer parsing: surrounding ASCII whitespace, an optional sign and decimal digits,
/// within `0..=max` (`-0` is 0).
fn parses_as_unsigned(text: &str, max: u64) -> bool {
    let text = text.trim_ascii();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match digits.parse::<u128>() {
        Ok(n) if text.starts_with('-') => n == 0,
        Ok(n) => n <= u128::from(max),
        Err(_) => false,
    }
}

/// What to write instead of a literal `ty` cannot take.
fn what_fits(ty: ColumnType) -> String {
    match ty {
        ColumnType::UInt8 => "write a whole number from 0 to 255".into(),
        ColumnType::UInt32 => format!("write a whole number from 0 to {}", u32::MAX),
        ColumnType::UInt64 => format!("write a whole number from 0 to {}", u64::MAX),
        ColumnType::Float32 | ColumnType::Float64 => "write a number".into(),
        ColumnType::Boolean => "write true or false".into(),
        ColumnType::Struct(_) => "compare one of its fields (`column.field`), or test it with isNull or notNull".into(),
        ColumnType::Utf8 | ColumnType::Binary | ColumnType::List(_) => String::new(),
    }
}

fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_literals_parse_as_arrow_parses_them() {
        for (text, max) in [("7", 255), (" 7\t", 255), ("+7", 255), ("-0", 255), ("007", 255), ("255", 255)] {
            assert!(parses_as_unsigned(text, max), "{text:?}");
        }
        for (text, max) in [("256", 255), ("-1", 255), ("1.0", 255), ("1e2", 255), ("", 255), ("+", 255), ("1 2", 255)]
        {
            assert!(!parses_as_unsigned(text, max), "{text:?}");
        }
        assert!(parses_as_unsigned("18446744073709551615", u64::MAX));
        assert!(!parses_as_unsigned("18446744073709551616", u64::MAX));
        assert!(!parses_as_unsigned(&"9".repeat(60), u64::MAX));
    }

    #[test]
    fn boolean_and_float_literals_parse_as_arrow_parses_them() {
        for text in ["true", "T", "yes", " Off ", "0", "ye", "of"] {
            assert!(casts_to(text, ColumnType::Boolean), "{text:?}");
        }
        for text in ["2", "maybe", "", "truee"] {
            assert!(!casts_to(text, ColumnType::Boolean), "{text:?}");
        }
        for text in ["1.5", "-2", "1e3", " 4 ", ".5", "inf", "NaN"] {
            assert!(casts_to(text, ColumnType::Float64), "{text:?}");
        }
        for text in ["abc", "1,5", "", "."] {
            assert!(!casts_to(text, ColumnType::Float32), "{text:?}");
        }
    }

    #[test]
    fn a_predicate_names_the_field_its_problem_is_in() {
        let predicate = |json: serde_json::Value| -> Predicate { serde_json::from_value(json).expect("predicate") };
        let p = predicate(serde_json::json!({"column": "image.width", "op": "ge", "value": "wide"}));
        let found = p.problems(Some(crate::IMAGE_TYPE));
        assert!(matches!(found.as_slice(), [(PredicateField::Value, m)] if m.contains("UInt32")), "{found:?}");
        assert_eq!(p.problems(None), []);
        let p = predicate(serde_json::json!({"column": "image.width.x", "op": "isNull"}));
        let found = p.problems(Some(crate::IMAGE_TYPE));
        assert!(matches!(found.as_slice(), [(PredicateField::Column, m)] if m.contains("not a struct")), "{found:?}");
    }
}
