//! Pipeline steps: one serde config struct per `op`, declared in the file of its family, and the
//! step table ([`step_table!`]) from which the step enum, the op names, the CRD schema and
//! placement all come.
//!
//! # Adding a step
//! 1. Its config struct, in the family's file (`image.rs`, `text.rs`, `media.rs`,
//!    `relational.rs`, `io.rs`, `model.rs`), with `step_config!` (rules its fields cannot state
//!    alone go in its `rules { .. }`) and `impl_step_config!` (which columns it reads and writes;
//!    `model(..)` for a step that runs a model, `objects(..)` for files it reads whole).
//! 2. One line in the table below: `Variant => "op.name", family::Config;`.
//! 3. Its kernel in the worker crate of the same family, and its arm in the worker's
//!    `build_step` (the match is exhaustive, so the compiler asks for it).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::pool::PoolName;

/// What every step config can say about itself, for planning and validation.
pub trait StepConfig {
    /// Columns this step reads (top-level names).
    fn inputs(&self) -> Vec<&str>;
    /// The column this step adds or replaces, if any.
    fn output(&self) -> Option<&str>;
    /// The pool the step asked for.
    fn pool(&self) -> Option<&PoolName>;
    /// Morsels processed at once, if set.
    fn concurrency(&self) -> Option<u32>;
    /// Columns added besides `output` (a row-multiplying step's position columns).
    fn extra_outputs(&self) -> Vec<String> {
        Vec::new()
    }
    /// The model the step runs, for a model step (which defaults to a declared `gpu` pool, and
    /// whose weights the worker reads before any row runs).
    fn model(&self) -> Option<&ModelSpec> {
        None
    }
    /// Objects the step reads whole before it is built: `(field, path or URI)`.
    fn objects(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }
}

/// Prefix of the worker's internal columns (`_weir_ref`, a row's source reference): they ride
/// along every morsel, survive `select`, and are never written by the sink, so no step may make,
/// rename or select a column of that name (weir-core's `INTERNAL_PREFIX`).
pub const RESERVED_PREFIX: &str = "_weir_";

/// Why `name` cannot name a column the job makes, when it starts with [`RESERVED_PREFIX`].
pub fn reserved_name_problem(name: &str) -> Option<String> {
    name.starts_with(RESERVED_PREFIX).then(|| {
        format!(
            "`{name}` starts with `{RESERVED_PREFIX}`, which is reserved for Weir's internal columns (row references, never written to the sink): choose another name"
        )
    })
}

/// The type of a column as far as validation needs it: the scalar a `filter` literal is cast to,
/// the fields of a struct a `filter` may name, or a list. Named as Arrow names them (`UInt32`):
/// the worker's columns are Arrow arrays of exactly these types.
///
/// # Contract
/// A type declared here for a step's output ([`StepSpec::made_columns`]) is the type the worker's
/// kernel makes; where a kernel's layout changes, its declaration here changes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Utf8,
    Binary,
    Boolean,
    UInt8,
    UInt32,
    UInt64,
    Float32,
    Float64,
    List(&'static ColumnType),
    Struct(&'static [StructField]),
}

/// One field of a struct column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructField {
    pub name: &'static str,
    pub ty: ColumnType,
}

const fn field(name: &'static str, ty: ColumnType) -> StructField {
    StructField { name, ty }
}

/// An image column, made by `image.decode`, `image.resize`, `image.crop`, `image.draw` and `video.frames`:
/// weir-ops' `image::image_fields()`.
pub const IMAGE_TYPE: ColumnType = ColumnType::Struct(&[
    field("width", ColumnType::UInt32),
    field("height", ColumnType::UInt32),
    field("channels", ColumnType::UInt8),
    field("data", ColumnType::Binary),
]);

impl ColumnType {
    /// The type of field `name` of this struct.
    ///
    /// # Errors
    /// What the run says when it looks the field up: this is not a struct, or has no such field.
    pub fn field(&self, name: &str) -> Result<ColumnType, String> {
        let ColumnType::Struct(fields) = self else {
            return Err(format!("`{name}` is not a field: the column is a {self}, not a struct"));
        };
        match fields.iter().find(|f| f.name == name) {
            Some(f) => Ok(f.ty),
            None => {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                Err(format!("the struct has no field `{name}`; its fields: {}", names.join(", ")))
            }
        }
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnType::List(item) => write!(f, "List({item})"),
            ColumnType::Struct(fields) => {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                write!(f, "Struct({})", names.join(", "))
            }
            scalar => write!(f, "{scalar:?}"),
        }
    }
}

