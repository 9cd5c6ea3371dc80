//! `weir validate` (and the operator) refuse what the run would refuse or get wrong, naming the
//! field and what to do: what the YAML reader cannot take (a key twice, NaN, nesting and sizes past
//! its bounds), names that would make bad columns, filters the run cannot evaluate, and output
//! written into the source.

use weir_crds::validate_manifest;

const HEADER: &str = "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {name: t}\n";

fn problems_of(manifest: &str) -> Vec<String> {
    validate_manifest(manifest).problems.iter().map(ToString::to_string).collect()
}

fn problems(body: &str) -> Vec<String> {
    problems_of(&format!("{HEADER}spec:\n{body}"))
}

/// Image files (`uri`, `size`) downloaded to `bytes` and decoded to `image` (steps 0 and 1), then
/// `steps` (lines of the step list), written to `out/`.
fn pipeline(steps: &str) -> String {
    format!(
        "  source: {{files: {{uri: data/}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: image.decode, input: bytes, output: image}}
{steps}  sink: {{parquet: {{uri: out/}}}}
"
    )
}

/// [`pipeline`] with one more step, `step` (a flow mapping), as `spec.steps[2]`.
fn with_step(step: &str) -> Vec<String> {
    problems(&pipeline(&format!("    - {step}\n")))
}

fn assert_valid(found: &[String], what: &str) {
    assert!(found.is_empty(), "{what}: {found:?}");
}

// ---------------------------------------------------------------------------------------------
// What the reader refuses, at the field it concerns.

#[test]
fn a_key_defined_twice_in_a_step_is_named_with_both_lines() {
    let step = "    - op: image.resize
      input: image
      output: small
      width: 224
      height: 224
      width: 112
";
    assert_eq!(
        problems(&pipeline(step)),
        [
            "spec.steps[2].width: key `width` is defined twice in one mapping, at line 12 and again at line 14; Kubernetes clients would keep the last one silently: remove one of them"
        ]
    );
}

#[test]
fn nan_and_infinities_are_refused_at_their_field_as_not_finite() {
    for word in [".nan", ".NaN", ".inf", "-.inf", "+.INF"] {
        let found = with_step(&format!("{{op: video.frames, input: bytes, output: frame, fps: {word}}}"));
        assert_eq!(found.len(), 1, "{word}: {found:?}");
        let want = format!("spec.steps[2].fps: must be a finite number, found `{word}`: JSON has no NaN or infinity");
        assert!(found[0].starts_with(&want), "{word}: {found:?}");
        assert!(found[0].ends_with("write a number (line 9, column 60)"), "{word}: {found:?}");
    }
    let found = with_step("{op: filter, where: [{column: size, op: gt, value: .nan}]}");
    assert!(found.len() == 1 && found[0].starts_with("spec.steps[2].where[0].value: must be a finite number"));
    // Quoted, it is the text `.nan`, which a UInt64 column cannot take.
    let found = with_step("{op: filter, where: [{column: size, op: gt, value: '.nan'}]}");
    assert!(found.len() == 1 && found[0].contains("value `.nan` cannot be compared with `size`, a UInt64 column"));
}

#[test]
fn a_manifest_nested_100k_levels_deep_is_refused_at_the_depth_limit() {
    let found = problems_of(&format!("a: {}", "[".repeat(100_000)));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("nested deeper than 64 mappings and sequences"), "{found:?}");
    let found = problems_of(&format!("{HEADER}spec:\n  steps: {}", "[".repeat(100_000)));
    assert!(found.len() == 1 && found[0].starts_with("spec.steps[0]: nested deeper than 64"), "{found:?}");
    let found = problems_of(&format!("{HEADER}spec:\n  steps:\n{}x\n", "  - ".repeat(70)));
    assert!(found.len() == 1 && found[0].starts_with("spec.steps[0][0][0]"), "{found:?}");
}

fn many_steps(n: usize) -> String {
    let steps = "    - {op: download, input: uri, output: bytes}\n".repeat(n);
    format!("{HEADER}spec:\n  source: {{files: {{uri: data/}}}}\n  steps:\n{steps}  sink: {{parquet: {{uri: out/}}}}\n")
}

#[test]
fn a_manifest_with_thousands_of_steps_is_refused_while_it_is_read() {
    assert_eq!(
        problems_of(&many_steps(20_000)),
        ["spec.steps: more than 10000 entries in one mapping or sequence; reading stopped here (line 10007, column 7)"]
    );
}

