//! Strict manifest parsing and offline validation with the same rules the API server applies.
//!
//! [`validate_manifest`] reports every problem it can find, each with the field path it concerns:
//! what the YAML reader refuses (a key defined twice, NaN or infinity, nesting or sizes past its
//! bounds, which it checks as it reads), structural problems (unknown fields, wrong types, values
//! outside an enum or range) from the CRD's OpenAPI schema, then the CRD's CEL rules (evaluated
//! with `kube-cel`), then the checks across steps ([`check_spec`]: what the run would refuse or
//! get wrong that the manifest already shows). The API server runs only the schema and the CEL
//! rules (CEL has a cost budget, and rules that iterate over steps within steps blow it); the
//! operator runs [`check_spec`] before it creates any pod, so a job fails the same way on a
//! cluster as in `weir validate`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use serde_json::Value;

use crate::job::{
    FILES_SOURCE_COLUMNS, FILES_SOURCE_TYPES, MultimodalJob, MultimodalJobSpec, ParquetSource, SourceSpec,
    uri_is_within,
};
use crate::steps::{ColumnType, Filter, StepSpec, op_schema, reserved_name_problem};
use crate::yaml11;

/// Longest manifest read: the Kubernetes API server refuses a request body over 3 MiB
/// (`MaxRequestBodyBytes`), so a longer one could never be applied.
pub const MAX_MANIFEST_BYTES: usize = 3 * 1024 * 1024;

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `spec.steps[2].width`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// The outcome of validating a manifest: the typed job when it parsed, and every problem found.
#[derive(Debug, Default)]
pub struct ValidationReport {
    pub job: Option<MultimodalJob>,
    pub problems: Vec<Problem>,
}

impl ValidationReport {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty() && self.job.is_some()
    }
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid manifest {origin}:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ManifestError {
    pub origin: String,
    pub problems: Vec<Problem>,
}

/// Parses and fully validates a manifest; `origin` names it in the error (usually the file path).
///
/// # Errors
/// [`ManifestError`] listing every problem found.
pub fn parse_manifest(text: &str, origin: &str) -> Result<MultimodalJob, ManifestError> {
    let report = validate_manifest(text);
    match report.job {
        Some(job) if report.problems.is_empty() => Ok(job),
        _ => Err(ManifestError { origin: origin.to_string(), problems: report.problems }),
    }
}

/// Validates a YAML (or JSON) manifest of a `MultimodalJob`, listing every problem found.
///
/// The text is read as kubectl reads it ([`yaml11`]: YAML 1.1, so an unquoted `off` is a boolean
/// and a key `y` is `true`), and a problem such a word caused says so.
pub fn validate_manifest(text: &str) -> ValidationReport {
    let mut report = ValidationReport::default();
    if text.len() > MAX_MANIFEST_BYTES {
        let message = format!(
            "the manifest is {} bytes; the API server takes at most {MAX_MANIFEST_BYTES} (3 MiB) in one request, and a job needs a few KiB",
            text.len()
        );
        report.problems.push(Problem { path: String::new(), message });
        return report;
    }
    let yaml11::Reading { value: raw, words } = match yaml11::read(text) {
        Ok(reading) => reading,
        Err(e) => {
            report.problems.push(reading_problem(e));
            return report;
        }
    };
    check_kind(&raw, &mut report.problems);
    check_schema(&CRD_SCHEMA, &raw, "", &mut report.problems);
    explain_yaml11_words(&mut report.problems, &words);
    if !report.problems.is_empty() {
        return report;
    }
    match serde_path_to_error::deserialize::<_, MultimodalJob>(&raw) {
        Ok(job) => {
            check_cel(&raw, &mut report.problems);
            report.problems.extend(check_spec(&job.spec));
            report.job = Some(job);
        }
        Err(e) => report.problems.push(Problem { path: e.path().to_string(), message: e.inner().to_string() }),
    }
    report
}

/// The problem a YAML reading error makes: an error of the text as a whole (syntax, a key JSON
/// cannot have) as "not valid YAML" with its position; an error about a field at the field's
/// path, its position after the message.
fn reading_problem(e: yaml11::Yaml11Error) -> Problem {
    match e.kind {
        _ if e.path.is_empty() => Problem { path: String::new(), message: format!("not valid YAML: {e}") },
        // Its message names both lines already.
        yaml11::Yaml11ErrorKind::DuplicateKey { .. } => Problem { path: e.path, message: e.kind.to_string() },
        kind => Problem { path: e.path, message: format!("{kind} (line {}, column {})", e.line, e.column) },
    }
}

