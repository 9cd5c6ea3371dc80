//! The `MultimodalJob` API (`weir.dev/v1alpha1`): spec and status types, CRD generation and offline validation.
//!
//! # Layout
//! - [`coco`]: COCO's 80 class names (what a COCO detector reports, and may be asked to keep).
//! - [`job`]: the custom resource, its source, sink, pools and policies.
//! - [`steps`]: one config struct per pipeline step (`op`), and the step list's CRD schema.
//! - [`status`]: what the operator and the coordinator report back.
//! - [`pool`]: pool names.
//! - [`placement`]: which pool runs each step, and which pool leases units.
//! - [`schema`]: rewrites that make the generated schema mean to the API server what we mean.
//! - [`validate`]: strict manifest parsing with field paths, the CRD's CEL rules run offline, and
//!   the checks across steps that the API server leaves to the operator ([`validate::check_spec`]).
//! - [`yaml11`]: YAML read as kubectl, Helm and Argo CD read it (YAML 1.1 scalars, JSON keys).
//!
//! This crate has no runtime dependencies beyond serde, a YAML parser, `kube-cel` (the CRD's
//! rules run offline) and the Kubernetes type crates: the executor, the CLI and the operator all
//! share these types.

pub mod coco;
pub mod job;
pub mod json_shape;
pub mod placement;
pub mod pool;
pub mod schema;
pub mod status;
pub mod steps;
pub mod validate;
pub mod yaml11;

pub use coco::COCO_CLASSES;
pub use job::*;
pub use json_shape::{JsonField, JsonShape, json_shape};
pub use pool::PoolName;
pub use status::*;
pub use steps::*;
pub use validate::{Problem, ValidationReport, parse_manifest, validate_manifest};

/// Longest `MultimodalJob` name: its children's names (`<job>-coordinator`, `<job>-gpu-12`) must
/// stay valid DNS labels (63 characters).
pub const MAX_JOB_NAME: usize = 40;

/// CEL rules on the whole object, which `#[derive(JsonSchema)]` cannot attach to the root schema:
/// the name's shape, and the fields that decide a job's results, frozen once it has started.
fn root_rules() -> serde_json::Value {
    serde_json::json!([
        {
            "rule": format!("size(self.metadata.name) <= {MAX_JOB_NAME} && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"),
            "message": format!("metadata.name must be a DNS label of at most {MAX_JOB_NAME} characters that starts with a letter (pods and services are named after it)"),
            "fieldPath": ".metadata.name"
        },
        {
            "rule": "!has(oldSelf.status) || !has(oldSelf.status.startTime) || (self.spec.source == oldSelf.spec.source && self.spec.steps == oldSelf.spec.steps && self.spec.sink == oldSelf.spec.sink && has(self.spec.checkpoint) == has(oldSelf.spec.checkpoint) && (!has(self.spec.checkpoint) || self.spec.checkpoint == oldSelf.spec.checkpoint) && has(self.spec.errorPolicy) == has(oldSelf.spec.errorPolicy) && (!has(self.spec.errorPolicy) || self.spec.errorPolicy == oldSelf.spec.errorPolicy) && has(self.spec.leasingPool) == has(oldSelf.spec.leasingPool) && (!has(self.spec.leasingPool) || self.spec.leasingPool == oldSelf.spec.leasingPool))",
            "message": "spec.source, spec.steps, spec.sink, spec.checkpoint, spec.errorPolicy and spec.leasingPool cannot change once the job has started (they decide its results and which pods read them); create a new MultimodalJob instead",
            "fieldPath": ".spec"
        }
    ])
}

/// The root's `apiVersion`, `kind` and `metadata` (where only `name` and `generateName` may be
/// constrained). The API server's CEL compiler uses the declared bounds only when all four
/// strings are declared (`WithTypeAndObjectMeta`); otherwise `metadata.name` is a 3 MiB string to
/// the cost estimator, and the name rule's regex looks expensive.
fn root_type_and_metadata() -> [(&'static str, serde_json::Value); 3] {
    let name = serde_json::json!({"type": "string", "maxLength": 253});
    [
        ("apiVersion", serde_json::json!({"type": "string", "maxLength": 253})),
        ("kind", serde_json::json!({"type": "string", "maxLength": 63})),
        ("metadata", serde_json::json!({"type": "object", "properties": {"name": name, "generateName": name}})),
    ]
}

/// The `MultimodalJob` CustomResourceDefinition: the generated schema with the root-level CEL
/// rules added and rewritten for the API server ([`schema`]).
pub fn crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube_core::CustomResourceExt;
    let mut crd = MultimodalJob::crd();
    for version in &mut crd.spec.versions {
        let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else { continue };
        let Ok(mut value) = serde_json::to_value(&*root) else { continue };
        rewrite_for_kubernetes(&mut value);
        if let Ok(rewritten) = serde_json::from_value(value) {
            *root = rewritten;
        }
    }
    crd
}

fn rewrite_for_kubernetes(root: &mut serde_json::Value) {
    if let Some(spec) = root.pointer_mut("/properties/spec") {
        schema::bound_fields(spec);
        schema::terse_kubernetes_types(spec);
    }
    schema::kubernetes_formats(root);
    schema::enums_without_null(root);
    if let Some(map) = root.as_object_mut() {
        map.insert("x-kubernetes-validations".into(), root_rules());
        if let Some(props) = map.get_mut("properties").and_then(serde_json::Value::as_object_mut) {
            for (field, schema) in root_type_and_metadata() {
                props.insert(field.into(), schema);
            }
        }
    }
}

/// The CRD manifest as YAML, exactly as committed in `crds/multimodaljob.yaml`.
pub fn crd_yaml() -> String {
    let body = serde_yaml::to_string(&crd()).unwrap_or_default();
    format!("# Generated by `cargo run -p weir-crds --bin crdgen`; do not edit.\n{body}")
}

/// The CRD as the Helm chart's template (`charts/weir/templates/crd.yaml`), installed unless
/// `crds.install` is false, so `helm upgrade` upgrades it. `helm uninstall` keeps it: deleting the
/// CRD would delete every MultimodalJob (the records) and, through them, running pods.
pub fn crd_helm_template() -> String {
    let mut crd = crd();
    crd.metadata.annotations = Some([("helm.sh/resource-policy".to_string(), "keep".to_string())].into());
    let body = serde_yaml::to_string(&crd).unwrap_or_default();
    format!(
        "{{{{- if .Values.crds.install }}}}\n# Generated by `cargo run -p weir-crds --bin crdgen -- --helm`; do not edit.\n{body}{{{{- end }}}}\n"
    )
}
