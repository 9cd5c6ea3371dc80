//! A static estimate of the cost the Kubernetes API server charges a CRD's `x-kubernetes-validations` rules.

mod coster;
mod sizes;

use serde_json::Value;

use sizes::{Decl, bound, decl_of, embedded};

/// The most a rule may cost, times the number of times it can run in one object (`StaticEstimatedCostLimit`).
pub const PER_EXPRESSION_LIMIT: u64 = 10_000_000;
/// The most all of a CRD's rules may cost together (`StaticEstimatedCRDCostLimit`).
pub const PER_CRD_LIMIT: u64 = 100_000_000;
/// The largest request the API server accepts, which bounds every unbounded string, list and map.
pub const MAX_REQUEST_SIZE_BYTES: u64 = 3 * 1024 * 1024;
/// The path of the object a rule sits on, as [`RuleCost::path`] names it.
pub const ROOT_PATH: &str = "<root>";

/// The estimated cost of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCost {
    /// The schema node the rule sits on: [`ROOT_PATH`], `spec`, `spec.steps[*]`, `spec.labels{*}`.
    pub path: String,
    pub rule: String,
    /// The worst-case cost of one evaluation (the API server's `MaxCost`).
    pub max_cost: u64,
    /// How many times the node can occur in one object: the product of the enclosing arrays' `maxItems` and
    /// maps' `maxProperties`, or, under an unbounded one, how many of the node fit in a request.
    pub cardinality: u64,
}

impl RuleCost {
    /// What the API server compares with [`PER_EXPRESSION_LIMIT`] and adds to the CRD's total:
    /// `max_cost * cardinality`, saturating.
    pub fn estimated_cost(&self) -> u64 {
        self.max_cost.saturating_mul(self.cardinality)
    }
}

/// Why a schema's rules could not be estimated.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("the rule at {path} does not parse: {rule}\n{message}")]
    Parse { path: String, rule: String, message: String },
    #[error("the rule at {path} uses {what}, which the cost model does not cover: {rule}")]
    Unsupported { path: String, rule: String, what: String },
    #[error("the rules at {path} sit on a node the API server gives no CEL type (no `type`)")]
    Untyped { path: String },
}

/// Estimates every `x-kubernetes-validations` rule of a CRD version's `openAPIV3Schema`, walking `properties`,
/// `items` and `additionalProperties` as the API server does, in that schema's order.
///
/// The API server refuses a CRD where any [`RuleCost::estimated_cost`] exceeds [`PER_EXPRESSION_LIMIT`] or their
/// [`crd_total`] exceeds [`PER_CRD_LIMIT`]. The model follows cel-go's `checker/cost.go` as
/// `k8s.io/apiserver/pkg/cel/environment/base.go` configures it (a `has()` test itself is free), Kubernetes'
/// `library/cost.go` (list and string functions), cel-go's `ext/lists.go` v3 (`slice`), and apiextensions'
/// `SchemaDeclType`, `WithTypeAndObjectMeta` and `maxCardinality`. Where releases differ it models the API servers
/// released before kubernetes#139573: `metadata.name` is an unbounded string unless the schema declares `kind`,
/// `apiVersion`, `metadata.name` and `metadata.generateName`; a string enum is as long as its longest value.
///
/// Like cel-go, sizes come from schema paths: an identifier, a field selection or an index carries the path of
/// the value it denotes (`self.steps.@items.input`), resolved from the rule's node with the first element
/// skipped. Other calls carry none, so a variable iterating over a call's result (`slice`, `filter`) has the path
/// `@items`, which resolves to the rule's own node: the variable's fields are then unknown, their sizes unbounded.
///
/// # Errors
/// [`CostError`] naming the first rule that does not parse or uses a function outside the model (the estimate
/// never guesses).
pub fn estimate_schema(openapi_v3_schema: &Value) -> Result<Vec<RuleCost>, CostError> {
    let mut costs = Vec::new();
    walk(openapi_v3_schema, ROOT_PATH, Some(1), true, &mut costs)?;
    Ok(costs)
}

/// The CRD's total as the API server adds it up: the sum of [`RuleCost::estimated_cost`], saturating.
pub fn crd_total(costs: &[RuleCost]) -> u64 {
    costs.iter().fold(0, |total, cost| total.saturating_add(cost.estimated_cost()))
}

// ---------------------------------------------------------------------------------------------------------------
// The schema walk and the cardinality of each node.

fn walk(
    schema: &Value,
    path: &str,
    cardinality: Option<u64>,
    resource_root: bool,
    out: &mut Vec<RuleCost>,
) -> Result<(), CostError> {
    estimate_node(schema, path, cardinality, resource_root, out)?;
    let children = cardinality.zip(children_factor(schema)).map(|(c, f)| c.saturating_mul(f));
    for (name, property) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        walk(property, &child_path(path, &format!(".{name}")), children, embedded(property), out)?;
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        walk(values, &child_path(path, "{*}"), children, embedded(values), out)?;
    }
    if let Some(items) = schema.get("items").filter(|v| v.is_object()) {
        walk(items, &child_path(path, "[*]"), children, embedded(items), out)?;
    }
    Ok(())
}

/// `spec` + `.steps` is `spec.steps`; a child of the root has no leading dot.
fn child_path(parent: &str, step: &str) -> String {
    if parent == ROOT_PATH { step.trim_start_matches('.').to_string() } else { format!("{parent}{step}") }
}

fn estimate_node(
    schema: &Value,
    path: &str,
    cardinality: Option<u64>,
    resource_root: bool,
    out: &mut Vec<RuleCost>,
) -> Result<(), CostError> {
    let rules: Vec<&str> = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("rule").and_then(Value::as_str))
        .filter(|rule| !rule.trim().is_empty())
        .collect();
    if rules.is_empty() {
        return Ok(());
    }
    let decl = decl_of(schema, resource_root).ok_or_else(|| CostError::Untyped { path: path.to_string() })?;
    let cardinality = cardinality.unwrap_or_else(|| MAX_REQUEST_SIZE_BYTES / decl.min_size.saturating_add(1));
    for rule in rules {
        let max_cost = estimate_rule(&decl, rule, path)?;
        out.push(RuleCost { path: path.to_string(), rule: rule.to_string(), max_cost, cardinality });
    }
    Ok(())
}

fn estimate_rule(decl: &Decl, rule: &str, path: &str) -> Result<u64, CostError> {
    let ast = cel::parser::Parser::new().parse(rule).map_err(|e| CostError::Parse {
        path: path.to_string(),
        rule: rule.to_string(),
        message: e.to_string(),
    })?;
    coster::max_cost(decl, &ast).map_err(|what| CostError::Unsupported {
        path: path.to_string(),
        rule: rule.to_string(),
        what,
    })
}

/// By how much a node multiplies the number of its children (apiextensions' `extractMaxElements`):
/// `maxItems` or `maxProperties` where it is a list or a map, `None` where that is unbounded, else 1.
fn children_factor(schema: &Value) -> Option<u64> {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") if schema.get("additionalProperties").is_some() => bound(schema, "maxProperties"),
        Some("array") => bound(schema, "maxItems"),
        _ => Some(1),
    }
}
