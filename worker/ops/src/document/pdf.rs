//! PDF pages to text with `lopdf`: one string per page, in content-stream order.
//!
//! # Memory
//! `lopdf` parses the whole file's object graph at once, so a document costs a small multiple of
//! its size whatever `maxPages` says; streams stay compressed until a page's content is decoded.
//! Only the first `max_pages` pages are decoded, one at a time, each bounded by
//! [`PAGE_CONTENT_LIMIT`] decompressed bytes, so a 10,000-page file read with `maxPages: 5` costs
//! its parse plus five pages.
//!
//! # Text
//! Text comes from the text-showing operators (`Tj`, `TJ`, `'`, `"`) decoded with each font's
//! encoding (standard encodings, `/Differences`, `/ToUnicode` CMaps). A move to another baseline
//! starts a new line and a move along the line (or a wide `TJ` gap) a space; there is no layout
//! analysis (columns, tables), and text inside form XObjects is not read.
//!
//! # Damage
//! A page whose content stream is missing, does not decompress or does not parse to its end fails
//! the whole document (its row), naming the page and the cause; lopdf on its own would give such
//! a page the text read before the damage, or none, like a scan. A page that shows no text (a
//! scan, a drawing, an empty content stream, no content at all) is a null text, not a failure.
//!
//! So does a page that shows text in a font whose encoding does not load (see [`font_encoding`]),
//! in a font its resources do not give, or in an encoding lopdf cannot decode, naming the page
//! and the font: lopdf would decode such text with the standard encoding, into wrong letters or
//! noise, or drop it. A broken font the page shows no text in is no failure, and neither is a
//! glyph name lopdf does not know in `/Differences`: it decodes the font with the standard
//! encoding, and the text still decodes.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Document, Encoding, Object, ObjectId};

/// Most decompressed bytes of one page's content (or one font's encoding data).
pub const PAGE_CONTENT_LIMIT: usize = 64 << 20;
/// Most decompressed bytes of one object stream or cross-reference stream. lopdf inflates every
/// one while loading, before any page is read, up to 256 MiB each by default: ten such streams
/// in a 7 KB file took 25 s. Real ones hold a few hundred objects (KiBs; a million-object
/// cross-reference stream is about 7 MiB).
pub const OBJECT_STREAM_LIMIT: usize = 16 << 20;
/// The header must start within this many bytes, and `%%EOF` end within this many of the end.
const MARKER_WINDOW: usize = 1024;
/// A `TJ` adjustment more negative than this (thousandths of an em) is read as a word gap.
const TJ_SPACE: f32 = -200.0;
/// Baselines further apart than this (text-space units) are different lines.
const SAME_LINE: f32 = 1.0;

/// Whether `bytes` carry a PDF header (`%PDF-` within the first 1024 bytes).
pub fn is_pdf(bytes: &[u8]) -> bool {
    find(&bytes[..bytes.len().min(MARKER_WINDOW)], b"%PDF-").is_some()
}

/// The text of each of the first `max_pages` pages; `None` for a page without text (a scan).
///
/// # Errors
/// A message saying what is wrong: not a PDF, truncated (no `%%EOF` in its last 1024 bytes),
/// corrupt, encrypted with a password, no pages, a page over [`PAGE_CONTENT_LIMIT`], a page whose
/// content does not decompress or parse or whose text is in a font that cannot decode it
/// (`PDF page N: ...`), or a parser panic (caught, never propagated; the panic hook still prints
/// it to stderr).
pub fn pages(bytes: &[u8], max_pages: usize) -> Result<Vec<Option<String>>, String> {
    let n = bytes.len();
    if !is_pdf(bytes) {
        return Err(format!("not a PDF: no %PDF- header in its first {} bytes", n.min(MARKER_WINDOW)));
    }
    if find(&bytes[n.saturating_sub(MARKER_WINDOW)..], b"%%EOF").is_none() {
        return Err(format!("truncated PDF: no %%EOF marker at the end of its {n} bytes"));
    }
    catch_unwind(AssertUnwindSafe(|| read(bytes, max_pages))).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        Err(format!("corrupt PDF: the parser panicked: {what}"))
    })
}

fn read(bytes: &[u8], max_pages: usize) -> Result<Vec<Option<String>>, String> {
    let options = lopdf::LoadOptions::with_max_decompressed_size(OBJECT_STREAM_LIMIT);
    let doc = Document::load_mem_with_options(bytes, options).map_err(|e| match e {
        lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword | lopdf::Error::UnsupportedSecurityHandler(_) => {
            format!("encrypted PDF: cannot decrypt: {}", chain(&e))
        }
        e => format!("corrupt PDF: {}", chain(&e)),
    })?;
    // lopdf removes /Encrypt once it has decrypted the file with the empty user password.
    if doc.trailer.has(b"Encrypt") {
        return Err("encrypted PDF: a password is needed to open it (only an empty user password is tried)".into());
    }
    let ids: Vec<ObjectId> = doc.page_iter().take(max_pages).collect();
    if ids.is_empty() {
        return Err("corrupt PDF: no pages found".into());
    }
    ids.iter().enumerate().map(|(i, &id)| page_text(&doc, id).map_err(|e| format!("PDF page {}: {e}", i + 1))).collect()
}

