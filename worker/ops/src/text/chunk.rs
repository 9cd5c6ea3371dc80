//! `text.chunk`: a recursive character splitter. Text is cut at the coarsest separator that makes
//! pieces fit (paragraphs, then lines, sentences, words, characters), and pieces are packed into
//! chunks of at most `size` characters, consecutive chunks sharing up to `overlap` characters.
//! Each chunk becomes a row: its text in `output`, its number in `<output>_index` and its start (a
//! character offset) in `<output>_start`; other columns repeat.

use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use weir_core::repeat::{RowBound, repeat_rows};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput};
use weir_crds::TextChunk;

use super::string_rows;
use crate::BuildError;

pub const DEFAULT_SIZE: usize = 2048;
pub const DEFAULT_OVERLAP: usize = 200;
/// Tried in order; the empty separator splits between characters.
const SEPARATORS: &[&str] = &["\n\n", "\n", ". ", " ", ""];

/// The runnable `text.chunk` step.
#[derive(Debug, Clone)]
pub struct ChunkText {
    pub input: String,
    pub output: String,
    pub size: usize,
    pub overlap: usize,
    pub bound: RowBound,
}

/// Builds `text.chunk`.
///
/// # Errors
/// When `overlap` is not smaller than `size`.
pub fn build(config: &TextChunk) -> Result<Arc<dyn Step>, BuildError> {
    let size = config.size.map_or(DEFAULT_SIZE, |s| s as usize).max(1);
    let overlap = config.overlap.map_or(DEFAULT_OVERLAP.min(size - 1), |o| o as usize);
    if overlap >= size {
        return Err(BuildError::new("overlap", format!("must be smaller than size ({size}), found {overlap}")));
    }
    Ok(Arc::new(ComputeStep(ChunkText {
        input: config.input.clone(),
        output: config.output.clone(),
        size,
        overlap,
        bound: RowBound::new(config.max_rows_per_input, config.max_bytes_per_input),
    })))
}

/// One chunk: its text and where it starts in the input, in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    pub start: usize,
}

/// Splits `text` into chunks of at most `size` characters sharing up to `overlap`.
pub fn chunk(text: &str, size: usize, overlap: usize) -> Vec<Chunk> {
    let mut pieces = Vec::new();
    split(text, 0, SEPARATORS, size, &mut pieces);
    pack(&pieces, size, overlap)
}

/// A piece of the text: `(start in chars, text)`.
type Piece<'a> = (usize, &'a str);

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Cuts `text` (starting at char `start`) into pieces of at most `size` chars, each separator kept
/// at the end of the piece before it.
fn split<'a>(text: &'a str, start: usize, seps: &[&str], size: usize, out: &mut Vec<Piece<'a>>) {
    if chars(text) <= size {
        if !text.is_empty() {
            out.push((start, text));
        }
        return;
    }
    let Some((i, sep)) = seps.iter().enumerate().find(|(_, s)| s.is_empty() || text.contains(**s)) else {
        out.push((start, text));
        return;
    };
    if sep.is_empty() {
        let mut offset = start;
        let all: Vec<char> = text.chars().collect();
        let mut byte = 0;
        for window in all.chunks(size) {
            let len: usize = window.iter().map(|c| c.len_utf8()).sum();
            out.push((offset, &text[byte..byte + len]));
            offset += window.len();
            byte += len;
        }
        return;
    }
    let mut offset = start;
    for piece in text.split_inclusive(*sep) {
        split(piece, offset, &seps[i + 1..], size, out);
        offset += chars(piece);
    }
}

/// Packs pieces into chunks of at most `size` chars, carrying up to `overlap` chars of trailing
/// pieces into the next chunk.
fn pack(pieces: &[Piece<'_>], size: usize, overlap: usize) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut window: std::collections::VecDeque<Piece<'_>> = std::collections::VecDeque::new();
    let mut len = 0;
    let emit = |window: &std::collections::VecDeque<Piece<'_>>, chunks: &mut Vec<Chunk>| {
        if let Some((start, _)) = window.front() {
            let text: String = window.iter().map(|(_, t)| *t).collect();
            chunks.push(Chunk { text, start: *start });
        }
    };
    for &(start, text) in pieces {
        let n = chars(text);
        if len + n > size && !window.is_empty() {
            emit(&window, &mut chunks);
            while len > overlap || (len + n > size && !window.is_empty()) {
                let Some((_, dropped)) = window.pop_front() else { break };
                len -= chars(dropped);
            }
        }
        window.push_back((start, text));
        len += n;
    }
    emit(&window, &mut chunks);
    chunks
}

