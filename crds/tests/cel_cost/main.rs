//! The CEL cost model: hand-derived calibration cases, the rule a real API server refused, and the committed CRD
//! held well under the API server's limits.
//!
//! Unit costs used in the derivations (cel-go `checker/cost.go` as Kubernetes configures it): a literal 0; an
//! identifier 1; a field select 1 plus its operand; `has(x.f)` only its operand (`PresenceTestHasCost(false)`); a
//! call 1 plus its target and arguments; `&&`/`||` the sum of both sides; `==` and string `<` `ceil(0.1 * the
//! smaller max size)`; `s.startsWith(p)` `ceil(0.1 * size(p))`; `s.matches(r)` `ceil(0.1 * (size(s) + 1)) *
//! ceil(0.25 * size(r))`; a macro `range + init + result + size(range) * (condition + step)`, where `all` has
//! init 0, result 1, condition 2 (`@not_strictly_false(@result)`) and step `1 + predicate` (`@result && p`).
//! Sizes: a string of `maxLength` n is 4n bytes, an enum its longest value, an unbounded string 3 MiB - 2; a list
//! without `maxItems` holds (3 MiB - 2) / (item's min JSON size + 1) items (a string's min size is 2).

mod estimator;

use estimator::{
    CostError, MAX_REQUEST_SIZE_BYTES, PER_CRD_LIMIT, PER_EXPRESSION_LIMIT, ROOT_PATH, RuleCost, crd_total,
    estimate_schema,
};
use serde_json::{Value, json};

const UNBOUNDED_STRING: u64 = MAX_REQUEST_SIZE_BYTES - 2;

/// An object schema with `properties` and one rule on it.
fn object_with_rule(properties: Value, rule: &str) -> Value {
    json!({"type": "object", "properties": properties, "x-kubernetes-validations": [{"rule": rule}]})
}

/// The one rule of a schema, estimated.
fn only_rule(schema: &Value) -> RuleCost {
    let mut costs = estimate_schema(schema).expect("the rule is estimated");
    assert_eq!(costs.len(), 1, "{costs:?}");
    costs.remove(0)
}

fn cost_of(properties: Value, rule: &str) -> u64 {
    only_rule(&object_with_rule(properties, rule)).max_cost
}

#[test]
fn an_integer_comparison_costs_its_operands_and_one() {
    // `>=` on ints: 1; `self.x`: self 1 + select 1; `0`: 0. Total 3.
    assert_eq!(cost_of(json!({"x": {"type": "integer"}}), "self.x >= 0"), 3);
}

#[test]
fn a_presence_test_costs_only_its_operand() {
    let properties = json!({"a": {"type": "object", "properties": {"b": {"type": "string"}}}});
    // has(self.a): self 1. has(self.a.b): self.a = 2. `&&` sums: 3.
    assert_eq!(cost_of(properties.clone(), "has(self.a) && has(self.a.b)"), 3);
    // `!has(self.a)`: 1 + 1 = 2; `|| has(self.a.b)`: + 2. Total 4.
    assert_eq!(cost_of(properties, "!has(self.a) || has(self.a.b)"), 4);
}

#[test]
fn a_macro_costs_its_predicate_once_per_item_of_the_list() {
    let items = |max_items: Option<u64>| {
        let mut list = json!({"type": "array", "items": {"type": "string", "maxLength": 10}});
        if let Some(n) = max_items {
            list["maxItems"] = json!(n);
        }
        json!({"items": list})
    };
    let rule = "self.items.all(i, i.size() > 0)";
    // range self.items: 2; init `true`: 0; result `@result`: 1. Per item: condition 2, step `@result && (i.size()
    // > 0)` = 1 + (1 [>] + (1 [size] + 1 [i]) + 0) = 4, so 6. With maxItems 5: 2 + 0 + 1 + 5 * 6 = 33.
    assert_eq!(cost_of(items(Some(5)), rule), 33);
    // Without maxItems a request holds (3 MiB - 2) / (2 + 1) = 1_048_575 strings: 3 + 1_048_575 * 6.
    assert_eq!(cost_of(items(None), rule), 3 + 1_048_575 * 6);
}