/// The text of one page, `None` when it shows none (a scan, a drawing, an empty page).
///
/// # Errors
/// A message when the page's content cannot be read (see [`page_content`]) or does not parse to
/// its end, or when it shows text in a font that cannot decode it (see [`Fonts::select`]): a
/// damaged page is a failure, never a page that merely shows no text.
fn page_text(doc: &Document, page: ObjectId) -> Result<Option<String>, String> {
    let fonts = Fonts::of_page(doc, page);
    let mut content = page_content(doc, page)?;
    content.extend_from_slice(END_OF_CONTENT);
    let mut text = PageText::default();
    let mut parsed = 0;
    for op in Content::decode_iter(&content) {
        let Ok(op) = op else { break };
        if op.operator == END_OPERATOR {
            return Ok(text.finish());
        }
        text.apply(&op, &fonts)?;
        parsed += 1;
    }
    Err(format!("content cannot be parsed after its first {parsed} operations"))
}

/// The operator of [`END_OF_CONTENT`].
const END_OPERATOR: &str = "weirEndOfContent";
/// Appended to a page's content: lopdf's operation iterator ends quietly where its grammar stops
/// matching, as it does at the end, so only reaching this operator proves that all of it parsed.
const END_OF_CONTENT: &[u8] = b"\nweirEndOfContent\n";

/// A page's content streams, decompressed and joined by newlines.
///
/// # Errors
/// A message naming the stream when one is missing, is not a stream, or fails to decompress
/// (including a FlateDecode stream lopdf would quietly cut short, see [`check_flate`]), or when
/// the page's content exceeds [`PAGE_CONTENT_LIMIT`].
fn page_content(doc: &Document, page: ObjectId) -> Result<Vec<u8>, String> {
    let mut content = Vec::new();
    for id in doc.get_page_contents(page) {
        let name = format!("content stream {} {} R", id.0, id.1);
        let stream = doc.get_object(id).and_then(Object::as_stream).map_err(|e| format!("{name}: {}", chain(&e)))?;
        let data = decompress(stream, &name, PAGE_CONTENT_LIMIT.saturating_sub(content.len()))?;
        content.extend_from_slice(&data);
        content.push(b'\n');
    }
    Ok(content)
}

/// The data of `stream` (called `name` in messages), at most `limit` bytes once decompressed.
///
/// # Errors
/// A message naming the stream when it fails to decompress, is over `limit`, or is a FlateDecode
/// stream lopdf would quietly cut short (see [`check_flate`]).
fn decompress(stream: &lopdf::Stream, name: &str, limit: usize) -> Result<Vec<u8>, String> {
    let data = stream
        .decompressed_content_with_limit(limit)
        .map_err(|e| format!("{name} cannot be decompressed: {}", decompress_cause(&e)))?;
    check_flate(stream).map_err(|cause| format!("{name} cannot be decompressed (FlateDecode): {cause}"))?;
    Ok(data)
}

/// A page's fonts by resource name, each with the encoding its text decodes with or the message
/// saying why it has none.
struct Fonts<'a> {
    fonts: BTreeMap<Vec<u8>, Result<Encoding<'a>, String>>,
    /// Why the page's resources could not be read, when they could not.
    unreadable: Option<String>,
}

/// A font selected by `Tf`: its resource name and its encoding.
type Font<'a> = (&'a [u8], &'a Encoding<'a>);

impl<'a> Fonts<'a> {
    /// Loads every font of `page`'s resources. A font that fails to load is kept with its error,
    /// reported only if the page shows text in it: resources are often shared by all pages.
    fn of_page(doc: &'a Document, page: ObjectId) -> Fonts<'a> {
        let (fonts, unreadable) = match doc.get_page_fonts(page) {
            Ok(fonts) => (fonts, None),
            Err(e) => (BTreeMap::new(), Some(chain(&e))),
        };
        let fonts = fonts
            .into_iter()
            .map(|(name, font)| {
                let encoding = font_encoding(doc, font).map_err(|cause| format!("font /{}: {cause}", lossy(&name)));
                (name, encoding)
            })
            .collect();
        Fonts { fonts, unreadable }
    }

    /// The font `Tf` names `name`.
    ///
    /// # Errors
    /// Why text shown in it cannot be decoded: its encoding does not load, or the page's resources
    /// give no font by that name.
    fn select(&self, name: &[u8]) -> Result<Font<'_>, String> {
        match self.fonts.get_key_value(name) {
            Some((name, Ok(encoding))) => Ok((name, encoding)),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(match &self.unreadable {
                Some(cause) => {
                    format!("text is shown in font /{}, but the page's resources cannot be read: {cause}", lossy(name))
                }
                None => format!(
                    "text is shown in font /{}, and the page's resources give no font by that name",
                    lossy(name)
                ),
            }),
        }
    }
}