#[test]
fn a_manifest_over_3_mib_is_refused_before_it_is_read() {
    let manifest = many_steps(200_000);
    let found = problems_of(&manifest);
    assert_eq!(
        found,
        [format!(
            "the manifest is {} bytes; the API server takes at most 3145728 (3 MiB) in one request, and a job needs a few KiB",
            manifest.len()
        )]
    );
}

#[test]
fn a_step_list_over_its_bound_is_checked_only_up_to_the_bound() {
    let manifest = many_steps(100).replace("output: bytes}", "output: bytes, bogus: 1}");
    let found = problems_of(&manifest);
    assert_eq!(found[0], "spec.steps: must have at most 64 items, found 100");
    assert_eq!(found.iter().filter(|p| p.contains("bogus: unknown field")).count(), 64, "{found:?}");
}

// ---------------------------------------------------------------------------------------------
// Column names: reserved, and never two columns of one name.

#[test]
fn an_output_with_a_reserved_name_is_refused() {
    let reserved = "`_weir_ref` starts with `_weir_`, which is reserved for Weir's internal columns (row references, never written to the sink): choose another name";
    assert_eq!(
        with_step("{op: image.resize, input: image, output: _weir_ref, width: 8, height: 8}"),
        [format!("spec.steps[2].output: {reserved}")]
    );
    for step in [
        "{op: video.frames, input: bytes, output: _weir_frame}",
        "{op: text.chunk, input: uri, output: _weir_chunks, size: 10}",
        "{op: explode, input: image, output: _weir_x}",
    ] {
        let found = with_step(step);
        assert!(found.iter().any(|p| p.starts_with("spec.steps[2].output: `_weir_")), "{step}: {found:?}");
    }
}

#[test]
fn a_rename_onto_a_column_that_exists_is_refused() {
    assert_eq!(
        with_step("{op: rename, mapping: {bytes: uri}}"),
        [
            "spec.steps[2].mapping.bytes: renames `bytes` to `uri`, but a column `uri` already exists here: the output would have two `uri` columns, which Parquet readers such as pyarrow refuse; choose another name, rename `uri` too, or leave it out with a select first"
        ]
    );
}

#[test]
fn renaming_a_column_away_makes_room_for_another() {
    assert_valid(&with_step("{op: rename, mapping: {uri: source, bytes: uri}}"), "uri renamed away first");
    assert_valid(&with_step("{op: rename, mapping: {uri: bytes, bytes: uri}}"), "a swap");
    let select_first = "    - {op: select, columns: [bytes, image]}\n    - {op: rename, mapping: {bytes: uri}}\n";
    assert_valid(&problems(&pipeline(select_first)), "uri left out by a select");
}

#[test]
fn two_columns_renamed_to_one_name_are_refused() {
    assert_eq!(
        with_step("{op: rename, mapping: {bytes: blob, image: blob}}"),
        [
            "spec.steps[2].mapping.image: `bytes` and `image` are both renamed to `blob`: the step refuses two columns of one name; rename them to different names"
        ]
    );
}

#[test]
fn a_rename_onto_a_column_a_step_made_is_refused_even_when_the_source_columns_are_unknown() {
    let body = "  source: {parquet: {uri: table/}}
  steps:
    - {op: download, input: url, output: bytes}
    - {op: rename, mapping: {payload: bytes}}
  sink: {parquet: {uri: out/}}
";
    let found = problems(body);
    assert!(found.len() == 1 && found[0].starts_with("spec.steps[1].mapping.payload: renames `payload` to `bytes`"));
}

#[test]
fn a_column_listed_twice_in_a_select_or_the_sink_is_refused() {
    assert_eq!(
        with_step("{op: select, columns: [uri, image, uri]}"),
        ["spec.steps[2].columns[2]: `uri` is listed twice (also columns[0]): list each column once"]
    );
    let found = problems(&pipeline("").replace("{uri: out/}", "{uri: out/, columns: [uri, image, uri]}"));
    assert_eq!(
        found,
        [
            "spec.sink.parquet.columns[2]: `uri` is listed twice (also columns[0]): the part files would have two `uri` columns, which Parquet readers such as pyarrow refuse; list each column once"
        ]
    );
}

#[test]
fn selecting_or_writing_an_internal_column_is_refused_once() {
    let found = with_step("{op: select, columns: [uri, _weir_ref]}");
    assert!(found.len() == 1 && found[0].starts_with("spec.steps[2].columns[1]: `_weir_ref` starts with `_weir_`"));
    let found = problems(&pipeline("").replace("{uri: out/}", "{uri: out/, columns: [uri, _weir_ref]}"));
    assert!(found.len() == 1 && found[0].starts_with("spec.sink.parquet.columns[1]: `_weir_ref` starts with"));
    let found = with_step("{op: rename, mapping: {_weir_ref: ref}}");
    assert!(found.len() == 1 && found[0].starts_with("spec.steps[2].mapping._weir_ref: `_weir_ref` starts with"));
}

