//! `weir-operator`: reconciles `MultimodalJob` resources (placeholder until the operator lands).

use anyhow::Result;

fn main() -> Result<()> {
    // The API is real; reconciliation arrives with the operator issue. Until then this binary
    // only proves the operator builds against the shared API types.
    let crd = weir_crds::crd_yaml();
    anyhow::ensure!(crd.contains("MultimodalJob"), "the CRD does not describe MultimodalJob");
    eprintln!(
        "weir-operator: reconciliation is not implemented yet; install the CRD with `weir crd | kubectl apply -f -`"
    );
    Ok(())
}