#[test]
fn starts_with_scans_its_argument_whose_bound_comes_from_max_length() {
    let strings = |prefix: Value| json!({"name": {"type": "string"}, "prefix": prefix});
    let rule = "self.name.startsWith(self.prefix)";
    // prefix has maxLength 10: 40 bytes, ceil(0.1 * 40) = 4; plus self.name 2 and self.prefix 2. Total 8.
    assert_eq!(cost_of(strings(json!({"type": "string", "maxLength": 10})), rule), 8);
    // Unbounded prefix: ceil(0.1 * (3 MiB - 2)) = 314_573, plus 4.
    assert_eq!(cost_of(strings(json!({"type": "string"})), rule), 314_573 + 4);
    assert_eq!(314_573, (UNBOUNDED_STRING as f64 * 0.1).ceil() as u64);
}

#[test]
fn matches_scans_the_string_once_per_four_characters_of_pattern() {
    let rule = "self.name.matches('^a+$')";
    // maxLength 20: 80 bytes; ceil(0.1 * 81) = 9 times ceil(0.25 * 4) = 1; plus self.name 2. Total 11.
    assert_eq!(cost_of(json!({"name": {"type": "string", "maxLength": 20}}), rule), 11);
    // An enum is as long as its longest value ('accurate', 8): ceil(0.1 * 9) = 1, so 1 + 2 = 3.
    assert_eq!(cost_of(json!({"name": {"type": "string", "enum": ["fast", "accurate"]}}), rule), 3);
}

#[test]
fn a_rule_under_lists_runs_once_per_item_it_can_have() {
    let steps = |list: Value| json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"steps": list}}}});
    let item = |required: Value| {
        json!({"type": "object", "required": required, "properties": {"name": {"type": "string"}, "x": {"type": "integer"}},
               "x-kubernetes-validations": [{"rule": "self.x >= 0"}]})
    };
    let bounded = only_rule(&steps(json!({"type": "array", "maxItems": 64, "items": item(json!([]))})));
    assert_eq!((bounded.path.as_str(), bounded.max_cost, bounded.cardinality), ("spec.steps[*]", 3, 64));
    assert_eq!(bounded.estimated_cost(), 3 * 64);
    // Unbounded: as many as fit in a request, 3 MiB / (min size + 1): `{}` is 2 bytes, so 1_048_576 items.
    let unbounded = only_rule(&steps(json!({"type": "array", "items": item(json!([]))})));
    assert_eq!(unbounded.cardinality, MAX_REQUEST_SIZE_BYTES / 3);
    // A required string makes the item at least `{"name":""}`: 2 + 4 + 2 + 4 = 12 bytes, so 3 MiB / 13.
    let required = only_rule(&steps(json!({"type": "array", "items": item(json!(["name"]))})));
    assert_eq!(required.cardinality, MAX_REQUEST_SIZE_BYTES / 13);
    assert_eq!(crd_total(&[bounded, unbounded.clone()]), 3 * 64 + 3 * unbounded.cardinality);
}

#[test]
fn a_root_rule_sees_metadata_name_as_an_unbounded_string() {
    // The API server adds metadata.name as a plain string (kubernetes#139573, not yet released, bounds it):
    // ceil(0.1 * (3 MiB - 2 + 1)) * ceil(0.25 * 4) + self.metadata.name 3.
    let root = object_with_rule(json!({"spec": {"type": "object"}}), "self.metadata.name.matches('^a+$')");
    let cost = only_rule(&root);
    assert_eq!((cost.path.as_str(), cost.max_cost), (ROOT_PATH, 314_573 + 3));
}

#[test]
fn a_root_rule_reads_metadata_bounds_only_where_kind_api_version_and_both_names_are_declared() {
    let string = json!({"type": "string"});
    let bounded = json!({"type": "string", "maxLength": 40});
    let metadata = json!({"type": "object", "properties": {"name": bounded, "generateName": bounded}});
    let rule = "self.metadata.name.matches('^a+$')";
    // All four declared: name is 160 bytes, ceil(0.1 * 161) = 17 times 1, plus 3.
    let declared = json!({"kind": string, "apiVersion": string, "metadata": metadata});
    assert_eq!(cost_of(declared, rule), 17 + 3);
    // Without kind and apiVersion the API server replaces metadata with unbounded names.
    assert_eq!(cost_of(json!({"metadata": metadata}), rule), 314_573 + 3);
}

#[test]
fn a_rule_that_does_not_parse_is_an_error_naming_it() {
    let error = estimate_schema(&object_with_rule(json!({}), "self.x >=")).expect_err("a parse error");
    assert!(matches!(&error, CostError::Parse { rule, .. } if rule == "self.x >="), "{error}");
}

