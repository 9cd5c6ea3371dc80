//! Graph models: a TensorFlow.js graph that `weir model convert` stored beside its weights, planned
//! once (constants folded, ops decoded, filters laid out) and run node by node on candle.
//!
//! Convolutions take in the padding before them and the bias and activation after them
//! ([`fuse`]). Only the nodes the requested outputs need are planned; each value is dropped after its last
//! use, so memory holds the live activations only.

mod fuse;
mod ops;
mod spec;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use self::ops::Kernel;
pub use self::spec::{Attr, GraphSpec, METADATA_KEY, NodeSpec};
use crate::ModelError;
use crate::weights::Weights;

/// A node's output: `(node index, output index)`.
type Output = (usize, usize);

/// An input of a planned step.
enum Operand {
    Constant(Tensor),
    Value(Output),
}

/// One node to run.
struct Step {
    node: usize,
    op: String,
    kernel: Kernel,
    operands: Vec<Operand>,
}

/// A planned graph with one input.
pub struct GraphModel {
    names: Vec<String>,
    input: usize,
    steps: Vec<Step>,
    outputs: Vec<Output>,
    /// For each step, the values whose last reader it is.
    last_reads: Vec<Vec<usize>>,
    device: Device,
}

impl GraphModel {
    /// Plans the graph stored in `weights` to compute `outputs` from the placeholder `input`.
    ///
    /// # Errors
    /// [`ModelError::Weights`] naming what is wrong: no graph in the file, a node not found, a
    /// constant without its tensor, an op or attribute not supported (with the node), a cycle.
    pub fn load(weights: &Weights, input: &str, outputs: &[&str], device: &Device) -> Result<Self, ModelError> {
        let refuse = |message: String| ModelError::Weights { uri: weights.uri().to_string(), message };
        let json = weights.metadata(METADATA_KEY).ok_or_else(|| {
            refuse(format!(
                "holds no graph (metadata `{METADATA_KEY}`): convert the TF.js model.json with `weir model convert`"
            ))
        })?;
        let mut spec: GraphSpec =
            serde_json::from_str(json).map_err(|e| refuse(format!("its graph is not readable: {e}")))?;
        fuse::fuse_convolutions(&mut spec.nodes, weights, outputs);
        Planner::new(&spec, weights, device).and_then(|p| p.plan(input, outputs)).map_err(refuse)
    }

