//! Rewrites a graph before it is planned so that each convolution runs as one pass: the zero
//! `Pad` in front of it becomes its padding, and the bias `Add` and the `LeakyRelu`/`Relu` after it
//! are applied to its output in place. The nodes taken in become `Identity`; every rewrite needs
//! the node it removes to have the convolution as its only reader, so no other node sees a
//! different value.

use std::collections::HashMap;

use super::ops::tensor_ints;
use super::spec::{Attr, NodeSpec, split_reference};
use crate::weights::Weights;

/// The convolution attribute holding the padding taken in: `[top, bottom, left, right]`.
pub const PADS: &str = "weir_pads";
/// The convolution attribute holding the activation taken in: LeakyRelu's `alpha` (0 for Relu).
pub const ACTIVATION_ALPHA: &str = "weir_activation_alpha";

/// Applies the rewrites to `nodes`; `outputs` are read from outside and never taken in.
pub fn fuse_convolutions(nodes: &mut [NodeSpec], weights: &Weights, outputs: &[&str]) {
    let index: HashMap<String, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    let mut readers = vec![0usize; nodes.len()];
    for name in nodes.iter().flat_map(|n| n.inputs.iter()).map(String::as_str).chain(outputs.iter().copied()) {
        if let Some(&i) = index.get(split_reference(name).0) {
            readers[i] += 1;
        }
    }
    // The node reading each node's first output (for the nodes read once, their one reader).
    let mut reader_of: HashMap<usize, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for input in &node.inputs {
            if let (name, 0) = split_reference(input)
                && let Some(&source) = index.get(name)
            {
                reader_of.insert(source, i);
            }
        }
    }
    let sole = |i: usize| if readers[i] == 1 { reader_of.get(&i).copied() } else { None };
    let input_of = |node: &NodeSpec, k: usize| node.inputs.get(k).and_then(|n| index.get(n.as_str())).copied();
    for conv in 0..nodes.len() {
        if nodes[conv].op != "Conv2D" || nodes[conv].inputs.len() != 2 {
            continue;
        }
        take_in_padding(nodes, conv, weights, &sole, &input_of);
        let Some(add) = sole(conv).filter(|&a| is_bias_add(&nodes[a], &nodes[conv].name, weights)) else { continue };
        let bias = nodes[add].inputs[1].clone();
        nodes[conv].inputs.push(bias);
        become_identity(&mut nodes[add]);
        // An element-wise activation commutes with a transpose between them.
        let mut next = sole(add);
        if let Some(t) = next.filter(|&t| nodes[t].op == "Transpose") {
            next = sole(t);
        }
        let Some(act) = next else { continue };
        let alpha = match nodes[act].op.as_str() {
            "Relu" => 0.0,
            "LeakyRelu" => nodes[act].float("alpha").unwrap_or(0.2),
            _ => continue,
        };
        if (0.0..=1.0).contains(&alpha) {
            nodes[conv].attrs.insert(ACTIVATION_ALPHA.into(), Attr::Float(alpha));
            become_identity(&mut nodes[act]);
        }
    }
}

/// `Pad` (zeros) → `Transpose` NCHW→NHWC → `Conv2D` VALID NHWC, with padding on height and
/// width only: the convolution pads instead and the `Pad` passes its input through.
fn take_in_padding(
    nodes: &mut [NodeSpec],
    conv: usize,
    weights: &Weights,
    sole: &impl Fn(usize) -> Option<usize>,
    input_of: &impl Fn(&NodeSpec, usize) -> Option<usize>,
) {
    let node = &nodes[conv];
    if node.text("padding") != Some("VALID") || node.text("data_format").is_some_and(|f| f != "NHWC") {
        return;
    }
    let Some(transpose) = input_of(node, 0).filter(|&t| nodes[t].op == "Transpose" && sole(t) == Some(conv)) else {
        return;
    };
    let Some(pad) = input_of(&nodes[transpose], 0).filter(|&p| nodes[p].op == "Pad" && sole(p) == Some(transpose))
    else {
        return;
    };
    let constant = |node: &NodeSpec, k: usize| node.inputs.get(k).and_then(|n| const_ints(weights, n));
    if constant(&nodes[transpose], 1).as_deref() != Some(&[0, 2, 3, 1]) {
        return;
    }
    let Some(&[n0, n1, c0, c1, top, bottom, left, right]) = constant(&nodes[pad], 1).as_deref() else { return };
    if [n0, n1, c0, c1] != [0; 4] || [top, bottom, left, right].iter().any(|p| !(0..=1024).contains(p)) {
        return;
    }
    nodes[conv].attrs.insert(PADS.into(), Attr::Ints(vec![top, bottom, left, right]));
    become_identity(&mut nodes[pad]);
}

/// Whether `node` adds a constant vector to `conv`'s output (a per-channel bias).
fn is_bias_add(node: &NodeSpec, conv: &str, weights: &Weights) -> bool {
    matches!(node.op.as_str(), "Add" | "AddV2" | "BiasAdd")
        && node.inputs.len() == 2
        && node.inputs[0] == conv
        && weights.raw(&node.inputs[1]).is_some_and(|t| t.rank() == 1 && !t.dtype().is_int())
        && node.text("data_format").is_none_or(|f| f == "NHWC")
}

fn become_identity(node: &mut NodeSpec) {
    node.op = "Identity".into();
    node.inputs.truncate(1);
    node.attrs.clear();
}

fn const_ints(weights: &Weights, name: &str) -> Option<Vec<i64>> {
    tensor_ints(weights.raw(name)?).ok()
}