/// The rule on `spec` that a kube-apiserver refused with "estimated rule cost exceeds budget by factor of more
/// than 100x", on a small schema like the CRD's.
const CROSS_STEP_RULE: &str = "!has(self.source.files) || self.steps.all(s, !has(s.input) || s.input in ['uri', 'size'] || self.steps.slice(0, self.steps.indexOf(s)).exists(p, (has(p.output) && (p.output == s.input || s.input.startsWith(p.output + '_'))) || (has(p.mapping) && p.mapping.exists(k, p.mapping[k] == s.input))))";

fn job_with_cross_step_rule(string: Value, mapping: Value) -> Value {
    let step = json!({"type": "object", "properties": {"input": string, "output": string, "mapping": mapping}});
    let spec = json!({
        "type": "object",
        "properties": {
            "source": {"type": "object", "properties": {"files": {"type": "object", "properties": {"uri": {"type": "string"}}}}},
            "steps": {"type": "array", "maxItems": 64, "items": step},
        },
        "x-kubernetes-validations": [{"rule": CROSS_STEP_RULE}],
    });
    json!({"type": "object", "properties": {"spec": spec}})
}

#[test]
fn the_cross_step_rule_exceeds_the_budget_a_hundredfold_as_the_api_server_said() {
    let schema = job_with_cross_step_rule(
        json!({"type": "string"}),
        json!({"type": "object", "additionalProperties": {"type": "string"}}),
    );
    let cost = only_rule(&schema);
    println!("cross-step rule: max_cost {} x cardinality {}", cost.max_cost, cost.cardinality);
    assert_eq!((cost.path.as_str(), cost.cardinality), ("spec", 1));
    assert!(cost.estimated_cost() > 100 * PER_EXPRESSION_LIMIT, "{cost:?}");
}

#[test]
fn bounding_the_strings_and_the_mapping_does_not_save_the_cross_step_rule() {
    // `p` ranges over a `slice(...)` result, which has no schema path: `p.output` and `p.mapping` resolve against
    // `spec` itself, where there are no such fields, so their sizes are unknown whatever the step schema says.
    let bounded = json!({"type": "string", "maxLength": 63});
    let mapping = json!({"type": "object", "maxProperties": 16, "additionalProperties": bounded});
    let cost = only_rule(&job_with_cross_step_rule(bounded, mapping));
    assert!(cost.estimated_cost() > 100 * PER_EXPRESSION_LIMIT, "{cost:?}");
}

#[test]
fn the_committed_crd_stays_a_tenfold_under_the_api_server_limits() {
    let costs = estimate_schema(&weir_crds::validate::crd_schema()).expect("every rule of the CRD is estimated");
    print_most_expensive(&costs, 10);

    let rule_limit = PER_EXPRESSION_LIMIT / 10;
    let too_expensive: Vec<String> = costs
        .iter()
        .filter(|c| c.estimated_cost() >= rule_limit)
        .map(|c| {
            format!(
                "  {} costs {} ({} x cardinality {}), limit {rule_limit}: {}",
                c.path,
                c.estimated_cost(),
                c.max_cost,
                c.cardinality,
                c.rule
            )
        })
        .collect();
    let total = crd_total(&costs);
    let crd_limit = PER_CRD_LIMIT / 10;
    assert!(
        too_expensive.is_empty() && total < crd_limit,
        "the CRD's CEL rules come too near the API server's limits (a tenth of {PER_EXPRESSION_LIMIT} per rule, of \
         {PER_CRD_LIMIT} for the CRD); total {total}, limit {crd_limit}; rules over the per-rule limit:\n{}",
        too_expensive.join("\n")
    );
}

fn print_most_expensive(costs: &[RuleCost], n: usize) {
    let mut sorted: Vec<&RuleCost> = costs.iter().collect();
    sorted.sort_by_key(|c| std::cmp::Reverse(c.estimated_cost()));
    println!("{} rules, total {}; the {n} most expensive:", costs.len(), crd_total(costs));
    println!("{:>22} {:>20} {:>5}  {:<16} rule", "cost", "max_cost", "card", "path");
    for c in sorted.into_iter().take(n) {
        let rule: String = c.rule.chars().take(90).collect();
        println!("{:>22} {:>20} {:>5}  {:<16} {rule}", c.estimated_cost(), c.max_cost, c.cardinality, c.path);
    }
}
