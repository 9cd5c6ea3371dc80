//! YAML as kubectl reads it: every committed YAML means the same to kubectl (YAML 1.1), to PyYAML and
//! to serde_yaml (YAML 1.2), and `weir validate` says what kubectl would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use weir_crds::{validate_manifest, yaml11};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Every YAML file committed as YAML: the CRD, `manifests/**` (the install bundle is the rendered
/// chart) and the chart's values and metadata. The chart's templates are not YAML until rendered.
fn committed_yaml() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut files = vec![root.join("crds/multimodaljob.yaml"), root.join("charts/weir/values.yaml")];
    files.push(root.join("charts/weir/Chart.yaml"));
    yaml_under(&root.join("manifests"), &mut files);
    files.sort();
    assert!(files.len() > 20, "fewer committed YAML files than expected: {files:?}");
    files
}

fn yaml_under(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_under(&path, files);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT).unwrap_or(path).display().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documents of a stream as kubectl applies them: empty ones are skipped.
fn documents(values: Vec<Value>) -> Vec<Value> {
    values.into_iter().filter(|v| !v.is_null()).collect()
}

fn kubectl_reading(text: &str) -> Result<Vec<Value>, String> {
    yaml11::from_str_multi(text).map(documents).map_err(|e| format!("kubectl (YAML 1.1) refuses it: {e}"))
}

fn serde_yaml_reading(text: &str) -> Result<Vec<Value>, String> {
    let values: Result<Vec<Value>, _> = serde_yaml::Deserializer::from_str(text).map(Value::deserialize).collect();
    values.map(documents).map_err(|e| format!("serde_yaml (YAML 1.2) refuses it: {e}"))
}

fn show(value: Option<&Value>) -> String {
    value.map_or("nothing".into(), Value::to_string)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Every place, in document order, where `a` and `b` mean different things, and what each holds
/// there. Numbers are compared by value: `1.0` and `1` are the same number (kubectl sends `1.0` as `1`).
fn differences_in(a: &Value, b: &Value, path: &str, found: &mut Vec<(String, String, String)>) {
    let here = || (if path.is_empty() { "(top)".into() } else { path.to_string() }, a.to_string(), b.to_string());
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let same = match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            };
            if !same {
                found.push(here());
            }
        }
        (Value::Array(xs), Value::Array(ys)) if xs.len() == ys.len() => {
            for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
                differences_in(x, y, &format!("{path}[{i}]"), found);
            }
        }
        (Value::Object(xs), Value::Object(ys)) => {
            let keys: BTreeSet<&String> = xs.keys().chain(ys.keys()).collect();
            for key in keys {
                match (xs.get(key), ys.get(key)) {
                    (Some(x), Some(y)) => differences_in(x, y, &join(path, key), found),
                    (x, y) => found.push((join(path, key), show(x), show(y))),
                }
            }
        }
        _ if a == b => {}
        _ => found.push(here()),
    }
}

/// A YAML reader: a file's documents, or why it could not read them.
type Reader<'a> = dyn Fn(&Path) -> Result<Vec<Value>, String> + 'a;

/// For each file whose documents differ between two readers, where they differ (the first place
/// first).
fn differences(files: &[PathBuf], (a_name, a): (&str, &Reader), (b_name, b): (&str, &Reader)) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let name = relative(file);
        let (docs_a, docs_b) = match (a(file), b(file)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => {
                found.push(format!("{name}: {e}"));
                continue;
            }
        };
        if docs_a.len() != docs_b.len() {
            found.push(format!("{name}: {a_name} reads {} documents, {b_name} {}", docs_a.len(), docs_b.len()));
            continue;
        }
        for (i, (x, y)) in docs_a.iter().zip(&docs_b).enumerate() {
            let mut here = Vec::new();
            differences_in(x, y, "", &mut here);
            for (path, x, y) in here {
                found.push(format!("{name}, document {}: {path}: {a_name} reads {x}, {b_name} reads {y}", i + 1));
            }
        }
    }
    found
}

fn kubectl_file(path: &Path) -> Result<Vec<Value>, String> {
    kubectl_reading(&read(path))
}