/// Declares a step config struct with the fields every step shares (`pool`, `concurrency`), and
/// its `RULES`: CEL rules across its fields, each `(rule, message)`; the table prefixes the rule
/// with its op (`self.op != 'image.resize' || (...)`) and the message with the op's name.
macro_rules! step_config {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }
     $(rules { $($rule:literal => $message:literal),* $(,)? })?) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Pool this step runs on; default the leasing pool (model steps: `gpu` when the job
            /// declares a pool of that name).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub pool: Option<PoolName>,
            /// Morsels this step works on at once; default one per core.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1, max = 1024))]
            pub concurrency: Option<u32>,
        }

        impl $name {
            /// CEL rules across this step's fields: `(rule, message)`.
            pub const RULES: &'static [(&'static str, &'static str)] = &[$($(($rule, $message)),*)?];
        }
    };
}

/// Implements [`StepConfig`] from the struct's input fields and output expression, and optionally
/// its extra output columns, its model and the objects it reads whole.
macro_rules! impl_step_config {
    ($name:ident, inputs($s:ident) => $inputs:expr, output($o:ident) => $output:expr
     $(, extra($e:ident) => $extra:expr)? $(, model($m:ident) => $model:expr)? $(, objects($b:ident) => $objects:expr)?) => {
        impl StepConfig for $name {
            fn inputs(&self) -> Vec<&str> {
                let $s = self;
                $inputs
            }
            fn output(&self) -> Option<&str> {
                let $o = self;
                $output
            }
            fn pool(&self) -> Option<&PoolName> {
                self.pool.as_ref()
            }
            fn concurrency(&self) -> Option<u32> {
                self.concurrency
            }
            $(fn extra_outputs(&self) -> Vec<String> {
                let $e = self;
                $extra
            })?
            $(fn model(&self) -> Option<&ModelSpec> {
                let $m = self;
                $model
            })?
            $(fn objects(&self) -> Vec<(&'static str, &str)> {
                let $b = self;
                $objects
            })?
        }
    };
}

mod image;
mod io;
mod llm;
mod media;
mod model;
mod relational;
mod text;

pub use image::*;
pub use io::*;
pub use llm::*;
pub use media::*;
pub use model::*;
pub use relational::*;
pub use text::*;

/// The step table's expansion: the [`StepSpec`] enum, its `op()` and `config()`, [`OPS`] and the
/// per-op schemas, all from one line per op.
macro_rules! step_table {
    ($($variant:ident => $op:literal, $family:ident :: $config:ident;)*) => {
        /// One pipeline step; `op` selects which.
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[serde(tag = "op")]
        pub enum StepSpec {
            $(#[serde(rename = $op)] $variant($family::$config),)*
        }

        impl StepSpec {
            /// The step's config, seen through what all steps share.
            pub fn config(&self) -> &dyn StepConfig {
                match self {
                    $(StepSpec::$variant(c) => c,)*
                }
            }

            /// The `op` name as written in manifests.
            pub fn op(&self) -> &'static str {
                match self {
                    $(StepSpec::$variant(_) => $op,)*
                }
            }
        }

        /// Every op name, in the table's order (the order of the CRD's `op` enum).
        pub const OPS: &[&str] = &[$($op),*];

        fn unbounded_op_schemas(generator: &mut SchemaGenerator) -> Vec<OpSchema> {
            vec![$(OpSchema {
                op: $op,
                schema: <$family::$config as JsonSchema>::json_schema(generator),
                rules: $family::$config::RULES,
            },)*]
        }
    };
}