    /// Runs the graph on `input`, giving the outputs in the order they were asked for.
    ///
    /// # Errors
    /// A tensor failure, prefixed with the node that failed.
    pub fn run(&self, input: &Tensor) -> Result<Vec<Tensor>, ModelError> {
        let mut values: HashMap<usize, Vec<Tensor>> = HashMap::from([(self.input, vec![input.clone()])]);
        for (s, step) in self.steps.iter().enumerate() {
            let args = step
                .operands
                .iter()
                .map(|operand| match operand {
                    Operand::Constant(tensor) => Ok(tensor.clone()),
                    Operand::Value((node, k)) => {
                        values.get(node).and_then(|v| v.get(*k)).cloned().ok_or_else(|| {
                            candle_core::Error::Msg(format!("`{}` has no output {k}", self.names[*node]))
                        })
                    }
                })
                .collect::<candle_core::Result<Vec<_>>>();
            let result = args.and_then(|args| step.kernel.run(&args));
            let result =
                result.map_err(|e| candle_core::Error::Msg(format!("node `{}`: {e}", self.names[step.node])))?;
            values.insert(step.node, result);
            for node in &self.last_reads[s] {
                values.remove(node);
            }
        }
        self.outputs
            .iter()
            .map(|(node, k)| {
                let value = values.get(node).and_then(|v| v.get(*k)).cloned();
                value.ok_or_else(|| candle_core::Error::Msg(format!("output `{}` was not computed", self.names[*node])))
            })
            .collect::<candle_core::Result<_>>()
            .map_err(ModelError::Run)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// How many nodes of each op run (after folding, fusing and aliasing), for tests and
    /// diagnostics.
    pub fn planned_ops(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for step in &self.steps {
            *counts.entry(step.op.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// Builds a [`GraphModel`] from a spec.
struct Planner<'a> {
    spec: &'a GraphSpec,
    weights: &'a Weights,
    device: &'a Device,
    index: HashMap<&'a str, usize>,
}

impl<'a> Planner<'a> {
    fn new(spec: &'a GraphSpec, weights: &'a Weights, device: &'a Device) -> Result<Self, String> {
        let mut index = HashMap::with_capacity(spec.nodes.len());
        for (i, node) in spec.nodes.iter().enumerate() {
            if index.insert(node.name.as_str(), i).is_some() {
                return Err(format!("the graph names two nodes `{}`", node.name));
            }
        }
        Ok(Self { spec, weights, device, index })
    }

    /// `name` or `name:k` as a node output.
    fn output(&self, reference: &str) -> Result<Output, String> {
        let (name, k) = spec::split_reference(reference);
        let node = self.index.get(name).ok_or(format!("the graph has no node `{name}`"))?;
        Ok((*node, k))
    }

    /// The nodes `outputs` need, each after its inputs.
    fn order(&self, outputs: &[Output]) -> Result<Vec<usize>, String> {
        // Depth-first with an explicit stack (a graph file can be deeper than the thread's stack).
        let (mut order, mut state) = (Vec::new(), vec![0u8; self.spec.nodes.len()]);
        let mut stack: Vec<(usize, bool)> = outputs.iter().rev().map(|(node, _)| (*node, false)).collect();
        while let Some((node, expanded)) = stack.pop() {
            if expanded {
                state[node] = 2;
                order.push(node);
                continue;
            }
            match state[node] {
                2 => continue,
                1 => return Err(format!("the graph has a cycle through `{}`", self.spec.nodes[node].name)),
                _ => {}
            }
            state[node] = 1;
            stack.push((node, true));
            for input in self.spec.nodes[node].inputs.iter().rev() {
                let (input, _) = self.output(input)?;
                if state[input] != 2 {
                    stack.push((input, false));
                }
            }
        }
        Ok(order)
    }

    fn plan(self, input: &str, outputs: &[&str]) -> Result<GraphModel, String> {
        let outputs: Vec<Output> = outputs.iter().map(|o| self.output(o)).collect::<Result<_, _>>()?;
        let input = self.output(input)?.0;
        if self.spec.nodes[input].op != "Placeholder" {
            return Err(format!(
                "`{}` is a {}, not the graph's input",
                self.spec.nodes[input].name, self.spec.nodes[input].op
            ));
        }
        let mut constants: HashMap<usize, Vec<Tensor>> = HashMap::new();
        // An `Identity` of a computed value is that value: no step, its readers read the source.
        let mut aliases: HashMap<Output, Output> = HashMap::new();
        let resolve = |aliases: &HashMap<Output, Output>, output: Output| *aliases.get(&output).unwrap_or(&output);
        let mut steps = Vec::new();
        for node_index in self.order(&outputs)? {
            let node = &self.spec.nodes[node_index];
            let at = |message: String| format!("node `{}` ({}): {message}", node.name, node.op);
            match node.op.as_str() {
                "Const" => {
                    constants.insert(node_index, vec![self.constant(&node.name)?]);
                    continue;
                }
                "Placeholder" if node_index == input => continue,
                "Placeholder" => {
                    return Err(at(format!("is an input other than `{}`, not fed", self.spec.nodes[input].name)));
                }
                _ => {}
            }
            let inputs: Vec<Output> =
                node.inputs.iter().map(|i| self.output(i).map(|o| resolve(&aliases, o))).collect::<Result<_, _>>()?;
            if let (Some(first), "Identity") = (inputs.first(), node.op.as_str())
                && !constants.contains_key(&first.0)
            {
                aliases.insert((node_index, 0), *first);
                continue;
            }
            let known: Vec<Option<&Tensor>> =
                inputs.iter().map(|(n, k)| constants.get(n).and_then(|v| v.get(*k))).collect();
            let kernel = Kernel::decode(node, &known, self.device).map_err(at)?;
            if known.iter().all(Option::is_some) {
                // Every input is known: fold the node into a constant now.
                let args: Vec<Tensor> = known.iter().flatten().map(|t| (*t).clone()).collect();
                let folded = kernel.run(&args).map_err(|e| at(e.to_string()))?;
                constants.insert(node_index, folded);
                continue;
            }
            let operands = inputs
                .iter()
                .zip(&known)
                .map(|(output, known)| match known {
                    Some(tensor) => tensor.to_device(self.device).map(Operand::Constant).map_err(|e| at(e.to_string())),
                    None => Ok(Operand::Value(*output)),
                })
                .collect::<Result<_, _>>()?;
            steps.push(Step { node: node_index, op: node.op.clone(), kernel, operands });
        }
        let outputs: Vec<Output> = outputs.iter().map(|o| resolve(&aliases, *o)).collect();
        for (node, _) in &outputs {
            if constants.contains_key(node) {
                return Err(format!("output `{}` is a constant", self.spec.nodes[*node].name));
            }
        }
        let last_reads = last_reads(&steps, &outputs);
        let names = self.spec.nodes.iter().map(|n| n.name.clone()).collect();
        Ok(GraphModel { names, input, steps, outputs, last_reads, device: self.device.clone() })
    }

    /// The weight a `Const` node stands for; integers as i64 (TF.js stores int64 as int32).
    fn constant(&self, name: &str) -> Result<Tensor, String> {
        let tensor = self.weights.raw(name).ok_or(format!("tensor `{name}` (a constant of the graph) is missing"))?;
        let wanted = if tensor.dtype().is_int() { DType::I64 } else { DType::F32 };
        tensor.to_dtype(wanted).map_err(|e| format!("tensor `{name}`: {e}"))
    }
}

/// For each step, the node values no later step (nor the outputs) reads.
fn last_reads(steps: &[Step], outputs: &[Output]) -> Vec<Vec<usize>> {
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (s, step) in steps.iter().enumerate() {
        for operand in &step.operands {
            if let Operand::Value((node, _)) = operand {
                last.insert(*node, s);
            }
        }
    }
    let mut reads = vec![Vec::new(); steps.len()];
    for (node, s) in last {
        if !outputs.iter().any(|(o, _)| *o == node) {
            reads[s].push(node);
        }
    }
    reads
}
