//! Which consecutive image steps of a job run as one pass per image
//! ([`ImageChain`](weir_ops::image::chain::ImageChain)).

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use weir_crds::placement::step_pools;
use weir_crds::{MultimodalJobSpec, PoolName, StepSpec};
use weir_ops::image::chain::Link;

/// The runs of consecutive steps of `spec` that run as one
/// [`ImageChain`](weir_ops::image::chain::ImageChain), in order, each at least
/// two steps long; `needed_after` is [`super::columns::needed_after_each_step`] of `spec`.
///
/// Step `k + 1` joins step `k` when both are image steps a chain can run (a decode only first, an
/// encode only last: [`Link::for_step`]), `k + 1` reads the column `k` makes, both run on the same
/// pool with the same concurrency, and nothing reads the column `k` makes once `k + 1` has run (it
/// is `k + 1`'s own output, or a later step or the sink reads other columns only). A column that
/// the sink may write (no column list, no `select` after it) is therefore never skipped.
pub fn image_chains(spec: &MultimodalJobSpec, needed_after: &[Option<BTreeSet<String>>]) -> Vec<RangeInclusive<usize>> {
    let pools = step_pools(spec);
    let mut chains = Vec::new();
    let mut start = 0;
    for index in 0..spec.steps.len() {
        if joins_next(spec, &pools, needed_after, index) {
            continue;
        }
        if index > start {
            chains.push(start..=index);
        }
        start = index + 1;
    }
    chains
}

/// Whether step `index + 1` joins step `index` in a chain.
fn joins_next(
    spec: &MultimodalJobSpec,
    pools: &[PoolName],
    needed_after: &[Option<BTreeSet<String>>],
    index: usize,
) -> bool {
    let (Some(before), Some(after)) = (spec.steps.get(index), spec.steps.get(index + 1)) else {
        return false;
    };
    let can_lead = matches!(link(before), Some(Link::Decode(_) | Link::Resize(_) | Link::Crop(_)));
    let can_follow = matches!(link(after), Some(Link::Resize(_) | Link::Crop(_) | Link::Encode(_)));
    let (before, after) = (before.config(), after.config());
    let Some(made) = before.output() else { return false };
    let reads_it = after.inputs() == [made];
    let dead_after = after.output() == Some(made)
        || needed_after.get(index + 1).is_some_and(|live| live.as_ref().is_some_and(|live| !live.contains(made)));
    can_lead
        && can_follow
        && reads_it
        && dead_after
        && pools.get(index) == pools.get(index + 1)
        && before.concurrency() == after.concurrency()
}

/// The link `step` would be; `None` when it cannot be one or its config is unusable (it is then
/// built alone, and reports its error as any step does).
fn link(step: &StepSpec) -> Option<Link> {
    Link::for_step(step).and_then(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::super::columns::needed_after_each_step;
    use super::*;

    fn chains(steps: &str, sink_columns: &str) -> Vec<RangeInclusive<usize>> {
        let text = format!(
            "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: t}}\nspec:\n  source:\n    files: {{uri: /in}}\n  steps:\n{steps}  sink:\n    parquet: {{uri: /out{sink_columns}}}\n"
        );
        let spec = weir_crds::parse_manifest(&text, "test").expect("manifest").spec;
        image_chains(&spec, &needed_after_each_step(&spec))
    }

    const DECODE: &str =
        "    - {op: download, input: uri, output: bytes}\n    - {op: image.decode, input: bytes, output: image}\n";

    #[test]
    fn decode_resize_encode_chain_when_only_the_encoded_bytes_are_written() {
        let steps = format!(
            "{DECODE}    - {{op: image.resize, input: image, output: image, width: 8, height: 8}}\n    - {{op: image.encode, input: image, output: jpeg}}\n"
        );
        assert_eq!(chains(&steps, ", columns: [uri, jpeg]"), [1..=3]);
        assert_eq!(chains(&format!("{steps}    - {{op: select, columns: [uri, jpeg]}}\n"), ""), [1..=3]);
    }

    #[test]
    fn a_column_the_sink_or_a_later_step_reads_is_not_skipped() {
        let steps = format!(
            "{DECODE}    - {{op: image.resize, input: image, output: small, width: 8, height: 8}}\n    - {{op: image.encode, input: small, output: jpeg}}\n"
        );
        // Every column is written: the decoded image and the small one too.
        assert_eq!(chains(&steps, ""), Vec::<RangeInclusive<usize>>::new());
        // The sink writes the decoded image: only resize -> encode chain.
        assert_eq!(chains(&steps, ", columns: [image, jpeg]"), [2..=3]);
        // The sink writes the small one: only decode -> resize chain.
        assert_eq!(chains(&steps, ", columns: [small, jpeg]"), [1..=2]);
        assert_eq!(chains(&steps, ", columns: [jpeg]"), [1..=3]);
        // A later filter reads the decoded image's width.
        let filtered = format!("{steps}    - {{op: filter, where: [{{column: image.width, op: gt, value: 1}}]}}\n");
        assert_eq!(chains(&filtered, ", columns: [jpeg]"), [2..=3]);
    }

    #[test]
    fn a_replaced_column_chains_even_when_every_column_is_written() {
        let steps = format!("{DECODE}    - {{op: image.resize, input: image, output: image, width: 8, height: 8}}\n");
        assert_eq!(chains(&steps, ""), [1..=2]);
    }

    #[test]
    fn other_pools_concurrencies_ops_and_box_columns_break_a_chain() {
        let pooled = format!(
            "{DECODE}    - {{op: image.resize, input: image, output: image, width: 8, height: 8, pool: other}}\n"
        );
        assert_eq!(chains(&pooled, ""), Vec::<RangeInclusive<usize>>::new(), "another pool");
        let concurrent = format!(
            "{DECODE}    - {{op: image.resize, input: image, output: image, width: 8, height: 8, concurrency: 1}}\n"
        );
        assert_eq!(chains(&concurrent, ""), Vec::<RangeInclusive<usize>>::new(), "another concurrency");
        let crop = |region: &str| {
            let text = format!(r#"{{"op": "image.crop", "input": "image", "output": "image", {region}}}"#);
            serde_json::from_str::<StepSpec>(&text).expect("step")
        };
        assert!(link(&crop(r#""center": {"width": 4, "height": 4}"#)).is_some(), "a centred box");
        assert!(link(&crop(r#""bboxColumn": "box""#)).is_none(), "a crop by a box column reads that column too");
        let two = format!(
            "{DECODE}    - {{op: image.encode, input: image, output: image}}\n    - {{op: image.decode, input: image, output: image}}\n    - {{op: image.crop, input: image, output: image, center: {{width: 4, height: 4}}}}\n"
        );
        assert_eq!(chains(&two, ""), [1..=2, 3..=4], "a decode starts a new chain");
    }
}