step_table! {
    Download => "download", io::Download;
    ImageDecode => "image.decode", image::ImageDecode;
    ImageResize => "image.resize", image::ImageResize;
    ImageCrop => "image.crop", image::ImageCrop;
    ImageEncode => "image.encode", image::ImageEncode;
    ImageToTensor => "image.to_tensor", image::ImageToTensor;
    Filter => "filter", relational::Filter;
    Select => "select", relational::Select;
    Rename => "rename", relational::Rename;
    Explode => "explode", relational::Explode;
    TextNormalize => "text.normalize", text::TextNormalize;
    TextChunk => "text.chunk", text::TextChunk;
    VideoMetadata => "video.metadata", media::VideoMetadata;
    VideoFrames => "video.frames", media::VideoFrames;
    AudioDecode => "audio.decode", media::AudioDecode;
    AudioResample => "audio.resample", media::AudioResample;
    AudioMetadata => "audio.metadata", media::AudioMetadata;
    AudioChunk => "audio.chunk", media::AudioChunk;
    DocumentText => "document.text", text::DocumentText;
    TextTokenize => "text.tokenize", text::TextTokenize;
    VectorCosine => "vector.cosine_similarity", relational::VectorCompare;
    VectorDot => "vector.dot", relational::VectorCompare;
    VectorL2 => "vector.l2", relational::VectorCompare;
    Upload => "upload", io::Upload;
    TextEmbed => "text.embed", model::TextEmbed;
    ImageEmbed => "image.embed", model::ImageEmbed;
    ImageClassify => "image.classify", model::ImageClassify;
    ImageDetect => "image.detect", model::ImageDetect;
    // After image.detect: the CRD gives a shared field (`minScore`) the first op's description.
    ImageDraw => "image.draw", image::ImageDraw;
    AudioTranscribe => "audio.transcribe", model::AudioTranscribe;
    LlmPrompt => "llm.prompt", llm::LlmPrompt;
}

impl StepSpec {
    /// Whether the step runs a model (and so defaults to a declared `gpu` pool).
    pub fn is_model_step(&self) -> bool {
        self.config().model().is_some()
    }

    /// The columns this step makes: its output, then its extra outputs, each with its type where
    /// the worker's layout is declared here ([`ColumnType`]'s contract), `None` where not.
    /// `filter`, `select` and `rename` make none, and `explode`'s output is typed by its caller
    /// (its list's item type).
    pub fn made_columns(&self) -> Vec<(String, Option<ColumnType>)> {
        let config = self.config();
        let names = config.output().map(str::to_string).into_iter().chain(config.extra_outputs());
        let types = self.made_types();
        names.enumerate().map(|(i, name)| (name, types.get(i).copied())).collect()
    }

    /// The types of [`Self::made_columns`], in order, for the steps whose layout is declared.
    fn made_types(&self) -> &'static [ColumnType] {
        use ColumnType::{Binary, Float64, UInt32, UInt64, Utf8};
        match self {
            StepSpec::Download(_) | StepSpec::ImageEncode(_) => &[Binary],
            StepSpec::ImageDecode(_) | StepSpec::ImageResize(_) | StepSpec::ImageCrop(_) | StepSpec::ImageDraw(_) => {
                &[IMAGE_TYPE]
            }
            StepSpec::VideoFrames(_) => &[IMAGE_TYPE, UInt64, Float64],
            StepSpec::VideoMetadata(_) => &[media::VIDEO_INFO_TYPE],
            StepSpec::AudioDecode(_) | StepSpec::AudioResample(_) => &[media::AUDIO_TYPE],
            StepSpec::AudioMetadata(_) => &[media::AUDIO_INFO_TYPE],
            StepSpec::AudioChunk(_) => &[media::AUDIO_TYPE, UInt32, Float64],
            StepSpec::TextNormalize(_) | StepSpec::Upload(_) => &[Utf8],
            StepSpec::TextChunk(_) => &[Utf8, UInt32, UInt32],
            StepSpec::DocumentText(_) => &[Utf8, UInt32],
            StepSpec::VectorCosine(_) | StepSpec::VectorDot(_) | StepSpec::VectorL2(_) => &[Float64],
            // With a `jsonSchema` the answer is a struct of the schema's own fields, not declared here.
            StepSpec::LlmPrompt(p) if p.json_schema.is_some() => &[],
            StepSpec::LlmPrompt(_) => &[Utf8, llm::USAGE_TYPE],
            _ => &[],
        }
    }
}

/// One op's name, its fields' schema and its cross-field rules.
struct OpSchema {
    op: &'static str,
    schema: Schema,
    rules: &'static [(&'static str, &'static str)],
}