/// Adds to a structural problem an unquoted YAML 1.1 word caused what kubectl made of the word: a
/// string field given `off` (a boolean), a field named `true` by the key `y`.
fn explain_yaml11_words(problems: &mut [Problem], words: &yaml11::Words) {
    for problem in problems {
        let hint = if problem.message.starts_with("unknown field") {
            words.keys.get(&problem.path).map(|word| key_hint(word, &problem.path))
        } else {
            words.values.get(&problem.path).and_then(|word| value_hint(&problem.message, word))
        };
        if let Some(hint) = hint {
            problem.message.push_str(&hint);
        }
    }
}

/// The hint for a problem `message` about a value read from the unquoted `word`, when the problem
/// is the word's type: text was wanted, or anything but null.
fn value_hint(message: &str, word: &str) -> Option<String> {
    const WANTS_TEXT: [&str; 2] = ["must be a string, found", "must be an integer or a string, found"];
    if WANTS_TEXT.iter().any(|m| message.starts_with(m)) {
        let meaning = yaml11::plain_meaning(word);
        Some(format!(" (YAML 1.1, as kubectl reads it, takes unquoted `{word}` as {meaning}: quote it)"))
    } else if message.starts_with("must not be null") {
        Some(format!(" (YAML 1.1, as kubectl reads it, takes unquoted `{word}` as null)"))
    } else {
        None
    }
}

/// The hint for an unknown field at `path` whose name came from the unquoted key `word`.
fn key_hint(word: &str, path: &str) -> String {
    let name = path.rsplit('.').next().unwrap_or(path);
    let meaning = yaml11::plain_meaning(word);
    format!(
        " (YAML 1.1, as kubectl reads it, takes the unquoted key `{word}` as {meaning}, which names the field `{name}`: quote the key)"
    )
}

fn check_kind(raw: &Value, problems: &mut Vec<Problem>) {
    let expect = [("apiVersion", "weir.dev/v1alpha1"), ("kind", "MultimodalJob")];
    for (field, want) in expect {
        match raw.get(field).and_then(Value::as_str) {
            Some(got) if got == want => {}
            got => problems.push(Problem {
                path: field.into(),
                message: format!("must be `{want}`, found {}", got.map_or("nothing".into(), |g| format!("`{g}`"))),
            }),
        }
    }
}

/// The OpenAPI v3 schema of `MultimodalJob` as it appears in the generated CRD.
pub fn crd_schema() -> Value {
    CRD_SCHEMA.clone()
}

/// [`crd_schema`], read once per process from the committed CRD: the schema we ship, read as
/// kubectl reads it. Reading it takes a tenth of generating it (`perf record` of `weir validate`: the
/// generation, schemars and kube's structural rewrite, was over a third of the command's samples),
/// and every `weir run` validates its manifest. `crds/tests/api.rs` fails when the committed copy
/// is stale, and [`tests::the_committed_schema_is_the_generated_one`] holds the two equal here.
static CRD_SCHEMA: LazyLock<Value> = LazyLock::new(|| committed_crd_schema().unwrap_or_else(generate_crd_schema));

/// The committed `crds/multimodaljob.yaml`, generated by `crdgen`.
const COMMITTED_CRD: &str = include_str!("../multimodaljob.yaml");

/// The OpenAPI schema of [`COMMITTED_CRD`]; `None` if it cannot be read (never, while the test
/// above passes: the generated schema stands in).
fn committed_crd_schema() -> Option<Value> {
    let crd = yaml11::read(COMMITTED_CRD).ok()?.value;
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema").cloned()
}

/// The CRD's CEL rules, compiled once per process: compiling them takes milliseconds, and
/// `kube_cel`'s uncompiled validation compiles a node's rules again at every value it checks
/// (each step, each pool).
static CEL_RULES: LazyLock<kube_cel::CompiledSchema> = LazyLock::new(|| kube_cel::compile_schema(&CRD_SCHEMA));

