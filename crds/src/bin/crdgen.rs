//! Prints the `MultimodalJob` CRD as YAML (`cargo run -p weir-crds --bin crdgen > crds/multimodaljob.yaml`).

fn main() {
    print!("{}", weir_crds::crd_yaml());
}
