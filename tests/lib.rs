//! Workspace-level end-to-end tests of Weir. The tests live beside this file (`examples.rs`); a
//! cluster suite that needs `KUBECONFIG` will join them with the operator.