// ---------------------------------------------------------------------------------------------
// Filters: fields and literals checked against the types the pipeline fixes.

fn filter(predicates: &str) -> Vec<String> {
    with_step(&format!("{{op: filter, where: [{predicates}]}}"))
}

#[test]
fn a_filter_on_a_field_the_struct_does_not_have_is_refused() {
    assert_eq!(
        filter("{column: image.nope, op: eq, value: 1}"),
        ["spec.steps[2].where[0].column: the struct has no field `nope`; its fields: width, height, channels, data"]
    );
    assert_eq!(
        filter("{column: size.bytes, op: gt, value: 1}"),
        ["spec.steps[2].where[0].column: `bytes` is not a field: the column is a UInt64, not a struct"]
    );
    let meta = "    - {op: video.metadata, input: uri, output: meta}\n    - {op: filter, where: [{column: meta.fpss, op: gt, value: 1}]}\n";
    let found = problems(&pipeline(meta));
    assert!(found.len() == 1 && found[0].starts_with("spec.steps[3].where[0].column: the struct has no field `fpss`"));
}

#[test]
fn a_filter_literal_the_column_type_cannot_take_is_refused() {
    assert_eq!(
        filter("{column: image.width, op: ge, value: abc}"),
        [
            "spec.steps[2].where[0].value: value `abc` cannot be compared with `image.width`, a UInt32 column (the run casts the value to the column's type); write a whole number from 0 to 4294967295"
        ]
    );
    for (predicate, literal) in [
        ("{column: image.width, op: ge, value: -1}", "-1"),
        ("{column: image.width, op: ge, value: 4294967296}", "4294967296"),
        ("{column: image.height, op: lt, value: 1.5}", "1.5"),
        ("{column: image.channels, op: eq, value: 256}", "256"),
        ("{column: size, op: gt, value: big}", "big"),
        ("{column: size, op: in, value: [1, two]}", "two"),
        ("{column: image, op: eq, value: 1}", "1"),
    ] {
        let found = filter(predicate);
        let want = format!("spec.steps[2].where[0].value: value `{literal}` cannot be compared with");
        assert!(found.len() == 1 && found[0].starts_with(&want), "{predicate}: {found:?}");
    }
}

#[test]
fn filter_literals_the_run_can_cast_are_accepted() {
    for predicate in [
        "{column: image.width, op: ge, value: 224}",
        "{column: image.width, op: ge, value: '224'}",
        "{column: image.width, op: ge, value: ' 7 '}",
        "{column: image.width, op: ge, value: '+5'}",
        "{column: image.width, op: ge, value: '-0'}",
        "{column: size, op: in, value: [1, '2']}",
        "{column: uri, op: endsWith, value: .jpg}",
        "{column: uri, op: eq, value: 12}",
        "{column: image, op: notNull}",
    ] {
        assert_valid(&filter(predicate), predicate);
    }
    let meta = "    - {op: video.metadata, input: uri, output: meta}
    - {op: filter, where: [{column: meta.fps, op: gt, value: 29.97}, {column: meta.fps, op: gt, value: '1e1'}, {column: meta.codec, op: eq, value: h264}]}
";
    assert_valid(&problems(&pipeline(meta)), "video metadata fields");
}

#[test]
fn a_filter_value_of_the_wrong_shape_for_its_operator_is_refused() {
    let cases = [
        ("{column: uri, op: eq}", "`eq` needs a value"),
        ("{column: uri, op: eq, value: ~}", "`eq` needs a value"),
        ("{column: uri, op: in, value: a}", "`in` needs a list of values"),
        (
            "{column: uri, op: eq, value: [a, b]}",
            "must be a single value (a string, number or boolean); only `in` takes a list",
        ),
        ("{column: uri, op: startsWith, value: 5}", "`startsWith` matches text: the value must be a string, found 5"),
    ];
    for (predicate, message) in cases {
        assert_eq!(filter(predicate), [format!("spec.steps[2].where[0].value: {message}")], "{predicate}");
    }
}

#[test]
fn text_matching_on_a_column_that_is_not_text_is_refused() {
    assert_eq!(
        filter("{column: size, op: contains, value: '1'}"),
        ["spec.steps[2].where[0].value: text matching needs a string column, but `size` is a UInt64 column"]
    );
}