/// Each op's schema, in the table's order (the CRD schema is built from this), with the bounds of
/// [`crate::schema::bound_fields`].
fn op_schemas(generator: &mut SchemaGenerator) -> Vec<OpSchema> {
    let mut ops = unbounded_op_schemas(generator);
    for op in &mut ops {
        let mut value = op.schema.clone().to_value();
        crate::schema::bound_fields(&mut value);
        if let Ok(bounded) = Schema::try_from(value) {
            op.schema = bounded;
        }
    }
    ops
}

impl JsonSchema for StepSpec {
    fn schema_name() -> Cow<'static, str> {
        "StepSpec".into()
    }

    /// Kubernetes wants one structural object, not a `oneOf` per op: properties of all ops are
    /// merged, and CEL rules say which fields each op requires and which ops each field belongs
    /// to. Every rule reads a few fields of one step and no lists, so each costs the same
    /// whatever the pipeline.
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let ops = op_schemas(generator);
        let mut properties = Map::new();
        let mut rules = Vec::new();
        for OpSchema { op, schema, .. } in &ops {
            for (name, prop) in own_properties(schema) {
                properties.entry(name).or_insert(prop);
            }
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !required.is_empty() {
                let has = required.iter().map(|f| format!("has(self.{f})")).collect::<Vec<_>>().join(" && ");
                rules.push(json_rule(
                    &format!("self.op != '{op}' || ({has})"),
                    &format!("{op} requires {}", required.join(", ")),
                ));
            }
        }
        rules.extend(field_owner_rules(&ops, &properties));
        for OpSchema { op, rules: own, .. } in &ops {
            for (rule, message) in *own {
                rules.push(json_rule(&format!("self.op != '{op}' || ({rule})"), &format!("{op} {message}")));
            }
        }
        let op_names: Vec<Value> = OPS.iter().map(|op| Value::from(*op)).collect();
        properties.insert(
            "op".into(),
            serde_json::json!({"type": "string", "description": "Which step this is.", "enum": op_names}),
        );
        json_schema!({
            "type": "object",
            "description": "One pipeline step: `op` selects which; the other fields are that op's parameters.",
            "required": ["op"],
            "properties": properties,
            "x-kubernetes-validations": rules,
        })
    }
}

fn json_rule(rule: &str, message: &str) -> Value {
    serde_json::json!({"rule": rule, "message": message})
}