/// The encoding `font`'s text decodes with.
///
/// lopdf loads an encoding it cannot read as the standard encoding, quietly, which decodes the
/// text into wrong letters (two-byte codes into noise); so what it would read is checked first,
/// and damage there is an error: a dictionary that is not a font, an `/Encoding` that is missing,
/// of the wrong type or with a malformed `/Differences`, and a `/ToUnicode` CMap the encoding
/// relies on (`Identity-H`/`-V`, or no `/Encoding`) that is missing, is not a stream, does not
/// decompress or does not parse. A glyph name lopdf does not know in `/Differences` is left to its
/// fallback: the font is not damaged, and its text still decodes.
///
/// # Errors
/// The damage, naming the entry (`/ToUnicode 7 0 R cannot be decompressed ...`).
fn font_encoding<'a>(doc: &'a Document, font: &'a Dictionary) -> Result<Encoding<'a>, String> {
    if !font.has_type(b"Font") {
        let found = font.get(b"Type").and_then(Object::as_name).map_or("none".into(), |t| format!("/{}", lossy(t)));
        return Err(format!("not a font dictionary (its /Type is {found}, not /Font)"));
    }
    let identity = match font.get(b"Encoding") {
        Ok(encoding) => check_encoding(doc, encoding)?,
        Err(_) => None,
    };
    // lopdf reads `/ToUnicode` only for an Identity encoding or when there is no `/Encoding`.
    let to_unicode = font.get(b"ToUnicode").ok();
    let reads_to_unicode = match (identity, to_unicode) {
        (Some(name), None) => {
            return Err(format!(
                "its encoding /{} gives no text without a /ToUnicode CMap, and it has none",
                lossy(name)
            ));
        }
        (Some(_), object) => object,
        (None, object) if !font.has(b"Encoding") => object,
        (None, _) => None,
    };
    if let Some(object) = reads_to_unicode {
        check_to_unicode(doc, object)?;
    }
    let encoding = font.get_font_encoding_with_limit(doc, PAGE_CONTENT_LIMIT).map_err(|e| chain(&e))?;
    match reads_to_unicode {
        Some(object) if !matches!(encoding, Encoding::UnicodeMapEncoding(_)) => {
            Err(format!("{} cannot be parsed as a CMap", entry_name("ToUnicode", object)))
        }
        _ => Ok(encoding),
    }
}

/// Checks a font's `/Encoding` as lopdf reads it, returning its name when it is `Identity-H` or
/// `Identity-V` (whose codes decode through the font's `/ToUnicode`).
///
/// # Errors
/// That it is missing, of the wrong type, or has a malformed `/Differences`.
fn check_encoding<'a>(doc: &'a Document, object: &'a Object) -> Result<Option<&'a [u8]>, String> {
    let name = entry_name("Encoding", object);
    let (_, encoding) = doc.dereference(object).map_err(|e| format!("{name}: {}", chain(&e)))?;
    match encoding {
        Object::Name(n) if matches!(n.as_slice(), b"Identity-H" | b"Identity-V") => Ok(Some(n)),
        Object::Name(_) => Ok(None),
        Object::Dictionary(dict) => check_differences(dict).map(|()| None).map_err(|cause| format!("{name}: {cause}")),
        other => Err(format!("{name} is of type {}, not a name or a dictionary", other.enum_variant())),
    }
}

/// Checks an encoding dictionary's `/Type` and `/Differences` as lopdf reads them (it does not
/// follow a reference to the array).
fn check_differences(dict: &Dictionary) -> Result<(), String> {
    if let Ok(other) = dict.get(b"Type").and_then(Object::as_name)
        && other != b"Encoding"
    {
        return Err(format!("its /Type is /{}, not /Encoding", lossy(other)));
    }
    let Ok(differences) = dict.get(b"Differences") else { return Ok(()) };
    let Object::Array(items) = differences else {
        return Err(format!("/Differences is of type {}, not an array", differences.enum_variant()));
    };
    for item in items {
        match item {
            Object::Integer(code) if !(0..=255).contains(code) => {
                return Err(format!("/Differences has the code {code}, outside 0 to 255"));
            }
            Object::Integer(_) | Object::Name(_) => {}
            other => return Err(format!("/Differences holds a {}, not a code or a glyph name", other.enum_variant())),
        }
    }
    Ok(())
}

/// Checks that a font's `/ToUnicode` is a stream whose data decompresses whole.
fn check_to_unicode(doc: &Document, object: &Object) -> Result<(), String> {
    let name = entry_name("ToUnicode", object);
    let (_, target) = doc.dereference(object).map_err(|e| format!("{name}: {}", chain(&e)))?;
    let stream = target.as_stream().map_err(|e| format!("{name}: {}", chain(&e)))?;
    decompress(stream, &name, PAGE_CONTENT_LIMIT).map(drop)
}

/// `/Key 7 0 R` for an entry that refers to its value, `/Key` for one that holds it.
fn entry_name(key: &str, object: &Object) -> String {
    match object {
        Object::Reference((number, generation)) => format!("/{key} {number} {generation} R"),
        _ => format!("/{key}"),
    }
}

