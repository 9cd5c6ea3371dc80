//! `document.text`: text out of documents, one row per page: `output` holds the page's text and
//! `<output>_page` its number (from 1); the other columns repeat.
//!
//! - PDF: one row per page, at most `maxPages` (the rest are cut, not failed); a page with no
//!   text layer (a scan) gives a null text. See [`pdf`] for what is read and what memory it takes.
//! - Plain text and Markdown: one row, page 1, the text as is (Markdown syntax is kept: it is
//!   readable text and chunkers use its structure).
//! - HTML: one row, page 1, tags stripped (see [`html`]).
//!
//! Bytes that are not UTF-8 are converted lossily (U+FFFD). A text with nothing but whitespace
//! gives a null text. A null input gives one row with a null text and a null page. Empty input,
//! and a PDF that is corrupt, truncated, encrypted with a password, or has a page whose content
//! does not decompress or parse, are row failures; the other rows go on.

pub mod html;
pub mod pdf;

use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::DataType;
use rayon::prelude::*;
use weir_core::repeat::{RowBound, repeat_rows};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::{DocumentText, DocumentType};

use crate::BuildError;

/// Default `maxPages`.
pub const DEFAULT_MAX_PAGES: u32 = 1000;

/// The runnable `document.text` step.
#[derive(Debug, Clone)]
pub struct ExtractText {
    pub input: String,
    pub output: String,
    pub document_type: DocumentType,
    pub max_pages: usize,
    pub bound: RowBound,
}

/// Builds `document.text`.
///
/// # Errors
/// Never for a validated config (`maxPages` 0 is read as 1).
pub fn build(config: &DocumentText) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(ExtractText {
        input: config.input.clone(),
        output: config.output.clone(),
        document_type: config.document_type.unwrap_or_default(),
        max_pages: config.max_pages.unwrap_or(DEFAULT_MAX_PAGES).max(1) as usize,
        bound: RowBound::new(None, config.max_bytes_per_input),
    })))
}

/// The pages of one document: each page's text, `None` where it has none.
pub type Pages = Vec<Option<String>>;

/// What `auto` reads `bytes` as: PDF by its `%PDF-` header, HTML by a leading `<!doctype html` or
/// `<html` (any case, after whitespace and a byte-order mark), otherwise plain text.
pub fn detect(bytes: &[u8]) -> DocumentType {
    if pdf::is_pdf(bytes) {
        return DocumentType::Pdf;
    }
    let start = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = &start[start.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(start.len())..];
    let head = &start[..start.len().min(14)];
    let starts = |prefix: &[u8]| head.len() >= prefix.len() && head[..prefix.len()].eq_ignore_ascii_case(prefix);
    if starts(b"<!doctype html") || starts(b"<html") { DocumentType::Html } else { DocumentType::Text }
}

/// Extracts the pages of one document read as `kind`.
///
/// # Errors
/// A message for the row: empty input, or a PDF that cannot be read (see [`pdf::pages`]).
pub fn extract(bytes: &[u8], kind: DocumentType, max_pages: usize) -> Result<Pages, String> {
    if bytes.is_empty() {
        return Err("empty input (0 bytes)".into());
    }
    let kind = if kind == DocumentType::Auto { detect(bytes) } else { kind };
    let text = |b: &[u8]| String::from_utf8_lossy(b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)).into_owned();
    let page = match kind {
        DocumentType::Pdf => return pdf::pages(bytes, max_pages),
        DocumentType::Html => html::to_text(&text(bytes)),
        DocumentType::Text | DocumentType::Markdown | DocumentType::Auto => text(bytes),
    };
    Ok(vec![(!page.trim().is_empty()).then_some(page)])
}

