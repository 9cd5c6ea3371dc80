//! The stored form of a graph model: nodes with their op, inputs and attributes, as `weir model
//! convert` writes them into a safetensors file's metadata beside the weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The safetensors metadata key that holds a graph model's [`GraphSpec`] as JSON.
pub const METADATA_KEY: &str = "weir.graph";

/// A dataflow graph; its constants are the weights file's tensors, named as the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// Where the graph came from (`tfjs`: a TensorFlow.js graph model, whose ops are
    /// TensorFlow's).
    pub format: String,
    pub nodes: Vec<NodeSpec>,
}

/// One node: `op` applied to `inputs` (`name` for a node's first output, `name:k` for its k-th).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub op: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, Attr>,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Attr {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
}

/// A node input `name` or `name:k` as the node's name and its output index.
pub fn split_reference(reference: &str) -> (&str, usize) {
    match reference.rsplit_once(':').map(|(name, k)| (name, k.parse::<usize>())) {
        Some((name, Ok(k))) => (name, k),
        _ => (reference, 0),
    }
}

impl NodeSpec {
    /// Attribute `key` as integers (a single integer is a list of one).
    pub fn ints(&self, key: &str) -> Option<Vec<i64>> {
        match self.attrs.get(key)? {
            Attr::Ints(values) => Some(values.clone()),
            Attr::Int(value) => Some(vec![*value]),
            _ => None,
        }
    }

    /// Attribute `key` as a number.
    pub fn float(&self, key: &str) -> Option<f64> {
        match self.attrs.get(key)? {
            Attr::Float(value) => Some(*value),
            Attr::Int(value) => Some(*value as f64),
            _ => None,
        }
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        match self.attrs.get(key)? {
            Attr::Text(value) => Some(value),
            _ => None,
        }
    }

    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.attrs.get(key)? {
            Attr::Bool(value) => Some(*value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_keep_their_kind_through_json() {
        let node = NodeSpec {
            name: "conv".into(),
            op: "Conv2D".into(),
            inputs: vec!["x".into(), "w".into()],
            attrs: BTreeMap::from([
                ("strides".into(), Attr::Ints(vec![1, 2, 2, 1])),
                ("padding".into(), Attr::Text("VALID".into())),
                ("alpha".into(), Attr::Float(1.0)),
                ("half_pixel_centers".into(), Attr::Bool(true)),
                ("num_split".into(), Attr::Int(2)),
            ]),
        };
        let spec = GraphSpec { format: "tfjs".into(), nodes: vec![node] };
        let back: GraphSpec = serde_json::from_str(&serde_json::to_string(&spec).expect("json")).expect("parse");
        assert_eq!(back, spec);
        let node = &back.nodes[0];
        assert_eq!(node.ints("strides"), Some(vec![1, 2, 2, 1]));
        assert_eq!(node.ints("num_split"), Some(vec![2]));
        assert_eq!(node.float("alpha"), Some(1.0));
        assert_eq!(node.text("padding"), Some("VALID"));
        assert_eq!(node.flag("half_pixel_centers"), Some(true));
        assert_eq!(node.text("strides"), None);
    }
}