/// Why `bytes` shown in `font` do not decode: the one kind of encoding lopdf cannot decode is a
/// CMap it only knows by name (`/UniJIS-UCS2-H`).
fn undecodable((name, encoding): Font<'_>, error: &lopdf::Error) -> String {
    let named = match encoding {
        Encoding::SimpleEncoding(cmap) => Some(*cmap),
        Encoding::Differences(differences) => match &*differences.base {
            Encoding::SimpleEncoding(cmap) => Some(*cmap),
            _ => None,
        },
        _ => None,
    };
    match named {
        Some(cmap) => format!("font /{}: its encoding /{} is not supported", lossy(name), lossy(cmap)),
        None => format!("font /{}: its text cannot be decoded: {}", lossy(name), chain(error)),
    }
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A decompression error's cause: lopdf's own text ("couldn't decompress stream") repeats what
/// the message built from it already says, so only its source is given.
fn decompress_cause(error: &lopdf::Error) -> String {
    match error {
        lopdf::Error::Decompress(cause) => cause.to_string(),
        other => chain(other),
    }
}

/// Checks that a stream whose first filter is FlateDecode holds a whole deflate stream. lopdf
/// logs a corrupt one and returns what it inflated before the damage (or nothing), which would
/// read as a short or empty page. Like lopdf's fallback, the two zlib header bytes are skipped and
/// the Adler-32 checksum is not checked; filters after the first are left to lopdf. The data is
/// inflated into a small scratch buffer and dropped, so the check costs time, not memory.
///
/// # Errors
/// That the deflate data is corrupt (with the inflater's reason where it gives one), or that it
/// ends before the deflate stream does.
fn check_flate(stream: &lopdf::Stream) -> Result<(), String> {
    let flate_first = stream.filters().is_ok_and(|f| f.first() == Some(&&b"FlateDecode"[..]));
    if !flate_first || stream.content.is_empty() {
        return Ok(());
    }
    let data = stream.content.get(2..).unwrap_or_default();
    let mut inflater = flate2::Decompress::new(false);
    let mut scratch = vec![0; 64 << 10];
    loop {
        let (read, written) = (inflater.total_in(), inflater.total_out());
        let rest = data.get(read as usize..).unwrap_or_default();
        let status = inflater.decompress(rest, &mut scratch, flate2::FlushDecompress::None).map_err(|e| {
            e.message().map_or_else(|| "corrupt deflate data".to_string(), |m| format!("corrupt deflate data ({m})"))
        })?;
        if status == flate2::Status::StreamEnd {
            return Ok(());
        }
        if (inflater.total_in(), inflater.total_out()) == (read, written) {
            return Err(format!("the data ends before the compressed stream does ({} bytes)", stream.content.len()));
        }
    }
}

/// A text matrix `[a b c d e f]`.
type Matrix = [f32; 6];
const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// Accumulates a page's text, tracking the text line matrix to place line breaks and spaces.
struct PageText<'a> {
    text: String,
    /// The font `Tf` selected, or why text shown in it cannot be decoded.
    font: Option<Result<Font<'a>, String>>,
    line: Matrix,
    leading: f32,
    /// Baseline of the last text shown.
    shown_y: Option<f32>,
    /// The position moved (or a line break was asked for) since text was last shown.
    moved: bool,
    next_line: bool,
}

impl Default for PageText<'_> {
    fn default() -> Self {
        Self {
            text: String::new(),
            font: None,
            line: IDENTITY,
            leading: 0.0,
            shown_y: None,
            moved: false,
            next_line: false,
        }
    }
}

impl<'a> PageText<'a> {
    /// Applies one operation of the page's content.
    ///
    /// # Errors
    /// That text is shown in a font that cannot decode it (see [`PageText::show`]).
    fn apply(&mut self, op: &Operation, fonts: &'a Fonts<'a>) -> Result<(), String> {
        let num = |i: usize| op.operands.get(i).and_then(|o| o.as_float().ok()).unwrap_or(0.0);
        match op.operator.as_str() {
            "BT" => self.set_line(IDENTITY),
            "Tf" => self.font = op.operands.first().and_then(|o| o.as_name().ok()).map(|n| fonts.select(n)),
            "TL" => self.leading = num(0),
            "Td" => self.translate(num(0), num(1)),
            "TD" => {
                self.leading = -num(1);
                self.translate(num(0), num(1));
            }
            "Tm" => self.set_line([num(0), num(1), num(2), num(3), num(4), num(5)]),
            "T*" => self.next_line(),
            "Tj" | "TJ" => return self.show(op.operands.first()),
            "'" => {
                self.next_line();
                return self.show(op.operands.first());
            }
            "\"" => {
                self.next_line();
                return self.show(op.operands.get(2));
            }
            _ => {}
        }
        Ok(())
    }

    fn set_line(&mut self, m: Matrix) {
        self.line = m;
        self.moved = true;
    }

    fn translate(&mut self, tx: f32, ty: f32) {
        let m = self.line;
        self.set_line([m[0], m[1], m[2], m[3], tx * m[0] + ty * m[2] + m[4], tx * m[1] + ty * m[3] + m[5]]);
    }

