//! Which pool runs each step, and which pool leases units.
//!
//! A step runs on the pool it names (`pool:`). A model step that names none runs on `gpu` when
//! the job declares a pool of that name; every other step that names none runs on the leasing
//! pool. The leasing pool is `spec.leasingPool`, else the one pool every step names, else `cpu`.
//! Workers of the leasing pool read units, run their pool's steps, send the other steps' morsels
//! to workers of those pools, and write the sink.

use crate::{MultimodalJobSpec, PoolName, StepSpec};

/// The pool of each step, in order.
pub fn step_pools(spec: &MultimodalJobSpec) -> Vec<PoolName> {
    let leasing = leasing_pool(spec);
    spec.steps.iter().map(|step| named_pool(spec, step).unwrap_or_else(|| leasing.clone())).collect()
}

/// The pool a step names, or that its kind implies (model steps on a declared `gpu` pool).
fn named_pool(spec: &MultimodalJobSpec, step: &StepSpec) -> Option<PoolName> {
    if let Some(pool) = step.config().pool() {
        return Some(pool.clone());
    }
    let gpu = PoolName::gpu();
    let declares_gpu = spec.pools.as_ref().is_some_and(|p| p.contains_key(&gpu));
    (declares_gpu && step.is_model_step()).then_some(gpu)
}

/// The pool whose workers lease units.
pub fn leasing_pool(spec: &MultimodalJobSpec) -> PoolName {
    if let Some(pool) = &spec.leasing_pool {
        return pool.clone();
    }
    let named: Option<Vec<PoolName>> = spec.steps.iter().map(|s| named_pool(spec, s)).collect();
    match named.as_deref() {
        Some([first, rest @ ..]) if rest.iter().all(|p| p == first) => first.clone(),
        _ => PoolName::cpu(),
    }
}

/// The pools a job needs: the leasing pool first, then every pool a step runs on, in step order.
pub fn pools_in_use(spec: &MultimodalJobSpec) -> Vec<PoolName> {
    let mut pools = vec![leasing_pool(spec)];
    for pool in step_pools(spec) {
        if !pools.contains(&pool) {
            pools.push(pool);
        }
    }
    pools
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(steps: &str, rest: &str) -> MultimodalJobSpec {
        let text = format!(
            "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: t}}\nspec:\n  source:\n    files: {{uri: in/}}\n  steps:\n{steps}  sink:\n    parquet: {{uri: out/}}\n{rest}"
        );
        crate::parse_manifest(&text, "test").expect("manifest").spec
    }

    fn names(pools: Vec<PoolName>) -> Vec<String> {
        pools.into_iter().map(String::from).collect()
    }

    const STEPS: &str = "    - {op: download, input: uri, output: bytes}\n    - {op: image.decode, input: bytes, output: image}\n    - {op: image.embed, input: image, output: e, model: {arch: resnet18, uri: m.safetensors}}\n";

    #[test]
    fn model_steps_go_to_the_gpu_pool_only_when_the_job_has_one() {
        assert_eq!(names(step_pools(&spec(STEPS, ""))), ["cpu"; 3]);
        let with_gpu = spec(STEPS, "  pools: {cpu: {}, gpu: {gpusPerPod: 1}}\n");
        assert_eq!(names(step_pools(&with_gpu)), ["cpu", "cpu", "gpu"]);
        assert_eq!(leasing_pool(&with_gpu).as_str(), "cpu");
        assert_eq!(names(pools_in_use(&with_gpu)), ["cpu", "gpu"]);
    }

    #[test]
    fn an_explicit_pool_wins_and_an_all_gpu_job_leases_on_gpu() {
        let steps = "    - {op: download, input: uri, output: bytes, pool: gpu}\n";
        assert_eq!(names(step_pools(&spec(steps, ""))), ["gpu"]);
        assert_eq!(leasing_pool(&spec(steps, "")).as_str(), "gpu");
    }

    #[test]
    fn named_pools_and_a_named_leasing_pool() {
        let steps = "    - {op: download, input: uri, output: bytes}\n    - {op: image.decode, input: bytes, output: image}\n    - {op: image.embed, input: image, output: e, pool: gpu-l4, model: {arch: resnet18, uri: m.safetensors}}\n    - {op: image.classify, input: image, output: c, pool: gpu-h100, model: {arch: resnet50, uri: n.safetensors}}\n";
        let job = spec(steps, "  leasingPool: io\n  pools: {io: {}, gpu-l4: {}, gpu-h100: {}}\n");
        assert_eq!(names(step_pools(&job)), ["io", "io", "gpu-l4", "gpu-h100"]);
        assert_eq!(names(pools_in_use(&job)), ["io", "gpu-l4", "gpu-h100"]);
    }
}