impl Kernel for ChunkText {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let rows = string_rows(input, &self.input)?;
        let (mut text, mut index, mut start) = (StringBuilder::new(), UInt32Builder::new(), UInt32Builder::new());
        let mut parents = Vec::new();
        for (row, value) in rows.iter().enumerate() {
            for (i, c) in value.map(|v| chunk(v, self.size, self.overlap)).unwrap_or_default().into_iter().enumerate() {
                text.append_value(&c.text);
                index.append_value(i as u32);
                start.append_value(c.start as u32);
                parents.push(row as u32);
            }
        }
        let added: Vec<(String, ArrayRef)> = vec![
            (self.output.clone(), Arc::new(text.finish())),
            (format!("{}_index", self.output), Arc::new(index.finish())),
            (format!("{}_start", self.output), Arc::new(start.finish())),
        ];
        Ok(repeat_rows(input, &parents, added, &self.bound)?.into_output(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(chunk("hello world", 50, 10), vec![Chunk { text: "hello world".into(), start: 0 }]);
        assert!(chunk("", 50, 10).is_empty());
    }

    #[test]
    fn paragraphs_are_preferred_and_chunks_respect_size_and_overlap() {
        let text = format!(
            "{}\n\n{}\n\n{}",
            "a ".repeat(30).trim_end(),
            "b ".repeat(30).trim_end(),
            "c ".repeat(30).trim_end()
        );
        let chunks = chunk(&text, 70, 20);
        assert!(chunks.iter().all(|c| chars(&c.text) <= 70), "{chunks:?}");
        assert_eq!(chunks.len(), 3, "{chunks:?}");
        assert!(
            chunks[0].text.starts_with("a a") && chunks[1].text.starts_with("b b") && chunks[2].text.starts_with("c c")
        );
        for c in &chunks {
            assert_eq!(text.chars().skip(c.start).take(chars(&c.text)).collect::<String>(), c.text, "start offsets");
        }
    }

    #[test]
    fn words_overlap_between_consecutive_chunks() {
        let text: String = (0..200).map(|i| format!("w{i:03} ")).collect();
        let chunks = chunk(&text, 100, 30);
        assert!(chunks.len() > 5);
        for pair in chunks.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(chars(&a.text) <= 100 && chars(&b.text) <= 100);
            let shared = a.start + chars(&a.text) - b.start;
            assert!(shared > 0 && shared <= 30, "overlap {shared}: {a:?} {b:?}");
        }
        let covered: String = chunks.iter().fold(String::new(), |mut acc, c| {
            let skip = acc.chars().count() - c.start.min(acc.chars().count());
            acc.extend(c.text.chars().skip(skip));
            acc
        });
        assert_eq!(covered, text, "chunks cover the whole text");
    }

    #[test]
    fn each_chunk_becomes_a_row_and_the_other_columns_repeat() {
        use arrow_array::StringArray;
        use arrow_array::cast::AsArray;
        let doc: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        let body: ArrayRef = Arc::new(StringArray::from(vec![Some("one two three four"), None, Some("five")]));
        let input = RecordBatch::try_from_iter([("doc", doc), ("body", body)]).expect("batch");
        let step =
            ChunkText { input: "body".into(), output: "chunk".into(), size: 9, overlap: 0, bound: RowBound::default() };
        let out = step.apply(&input).expect("chunk").batch;
        let docs: Vec<&str> = out.column_by_name("doc").expect("doc").as_string::<i32>().iter().flatten().collect();
        assert_eq!(docs, ["a", "a", "a", "c"]);
        let texts: Vec<&str> =
            out.column_by_name("chunk").expect("chunk").as_string::<i32>().iter().flatten().collect();
        assert_eq!(texts, ["one two ", "three ", "four", "five"]);
        let index =
            out.column_by_name("chunk_index").expect("chunk_index").as_primitive::<arrow_array::types::UInt32Type>();
        assert_eq!(index.values().to_vec(), [0, 1, 2, 0], "a new document restarts the numbering");
    }

    #[test]
    fn a_long_word_is_cut_between_characters() {
        let chunks = chunk(&"é".repeat(25), 10, 0);
        assert_eq!(chunks.iter().map(|c| chars(&c.text)).collect::<Vec<_>>(), [10, 10, 5]);
        assert_eq!(chunks[2].start, 20);
    }
}