    fn next_line(&mut self) {
        self.translate(0.0, -self.leading);
        self.next_line = true;
    }

    /// Shows a string or a `TJ` array, separated from the text before by what the move implies.
    ///
    /// # Errors
    /// When it shows text (any bytes) and no font is selected, the selected font failed to load or
    /// is missing, or its encoding cannot decode the bytes: the text would be lost or wrong.
    fn show(&mut self, operand: Option<&Object>) -> Result<(), String> {
        let font = match &self.font {
            Some(Ok(font)) => *font,
            _ if !shows_text(operand) => return Ok(()),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err("text is shown before any font is selected (Tf)".into()),
        };
        let y = self.line[5];
        if !self.text.is_empty() {
            let new_line = self.next_line || self.shown_y.is_some_and(|last| (last - y).abs() > SAME_LINE);
            if new_line {
                self.break_line();
            } else if self.moved {
                self.space();
            }
        }
        let decode =
            |bytes: &[u8], out: &mut String| font.1.write_to_string(bytes, out).map_err(|e| undecodable(font, &e));
        match operand {
            Some(Object::String(bytes, _)) => decode(bytes, &mut self.text)?,
            Some(Object::Array(items)) => {
                for item in items {
                    match item {
                        Object::String(bytes, _) => decode(bytes, &mut self.text)?,
                        other if other.as_float().is_ok_and(|n| n < TJ_SPACE) => self.space(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        self.shown_y = Some(y);
        self.moved = false;
        self.next_line = false;
        Ok(())
    }

    fn space(&mut self) {
        if !self.text.ends_with(char::is_whitespace) {
            self.text.push(' ');
        }
    }

    fn break_line(&mut self) {
        let trimmed = self.text.trim_end_matches([' ', '\t']).len();
        self.text.truncate(trimmed);
        self.text.push('\n');
    }

    fn finish(self) -> Option<String> {
        let text = self.text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }
}

/// Whether a text-showing operand holds any bytes to show.
fn shows_text(operand: Option<&Object>) -> bool {
    match operand {
        Some(Object::String(bytes, _)) => !bytes.is_empty(),
        Some(Object::Array(items)) => {
            items.iter().any(|item| matches!(item, Object::String(bytes, _) if !bytes.is_empty()))
        }
        _ => false,
    }
}

/// `error` and its sources, joined by `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// PDFs whose page content streams are given as is, for tests of damaged content.
#[cfg(test)]
pub(crate) mod fixtures {
    use lopdf::{Document, Object, Stream, dictionary};

    /// `doc` with `kids` as the pages of `pages_id` and a catalog, written out.
    pub fn save_with_pages(mut doc: Document, pages_id: lopdf::ObjectId, kids: Vec<Object>) -> Vec<u8> {
        let count = kids.len() as i64;
        doc.objects.insert(pages_id, dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }.into());
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        let mut out = Vec::new();
        doc.save_to(&mut out).expect("write PDF");
        out
    }

    /// A content stream of `content` compressed with FlateDecode (zlib).
    pub fn flate(content: &[u8]) -> Stream {
        use std::io::Write as _;
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(content).expect("compress into memory");
        raw_flate(&encoder.finish().expect("compress into memory"))
    }

    /// A FlateDecode content stream holding `bytes` as its compressed data.
    pub fn raw_flate(bytes: &[u8]) -> Stream {
        Stream::new(dictionary! { "Filter" => "FlateDecode" }, bytes.to_vec())
    }

    /// A PDF with one page per entry: `Some(stream)` as its content, `None` for no `/Contents`.
    /// Text is set in Helvetica as `/F1`.
    pub fn pdf_with_contents(pages: Vec<Option<Stream>>) -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
        });
        let mut kids: Vec<Object> = Vec::new();
        for content in pages {
            let mut page = dictionary! {
                "Type" => "Page", "Parent" => pages_id, "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
            };
            if let Some(stream) = content {
                page.set("Contents", doc.add_object(stream));
            }
            kids.push(doc.add_object(page).into());
        }
        save_with_pages(doc, pages_id, kids)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{flate, pdf_with_contents, raw_flate, save_with_pages};
    use super::*;
    use lopdf::{Stream, dictionary};
    use weir_testkit::docs::{PdfPage, encrypted_pdf, pdf};

    const HELLO: &[u8] = b"BT /F1 12 Tf 72 720 Td (hello) Tj ET";

    #[test]
    fn compressed_pages_read_and_empty_ones_stay_null_text() {
        let bytes = pdf_with_contents(vec![Some(flate(HELLO)), Some(flate(b"")), None, Some(raw_flate(b""))]);
        assert_eq!(pages(&bytes, 10), Ok(vec![Some("hello".to_string()), None, None, None]));
    }

    #[test]
    fn a_corrupt_flate_stream_fails_naming_its_page_and_cause() {
        let garbage = raw_flate(b"\x78\x9c\xff\xfe\xfd garbage, not deflate data at all");
        let bytes = pdf_with_contents(vec![Some(flate(HELLO)), Some(garbage)]);
        let err = pages(&bytes, 10).expect_err("corrupt stream");
        assert!(err.starts_with("PDF page 2: content stream "), "{err}");
        assert!(err.contains(" cannot be decompressed (FlateDecode): corrupt deflate data"), "{err}");
        for word in ["decompress", "deflate", "corrupt", "FlateDecode"] {
            assert_eq!(err.matches(word).count(), 1, "{word} in {err}");
        }
    }

    #[test]
    fn a_flate_stream_cut_short_fails_instead_of_giving_its_first_half() {
        let text: Vec<u8> =
            (0..400).flat_map(|i| format!("BT /F1 12 Tf 72 {i} Td (line {i}) Tj ET\n").into_bytes()).collect();
        let whole = flate(&text);
        let cut = raw_flate(&whole.content[..whole.content.len() / 2]);
        let err = pages(&pdf_with_contents(vec![Some(cut)]), 10).expect_err("cut stream");
        assert!(err.starts_with("PDF page 1: content stream "), "{err}");
        assert!(
            err.ends_with(&format!(
                "the data ends before the compressed stream does ({} bytes)",
                whole.content.len() / 2
            )),
            "{err}"
        );
    }

    #[test]
    fn content_that_stops_parsing_fails_its_page() {
        let damaged = Stream::new(dictionary! {}, b"BT /F1 12 Tf (hello) Tj ET ) ] >> (open".to_vec());
        let err = pages(&pdf_with_contents(vec![Some(flate(HELLO)), Some(damaged)]), 10).expect_err("damaged");
        assert_eq!(err, "PDF page 2: content cannot be parsed after its first 4 operations");
    }

    #[test]
    fn a_missing_content_stream_fails_its_page() {
        let mut bytes = pdf_with_contents(vec![Some(flate(HELLO))]);
        let mut doc = Document::load_mem(&bytes).expect("load");
        let page = doc.page_iter().next().expect("page");
        doc.get_dictionary_mut(page).expect("page dict").set("Contents", (99, 0));
        bytes.clear();
        doc.save_to(&mut bytes).expect("save");
        assert_eq!(pages(&bytes, 10), Err("PDF page 1: content stream 99 0 R: object ID 99 0 not found".to_string()));
    }

    #[test]
    fn each_page_gives_its_lines_in_order() {
        let bytes = pdf(&[PdfPage::Text("Hello page one\nsecond line"), PdfPage::Text("Café (two) \\ ok")]);
        let pages = pages(&bytes, 1000).expect("pages");
        assert_eq!(pages, [Some("Hello page one\nsecond line".to_string()), Some("Café (two) \\ ok".to_string())]);
    }

    #[test]
    fn a_page_without_text_is_none_and_max_pages_cuts() {
        let bytes = pdf(&[PdfPage::Text("a"), PdfPage::Drawing, PdfPage::Text("c")]);
        assert_eq!(pages(&bytes, 1000).expect("pages"), [Some("a".to_string()), None, Some("c".to_string())]);
        assert_eq!(pages(&bytes, 1).expect("pages"), [Some("a".to_string())]);
    }

    #[test]
    fn damaged_files_get_precise_messages() {
        let bytes = pdf(&[PdfPage::Text("hello")]);
        let cut = pages(&bytes[..bytes.len() / 2], 10).expect_err("truncated");
        assert_eq!(cut, format!("truncated PDF: no %%EOF marker at the end of its {} bytes", bytes.len() / 2));
        assert_eq!(pages(b"GIF89a....", 10).expect_err("not pdf"), "not a PDF: no %PDF- header in its first 10 bytes");
        let garbage = b"%PDF-1.7\n\x00\x01garbage that is no object at all\n%%EOF\n";
        let err = pages(garbage, 10).expect_err("garbage");
        assert!(err.starts_with("corrupt PDF: "), "{err}");
    }

    #[test]
    fn an_encrypted_file_says_it_needs_a_password() {
        let err = pages(&encrypted_pdf("secret"), 10).expect_err("encrypted");
        assert!(err.starts_with("encrypted PDF: "), "{err}");
    }

    #[test]
    fn tj_gaps_and_baseline_moves_separate_words_and_lines() {
        let mut text = PageText::default();
        let fonts = Fonts {
            fonts: [(b"F1".to_vec(), Ok(Encoding::SimpleEncoding(b"WinAnsiEncoding")))].into_iter().collect(),
            unreadable: None,
        };
        let op = |name: &str, operands: Vec<Object>| Operation::new(name, operands);
        let s = |t: &str| Object::string_literal(t);
        for o in [
            op("BT", vec![]),
            op("Tf", vec![Object::Name(b"F1".to_vec()), 12.into()]),
            op("Tm", vec![1.into(), 0.into(), 0.into(), 1.into(), 72.into(), 700.into()]),
            op("TJ", vec![Object::Array(vec![s("Hel"), (-20).into(), s("lo"), (-300).into(), s("world")])]),
            op("Td", vec![100.into(), 0.into()]),
            op("Tj", vec![s("again")]),
            op("Tm", vec![1.into(), 0.into(), 0.into(), 1.into(), 72.into(), 680.into()]),
            op("Tj", vec![s("next")]),
            op("ET", vec![]),
        ] {
            text.apply(&o, &fonts).expect("decodes");
        }
        assert_eq!(text.finish().as_deref(), Some("Hello world again\nnext"));
    }

    /// A PDF whose pages show `contents` (uncompressed), all with the font resources `fonts`
    /// makes: `/F1` is Helvetica, the rest what a test breaks.
    fn pdf_with_fonts(contents: &[&[u8]], fonts: impl FnOnce(&mut Document) -> Vec<(&'static str, Object)>) -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let helvetica = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
        });
        let mut resources = dictionary! { "F1" => helvetica };
        for (name, font) in fonts(&mut doc) {
            let id = doc.add_object(font);
            resources.set(name, id);
        }
        let resources = doc.add_object(dictionary! { "Font" => resources });
        let kids: Vec<Object> = contents
            .iter()
            .map(|content| {
                let contents = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
                let page = dictionary! {
                    "Type" => "Page", "Parent" => pages_id, "Resources" => resources, "Contents" => contents,
                    "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
                };
                doc.add_object(page).into()
            })
            .collect();
        save_with_pages(doc, pages_id, kids)
    }

    /// A CMap mapping the two-byte codes 1 and 2 to `h` and `i`.
    const CMAP: &[u8] = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
/CMapName /Weir-Test def
1 begincodespacerange <0000> <FFFF> endcodespacerange
2 beginbfchar <0001> <0068> <0002> <0069> endbfchar
endcmap CMapName currentdict /CMap defineresource pop end end";

    /// A Type0 font with `encoding` and, when given, the `/ToUnicode` stream `to_unicode`.
    fn type0(doc: &mut Document, encoding: Object, to_unicode: Option<Stream>) -> Object {
        let mut font = dictionary! {
            "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "WeirTest", "Encoding" => encoding,
        };
        if let Some(stream) = to_unicode {
            font.set("ToUnicode", doc.add_object(stream));
        }
        font.into()
    }

    const HELLO_THEN_HI: &[u8] = b"BT /F1 12 Tf 72 720 Td (hello) Tj /F2 12 Tf 0 -20 Td <00010002> Tj ET";

    #[test]
    fn a_font_with_a_to_unicode_cmap_decodes_beside_a_standard_one() {
        let bytes = pdf_with_fonts(&[HELLO_THEN_HI], |doc| {
            vec![("F2", type0(doc, Object::Name(b"Identity-H".to_vec()), Some(flate(CMAP))))]
        });
        assert_eq!(pages(&bytes, 10), Ok(vec![Some("hello\nhi".to_string())]));
    }

    #[test]
    fn text_in_a_font_whose_to_unicode_is_corrupt_fails_naming_page_and_font() {
        let corrupt = raw_flate(b"\x78\x9c\xff\xfe\xfd garbage, not deflate data at all");
        let bytes = pdf_with_fonts(&[HELLO, HELLO_THEN_HI], |doc| {
            vec![("F2", type0(doc, Object::Name(b"Identity-H".to_vec()), Some(corrupt)))]
        });
        let err = pages(&bytes, 10).expect_err("corrupt ToUnicode");
        assert!(err.starts_with("PDF page 2: font /F2: /ToUnicode "), "{err}");
        assert!(err.contains(" R cannot be decompressed (FlateDecode): corrupt deflate data"), "{err}");
        for word in ["font", "ToUnicode", "decompress", "deflate", "corrupt", "FlateDecode"] {
            assert_eq!(err.matches(word).count(), 1, "{word} in {err}");
        }
    }

    #[test]
    fn text_in_a_font_whose_encoding_object_is_missing_fails_naming_page_and_font() {
        let bytes = pdf_with_fonts(&[HELLO_THEN_HI], |doc| {
            vec![("F2", type0(doc, Object::Reference((99, 0)), Some(flate(CMAP))))]
        });
        assert_eq!(pages(&bytes, 10), Err("PDF page 1: font /F2: /Encoding 99 0 R: object ID 99 0 not found".into()));
    }

    #[test]
    fn an_encoding_of_the_wrong_type_or_with_bad_differences_fails() {
        let show_f2 = b"BT /F2 12 Tf 72 720 Td (AB) Tj ET";
        let simple = |encoding: Object| {
            let font = dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Times-Roman", "Encoding" => encoding };
            pdf_with_fonts(&[show_f2], |_| vec![("F2", font.into())])
        };
        let differences = |items: Vec<Object>| Object::Dictionary(dictionary! { "Differences" => items });
        assert_eq!(
            pages(&simple(Object::Integer(7)), 10),
            Err("PDF page 1: font /F2: /Encoding is of type Integer, not a name or a dictionary".into())
        );
        assert_eq!(
            pages(&simple(differences(vec![300.into(), Object::Name(b"A".to_vec())])), 10),
            Err("PDF page 1: font /F2: /Encoding: /Differences has the code 300, outside 0 to 255".into())
        );
    }

    #[test]
    fn a_to_unicode_that_is_no_cmap_fails() {
        let not_cmap = flate(b"begincmap 1 beginbfchar <01> endcmap (");
        let bytes = pdf_with_fonts(&[HELLO_THEN_HI], |doc| {
            vec![("F2", type0(doc, Object::Name(b"Identity-H".to_vec()), Some(not_cmap)))]
        });
        let err = pages(&bytes, 10).expect_err("no CMap");
        assert!(err.starts_with("PDF page 1: font /F2: /ToUnicode "), "{err}");
        assert!(err.ends_with(" R cannot be parsed as a CMap"), "{err}");
    }

    #[test]
    fn an_identity_encoding_without_to_unicode_fails_instead_of_giving_noise() {
        let bytes = pdf_with_fonts(&[HELLO_THEN_HI], |doc| {
            vec![("F2", type0(doc, Object::Name(b"Identity-H".to_vec()), None))]
        });
        assert_eq!(
            pages(&bytes, 10),
            Err("PDF page 1: font /F2: its encoding /Identity-H gives no text without a /ToUnicode CMap, and it has none"
                .into())
        );
    }

    #[test]
    fn text_in_a_cmap_lopdf_cannot_decode_fails_instead_of_vanishing() {
        let bytes = pdf_with_fonts(&[HELLO_THEN_HI], |doc| {
            vec![("F2", type0(doc, Object::Name(b"UniJIS-UCS2-H".to_vec()), Some(flate(CMAP))))]
        });
        assert_eq!(pages(&bytes, 10), Err("PDF page 1: font /F2: its encoding /UniJIS-UCS2-H is not supported".into()));
    }

    #[test]
    fn text_in_a_font_the_page_does_not_give_fails() {
        let bytes = pdf_with_fonts(&[b"BT /F9 12 Tf 72 720 Td (lost) Tj ET"], |_| vec![]);
        assert_eq!(
            pages(&bytes, 10),
            Err("PDF page 1: text is shown in font /F9, and the page's resources give no font by that name".into())
        );
    }

    #[test]
    fn a_broken_font_the_page_shows_no_text_in_is_no_failure() {
        let corrupt = raw_flate(b"\x78\x9c\xff\xfe\xfd garbage");
        let bytes = pdf_with_fonts(&[HELLO, b"BT /F2 12 Tf () Tj ET"], |doc| {
            vec![("F2", type0(doc, Object::Name(b"Identity-H".to_vec()), Some(corrupt)))]
        });
        assert_eq!(pages(&bytes, 10), Ok(vec![Some("hello".to_string()), None]));
    }

    #[test]
    fn unknown_glyph_names_fall_back_to_the_standard_encoding_and_still_decode() {
        let differences = dictionary! { "Differences" => vec![1.into(), Object::Name(b"g123".to_vec())] };
        let font =
            dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Subset", "Encoding" => differences };
        let bytes = pdf_with_fonts(&[b"BT /F2 12 Tf 72 720 Td (AB) Tj ET"], |_| vec![("F2", font.into())]);
        assert_eq!(pages(&bytes, 10), Ok(vec![Some("AB".to_string())]));
    }

    #[test]
    fn an_object_stream_that_inflates_past_its_limit_fails_the_document() {
        // Found while seeding the fuzz corpus (fuzz/corpus/pdf_text/object-stream-bomb.pdf).
        let bomb = flate(&vec![b' '; OBJECT_STREAM_LIMIT + 1]).content;
        let bytes = pdf_with_object("/Type /ObjStm /N 1 /First 0 /Filter /FlateDecode", &bomb);
        let err = pages(&bytes, 10).expect_err("bomb");
        assert!(err.starts_with("corrupt PDF: ") && err.contains("16777216-byte limit"), "{err}");
        assert_eq!(pages(&pdf_with_object("/Type /XObject", b"small"), 10), Ok(vec![None]));
    }

    /// A one-page PDF (no content) that also holds a stream of `dict` entries and `data`, written
    /// by hand: lopdf's writer leaves object streams out.
    fn pdf_with_object(dict: &str, data: &[u8]) -> Vec<u8> {
        let stream =
            [format!("<< {dict} /Length {} >>\nstream\n", data.len()).as_bytes(), data, b"\nendstream"].concat();
        let objects: [&[u8]; 4] = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
            &stream,
        ];
        let mut out = b"%PDF-1.5\n".to_vec();
        let mut xref = String::from("xref\n0 5\n0000000000 65535 f \n");
        for (i, body) in objects.iter().enumerate() {
            xref.push_str(&format!("{:010} 00000 n \n", out.len()));
            out.extend_from_slice(&[format!("{} 0 obj\n", i + 1).as_bytes(), body, b"\nendobj\n"].concat());
        }
        let start = out.len();
        out.extend_from_slice(
            format!("{xref}trailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n{start}\n%%EOF\n").as_bytes(),
        );
        out
    }
}
