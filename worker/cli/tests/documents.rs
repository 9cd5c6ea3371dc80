//! `weir run` end to end on documents: PDF pages, HTML and text become chunked rows; a corrupt and
//! an encrypted PDF are recorded as failed rows and the rest goes on.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use common::*;
use weir_testkit::docs::{PdfPage, encrypted_pdf, pdf};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write fixture");
}

/// Writes four good documents (one PDF page is a drawing with no text), a truncated PDF and an
/// encrypted one.
fn fixtures(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let report =
        pdf(&[PdfPage::Text("Quarterly report\nRevenue grew."), PdfPage::Drawing, PdfPage::Text("Appendix: tables")]);
    write(dir, "report.pdf", &report);
    write(dir, "memo.pdf", &pdf(&[PdfPage::Text("Memo to staff")]));
    write(
        dir,
        "page.html",
        b"<!DOCTYPE html><html><body><h1>Welcome</h1><script>x()</script><p>Fish &amp; chips</p></body></html>",
    );
    write(dir, "notes.txt", b"Plain notes, one page.");
    write(dir, "corrupt.pdf", &report[..report.len() / 2]);
    write(dir, "locked.pdf", &encrypted_pdf("secret"));
}

fn spec(docs: &Path, out: &Path) -> String {
    format!(
        "  source: {{files: {{uri: \"{}\"}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: document.text, input: bytes, output: text}}
    - {{op: text.chunk, input: text, output: chunk, size: 200, overlap: 20}}
    - {{op: select, columns: [uri, text_page, chunk]}}
  sink: {{parquet: {{uri: \"{}\"}}}}
  errorPolicy: {{onRowError: skip, maxErrorRatio: 0.5}}
",
        docs.display(),
        out.display()
    )
}

#[test]
fn pages_become_chunked_rows_and_broken_pdfs_are_recorded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (docs, out) = (tmp.path().join("docs"), tmp.path().join("out"));
    fixtures(&docs);
    let manifest = write_manifest(tmp.path(), "documents", &spec(&docs, &out));
    let result = run(&manifest, &[]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));

    let rows = read_parquet_dir(&out);
    let uris = strings(&rows, "uri");
    let pages: Vec<u32> = rows
        .iter()
        .flat_map(|b| b.column_by_name("text_page").expect("text_page").as_primitive::<UInt32Type>().values().to_vec())
        .collect();
    let chunks = strings(&rows, "chunk");
    let found: BTreeSet<(String, u32, String)> = uris
        .iter()
        .zip(&pages)
        .zip(&chunks)
        .map(|((u, p), c)| (u.rsplit('/').next().unwrap_or_default().to_string(), *p, c.clone()))
        .collect();
    let expected: BTreeSet<(String, u32, String)> = [
        ("memo.pdf", 1, "Memo to staff"),
        ("notes.txt", 1, "Plain notes, one page."),
        ("page.html", 1, "Welcome\n\nFish & chips"),
        ("report.pdf", 1, "Quarterly report\nRevenue grew."),
        ("report.pdf", 3, "Appendix: tables"),
    ]
    .into_iter()
    .map(|(u, p, c)| (u.to_string(), p, c.to_string()))
    .collect();
    assert_eq!(found, expected, "the scanned page 2 has no text, so no chunk");

    let errors = read_parquet_dir(&out.join("_errors"));
    let failed: Vec<(String, String)> = strings(&errors, "row_ref")
        .into_iter()
        .map(|r| r.rsplit('/').next().unwrap_or_default().to_string())
        .zip(strings(&errors, "message"))
        .collect();
    let message = |name: &str| failed.iter().find(|(r, _)| r == name).map(|(_, m)| m.clone()).expect(name);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(message("corrupt.pdf").starts_with("truncated PDF: no %%EOF marker"), "{failed:?}");
    assert!(message("locked.pdf").starts_with("encrypted PDF: a password is needed"), "{failed:?}");
    assert_eq!(strings(&errors, "step"), ["document.text", "document.text"]);
}

#[test]
fn a_missing_tokenizer_fails_the_job_before_any_row_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (docs, out) = (tmp.path().join("docs"), tmp.path().join("out"));
    fixtures(&docs);
    let tokenizer = tmp.path().join("missing/tokenizer.json");
    let manifest = write_manifest(
        tmp.path(),
        "tokens",
        &format!(
            "  source: {{files: {{uri: \"{}\"}}}}\n  steps:\n    - {{op: download, input: uri, output: bytes}}\n    - {{op: document.text, input: bytes, output: text}}\n    - {{op: text.tokenize, input: text, output: tokens, tokenizer: \"{}\"}}\n  sink: {{parquet: {{uri: \"{}\"}}}}\n",
            docs.display(),
            tokenizer.display(),
            out.display()
        ),
    );
    let result = run(&manifest, &[]);
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    assert!(
        stderr.contains(&format!("spec.steps[2] (text.tokenize).tokenizer: `{}`: not found", tokenizer.display())),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing was written");
}

/// Two documents, one a 2 MiB text that `text.chunk` (200 characters) cuts into about 10,000
/// chunks, and the manifest for them: `steps` after the download.
fn large_document_job(tmp: &Path, steps: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (docs, out) = (tmp.join("docs"), tmp.join("out"));
    std::fs::create_dir_all(&docs).expect("mkdir");
    let words = ["river ", "granite ", "lantern ", "orchard ", "photon "];
    let large: String = (0..300_000).map(|i| words[i % words.len()]).collect::<String>();
    assert!(large.len() > 2 << 20);
    write(&docs, "large.txt", large.as_bytes());
    write(&docs, "small.txt", b"A short note.");
    let spec = format!(
        "  source: {{files: {{uri: \"{}\"}}}}\n  steps:\n    - {{op: download, input: uri, output: bytes}}\n{steps}  sink: {{parquet: {{uri: \"{}\"}}}}\n  errorPolicy: {{onRowError: skip, maxErrorRatio: 0.5}}\n",
        docs.display(),
        out.display()
    );
    (write_manifest(tmp, "documents", &spec), out)
}

const TEXT_AND_CHUNKS: &str = "    - {op: document.text, input: bytes, output: text}\n    - {op: text.chunk, input: text, output: chunk, size: 200, overlap: 20}\n";

/// The large text's bytes and text are read by no step after `text.chunk`, so they are not copied
/// into each chunk (which took 40 GB and overflowed Arrow's offsets, failing the whole job): the
/// job finishes under a 256 MiB budget with every chunk.
#[test]
fn a_large_document_is_chunked_without_copying_it_into_every_chunk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let steps = format!("{TEXT_AND_CHUNKS}    - {{op: select, columns: [uri, text_page, chunk]}}\n");
    let (manifest, out) = large_document_job(tmp.path(), &steps);
    let result = run(&manifest, &["--memory-limit", "256MiB"]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));
    let batches = read_parquet_dir(&out);
    let uris = strings(&batches, "uri");
    let large_chunks = uris.iter().filter(|u| u.ends_with("large.txt")).count();
    assert!(large_chunks > 10_000, "chunks of the large text: {large_chunks}");
    assert_eq!(uris.iter().filter(|u| u.ends_with("small.txt")).count(), 1);
    assert_eq!(strings(&batches, "chunk").len(), uris.len(), "every row has its chunk");
}