fn serde_yaml_file(path: &Path) -> Result<Vec<Value>, String> {
    serde_yaml_reading(&read(path))
}

/// A committed YAML that YAML 1.2 tools (serde_yaml, and so our own tests) read differently from
/// kubectl is a bug that only an API server would find: an unquoted `off` or key `y`.
#[test]
fn every_committed_yaml_means_the_same_to_kubectl_and_to_serde_yaml() {
    let found = differences(
        &committed_yaml(),
        ("kubectl (YAML 1.1)", &kubectl_file),
        ("serde_yaml (YAML 1.2)", &serde_yaml_file),
    );
    assert!(
        found.is_empty(),
        "committed YAML that kubectl reads differently from serde_yaml (quote the value or key):\n  {}",
        found.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// PyYAML: an independent YAML 1.1 reader.

/// Loads each file given with PyYAML's SafeLoader made to read as go-yaml v2 does (it also takes
/// `y`, `Y`, `n`, `N` as booleans, and keeps timestamps as text) and prints `{file: [documents]}`.
const PYYAML_SCRIPT: &str = r#"
import json, re, sys, yaml

class Loader(yaml.SafeLoader):
    bool_values = dict(yaml.SafeLoader.bool_values, y=True, n=False)

Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))
Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)

out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        out[path] = [doc for doc in yaml.load_all(f, Loader=Loader) if doc is not None]
json.dump(out, sys.stdout)
"#;

const PYYAML_INSTALL: &str = "PyYAML is needed: scripts/test.sh installs it into its virtualenv and sets WEIR_PYTHON; \
     by hand: `python3 -m venv /tmp/pyyaml-venv && /tmp/pyyaml-venv/bin/pip install 'pyyaml>=6,<7'` and \
     WEIR_PYTHON=/tmp/pyyaml-venv/bin/python";

fn imports_yaml(python: &str) -> bool {
    Command::new(python).args(["-c", "import yaml"]).output().is_ok_and(|o| o.status.success())
}

/// `$WEIR_PYTHON`, else a `python3` with PyYAML; without one, `None` (skip) outside CI, a failure in CI.
fn python_with_pyyaml() -> Option<String> {
    if let Ok(python) = std::env::var("WEIR_PYTHON") {
        assert!(imports_yaml(&python), "WEIR_PYTHON={python} cannot `import yaml`. {PYYAML_INSTALL}");
        return Some(python);
    }
    if imports_yaml("python3") {
        return Some("python3".into());
    }
    assert!(std::env::var_os("CI").is_none(), "{PYYAML_INSTALL}");
    eprintln!("skipping the PyYAML cross-check, no PyYAML found. {PYYAML_INSTALL}");
    None
}

/// Every committed YAML file as PyYAML reads it, by path.
fn pyyaml_readings(python: &str, files: &[PathBuf]) -> serde_json::Map<String, Value> {
    let output = Command::new(python).arg("-c").arg(PYYAML_SCRIPT).args(files).output().expect("run python");
    assert!(output.status.success(), "PyYAML failed: {}", String::from_utf8_lossy(&output.stderr));
    match serde_json::from_slice(&output.stdout) {
        Ok(Value::Object(map)) => map,
        other => panic!("PyYAML printed something else than an object: {other:?}"),
    }
}

fn pyyaml_file(readings: &serde_json::Map<String, Value>, path: &Path) -> Result<Vec<Value>, String> {
    match readings.get(&path.display().to_string()) {
        Some(Value::Array(docs)) => Ok(docs.clone()),
        other => Err(format!("PyYAML gave no documents: {other:?}")),
    }
}

/// Our YAML 1.1 reader agrees with PyYAML on every committed file.
#[test]
fn pyyaml_reads_every_committed_yaml_as_yaml11_does() {
    let Some(python) = python_with_pyyaml() else { return };
    let files = committed_yaml();
    let readings = pyyaml_readings(&python, &files);
    let pyyaml = |path: &Path| pyyaml_file(&readings, path);
    let found = differences(&files, ("yaml11", &kubectl_file), ("PyYAML (YAML 1.1)", &pyyaml));
    assert!(found.is_empty(), "yaml11 and PyYAML disagree:\n  {}", found.join("\n  "));
}