#[test]
fn a_filter_on_a_column_of_unknown_type_is_left_to_the_run() {
    let body = "  source: {parquet: {uri: table/, columns: [width]}}
  steps:
    - {op: filter, where: [{column: width, op: ge, value: abc}, {column: width.x, op: eq, value: 1}]}
  sink: {parquet: {uri: out/}}
";
    assert_valid(&problems(body), "parquet columns have no declared type");
}

#[test]
fn exploding_a_column_that_is_not_a_list_is_refused() {
    assert_eq!(
        with_step("{op: explode, input: image, output: pixel}"),
        [
            "spec.steps[2].input: explode needs a list column, but `image` is a Struct(width, height, channels, data) column"
        ]
    );
}

#[test]
fn a_detector_is_asked_only_for_classes_it_reports_and_only_for_its_own_settings() {
    let nanodet = "model: {arch: nanodet, uri: m/nanodet.safetensors}";
    let mtcnn = "model: {arch: mtcnn, uri: m/mtcnn.safetensors}";
    let detect = |rest: &str| with_step(&format!("{{op: image.detect, input: image, output: found, {rest}}}"));
    assert_valid(&detect(&format!("{nanodet}, classes: [dog, cat, teddy bear], iouThreshold: 0.5")), "COCO names");
    assert_valid(&detect(&format!("{mtcnn}, classes: [face], minSize: 40")), "MTCNN's own");
    assert_eq!(
        detect(&format!("{nanodet}, classes: [dog, dgo]")),
        [
            "spec.steps[2].classes[1]: `dgo` is not one of COCO's 80 classes (person, dog, cat, cup, ...; see `weir_crds::COCO_CLASSES`)"
        ]
    );
    assert_eq!(
        detect(&format!("{mtcnn}, classes: [dog]")),
        ["spec.steps[2].classes[0]: `dog` is not a class of mtcnn (it reports `face`)"]
    );
    let both = detect(&format!("{nanodet}, minSize: 40"));
    assert!(both.len() == 1 && both[0].contains("minSize applies to mtcnn only"), "{both:?}");
    let both = detect(&format!("{mtcnn}, iouThreshold: 0.5"));
    assert!(both.len() == 1 && both[0].contains("iouThreshold applies to nanodet only"), "{both:?}");
    let classifier = detect("model: {arch: resnet18, uri: m/r.safetensors}");
    assert!(classifier.iter().any(|p| p.contains("needs a detector (model.arch mtcnn or nanodet)")), "{classifier:?}");
}

// ---------------------------------------------------------------------------------------------
// Output written outside the source.

fn with_sink(sink: &str) -> Vec<String> {
    problems(&pipeline("").replace("{uri: out/}", &format!("{{uri: {sink}}}")))
}

#[test]
fn a_sink_at_or_under_the_source_is_refused() {
    assert_eq!(
        with_sink("data/out"),
        [
            "spec.sink.parquet.uri: `data/out` lies at or under the source `data/` (spec.source.files.uri): the next run over the source would read this job's part files, `_errors/` and `_weir/` back as input; write them outside the source, or narrow the source's uri so it does not hold them"
        ]
    );
    for sink in ["data", "./data/", "data//images/../out/", "data/x/"] {
        let found = with_sink(sink);
        assert!(found.len() == 1 && found[0].starts_with("spec.sink.parquet.uri:"), "{sink}: {found:?}");
    }
    let absolute = |source: &str, sink: &str| {
        problems(
            &pipeline("")
                .replace("{uri: data/}", &format!("{{uri: '{source}'}}"))
                .replace("{uri: out/}", &format!("{{uri: '{sink}'}}")),
        )
    };
    assert_eq!(absolute("/srv/images/", "file:///srv/images/out").len(), 1);
    assert_eq!(absolute("s3://bucket/in", "s3a://bucket/in/out/").len(), 1);
    assert_valid(&absolute("s3://bucket/in", "s3://bucket/out/"), "a sibling prefix");
}

#[test]
fn a_sink_beside_the_source_is_accepted() {
    for sink in ["out/", "data-out/", "../out"] {
        assert_valid(&with_sink(sink), sink);
    }
}

#[test]
fn a_checkpoint_or_upload_under_the_source_is_refused() {
    let body = format!(
        "{}  checkpoint: {{uri: data/_state/}}\n",
        pipeline("    - {op: upload, input: bytes, output: copy, uri: data/copies/}\n")
    );
    let found = problems(&body);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("spec.checkpoint.uri: `data/_state/` lies at or under the source `data/`"),
        "{found:?}"
    );
    assert!(found[1].starts_with("spec.steps[2].uri: `data/copies/` lies at or under the source `data/`"), "{found:?}");
}
