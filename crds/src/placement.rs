//! Which pool runs each step, and which pool leases units.
//!
//! A step runs on the pool it names (`pool:`); a model step that names none runs on `gpu` when the
//! job has a gpu pool, every other step on `cpu`. Workers of the leasing pool read units, run their
//! pool's steps, send the other steps' morsels to workers of those pools, and write the sink.

use crate::{MultimodalJobSpec, PoolName, StepSpec};

/// The pool of each step, in order.
pub fn step_pools(spec: &MultimodalJobSpec) -> Vec<PoolName> {
    let has_gpu = spec.pools.as_ref().is_some_and(|p| p.gpu.is_some());
    spec.steps
        .iter()
        .map(|step| match step.config().pool() {
            Some(pool) => pool,
            None if has_gpu && is_model_step(step) => PoolName::Gpu,
            None => PoolName::Cpu,
        })
        .collect()
}

fn is_model_step(step: &StepSpec) -> bool {
    matches!(
        step,
        StepSpec::TextEmbed(_)
            | StepSpec::ImageEmbed(_)
            | StepSpec::ImageClassify(_)
            | StepSpec::ImageDetect(_)
            | StepSpec::AudioTranscribe(_)
    )
}

/// The pool whose workers lease units: `cpu`, unless every step runs on `gpu`.
pub fn leasing_pool(spec: &MultimodalJobSpec) -> PoolName {
    if !spec.steps.is_empty() && step_pools(spec).iter().all(|p| *p == PoolName::Gpu) {
        PoolName::Gpu
    } else {
        PoolName::Cpu
    }
}

/// The pool's name as workers and labels spell it.
pub fn pool_name(pool: PoolName) -> &'static str {
    match pool {
        PoolName::Cpu => "cpu",
        PoolName::Gpu => "gpu",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(steps: &str, pools: &str) -> MultimodalJobSpec {
        let text = format!(
            "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: t}}\nspec:\n  source:\n    files: {{uri: in/}}\n  steps:\n{steps}  sink:\n    parquet: {{uri: out/}}\n{pools}"
        );
        crate::parse_manifest(&text, "test").expect("manifest").spec
    }

    const STEPS: &str = "    - {op: download, input: uri, output: bytes}\n    - {op: image.decode, input: bytes, output: image}\n    - {op: image.embed, input: image, output: e, model: {arch: resnet18, uri: m.safetensors}}\n";

    #[test]
    fn model_steps_go_to_the_gpu_pool_only_when_the_job_has_one() {
        assert_eq!(step_pools(&spec(STEPS, "")), vec![PoolName::Cpu; 3]);
        let with_gpu = spec(STEPS, "  pools: {gpu: {gpusPerPod: 1}}\n");
        assert_eq!(step_pools(&with_gpu), vec![PoolName::Cpu, PoolName::Cpu, PoolName::Gpu]);
        assert_eq!(leasing_pool(&with_gpu), PoolName::Cpu);
    }

    #[test]
    fn an_explicit_pool_wins_and_an_all_gpu_job_leases_on_gpu() {
        let steps = "    - {op: download, input: uri, output: bytes, pool: gpu}\n";
        assert_eq!(step_pools(&spec(steps, "")), vec![PoolName::Gpu]);
        assert_eq!(leasing_pool(&spec(steps, "")), PoolName::Gpu);
    }
}
