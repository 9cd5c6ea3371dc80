//! The MultimodalJob API: committed CRD up to date, examples valid, and precise validation messages.

use weir_crds::validate::{check_spec, crd_schema};
use weir_crds::{crd_helm_template, crd_yaml, validate_manifest};

fn problems(manifest: &str) -> Vec<String> {
    validate_manifest(manifest).problems.iter().map(ToString::to_string).collect()
}

const HEADER: &str = "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {name: t}\n";

fn job(body: &str) -> String {
    format!("{HEADER}spec:\n{body}")
}

const GOOD: &str = "  source: {files: {uri: data/}}
  steps:
    - {op: download, input: uri, output: bytes}
    - {op: image.decode, input: bytes, output: image}
    - {op: image.resize, input: image, output: image, width: 224, height: 224}
  sink: {parquet: {uri: out/}}
";

#[test]
fn committed_crd_matches_the_generated_one() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/multimodaljob.yaml")).expect("read");
    assert!(
        committed == crd_yaml(),
        "crds/multimodaljob.yaml is stale: run `cargo run -p weir-crds --bin crdgen > crds/multimodaljob.yaml`"
    );
}

#[test]
fn the_install_bundle_and_the_chart_carry_the_same_crd() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bundle = std::fs::read_to_string(format!("{root}/manifests/crd.yaml")).expect("manifests/crd.yaml");
    assert!(
        bundle == crd_yaml(),
        "manifests/crd.yaml is stale: run `cargo run -p weir-crds --bin crdgen > manifests/crd.yaml`"
    );
    let chart = std::fs::read_to_string(format!("{root}/charts/weir/templates/crd.yaml")).expect("chart CRD");
    assert!(
        chart == crd_helm_template(),
        "charts/weir/templates/crd.yaml is stale: run `cargo run -p weir-crds --bin crdgen -- --helm > charts/weir/templates/crd.yaml`"
    );
}

#[test]
fn every_example_manifest_is_valid() {
    for dir in ["examples", "kubernetes"] {
        every_manifest_in_is_valid(&format!("{}/../manifests/{dir}", env!("CARGO_MANIFEST_DIR")));
    }
}

#[test]
fn a_name_that_would_make_invalid_pod_names_is_refused() {
    let long = job(GOOD).replace("name: t}", &format!("name: {}}}", "a".repeat(41)));
    let found = problems(&long);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("at most 40 characters"), "{found:?}");
    assert!(problems(&job(GOOD).replace("name: t}", "name: 9lives}")).len() == 1);
}

#[test]
fn a_service_account_is_either_named_or_created_never_both() {
    let with = |sa: &str| problems(&job(&format!("{GOOD}  serviceAccount: {sa}\n")));
    assert_eq!(with("{name: reader}"), Vec::<String>::new());
    assert_eq!(with("{create: true}"), Vec::<String>::new());
    for both_or_neither in ["{name: default, create: true}", "{create: false}"] {
        let found = with(both_or_neither);
        assert!(found.len() == 1 && found[0].contains("either name"), "{both_or_neither}: {found:?}");
    }
}

#[test]
fn source_steps_and_sink_are_frozen_once_the_job_has_started() {
    let schema = crd_schema();
    let value = |text: &str| -> serde_json::Value { serde_yaml::from_str(text).expect("yaml") };
    let started = |text: String| {
        text.replace("metadata: {name: t}\n", "metadata: {name: t}\nstatus: {startTime: \"2026-01-01T00:00:00Z\"}\n")
    };
    let old = value(&started(job(GOOD)));
    let resized = value(&started(job(&GOOD.replace("width: 224", "width: 128"))));
    let scaled = value(&started(job(&format!("{GOOD}  pools: {{cpu: {{replicas: {{min: 1, max: 9}}}}}}\n"))));
    let validator = kube_cel::Validator::new();
    let errors = validator.validate(&schema, &resized, Some(&old)).expect_err("steps changed after start");
    assert!(errors.into_vec().iter().any(|e| e.message.contains("cannot change once the job has started")));
    assert!(validator.validate(&schema, &scaled, Some(&old)).is_ok(), "pools may change while running");
    let not_started = value(&job(GOOD));
    let unstarted_change = value(&job(&GOOD.replace("width: 224", "width: 128")));
    assert!(validator.validate(&schema, &unstarted_change, Some(&not_started)).is_ok());
}