impl Kernel for ExtractText {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let rows = byte_rows(input, &self.input)?;
        let results: Vec<Option<Result<Pages, String>>> =
            rows.par_iter().map(|b| b.map(|b| extract(b, self.document_type, self.max_pages))).collect();
        let page_column = format!("{}_page", self.output);
        let (mut text, mut page) = (StringBuilder::new(), UInt32Builder::new());
        let mut parents = Vec::new();
        let mut failures = Vec::new();
        for (row, result) in results.into_iter().enumerate() {
            match result {
                None => {
                    text.append_null();
                    page.append_null();
                    parents.push(row as u32);
                }
                Some(Err(message)) => failures.push(RowFailure::new(row, message)),
                Some(Ok(pages)) => {
                    for (i, t) in pages.iter().enumerate() {
                        text.append_option(t.as_deref());
                        page.append_value(i as u32 + 1);
                        parents.push(row as u32);
                    }
                }
            }
        }
        let added: Vec<(String, ArrayRef)> =
            vec![(self.output.clone(), Arc::new(text.finish())), (page_column, Arc::new(page.finish()))];
        Ok(repeat_rows(input, &parents, added, &self.bound)?.into_output(failures))
    }
}

/// The rows of a binary or string column as bytes; `None` for nulls.
///
/// # Errors
/// [`StepError::Column`] when the column is missing or neither binary nor text.
pub fn byte_rows<'a>(batch: &'a RecordBatch, name: &str) -> Result<Vec<Option<&'a [u8]>>, StepError> {
    let col = weir_core::batch::column(batch, name)?;
    Ok(match col.data_type() {
        DataType::Binary => col.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => col.as_binary::<i64>().iter().collect(),
        DataType::BinaryView => col.as_binary_view().iter().collect(),
        DataType::Utf8 => col.as_string::<i32>().iter().map(|s| s.map(str::as_bytes)).collect(),
        DataType::LargeUtf8 => col.as_string::<i64>().iter().map(|s| s.map(str::as_bytes)).collect(),
        DataType::Utf8View => col.as_string_view().iter().map(|s| s.map(str::as_bytes)).collect(),
        other => return Err(StepError::column(name, format!("expected bytes or text, found {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BinaryArray, StringArray};
    use weir_testkit::docs::{PdfPage, encrypted_pdf, pdf};

    fn step(max_pages: usize) -> ExtractText {
        ExtractText {
            input: "bytes".into(),
            output: "text".into(),
            document_type: DocumentType::Auto,
            max_pages,
            bound: RowBound::default(),
        }
    }

    fn run(step: &ExtractText, docs: Vec<Option<&[u8]>>) -> StepOutput {
        let name: ArrayRef = Arc::new(StringArray::from_iter_values((0..docs.len()).map(|i| format!("doc{i}"))));
        let bytes: ArrayRef = Arc::new(BinaryArray::from(docs));
        let input = RecordBatch::try_from_iter([("name", name), ("bytes", bytes)]).expect("batch");
        step.apply(&input).expect("apply")
    }

    fn column<'a>(out: &'a StepOutput, name: &str) -> &'a ArrayRef {
        out.batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"))
    }

    #[test]
    fn auto_detects_pdf_html_and_text() {
        assert_eq!(detect(b"%PDF-1.7\n..."), DocumentType::Pdf);
        assert_eq!(detect(b"\xEF\xBB\xBF \n\t<!DOCTYPE HTML><p>x"), DocumentType::Html);
        assert_eq!(detect(b"  <Html lang=en>"), DocumentType::Html);
        assert_eq!(detect(b"<p>a fragment is text</p>"), DocumentType::Text);
        assert_eq!(detect(b"# Title\n\nbody"), DocumentType::Text);
    }

    #[test]
    fn pages_become_rows_and_failures_leave_the_rest() {
        let scanned = pdf(&[PdfPage::Text("first page"), PdfPage::Drawing, PdfPage::Text("third page")]);
        let good = pdf(&[PdfPage::Text("only page")]);
        let truncated = &good[..good.len() - 40];
        let html = b"<html><body><h1>Title</h1><p>Body &amp; more</p></body></html>";
        let docs: Vec<Option<&[u8]>> = vec![
            Some(&scanned),
            Some(b""),
            Some(truncated),
            Some(b"%PDF-1.4 garbage garbage\n%%EOF"),
            Some(html),
            None,
            Some(b"caf\xE9 latin-1 bytes"),
        ];
        let out = run(&step(1000), docs);
        let names: Vec<&str> = column(&out, "name").as_string::<i32>().iter().flatten().collect();
        assert_eq!(names, ["doc0", "doc0", "doc0", "doc4", "doc5", "doc6"]);
        let text: Vec<Option<&str>> = column(&out, "text").as_string::<i32>().iter().collect();
        assert_eq!(
            text,
            [
                Some("first page"),
                None,
                Some("third page"),
                Some("Title\n\nBody & more"),
                None,
                Some("caf\u{FFFD} latin-1 bytes")
            ]
        );
        let pages: Vec<Option<u32>> =
            column(&out, "text_page").as_primitive::<arrow_array::types::UInt32Type>().iter().collect();
        assert_eq!(pages, [Some(1), Some(2), Some(3), Some(1), None, Some(1)]);
        let failed: Vec<(usize, &str)> = out.failures.iter().map(|f| (f.row, f.message.as_str())).collect();
        assert_eq!(failed[0], (1, "empty input (0 bytes)"));
        assert_eq!(failed[1].0, 2);
        assert!(failed[1].1.starts_with("truncated PDF: no %%EOF marker"), "{failed:?}");
        assert_eq!(failed[2].0, 3);
        assert!(failed[2].1.starts_with("corrupt PDF: "), "{failed:?}");
        assert_eq!(failed.len(), 3);
    }

    #[test]
    fn a_damaged_page_fails_its_document_and_a_blank_page_stays_null_text() {
        use pdf::fixtures::{flate, pdf_with_contents, raw_flate};
        let damaged =
            pdf_with_contents(vec![Some(flate(b"BT /F1 12 Tf (kept) Tj ET")), Some(raw_flate(b"x\x9c\x00garbage"))]);
        let blank = pdf_with_contents(vec![Some(flate(b""))]);
        let good = pdf(&[PdfPage::Text("fine")]);
        let out = run(&step(10), vec![Some(&damaged), Some(&blank), Some(&good)]);
        let names: Vec<&str> = column(&out, "name").as_string::<i32>().iter().flatten().collect();
        assert_eq!(names, ["doc1", "doc2"]);
        let text: Vec<Option<&str>> = column(&out, "text").as_string::<i32>().iter().collect();
        assert_eq!(text, [None, Some("fine")]);
        assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
        assert_eq!(out.failures[0].row, 0);
        assert!(out.failures[0].message.starts_with("PDF page 2: content stream "), "{:?}", out.failures);
    }

    #[test]
    fn an_encrypted_pdf_is_a_row_failure_naming_encryption() {
        let locked = encrypted_pdf("secret");
        let out = run(&step(10), vec![Some(&locked)]);
        assert_eq!(out.batch.num_rows(), 0);
        assert!(out.failures[0].message.starts_with("encrypted PDF: "), "{:?}", out.failures);
    }

    #[test]
    fn a_ten_thousand_page_pdf_is_cut_at_max_pages_quickly() {
        let texts: Vec<String> = (1..=10_000).map(|i| format!("page {i}")).collect();
        let pages: Vec<PdfPage<'_>> = texts.iter().map(|t| PdfPage::Text(t)).collect();
        let big = pdf(&pages);
        let start = std::time::Instant::now();
        let out = run(&step(5), vec![Some(&big)]);
        let elapsed = start.elapsed();
        let text: Vec<&str> = column(&out, "text").as_string::<i32>().iter().flatten().collect();
        assert_eq!(text, ["page 1", "page 2", "page 3", "page 4", "page 5"]);
        assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
    }

    #[test]
    fn explicit_types_override_detection() {
        let html = b"<html><p>a &lt; b</p></html>";
        let as_text = extract(html, DocumentType::Markdown, 10).expect("markdown");
        assert_eq!(as_text, [Some(String::from_utf8_lossy(html).into_owned())]);
        assert_eq!(extract(b"<p>x</p>", DocumentType::Html, 10).expect("html"), [Some("x".to_string())]);
        let err = extract(b"plain", DocumentType::Pdf, 10).expect_err("not pdf");
        assert_eq!(err, "not a PDF: no %PDF- header in its first 5 bytes");
        assert_eq!(extract(b" \n ", DocumentType::Text, 10).expect("blank"), [None]);
    }
}
