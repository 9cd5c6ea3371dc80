//! Workspace-level end-to-end tests of Weir, beside this file: `examples.rs` (the shipped examples
//! on generated data) and `kubernetes.rs` (the operator on a real cluster; opt-in with `KUBECONFIG`).