fn every_manifest_in_is_valid(dir: &str) {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let report = validate_manifest(&std::fs::read_to_string(&path).expect("read"));
            assert!(report.is_valid(), "{}: {:?}", path.display(), report.problems);
            checked += 1;
        }
    }
    assert!(checked > 0, "no example manifests found in {dir}");
}

#[test]
fn a_good_manifest_parses_into_typed_steps() {
    let report = validate_manifest(&job(GOOD));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let job = report.job.expect("job");
    let ops: Vec<&str> = job.spec.steps.iter().map(|s| s.op()).collect();
    assert_eq!(ops, ["download", "image.decode", "image.resize"]);
}

#[test]
fn typos_are_named_with_their_path_and_a_suggestion() {
    let manifest = job(&GOOD.replace("width: 224", "widht: 224").replace("image.decode", "image.decod"));
    assert_eq!(
        problems(&manifest),
        [
            format!(
                "spec.steps[1].op: unknown value `image.decod` (did you mean `image.decode`?); valid values: {}",
                weir_crds::OPS.join(", ")
            ),
            "spec.steps[2].widht: unknown field (did you mean `width`?); valid fields: concurrency, filter, fit, height, input, op, output, pool, size, width".to_string(),
        ]
    );
}

#[test]
fn a_field_of_another_op_is_unknown_for_this_one() {
    let manifest = job(&GOOD.replace("width: 224, height: 224", "width: 224, height: 224, quality: 90"));
    let found = problems(&manifest);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("spec.steps[2].quality: unknown field; valid fields:"), "{found:?}");
}