/// When the sink writes every column, each chunk would carry the whole document twice (40 GB):
/// that document is a row error saying so and what to do, and every other row is written.
#[test]
fn a_document_that_would_be_copied_into_every_chunk_is_a_row_error_not_a_failed_job() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (manifest, out) = large_document_job(tmp.path(), TEXT_AND_CHUNKS);
    let result = run(&manifest, &["--memory-limit", "256MiB"]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));
    let uris = strings(&read_parquet_dir(&out), "uri");
    assert_eq!(uris.len(), 1, "{uris:?}");
    assert!(uris[0].ends_with("small.txt"));
    let errors = read_parquet_dir(&out.join("_errors"));
    let (refs, messages) = (strings(&errors, "row_ref"), strings(&errors, "message"));
    assert_eq!(refs.len(), 1, "{messages:?}");
    assert!(refs[0].ends_with("large.txt"));
    assert!(
        messages[0].contains("over the step's maxBytesPerInput of 256.0 MiB") && messages[0].contains("`select`"),
        "{messages:?}"
    );
    assert_eq!(strings(&errors, "step"), ["text.chunk"]);
}

/// `maxRowsPerInput` bounds the chunks one document may make: the large text's 10,000 chunks are a
/// row error naming the field, and the small one is written.
#[test]
fn a_document_making_more_chunks_than_max_rows_per_input_is_a_row_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let steps = "    - {op: document.text, input: bytes, output: text}\n    - {op: text.chunk, input: text, output: chunk, size: 200, overlap: 20, maxRowsPerInput: 1000}\n    - {op: select, columns: [uri, chunk]}\n";
    let (manifest, out) = large_document_job(tmp.path(), steps);
    let result = run(&manifest, &[]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));
    let uris = strings(&read_parquet_dir(&out), "uri");
    assert_eq!(uris.len(), 1, "{uris:?}");
    assert!(uris[0].ends_with("small.txt"));
    let errors = read_parquet_dir(&out.join("_errors"));
    let messages = strings(&errors, "message");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("over the step's maxRowsPerInput (1000)"), "{messages:?}");
}
