//! Dead-column elimination: which columns a later step or the sink still reads after each step.

use std::collections::BTreeSet;

use weir_crds::{MultimodalJobSpec, StepSpec};

/// For each step of `spec`, the top-level columns read after it (by a later step or the sink);
/// `None` where every column may still be read (the sink writes all columns and no `select`
/// narrows them later). Internal `_weir_*` columns are always kept and are not listed.
///
/// A `select` reads exactly its columns, a `rename` reads the old name of every new name read
/// after it, and any other step reads its declared inputs and makes its outputs.
pub fn needed_after_each_step(spec: &MultimodalJobSpec) -> Vec<Option<BTreeSet<String>>> {
    let mut live: Option<BTreeSet<String>> =
        spec.sink.parquet.columns.as_ref().map(|columns| columns.iter().map(|c| top_level(c)).collect());
    let mut needed = vec![None; spec.steps.len()];
    for (index, step) in spec.steps.iter().enumerate().rev() {
        needed[index] = live.clone();
        live = needed_before(step, live);
    }
    needed
}

/// The columns read from step `step` on, given those read after it.
fn needed_before(step: &StepSpec, after: Option<BTreeSet<String>>) -> Option<BTreeSet<String>> {
    match step {
        StepSpec::Select(select) => Some(select.columns.iter().map(|c| top_level(c)).collect()),
        StepSpec::Rename(rename) => after.map(|mut live| {
            for (old, new) in &rename.mapping {
                if live.remove(new) {
                    live.insert(old.clone());
                }
            }
            live
        }),
        other => after.map(|mut live| {
            let config = other.config();
            if let Some(output) = config.output() {
                live.remove(output);
            }
            for extra in config.extra_outputs() {
                live.remove(&extra);
            }
            live.extend(config.inputs().into_iter().map(top_level));
            live
        }),
    }
}

/// The top-level column of a possibly dotted name (`image.width` is read from `image`).
fn top_level(name: &str) -> String {
    name.split('.').next().unwrap_or(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(steps: &str, sink_columns: &str) -> MultimodalJobSpec {
        let text = format!(
            "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: t}}\nspec:\n  source:\n    files: {{uri: /in}}\n  steps:\n{steps}  sink:\n    parquet: {{uri: /out{sink_columns}}}\n"
        );
        weir_crds::parse_manifest(&text, "test").expect("manifest").spec
    }

    fn names(list: &[&str]) -> Option<BTreeSet<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_document_s_bytes_and_text_die_once_chunked_when_the_sink_names_its_columns() {
        let spec = spec(
            "    - {op: download, input: uri, output: bytes}\n    - {op: document.text, input: bytes, output: text}\n    - {op: text.chunk, input: text, output: chunk}\n",
            ", columns: [uri, chunk, chunk_index]",
        );
        let needed = needed_after_each_step(&spec);
        assert_eq!(needed[0], names(&["bytes", "uri"]), "after download");
        assert_eq!(needed[1], names(&["text", "uri"]), "after document.text: the bytes are dead");
        assert_eq!(needed[2], names(&["chunk", "chunk_index", "uri"]), "after text.chunk: the text is dead");
    }

    #[test]
    fn without_sink_columns_everything_lives_until_a_select() {
        let spec = spec(
            "    - {op: download, input: uri, output: bytes}\n    - {op: document.text, input: bytes, output: text}\n    - {op: select, columns: [uri, text]}\n    - {op: rename, mapping: {text: body}}\n",
            "",
        );
        let needed = needed_after_each_step(&spec);
        assert_eq!(needed[3], None, "the sink writes every column");
        assert_eq!(needed[2], None, "a rename passes every column on");
        assert_eq!(needed[1], names(&["text", "uri"]), "the select reads only these");
        assert_eq!(needed[0], names(&["bytes", "uri"]));
    }

    #[test]
    fn a_rename_reads_the_old_name_of_what_is_read_after_it_and_a_filter_its_top_level_column() {
        let spec = spec(
            "    - {op: download, input: uri, output: bytes}\n    - {op: image.decode, input: bytes, output: image}\n    - {op: filter, where: [{column: image.width, op: gt, value: 10}]}\n    - {op: rename, mapping: {uri: path}}\n",
            ", columns: [path]",
        );
        let needed = needed_after_each_step(&spec);
        assert_eq!(needed[3], names(&["path"]));
        assert_eq!(needed[2], names(&["uri"]), "the rename reads uri for path");
        assert_eq!(needed[1], names(&["image", "uri"]), "the filter reads image");
        assert_eq!(needed[0], names(&["bytes", "uri"]));
    }
}