#[test]
fn wrong_types_missing_fields_and_ranges_are_all_listed() {
    let manifest = job("  source: {files: {uri: data/, filesPerUnit: 0}}
  steps:
    - {op: download, input: uri}
    - {op: image.encode, input: bytes, output: jpg, quality: high}
  sink: {parquet: {}}
  suspend: 3
");
    assert_eq!(
        problems(&manifest),
        [
            "spec.sink.parquet.uri: required field is missing",
            "spec.source.files.filesPerUnit: must be at least 1, found 0",
            "spec.steps[0].output: required field is missing",
            "spec.steps[1].quality: must be an integer, found string `high`",
            "spec.suspend: must be a boolean, found number 3",
        ]
    );
}

#[test]
fn cel_rules_catch_what_the_schema_cannot_say() {
    let manifest = job("  source: {files: {uri: data/}, parquet: {uri: x/}}
  steps:
    - {op: download, input: uri, output: bytes}
    - {op: image.decode, input: bytes, output: image}
    - {op: image.resize, input: image, output: small, fit: shorter-side}
    - {op: image.crop, input: image, output: crop, center: {width: 5, height: 5}, box: {left: 0, top: 0, width: 2, height: 2}}
  sink: {parquet: {uri: out/}}
  pools:
    cpu: {replicas: {min: 4, max: 2}}
  autoscaling: {mode: auto}
");
    assert_eq!(
        problems(&manifest),
        [
            "spec.pools.cpu.replicas: replicas.min must not exceed replicas.max",
            "spec.source: source needs exactly one of files or parquet",
            "spec.steps[2]: image.resize needs width and height for fit exact, size for shorter-side or longer-side",
            "spec.steps[3]: image.crop needs exactly one of box, center or bboxColumn",
        ]
    );
}

/// Found by the `manifest` fuzz target: `files:` with its value commented out is null, which the
/// API server's CEL reads as absent (`has(self.files)` is false) and serde as `None`. The rules
/// must see it so too, or the job validates and its own JSON (`source: {}`) does not.
#[test]
fn a_null_field_is_absent_to_the_cel_rules() {
    let commented_out = job(&GOOD.replace("source: {files: {uri: data/}}", "source:\n    files: # {uri: data/}"));
    assert_eq!(problems(&commented_out), ["spec.source: source needs exactly one of files or parquet"]);
    let both = job(&GOOD.replace("source: {files: {uri: data/}}", "source: {files: {uri: data/}, parquet: null}"));
    assert_eq!(problems(&both), Vec::<String>::new());
    let job = weir_crds::validate::parse_manifest(&both, "t").expect("valid");
    let json = serde_json::to_string(&job).expect("serializes");
    assert_eq!(problems(&json), Vec::<String>::new());
}

/// `image.draw` after a decode, with `fields` added; the Parquet source lists no columns, so the
/// detections column is left to the run.
fn draw_step(fields: &str) -> String {
    job(&format!(
        "  source: {{parquet: {{uri: data/}}}}
  steps:
    - {{op: image.decode, input: bytes, output: image}}
    - {{op: image.draw, input: image, detections: faces, output: drawn{fields}}}
  sink: {{parquet: {{uri: out/}}}}
"
    ))
}

#[test]
fn image_draw_takes_a_hex_colour_and_a_line_width_of_1_to_64() {
    assert_eq!(problems(&draw_step("")), Vec::<String>::new());
    let all = ", color: \"#FF8800\", lineWidth: 64, labels: false, minScore: 0.5";
    assert_eq!(problems(&draw_step(all)), Vec::<String>::new());
    let colour = "spec.steps[1]: image.draw needs color as `#rrggbb`, six hexadecimal digits (`#ff0000` is red)";
    for bad in ["red", "\"ff0000\"", "\"#ff000\"", "\"#ff00000\"", "\"#gg0000\""] {
        assert_eq!(problems(&draw_step(&format!(", color: {bad}"))), [colour], "{bad}");
    }
    assert_eq!(problems(&draw_step(", lineWidth: 0")), ["spec.steps[1].lineWidth: must be at least 1, found 0"]);
    assert_eq!(problems(&draw_step(", lineWidth: 65")), ["spec.steps[1].lineWidth: must be at most 64, found 65"]);
    assert_eq!(problems(&draw_step(", minScore: 1.5")), ["spec.steps[1].minScore: must be at most 1, found 1.5"]);
    // The API server refuses the colour with the same rule.
    let raw: serde_json::Value = serde_yaml::from_str(&draw_step(", color: red")).expect("yaml");
    let errors = kube_cel::Validator::new().validate(&crd_schema(), &raw, None).expect_err("bad colour").into_vec();
    assert!(errors.iter().any(|e| e.message.contains("needs color as `#rrggbb`")), "{errors:?}");
}

#[test]
fn autoscaling_is_accepted_in_every_mode_and_its_bounds_are_checked() {
    let with = |autoscaling: &str| problems(&job(&format!("{GOOD}  autoscaling: {autoscaling}\n")));
    assert_eq!(with("{mode: disabled}"), Vec::<String>::new());
    assert_eq!(with("{mode: auto}"), Vec::<String>::new(), "the operator-wide Prometheus may serve it");
    let full = "{mode: recommend, prometheus: {url: \"http://prometheus:9090\"}, targetUtilization: 0.6, intervalSeconds: 30, scaleDownWindowSeconds: 600}";
    assert_eq!(with(full), Vec::<String>::new());
    let found = with("{mode: auto, intervalSeconds: 1, scaleDownWindowSeconds: 7200}");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|p| p.starts_with("spec.autoscaling.intervalSeconds")), "{found:?}");
    assert!(found.iter().any(|p| p.starts_with("spec.autoscaling.scaleDownWindowSeconds")), "{found:?}");
}

