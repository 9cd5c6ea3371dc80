//! Small, valid PDF files written byte by byte (correct cross-reference offsets), for document tests.
//!
//! Text is set in the standard Type 1 font Helvetica with `WinAnsiEncoding`, so Latin-1 characters
//! (`é`, `ü`) round-trip through a reader's font-encoding tables.

use std::fmt::Write as _;

/// One page of a generated PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdfPage<'a> {
    /// Text lines (split on `\n`), each moved down by one line with `Td`.
    Text(&'a str),
    /// A filled rectangle and no text, like a scanned page without a text layer.
    Drawing,
}

/// A PDF with `pages`, in order.
pub fn pdf(pages: &[PdfPage<'_>]) -> Vec<u8> {
    build(pages, None)
}

/// A PDF whose trailer names an `/Encrypt` dictionary (standard handler, RC4 40-bit) with a
/// non-empty user password, so it cannot be opened without one.
pub fn encrypted_pdf(text: &str) -> Vec<u8> {
    let o = "7a".repeat(32);
    let u = "c3".repeat(32);
    build(&[PdfPage::Text(text)], Some(format!("<< /Filter /Standard /V 1 /R 2 /O <{o}> /U <{u}> /P -44 >>")))
}

/// Writes the objects, the cross-reference table and the trailer.
fn build(pages: &[PdfPage<'_>], encrypt: Option<String>) -> Vec<u8> {
    let page_ids: Vec<usize> = (0..pages.len()).map(|i| 4 + 2 * i).collect();
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
    ];
    for (page, id) in pages.iter().zip(&page_ids) {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            id + 1
        ));
        let content = content_stream(*page);
        objects.push(format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()));
    }
    let encrypt_id = encrypt.map(|dict| {
        objects.push(dict);
        objects.len()
    });
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        let _ = writeln!(table, "{offset:010} 00000 n ");
    }
    let extra = match encrypt_id {
        Some(id) => format!(" /Encrypt {id} 0 R /ID [<{0}> <{0}>]", "ab".repeat(16)),
        None => String::new(),
    };
    let _ = write!(table, "trailer\n<< /Size {} /Root 1 0 R{extra} >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1);
    out.extend_from_slice(table.as_bytes());
    out
}

fn content_stream(page: PdfPage<'_>) -> String {
    match page {
        PdfPage::Drawing => "0.5 g 72 72 300 200 re f".to_string(),
        PdfPage::Text(text) => {
            let lines: Vec<String> = text.lines().map(|l| format!("({}) Tj", pdf_string(l))).collect();
            format!("BT /F1 12 Tf 72 720 Td 14 TL {} ET", lines.join(" 0 -14 Td "))
        }
    }
}

/// `text` as the body of a PDF literal string in WinAnsi: delimiters escaped, non-ASCII Latin-1
/// characters as octal escapes, anything else as `?`.
fn pdf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            '\u{a0}'..='\u{ff}' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xref_offsets_point_at_their_objects() {
        let bytes = pdf(&[PdfPage::Text("hello"), PdfPage::Drawing]);
        let xref_at = bytes.windows(6).rposition(|w| w == b"\nxref\n").expect("xref") + 1;
        let tail = std::str::from_utf8(&bytes[xref_at..]).expect("ascii tail");
        let start: usize = tail
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert_eq!(start, xref_at);
        assert!(tail.starts_with("xref\n0 8\n") && tail.ends_with("%%EOF\n"));
        for (i, line) in tail.lines().skip(3).take(7).enumerate() {
            let offset: usize = line[..10].parse().expect("offset");
            assert!(bytes[offset..].starts_with(format!("{} 0 obj", i + 1).as_bytes()), "object {}", i + 1);
        }
        assert!(bytes.windows(10).any(|w| w == b"(hello) Tj"));
    }

    #[test]
    fn strings_are_escaped_for_win_ansi() {
        assert_eq!(pdf_string("a(b)\\ café ✓"), "a\\(b\\)\\\\ caf\\351 ?");
    }
}