fn generate_crd_schema() -> Value {
    let crd = crate::crd();
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

/// Walks `value` against a structural schema, recording every mismatch.
fn check_schema(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    let mut push = |message: String| problems.push(Problem { path: path.to_string(), message });
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            push("must not be null".into());
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            push(format!("must be an integer or a string, found {}", describe(value)));
        }
        return;
    }
    // Schemas of single ops come straight from schemars, where an optional field's type is
    // `[type, "null"]`; the CRD's are rewritten to `type` plus `nullable`.
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => Vec::new(),
    };
    if let Some(ty) = types.first()
        && !types.iter().any(|t| type_matches(t, value))
    {
        push(format!("must be {} {ty}, found {}", article(ty), describe(value)));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(|v| v.as_str().map_or(v.to_string(), str::to_string)).collect();
        let got = value.as_str().map_or(value.to_string(), str::to_string);
        push(format!("unknown value `{got}`{}; valid values: {}", did_you_mean(&got, &names), names.join(", ")));
        return;
    }
    check_bounds(schema, value, &mut push);
    match value {
        Value::Object(map) => check_object(schema, map, path, problems),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                // Items past `maxItems` are not checked: the list is refused as too long already.
                let max = schema.get("maxItems").and_then(Value::as_u64).map_or(usize::MAX, |m| m as usize);
                for (i, item) in items.iter().enumerate().take(max) {
                    let item_path = format!("{path}[{i}]");
                    match step_schema(path, item) {
                        Some(op_schema) => check_schema(&op_schema, item, &item_path, problems),
                        None => check_schema(item_schema, item, &item_path, problems),
                    }
                }
            }
        }
        _ => {}
    }
}

/// Steps are checked against their own op's schema, so a field of another op is named as unknown.
fn step_schema(path: &str, item: &Value) -> Option<Value> {
    if path != "spec.steps" {
        return None;
    }
    let op = item.get("op")?.as_str()?;
    let mut schema = op_schema(op)?.clone();
    let props = schema.get_mut("properties")?.as_object_mut()?;
    let op_enum = serde_json::json!({"type": "string", "enum": [op]});
    props.insert("op".into(), op_enum);
    Some(schema)
}

fn check_object(schema: &Value, map: &serde_json::Map<String, Value>, path: &str, problems: &mut Vec<Problem>) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for field in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(field) {
                problems.push(Problem { path: join(path, field), message: "required field is missing".into() });
            }
        }
    }
    for (key, child) in map {
        let child_path = join(path, key);
        if path.is_empty() && matches!(key.as_str(), "metadata" | "apiVersion" | "kind") {
            continue;
        }
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(child_schema), _) | (None, Some(child_schema)) => {
                check_schema(child_schema, child, &child_path, problems)
            }
            (None, None) if preserve || properties.is_none() => {}
            (None, None) => {
                let names: Vec<String> = properties.map(|p| p.keys().cloned().collect()).unwrap_or_default();
                problems.push(Problem {
                    path: child_path,
                    message: format!("unknown field{}; valid fields: {}", did_you_mean(key, &names), names.join(", ")),
                });
            }
        }
    }
}