#[test]
fn a_step_reading_a_column_not_yet_made_is_refused() {
    let manifest = job("  source: {files: {uri: data/}}
  steps:
    - {op: image.decode, input: bytes, output: image}
    - {op: download, input: uri, output: bytes}
  sink: {parquet: {uri: out/, columns: [uri, imag]}}
");
    assert_eq!(
        problems(&manifest),
        [
            "spec.steps[0]: image.decode reads column `bytes`, which does not exist at this point; columns here: uri, size",
            "spec.sink.parquet.columns[1]: column `imag` does not exist at the end of the pipeline (did you mean `image`?); columns: uri, size, image, bytes",
        ]
    );
}

/// The API server checks no column across steps (CEL's cost budget cannot afford it): the CRD's
/// CEL rules accept the job, and `check_spec`, which the operator runs, refuses it.
#[test]
fn column_checks_across_steps_are_left_to_check_spec() {
    let bad = job("  source: {files: {uri: data/}}
  steps:
    - {op: image.decode, input: bytes, output: image}
    - {op: download, input: uri, output: bytes}
  sink: {parquet: {uri: out/}}
");
    let raw: serde_json::Value = serde_yaml::from_str(&bad).expect("yaml");
    assert!(kube_cel::Validator::new().validate(&crd_schema(), &raw, None).is_ok());
    let spec: weir_crds::MultimodalJob = serde_json::from_value(raw).expect("typed");
    let found: Vec<String> = check_spec(&spec.spec).iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("reads column `bytes`, which does not exist at this point"), "{found:?}");
}

#[test]
fn a_step_must_name_a_declared_pool_and_pool_names_are_dns_labels() {
    let with = |extra: &str, pool: &str| {
        let steps = GOOD.replace("output: image, width: 224", &format!("output: image, width: 224, pool: {pool}"));
        problems(&job(&format!("{steps}{extra}")))
    };
    assert_eq!(with("  pools: {cpu: {}, gpu-l4: {gpusPerPod: 1}}\n", "gpu-l4"), Vec::<String>::new());
    assert_eq!(
        with("  pools: {cpu: {}, gpu-l4: {gpusPerPod: 1}}\n", "gpu-l5"),
        [
            "spec.steps[2].pool: pool `gpu-l5` is not declared in spec.pools (did you mean `gpu-l4`?); pools: cpu, gpu-l4"
        ]
    );
    // Without `pools` (a laptop run), any pool name goes: `--workers` names the pools.
    assert_eq!(with("", "gpu-h100"), Vec::<String>::new());
    let bad_name = with("  pools: {cpu: {}, GPU_L4: {}}\n", "cpu");
    assert_eq!(
        bad_name,
        ["spec.pools.GPU_L4: `GPU_L4` is not a pool name: only lower-case letters, digits and `-` are allowed"]
    );
    // The API server says it with the CRD's rule on the map's keys.
    let raw: serde_json::Value =
        serde_yaml::from_str(&job(&format!("{GOOD}  pools: {{cpu: {{}}, GPU_L4: {{}}}}\n"))).expect("yaml");
    let errors = kube_cel::Validator::new().validate(&crd_schema(), &raw, None).expect_err("bad key").into_vec();
    assert!(errors.iter().any(|e| e.message.contains("pool names must be DNS labels")), "{errors:?}");
    let bad_step = with("", "GPU");
    assert!(
        bad_step.iter().any(|p| p.starts_with("spec.steps[2]") && p.contains("`GPU` is not a pool name")),
        "{bad_step:?}"
    );
    let leasing = problems(&job(&format!("{GOOD}  leasingPool: io\n  pools: {{cpu: {{}}}}\n")));
    assert_eq!(leasing, ["spec.leasingPool: pool `io` is not declared in spec.pools; pools: cpu"]);
}

/// YAML 1.1 (kubectl, Helm, Argo CD) reads these unquoted words as booleans or null.
const YAML11_WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"];

/// Every property name and enum value of the CRD, with its path.
fn names_and_enum_values(schema: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    let Some(map) = schema.as_object() else { return };
    if let Some(values) = map.get("enum").and_then(serde_json::Value::as_array) {
        for v in values {
            out.push((format!("{path} (enum)"), v.as_str().map_or(v.to_string(), str::to_string)));
        }
    }
    if let Some(props) = map.get("properties").and_then(serde_json::Value::as_object) {
        for (name, prop) in props {
            out.push((path.to_string(), name.clone()));
            names_and_enum_values(prop, &format!("{path}.{name}"), out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get(key) {
            names_and_enum_values(child, &format!("{path}[*]"), out);
        }
    }
}

#[test]
fn no_field_name_or_enum_value_is_a_yaml_1_1_boolean_or_null() {
    let mut found = Vec::new();
    names_and_enum_values(&crd_schema(), "", &mut found);
    assert!(found.len() > 200, "the walk found only {} names", found.len());
    let bad: Vec<&(String, String)> =
        found.iter().filter(|(_, name)| YAML11_WORDS.contains(&name.to_lowercase().as_str())).collect();
    assert!(bad.is_empty(), "names YAML 1.1 reads as booleans or null: {bad:?}");
    assert!(found.iter().all(|(_, v)| v != "null"), "an enum lists null");
}

/// Formats the API server knows (k8s.io/kube-openapi's strfmt registry and the OpenAPI numbers).
const KUBERNETES_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "date",
    "date-time",
    "duration",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "bsonobjectid",
    "int-or-string",
    "quantity",
];

fn formats(schema: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(f) = map.get("format").and_then(serde_json::Value::as_str) {
                out.push((path.to_string(), f.to_string()));
            }
            for (k, v) in map {
                formats(v, &format!("{path}/{k}"), out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| formats(v, path, out)),
        _ => {}
    }
}

#[test]
fn the_crd_uses_only_formats_kubernetes_knows() {
    let mut found = Vec::new();
    formats(&crd_schema(), "", &mut found);
    assert!(!found.is_empty());
    let unknown: Vec<_> = found.iter().filter(|(_, f)| !KUBERNETES_FORMATS.contains(&f.as_str())).collect();
    assert!(unknown.is_empty(), "formats the API server warns about: {unknown:?}");
}

/// Strings, lists and maps of our own spec (not the Kubernetes core types of a pool) that carry
/// no bound: each would make any CEL rule that reads it look unbounded to the cost estimator.
fn unbounded(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    let Some(map) = schema.as_object() else { return };
    let has = |k: &str| map.contains_key(k);
    match map.get("type").and_then(serde_json::Value::as_str) {
        Some("string") if !has("maxLength") && !has("enum") => out.push(path.to_string()),
        Some("array") if !has("maxItems") => out.push(path.to_string()),
        Some("object") if has("additionalProperties") && !has("maxProperties") => out.push(path.to_string()),
        _ => {}
    }
    if let Some(props) = map.get("properties").and_then(serde_json::Value::as_object) {
        for (name, prop) in props {
            if !matches!(name.as_str(), "affinity" | "resources" | "tolerations" | "env" | "nodeSelector") {
                unbounded(prop, &format!("{path}.{name}"), out);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get(key) {
            unbounded(child, &format!("{path}[*]"), out);
        }
    }
}

#[test]
fn every_string_list_and_map_of_the_spec_is_bounded() {
    let schema = crd_schema();
    let mut found = Vec::new();
    unbounded(&schema["properties"]["spec"], "spec", &mut found);
    assert!(found.is_empty(), "unbounded fields (add a bound in weir_crds::schema): {found:?}");
}

/// `kubectl apply` without `--server-side` stores the object in an annotation of at most 256 KiB.
#[test]
fn the_crd_stays_well_under_the_last_applied_annotation_limit() {
    let json = serde_json::to_string(&weir_crds::crd()).expect("json");
    assert!(json.len() < 128 * 1024, "the CRD is {} bytes as JSON; keep it under 128 KiB", json.len());
}

#[test]
fn not_a_multimodal_job_is_said_plainly() {
    let found = problems("apiVersion: v1\nkind: Pod\nspec: {}\n");
    assert_eq!(
        found[..2],
        ["apiVersion: must be `weir.dev/v1alpha1`, found `v1`", "kind: must be `MultimodalJob`, found `Pod`"]
    );
    assert!(problems(": : :")[0].starts_with("not valid YAML"));
}

/// Every CEL rule of the CRD, at any depth.
fn rules(schema: &serde_json::Value, out: &mut Vec<String>) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(list) = map.get("x-kubernetes-validations").and_then(serde_json::Value::as_array) {
                out.extend(list.iter().filter_map(|r| r.get("rule")?.as_str().map(str::to_string)));
            }
            map.values().for_each(|v| rules(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| rules(v, out)),
        _ => {}
    }
}

/// The CRD must install on every Kubernetes version the README names (1.30+): its rules use the
/// CEL core only (`has`, `size`, `matches`, `startsWith`, `in`, the one-variable macros), none of
/// the library functions that came later or with an extension version (lists' `indexOf`/`slice`,
/// two-variable comprehensions of 1.32+, `cel.bind`, optionals, formats, quantities, IPs).
#[test]
fn the_crd_rules_use_only_cel_that_kubernetes_1_30_has() {
    let mut found = Vec::new();
    rules(&crd_schema(), &mut found);
    assert!(found.len() > 50, "only {} rules", found.len());
    const LATER: &[&str] = &[
        ".indexOf(",
        ".lastIndexOf(",
        ".slice(",
        ".sortBy(",
        ".flatten(",
        ".distinct(",
        ".reverse(",
        "transformList",
        "transformMap",
        "cel.bind",
        "optional.",
        ".orValue(",
        ".format(",
        "quantity(",
        "ip(",
        "cidr(",
        "semver(",
        "url(",
        ".split(",
        ".join(",
        ".replace(",
        ".substring(",
    ];
    for rule in &found {
        assert!(!LATER.iter().any(|f| rule.contains(f)), "a rule needs a newer Kubernetes: {rule}");
        // A two-variable comprehension is `all(i, s, ...)`: two identifiers before the body.
        for mac in [".all(", ".exists(", ".exists_one(", ".filter(", ".map("] {
            for (at, _) in rule.match_indices(mac) {
                let args = &rule[at + mac.len()..];
                let first_two: Vec<&str> = args.splitn(3, ',').take(2).map(str::trim).collect();
                let two_vars = first_two.len() == 2
                    && first_two
                        .iter()
                        .all(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(!two_vars, "a two-variable comprehension needs Kubernetes 1.32+: {rule}");
            }
        }
    }
}

#[test]
fn a_job_may_use_at_most_eight_pools() {
    let steps: String =
        (0..9).map(|i| format!("    - {{op: text.normalize, input: uri, output: t{i}, pool: p{i}}}\n")).collect();
    let manifest =
        job(&format!("  source: {{files: {{uri: data/}}}}\n  steps:\n{steps}  sink: {{parquet: {{uri: out/}}}}\n"));
    let found = problems(&manifest);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("spec.steps: the steps run on 10 pools (cpu, p0, p1"), "{found:?}");
    assert!(found[0].ends_with("a job may use at most 8"), "{found:?}");
}

fn prompt_step(fields: &str) -> String {
    job(&format!(
        "  source: {{parquet: {{uri: data/, columns: [caption, photo]}}}}
  steps:
    - {{op: llm.prompt, endpoint: {{baseUrl: \"http://vllm.ml.svc:8000/v1\", model: qwen}}, output: answer{fields}}}
  sink: {{parquet: {{uri: out/, columns: [caption, answer, answer_usage]}}}}
"
    ))
}

#[test]
fn llm_prompt_checks_its_templates_schema_and_endpoint_before_any_row_runs() {
    let user = ", messages: [{role: user, content: \"Breed of {caption}?\"}]";
    assert_eq!(problems(&prompt_step(user)), Vec::<String>::new());
    let full = format!(
        "{user}, images: [photo], maxImageSide: 512, requestsPerMinute: 600, tokensPerMinute: 100000, maxConnections: 16, retries: 3, timeoutSeconds: 30, generation: {{temperature: 0.2, maxTokens: 64, seed: 1, stop: [\"\\n\"], extraBody: {{top_k: 5}}}}, jsonSchema: {{type: object, required: [breed], properties: {{breed: {{type: string}}}}}}"
    );
    assert_eq!(problems(&prompt_step(&full)), Vec::<String>::new());

    let found = problems(&prompt_step(", messages: [{role: user, content: \"Breed of {capton}?\"}]"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("spec.steps[0]: llm.prompt reads column `capton`, which does not exist at this point (did you mean `caption`?)"), "{found:?}");
    assert_eq!(
        problems(&prompt_step(", messages: [{role: user, content: \"Breed of {caption?\"}]")),
        ["spec.steps[0].messages[0].content: `{` at byte 9 is not closed: write `{{` for a brace"]
    );
    assert_eq!(
        problems(&prompt_step(&format!("{user}, jsonSchema: {{type: object, properties: {{at: {{type: date}}}}}}"))),
        [
            "spec.steps[0].jsonSchema.properties.at.type: `date` is not supported: use string, integer, number, boolean, array or object"
        ]
    );
    assert_eq!(
        problems(&prompt_step(&format!("{user}, generation: {{extraBody: {{model: other}}}}"))),
        ["spec.steps[0].generation.extraBody.model: `model` is set by the step itself and cannot be replaced"]
    );
    let responses = prompt_step(&format!("{user}, generation: {{seed: 3}}"))
        .replace("model: qwen}", "model: qwen, api: responses}");
    assert_eq!(
        problems(&responses),
        ["spec.steps[0].generation.seed: the Responses API does not take it: remove it, or use `api: chat`"]
    );
    let json_object =
        prompt_step(user).replace("model: qwen}", "model: qwen, api: responses, schemaFormat: json_object}");
    assert_eq!(
        problems(&json_object),
        ["spec.steps[0].endpoint.schemaFormat: json_object is a chat API form: remove it, or use `api: chat`"]
    );
    let keyed = |name: &str| {
        format!(
            "{{op: llm.prompt, endpoint: {{baseUrl: \"https://api.example/v1\", model: m, apiKeySecret: {{name: {name}, key: k}}}}, output: a_{}, messages: [{{role: user, content: hi}}]}}",
            name.replace(['-', '.'], "_")
        )
    };
    let two_keys = job(&format!(
        "  source: {{parquet: {{uri: data/, columns: [caption]}}}}\n  steps:\n    - {}\n    - {}\n    - {}\n  sink: {{parquet: {{uri: out/}}}}\n",
        keyed("open-ai"),
        keyed("open-ai"),
        keyed("open.ai")
    ));
    assert_eq!(
        problems(&two_keys),
        [
            "spec.steps[2].endpoint.apiKeySecret: Secret `open.ai` key `k` would be read from WEIR_SECRET_OPEN_AI__K, as Secret `open-ai` key `k` of an earlier step is: rename one"
        ]
    );
    let system_only = problems(&prompt_step(", messages: [{role: system, content: hi}]"));
    assert_eq!(system_only, ["spec.steps[0]: llm.prompt needs at least one message with role user"]);
    let ftp = problems(&prompt_step(user).replace("http://vllm", "ftp://vllm"));
    assert_eq!(ftp.len(), 1, "{ftp:?}");
    assert!(ftp[0].contains("needs endpoint.baseUrl as an http:// or https:// URL"), "{ftp:?}");
    // The API server refuses the same with the CRD's own rules.
    let raw: serde_json::Value =
        serde_yaml::from_str(&prompt_step(", messages: [{role: system, content: hi}]")).expect("yaml");
    let errors =
        kube_cel::Validator::new().validate(&crd_schema(), &raw, None).expect_err("no user message").into_vec();
    assert!(errors.iter().any(|e| e.message.contains("at least one message with role user")), "{errors:?}");
}
