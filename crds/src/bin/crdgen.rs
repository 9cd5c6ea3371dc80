//! Prints the `MultimodalJob` CRD as YAML: plain (`crds/multimodaljob.yaml`, `manifests/crd.yaml`)
//! or, with `--helm`, as the chart's template (`charts/weir/templates/crd.yaml`).

fn main() {
    if std::env::args().any(|a| a == "--helm") {
        print!("{}", weir_crds::crd_helm_template());
    } else {
        print!("{}", weir_crds::crd_yaml());
    }
}