fn check_bounds(schema: &Value, value: &Value, push: &mut impl FnMut(String)) {
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(x) = value.as_f64() {
        if let Some(min) = num("minimum").filter(|m| x < *m) {
            push(format!("must be at least {min}, found {x}"));
        }
        if let Some(max) = num("maximum").filter(|m| x > *m) {
            push(format!("must be at most {max}, found {x}"));
        }
    }
    let len = match value {
        Value::String(s) => Some((s.chars().count(), "characters")),
        Value::Array(a) => Some((a.len(), "items")),
        _ => None,
    };
    if let Some((n, unit)) = len {
        let (min_key, max_key) = if unit == "items" { ("minItems", "maxItems") } else { ("minLength", "maxLength") };
        if let Some(min) = num(min_key).filter(|m| (n as f64) < *m) {
            push(format!("must have at least {min} {unit}, found {n}"));
        }
        if let Some(max) = num(max_key).filter(|m| (n as f64) > *m) {
            push(format!("must have at most {max} {unit}, found {n}"));
        }
    }
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

fn article(ty: &str) -> &'static str {
    if ty.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string `{s}`"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// ` (did you mean `x`?)` when a candidate is close enough to be a typo.
fn did_you_mean(got: &str, candidates: &[String]) -> String {
    candidates
        .iter()
        .map(|c| (edit_distance(got, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The checks across steps and pools that the CRD's CEL rules leave out, found by following the
/// columns through the pipeline as the executor will:
/// - each step's inputs exist where it runs, and the sink's columns at the end;
/// - no step makes, renames to or selects a reserved `_weir_` name, and no `rename`, `select` or
///   sink `columns` makes two columns of one name;
/// - a `filter`'s value fits its operator, and, where the column's type is known (the source's
///   and [`StepSpec::made_columns`]'), its struct fields exist and its literals cast to their type;
/// - every pool a step or `leasingPool` names is declared in `spec.pools` (when the job declares
///   any; `cpu`, the default pool, needs no declaration);
/// - the sink, a separate checkpoint and `upload` steps write outside the source.
///
/// The same function serves `weir validate`, `weir run` and the operator.
pub fn check_spec(spec: &MultimodalJobSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_columns(spec, &mut problems);
    check_pools(spec, &mut problems);
    check_locations(spec, &mut problems);
    check_llm_keys(spec, &mut problems);
    problems
}

/// No two `llm.prompt` keys of different Secrets share the environment variable the workers
/// read them from (`a-b`/`k` and `a.b`/`k` both read `WEIR_SECRET_A_B__K`): one step would send
/// the other's key.
fn check_llm_keys(spec: &MultimodalJobSpec, problems: &mut Vec<Problem>) {
    let mut seen: Vec<(String, &crate::LlmSecretRef)> = Vec::new();
    for (i, step) in spec.steps.iter().enumerate() {
        let StepSpec::LlmPrompt(prompt) = step else { continue };
        let Some(secret) = &prompt.endpoint.api_key_secret else { continue };
        let variable = secret.env_name();
        match seen.iter().find(|(v, _)| *v == variable) {
            Some((_, other)) if *other != secret => problems.push(Problem {
                path: format!("spec.steps[{i}].endpoint.apiKeySecret"),
                message: format!(
                    "Secret `{}` key `{}` would be read from {variable}, as Secret `{}` key `{}` of an earlier step is: rename one",
                    secret.name, secret.key, other.name, other.key
                ),
            }),
            Some(_) => {}
            None => seen.push((variable, secret)),
        }
    }
}

fn check_pools(spec: &MultimodalJobSpec, problems: &mut Vec<Problem>) {
    let in_use = crate::placement::pools_in_use(spec);
    if in_use.len() > crate::pool::MAX_POOLS {
        let names: Vec<String> = in_use.iter().map(ToString::to_string).collect();
        problems.push(Problem {
            path: "spec.steps".into(),
            message: format!(
                "the steps run on {} pools ({}); a job may use at most {}",
                in_use.len(),
                names.join(", "),
                crate::pool::MAX_POOLS
            ),
        });
    }
    let Some(declared) = &spec.pools else { return };
    let names: Vec<String> = declared.keys().map(ToString::to_string).collect();
    let mut check = |path: String, pool: &crate::PoolName| {
        // `cpu` needs no declaration: it is the default pool, with default resources.
        if !declared.contains_key(pool) && *pool != crate::PoolName::cpu() {
            problems.push(Problem {
                path,
                message: format!(
                    "pool `{pool}` is not declared in spec.pools{}; pools: {}",
                    did_you_mean(pool.as_str(), &names),
                    names.join(", ")
                ),
            });
        }
    };
    for (i, step) in spec.steps.iter().enumerate() {
        if let Some(pool) = step.config().pool() {
            check(format!("spec.steps[{i}].pool"), pool);
        }
    }
    if let Some(pool) = &spec.leasing_pool {
        check("spec.leasingPool".to_string(), pool);
    }
}

/// The columns at one point of the pipeline, as far as the manifest tells.
#[derive(Debug, Clone, Default)]
struct Columns {
    /// Columns known to exist, in order, each with its type where the step that made it fixes it.
    known: Vec<(String, Option<ColumnType>)>,
    /// Whether `known` is all of them: not after a `parquet` source that lists no `columns`,
    /// until a `select`.
    complete: bool,
}

impl Columns {
    /// The columns a source emits.
    fn at_source(source: &SourceSpec) -> Columns {
        match (&source.files, &source.parquet) {
            (Some(_), _) => {
                let typed = FILES_SOURCE_COLUMNS.iter().zip(FILES_SOURCE_TYPES);
                Columns { known: typed.map(|(c, t)| (c.to_string(), Some(t))).collect(), complete: true }
            }
            (None, Some(ParquetSource { columns: Some(columns), .. })) => {
                Columns { known: columns.iter().map(|c| (c.clone(), None)).collect(), complete: true }
            }
            _ => Columns::default(),
        }
    }

    fn names(&self) -> Vec<String> {
        self.known.iter().map(|(name, _)| name.clone()).collect()
    }

    fn has(&self, name: &str) -> bool {
        self.known.iter().any(|(n, _)| n == name)
    }

    fn type_of(&self, name: &str) -> Option<ColumnType> {
        self.known.iter().find(|(n, _)| n == name).and_then(|(_, ty)| *ty)
    }

    /// Sets column `name`: replaced in place, or appended (weir-core's `with_column`).
    fn set(&mut self, name: String, ty: Option<ColumnType>) {
        match self.known.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = ty,
            None => self.known.push((name, ty)),
        }
    }

    /// The columns after `step`, as the executor makes them.
    fn after(mut self, step: &StepSpec) -> Columns {
        match step {
            StepSpec::Select(s) => {
                let known = s.columns.iter().map(|c| (c.clone(), self.type_of(c))).collect();
                Columns { known, complete: true }
            }
            StepSpec::Rename(r) => {
                for (name, _) in &mut self.known {
                    if let Some(to) = r.mapping.get(name.as_str()) {
                        name.clone_from(to);
                    }
                }
                // A source column not listed here still comes out under its new name.
                for to in r.mapping.values() {
                    if !self.has(to) {
                        self.known.push((to.clone(), None));
                    }
                }
                self
            }
            StepSpec::Explode(e) => {
                let item = match self.type_of(&e.input) {
                    Some(ColumnType::List(item)) => Some(*item),
                    _ => None,
                };
                let out = e.output.clone().unwrap_or_else(|| e.input.clone());
                self.known.retain(|(n, _)| *n != e.input && *n != out);
                self.known.push((out, item));
                self
            }
            other => {
                for (name, ty) in other.made_columns() {
                    self.set(name, ty);
                }
                self
            }
        }
    }
}

/// Follows the columns through the pipeline, exactly as the executor will, and checks each step
/// against the columns it sees: its inputs exist, the names it makes are allowed and make no
/// column twice, a filter's fields and literals fit the columns' types; then the sink's columns.
fn check_columns(spec: &MultimodalJobSpec, problems: &mut Vec<Problem>) {
    let mut columns = Columns::at_source(&spec.source);
    for (i, step) in spec.steps.iter().enumerate() {
        let path = format!("spec.steps[{i}]");
        check_inputs(step, &columns, &path, problems);
        let at = |(field, message): (String, String)| Problem { path: format!("{path}.{field}"), message };
        match step {
            StepSpec::LlmPrompt(prompt) => problems.extend(prompt.problems().into_iter().map(at)),
            StepSpec::ImageDetect(detect) => problems.extend(detect.problems().into_iter().map(at)),
            _ => {}
        }
        match step {
            StepSpec::Select(s) => problems.extend(s.problems().into_iter().map(at)),
            StepSpec::Rename(r) => problems.extend(r.problems(|name| columns.has(name)).into_iter().map(at)),
            StepSpec::Filter(f) => check_filter(f, &columns, &path, problems),
            StepSpec::Explode(e) => {
                problems.extend(e.input_problem(columns.type_of(&e.input)).map(|m| at(("input".into(), m))));
                problems.extend(made_name_problem(step).map(|m| at(("output".into(), m))));
            }
            _ => problems.extend(made_name_problem(step).map(|m| at(("output".into(), m)))),
        }
        columns = columns.after(step);
    }
    check_sink_columns(spec, &columns, problems);
}

/// Each input of `step` exists where it runs (when the columns there are all known). A reserved
/// name a `select` or `rename` lists is reported by its own check.
fn check_inputs(step: &StepSpec, columns: &Columns, path: &str, problems: &mut Vec<Problem>) {
    if !columns.complete {
        return;
    }
    let names = columns.names();
    let own_check = matches!(step, StepSpec::Select(_) | StepSpec::Rename(_));
    for input in step.config().inputs() {
        // `face.bbox` reads a field of the struct column `face`.
        let top = input.split_once('.').map_or(input, |(top, _)| top);
        if names.iter().any(|c| c == input || c == top) || (own_check && reserved_name_problem(input).is_some()) {
            continue;
        }
        problems.push(Problem {
            path: path.to_string(),
            message: format!(
                "{} reads column `{input}`, which does not exist at this point{}; columns here: {}",
                step.op(),
                did_you_mean(input, &names),
                names.join(", ")
            ),
        });
    }
}

/// Why the column a step makes (its `output`) cannot have its name.
fn made_name_problem(step: &StepSpec) -> Option<String> {
    let output = match step {
        // Without `output`, explode keeps its input's name: nothing new is named.
        StepSpec::Explode(e) => e.output.as_deref()?,
        other => other.config().output()?,
    };
    reserved_name_problem(output)
}

/// Each predicate of a `filter` against the type of the column it names, where known.
fn check_filter(filter: &Filter, columns: &Columns, path: &str, problems: &mut Vec<Problem>) {
    for (j, predicate) in filter.predicates.iter().enumerate() {
        let head = predicate.column.split('.').next().unwrap_or_default();
        for (field, message) in predicate.problems(columns.type_of(head)) {
            problems.push(Problem { path: format!("{path}.where[{j}].{}", field.name()), message });
        }
    }
}

/// The sink's `columns`: each exists at the end of the pipeline (when all are known), none is
/// reserved, none is listed twice (the part files would have two columns of one name).
fn check_sink_columns(spec: &MultimodalJobSpec, columns: &Columns, problems: &mut Vec<Problem>) {
    let Some(wanted) = &spec.sink.parquet.columns else { return };
    let names = columns.names();
    for (i, c) in wanted.iter().enumerate() {
        let message = if let Some(reserved) = reserved_name_problem(c) {
            reserved
        } else if let Some(first) = wanted[..i].iter().position(|w| w == c) {
            format!(
                "`{c}` is listed twice (also columns[{first}]): the part files would have two `{c}` columns, which Parquet readers such as pyarrow refuse; list each column once"
            )
        } else if columns.complete && !names.contains(c) {
            format!(
                "column `{c}` does not exist at the end of the pipeline{}; columns: {}",
                did_you_mean(c, &names),
                names.join(", ")
            )
        } else {
            continue;
        };
        problems.push(Problem { path: format!("spec.sink.parquet.columns[{i}]"), message });
    }
}

/// The columns after `step`, given those before it (`None`: not known statically).
pub fn apply_step(step: &StepSpec, columns: Option<Vec<String>>) -> Option<Vec<String>> {
    let before = match columns {
        Some(names) => Columns { known: names.into_iter().map(|n| (n, None)).collect(), complete: true },
        None => Columns::default(),
    };
    let after = before.after(step);
    after.complete.then(|| after.names())
}

/// What the job writes (the sink, a separate checkpoint, `upload` steps) must not lie at or under
/// the source: the next run over the source would read the job's own output back as input.
fn check_locations(spec: &MultimodalJobSpec, problems: &mut Vec<Problem>) {
    let Some((source_path, source)) = spec.source.uri() else { return };
    let mut outputs = vec![(
        "spec.sink.parquet.uri".to_string(),
        spec.sink.parquet.uri.as_str(),
        "part files, `_errors/` and `_weir/`",
    )];
    if let Some(uri) = spec.checkpoint.as_ref().and_then(|c| c.uri.as_deref()) {
        outputs.push(("spec.checkpoint.uri".into(), uri, "checkpoint files"));
    }
    for (i, step) in spec.steps.iter().enumerate() {
        if let StepSpec::Upload(upload) = step {
            outputs.push((format!("spec.steps[{i}].uri"), upload.uri.as_str(), "uploaded objects"));
        }
    }
    for (path, uri, what) in outputs {
        if uri_is_within(uri, source) {
            let message = format!(
                "`{uri}` lies at or under the source `{source}` ({source_path}): the next run over the source would read this job's {what} back as input; write them outside the source, or narrow the source's uri so it does not hold them"
            );
            problems.push(Problem { path, message });
        }
    }
}

/// Runs the CRD's CEL rules, as the API server would, reporting their problems in field-path order.
fn check_cel(raw: &Value, problems: &mut Vec<Problem>) {
    let seen_by_cel = without_null_fields(&CRD_SCHEMA, raw);
    let Err(errors) = kube_cel::Validator::new().validate_compiled(&CEL_RULES, &seen_by_cel, None) else {
        return;
    };
    let mut errors = errors.into_vec();
    // The compiled rules visit an object's fields in hash order; sorting restores the schema's
    // (alphabetical) order, the one the rules met them in when walked from the schema itself.
    errors.sort_by(|a, b| path_order(&a.field_path).cmp(&path_order(&b.field_path)));
    let seen: BTreeSet<String> = problems.iter().map(|p| p.to_string()).collect();
    for e in errors {
        let problem = Problem { path: e.field_path.clone(), message: e.message.clone() };
        if !seen.contains(&problem.to_string()) {
            problems.push(problem);
        }
    }
}

/// `value` as the API server's CEL rules see it: a field of an object with `properties` whose
/// value is null is absent (`has(self.files)` is false for `files: null`, as the API server's
/// `unstructuredMap` has it, and as serde reads it: `None`). Entries of maps
/// (`additionalProperties`) keep their nulls.
fn without_null_fields(schema: &Value, value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let kept = map.iter().filter_map(|(key, child)| match properties.and_then(|p| p.get(key)) {
                Some(_) if child.is_null() => None,
                Some(child_schema) => Some((key.clone(), without_null_fields(child_schema, child))),
                None => {
                    Some((key.clone(), additional.map_or_else(|| child.clone(), |s| without_null_fields(s, child))))
                }
            });
            Value::Object(kept.collect())
        }
        Value::Array(items) => {
            let item_schema = schema.get("items").unwrap_or(&Value::Null);
            Value::Array(items.iter().map(|item| without_null_fields(item_schema, item)).collect())
        }
        _ => value.clone(),
    }
}

/// One step of a field path: a field name or a list index.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PathStep<'a> {
    Field(&'a str),
    Index(usize),
}

/// `spec.steps[10].input` as the steps it takes, so that a field comes before the fields inside
/// it, fields in name order and list items in index order (`[2]` before `[10]`). A path of a rule
/// on the whole object (`.metadata.name`) starts with an empty name, so comes first.
fn path_order(path: &str) -> Vec<PathStep<'_>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        steps.push(PathStep::Field(pieces.next().unwrap_or_default()));
        for index in pieces {
            let index = index.trim_end_matches(']');
            steps.push(index.parse().map_or(PathStep::Field(index), PathStep::Index));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `value` with every number as an `f64`: YAML sends an integral float (`0.0`) as an integer.
    fn numbers_as_floats(value: &Value) -> Value {
        match value {
            Value::Number(n) => n.as_f64().map_or(Value::Null, |f| serde_json::json!(f)),
            Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), numbers_as_floats(v))).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn the_committed_schema_is_the_generated_one() {
        let committed = committed_crd_schema().expect("crds/multimodaljob.yaml has a schema");
        assert!(committed.pointer("/properties/spec/properties/steps").is_some(), "{committed}");
        assert_eq!(
            numbers_as_floats(&committed),
            numbers_as_floats(&generate_crd_schema()),
            "crds/multimodaljob.yaml is stale: run `cargo run -p weir-crds --bin crdgen > crds/multimodaljob.yaml`"
        );
    }

    /// A manifest that breaks rules on the root, on several fields of the spec and on steps
    /// `[2]` and `[10]`, each failing more than one rule.
    fn breaking_many_rules() -> Value {
        let steps: Vec<Value> = (0..12)
            .map(|i| match i {
                2 | 10 => serde_json::json!({"op": "image.resize"}),
                _ => serde_json::json!({"op": "download", "input": "uri", "output": "bytes"}),
            })
            .collect();
        serde_json::json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "MultimodalJob", "metadata": {"name": "Bad_Name"},
            "spec": {
                "source": {"files": {"uri": "a/"}, "parquet": {"uri": "b/"}},
                "serviceAccount": {"create": true, "name": "x"},
                "pools": {"gpu": {"replicas": {"min": 5, "max": 1}}, "ZZ": {}},
                "steps": steps,
                "sink": {"parquet": {"uri": "c/"}}
            }
        })
    }

    #[test]
    fn compiled_rules_report_what_the_uncompiled_walk_reports_in_its_order() {
        let raw = breaking_many_rules();
        let walked = kube_cel::Validator::new().validate(&crd_schema(), &raw, None).expect_err("broken rules");
        let walked: Vec<Problem> =
            walked.into_vec().into_iter().map(|e| Problem { path: e.field_path, message: e.message }).collect();
        let mut compiled = Vec::new();
        check_cel(&raw, &mut compiled);
        assert_eq!(compiled, walked);
        let paths: Vec<&str> = compiled.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".metadata.name",
                "spec.pools",
                "spec.pools.gpu.replicas",
                "spec.serviceAccount",
                "spec.source",
                "spec.steps[2]",
                "spec.steps[2]",
                "spec.steps[10]",
                "spec.steps[10]"
            ]
        );
    }
}
