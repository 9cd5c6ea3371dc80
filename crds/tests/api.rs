//! The MultimodalJob API: committed CRD up to date, examples valid, and precise validation messages.

use weir_crds::validate::crd_schema;
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
            "spec.steps[1].op: unknown value `image.decod` (did you mean `image.decode`?); valid values: download, image.decode, image.resize, image.crop, image.encode, image.to_tensor, filter, select, rename, explode, text.normalize, text.chunk, video.metadata, video.frames, audio.decode, audio.resample, audio.metadata, audio.chunk, document.text, text.tokenize, vector.cosine_similarity, vector.dot, vector.l2, upload, text.embed, image.embed, image.classify, image.detect, audio.transcribe",
            "spec.steps[2].widht: unknown field (did you mean `width`?); valid fields: concurrency, filter, fit, height, input, op, output, pool, size, width",
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
    - {op: image.crop, input: image, output: crop, center: {width: 5, height: 5}, box: {x: 0, y: 0, width: 2, height: 2}}
  sink: {parquet: {uri: out/}}
  pools:
    cpu: {replicas: {min: 4, max: 2}}
  autoscaling: {mode: auto}
");
    assert_eq!(
        problems(&manifest),
        [
            "spec: autoscaling.prometheus is required unless autoscaling.mode is off",
            "spec.pools.cpu.replicas: replicas.min must not exceed replicas.max",
            "spec.source: source needs exactly one of files or parquet",
            "spec.steps[2]: image.resize needs width and height for fit exact, size for shorter-side or longer-side",
            "spec.steps[3]: image.crop needs exactly one of box, center or bboxColumn",
        ]
    );
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

/// The input-column CEL rule is what the API server enforces; it must agree with our planner.
#[test]
fn the_input_column_cel_rule_runs_in_a_cel_engine() {
    let bad = job("  source: {files: {uri: data/}}
  steps:
    - {op: image.decode, input: bytes, output: image}
    - {op: download, input: uri, output: bytes}
  sink: {parquet: {uri: out/}}
");
    let raw: serde_json::Value = serde_yaml::from_str(&bad).expect("yaml");
    let errors = kube_cel::Validator::new().validate(&crd_schema(), &raw, None).expect_err("rule fires").into_vec();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.starts_with("every step's input must be"), "{errors:?}");
    let good: serde_json::Value = serde_yaml::from_str(&job(GOOD)).expect("yaml");
    let renamed = job(&GOOD.replace(
        "    - {op: image.decode, input: bytes, output: image}",
        "    - {op: rename, mapping: {bytes: raw}}\n    - {op: image.decode, input: raw, output: image}",
    ));
    let renamed: serde_json::Value = serde_yaml::from_str(&renamed).expect("yaml");
    for ok in [good, renamed] {
        assert!(kube_cel::Validator::new().validate(&crd_schema(), &ok, None).is_ok());
    }
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