/// The independent check of the committed files: PyYAML (YAML 1.1) and serde_yaml (YAML 1.2) agree.
#[test]
fn pyyaml_and_serde_yaml_agree_on_every_committed_yaml() {
    let Some(python) = python_with_pyyaml() else { return };
    let files = committed_yaml();
    let readings = pyyaml_readings(&python, &files);
    let pyyaml = |path: &Path| pyyaml_file(&readings, path);
    let found = differences(&files, ("PyYAML (YAML 1.1)", &pyyaml), ("serde_yaml (YAML 1.2)", &serde_yaml_file));
    assert!(
        found.is_empty(),
        "committed YAML that PyYAML (YAML 1.1, as kubectl) reads differently from serde_yaml:\n  {}",
        found.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// `weir validate` reads as kubectl does.

const HEADER: &str = "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {name: t}\n";

const GOOD: &str = "  source: {files: {uri: data/}}
  steps:
    - {op: download, input: uri, output: bytes}
    - {op: image.decode, input: bytes, output: image}
    - {op: image.crop, input: image, output: crop, box: {left: 0, top: 0, width: 2, height: 2}}
  sink: {parquet: {uri: out/}}
";

fn problems(body: &str) -> Vec<String> {
    validate_manifest(&format!("{HEADER}spec:\n{body}")).problems.iter().map(ToString::to_string).collect()
}

#[test]
fn the_good_manifest_is_valid() {
    assert_eq!(problems(GOOD), Vec::<String>::new());
}

#[test]
fn an_unquoted_off_is_the_boolean_kubectl_refuses() {
    assert_eq!(
        problems(&format!("{GOOD}  autoscaling: {{mode: off}}\n")),
        [
            "spec.autoscaling.mode: must be a string, found boolean false (YAML 1.1, as kubectl reads it, takes unquoted `off` as a boolean: quote it)"
        ]
    );
    let found = problems(&format!("{GOOD}  autoscaling:\n    mode: Yes\n"));
    assert!(found.len() == 1 && found[0].contains("takes unquoted `Yes` as a boolean"), "{found:?}");
}

#[test]
fn a_quoted_off_passes_the_yaml_stage() {
    for quoted in ["\"off\"", "'off'"] {
        let found = problems(&format!("{GOOD}  autoscaling: {{mode: {quoted}}}\n"));
        // The enum may not know `off` (it can be renamed); what matters is that it arrived as text.
        assert!(!found.iter().any(|p| p.contains("boolean") || p.contains("YAML")), "{quoted}: {found:?}");
    }
}

#[test]
fn a_key_y_names_the_field_true_and_says_why() {
    // A user who still writes the old crop box's `y` gets the field kubectl would name.
    let found = problems(&GOOD.replace("top: 0", "top: 0, y: 0"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("spec.steps[2].box.true: unknown field")
            && found[0].ends_with(
                "(YAML 1.1, as kubectl reads it, takes the unquoted key `y` as a boolean, which names the field `true`: quote the key)"
            ),
        "{found:?}"
    );
}

#[test]
fn a_duplicate_steps_key_is_refused_with_the_key_and_line() {
    let found = problems(&format!("{GOOD}  steps: []\n"));
    assert_eq!(
        found,
        [
            "spec.steps: key `steps` is defined twice in one mapping, at line 6 and again at line 11; Kubernetes clients would keep the last one silently: remove one of them"
        ]
    );
}

#[test]
fn a_number_where_text_belongs_says_so() {
    let found = problems(&GOOD.replace("output: crop", "output: 0777"));
    assert_eq!(
        found,
        [
            "spec.steps[2].output: must be a string, found number 511 (YAML 1.1, as kubectl reads it, takes unquoted `0777` as a number: quote it)"
        ]
    );
}

#[test]
fn a_null_word_where_a_value_belongs_says_so() {
    let found = problems(&GOOD.replace("output: crop", "output: ~"));
    assert_eq!(
        found,
        ["spec.steps[2].output: must not be null (YAML 1.1, as kubectl reads it, takes unquoted `~` as null)"]
    );
}