fn own_properties(schema: &Schema) -> Map<String, Value> {
    schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// For each field that not every op has, a rule that refuses it on the other ops
/// (`!has(self.width) || self.op in ['image.resize', 'video.frames']`).
fn field_owner_rules(ops: &[OpSchema], fields: &Map<String, Value>) -> Vec<Value> {
    let mut rules = Vec::new();
    for field in fields.keys() {
        let owners: Vec<&str> =
            ops.iter().filter(|o| own_properties(&o.schema).contains_key(field)).map(|o| o.op).collect();
        if owners.len() == ops.len() {
            continue;
        }
        let list = owners.iter().map(|op| format!("'{op}'")).collect::<Vec<_>>().join(", ");
        rules.push(json_rule(
            &format!("!has(self.{field}) || self.op in [{list}]"),
            &format!("{field} is a field of {} only", owners.join(", ")),
        ));
    }
    rules
}

/// The schema of one op's fields (as it appears in manifests), for precise validation messages.
/// Built once per process.
pub fn op_schema(op: &str) -> Option<&'static Value> {
    static SCHEMAS: OnceLock<BTreeMap<&'static str, Value>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            let mut generator =
                schemars::generate::SchemaSettings::openapi3().with(|s| s.inline_subschemas = true).into_generator();
            op_schemas(&mut generator).into_iter().map(|o| (o.op, o.schema.to_value())).collect()
        })
        .get(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's names, the enum's serde tags, `op()` and the per-op schemas agree: each op
    /// name parses (with its required fields) into the variant that reports that name.
    #[test]
    fn every_op_of_the_table_parses_and_names_itself() {
        assert_eq!(OPS.len(), 31);
        for op in OPS {
            let schema = op_schema(op).unwrap_or_else(|| panic!("no schema for {op}"));
            let mut step = serde_json::json!({"op": op});
            for field in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let field = field.as_str().unwrap_or_default();
                let value = match schema.pointer(&format!("/properties/{field}/type")).and_then(Value::as_str) {
                    Some("integer") => serde_json::json!(16000),
                    Some("array") if field == "where" => serde_json::json!([{"column": "c", "op": "isNull"}]),
                    Some("array") if field == "messages" => serde_json::json!([{"role": "user", "content": "c"}]),
                    Some("object") if field == "endpoint" => {
                        serde_json::json!({"baseUrl": "http://h/v1", "model": "m"})
                    }
                    Some("array") => serde_json::json!(["c"]),
                    Some("object") => serde_json::json!({"arch": "bert", "uri": "m.safetensors"}),
                    _ => serde_json::json!("c"),
                };
                step[field] = value;
            }
            let parsed: StepSpec = serde_json::from_value(step.clone()).unwrap_or_else(|e| panic!("{step}: {e}"));
            assert_eq!(parsed.op(), *op);
        }
        assert!(op_schema("image.decod").is_none());
    }

    #[test]
    fn made_columns_carry_the_types_the_worker_makes() {
        let frames: StepSpec =
            serde_json::from_value(serde_json::json!({"op": "video.frames", "input": "v", "output": "f"}))
                .expect("video.frames");
        let made = frames.made_columns();
        let want = [
            ("f".to_string(), Some(IMAGE_TYPE)),
            ("f_index".to_string(), Some(ColumnType::UInt64)),
            ("f_timestamp".to_string(), Some(ColumnType::Float64)),
        ];
        assert_eq!(made, want);
        let embed: StepSpec = serde_json::from_value(serde_json::json!({
            "op": "image.embed", "input": "i", "output": "e", "model": {"arch": "resnet18", "uri": "m.safetensors"}
        }))
        .expect("image.embed");
        assert_eq!(embed.made_columns(), [("e".to_string(), None)]);
        assert_eq!(IMAGE_TYPE.field("width"), Ok(ColumnType::UInt32));
        assert!(IMAGE_TYPE.field("depth").is_err_and(|e| e.contains("width, height, channels, data")));
        assert!(ColumnType::Utf8.field("x").is_err_and(|e| e.contains("not a struct")));
        assert_eq!(media::AUDIO_TYPE.to_string(), "Struct(samples, sampleRate, channels)");
    }

    #[test]
    fn model_steps_are_the_steps_with_a_model() {
        let model = serde_json::json!({"arch": "resnet18", "uri": "m.safetensors"});
        let embed: StepSpec = serde_json::from_value(
            serde_json::json!({"op": "image.embed", "input": "i", "output": "e", "model": model}),
        )
        .expect("image.embed");
        let decode: StepSpec =
            serde_json::from_value(serde_json::json!({"op": "image.decode", "input": "b", "output": "i"}))
                .expect("image.decode");
        assert!(embed.is_model_step());
        assert!(!decode.is_model_step());
    }

    /// The CRD merges every op's fields into one object, so a field two ops share must mean the
    /// same thing to the API server.
    #[test]
    fn fields_shared_by_ops_have_one_schema() {
        let mut generator = SchemaGenerator::default();
        let mut seen: BTreeMap<String, (&str, Value)> = BTreeMap::new();
        for OpSchema { op, schema, .. } in op_schemas(&mut generator) {
            let props = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
            for (name, mut prop) in props {
                if let Some(obj) = prop.as_object_mut() {
                    obj.remove("description");
                    if let Some(Value::Array(types)) = obj.get_mut("type") {
                        types.retain(|t| t != "null");
                    }
                    if let Some(Value::Array(types)) = obj.get("type")
                        && types.len() == 1
                    {
                        let only = types[0].clone();
                        obj.insert("type".into(), only);
                    }
                    if let Some(Value::Array(any)) = obj.get("anyOf") {
                        let kept: Vec<Value> =
                            any.iter().filter(|v| v.get("type") != Some(&Value::from("null"))).cloned().collect();
                        if let [one] = kept.as_slice() {
                            let one = one.clone();
                            obj.remove("anyOf");
                            obj.extend(one.as_object().cloned().unwrap_or_default());
                        }
                    }
                }
                match seen.get(&name) {
                    Some((first, earlier)) => {
                        assert_eq!(earlier, &prop, "field `{name}` of {op} differs from {first}'s")
                    }
                    None => {
                        seen.insert(name, (op, prop));
                    }
                }
            }
        }
    }
}
