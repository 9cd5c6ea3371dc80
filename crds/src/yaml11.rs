//! YAML read as Kubernetes clients read it: go-yaml v2's YAML 1.1 scalars and `sigs.k8s.io/yaml`'s JSON keys.
//!
//! kubectl, Helm and Argo CD turn a manifest into JSON with `sigs.k8s.io/yaml`, which decodes it
//! with go-yaml v2 (YAML 1.1) and then makes every key a string. `serde_yaml` reads YAML 1.2, so the
//! two disagree on unquoted scalars such as `off`, `y` or `0777`. [`from_str`] agrees with the
//! clients (go-yaml v2's `resolve.go` and `decode.go`, `sigs.k8s.io/yaml`'s
//! `convertToJSONableObject`):
//!
//! - A plain (unquoted) scalar is true for `y Y yes Yes YES true True TRUE on On ON`, false for
//!   `n N no No NO false False FALSE off Off OFF`, null for `~ null Null NULL` and nothing; an
//!   integer in Go's syntax once every `_` is dropped (`0777` octal, `0x1F`, `0o17`, `0b101`,
//!   `1_000`, up to `u64`); a float for `1.5`, `1e3`, `.5`, `.inf`, `-.Inf`, `.nan`; anything else
//!   is a string, timestamps and sexagesimal `1:30` included (go-yaml leaves base 60 out).
//! - Quoted and block scalars are strings. The tags `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`
//!   and `!!timestamp` resolve or fail as in go-yaml; other tags leave the text; `!!binary` is refused.
//! - A key becomes the string `convertToJSONableObject` makes: a boolean key (`y`) is `"true"`, an
//!   integer key its decimal, a float key Go's shortest `%g` of its `float32`. A null key, a
//!   collection key and an integer key beyond `i64` are refused, as the clients refuse them.
//! - Numbers are what `json.Marshal` sends: an integral float below 1e21 (`2.0`, `1e3`) reaches the
//!   API server as an integer; an infinite or NaN value cannot be sent and is refused.
//! - A merge key (`<<`, a mapping or a list of them) applies in document order, later entries
//!   winning, as go-yaml v2 does: a merge after an explicit key overrides it (YAML's merge draft and
//!   PyYAML keep the explicit key). The maps of a merge list are applied last to first.
//!
//! Stricter than the clients on purpose: a key defined twice in one mapping is refused (go-yaml v2
//! keeps the last one silently; its strict mode and the API server's strict decoding refuse it).
//! Reading is bounded as it goes, so a hostile text is refused in the time it takes to read up to
//! the limit, never after building it all: nesting stops at [`MAX_DEPTH`] collections, one mapping
//! or sequence at [`MAX_ITEMS`] entries, a document at [`MAX_NODES`] nodes, and alias expansion at
//! [`MAX_ALIAS_NODES`] nodes. Errors that concern a value name its field path
//! ([`Yaml11Error::path`]).
//! Syntax is `saphyr-parser`'s YAML 1.2 grammar, which agrees with libyaml's YAML 1.1 grammar on
//! everything a manifest uses.

use std::collections::{BTreeMap, HashMap};

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Value};

/// Deepest nesting of mappings and sequences read; a deeper document is refused. A manifest needs
/// about 15 levels, the CRD itself about 30. (The parser also stops flow collections, `[[...]]`,
/// past 255 levels by itself.)
pub const MAX_DEPTH: usize = 64;

/// Most entries in one mapping or sequence (a job has at most 64 steps; no list of a manifest
/// comes near this).
pub const MAX_ITEMS: usize = 10_000;

/// Most nodes (scalars, mappings and sequences) written in one document; the CRD has about 2,000.
pub const MAX_NODES: usize = 100_000;

/// The parser's words when flow collections nest past its own limit.
const PARSER_DEPTH_LIMIT: &str = "recursion limit exceeded";

/// Most nodes that aliases may add to a document (billion-laughs guard).
pub const MAX_ALIAS_NODES: usize = 100_000;

/// The prefix of the YAML core schema's tags (`!!str` is `tag:yaml.org,2002:str`).
const CORE_TAG: &str = "tag:yaml.org,2002:";

/// Why a text could not be read as Kubernetes clients read it; `line` and `column` count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct Yaml11Error {
    pub line: usize,
    pub column: usize,
    /// The field path the error concerns (`spec.steps[2].fps`, the paths [`crate::validate`]
    /// reports); empty for errors of the text as a whole (syntax, several documents).
    pub path: String,
    pub kind: Yaml11ErrorKind,
}

/// What was wrong, without where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Yaml11ErrorKind {
    /// Not YAML at all (the parser's words).
    #[error("{0}")]
    Syntax(String),
    /// The same key twice in one mapping, first at `first_line`, again at `line`; `note` names the
    /// two spellings when they differ (`y`, `true`).
    #[error(
        "key `{key}` is defined twice in one mapping, at line {first_line} and again at line {line}{note}; Kubernetes clients would keep the last one silently: remove one of them"
    )]
    DuplicateKey { key: String, first_line: usize, line: usize, note: String },
    #[error("nested deeper than {MAX_DEPTH} mappings and sequences (a manifest needs about 15); reading stopped here")]
    TooDeep,
    #[error("more than {MAX_ITEMS} entries in one mapping or sequence; reading stopped here")]
    TooManyItems,
    #[error("more than {MAX_NODES} values in one document; reading stopped here")]
    TooManyNodes,
    #[error("document contains excessive aliasing: aliases expand to more than {MAX_ALIAS_NODES} nodes")]
    ExcessiveAliasing,
    #[error("unknown anchor '{0}' referenced")]
    UnknownAnchor(String),
    #[error("anchor '{0}' value contains itself")]
    RecursiveAnchor(String),
    /// A key JSON cannot have (`what` says which).
    #[error("{0} cannot be a mapping key: Kubernetes clients refuse it")]
    UnsupportedKey(String),
    #[error("map merge requires map or sequence of maps as the value")]
    BadMerge,
    /// An explicitly tagged scalar that is not what its tag says (go-yaml's wording).
    #[error("cannot decode {found} `{text}` as a {tag}")]
    TagMismatch { found: &'static str, text: String, tag: String },
    #[error("!!binary is not supported: sigs.k8s.io/yaml cannot carry binary data")]
    Binary,
    /// An infinite or NaN value, which `json.Marshal` refuses.
    #[error(
        "must be a finite number, found `{0}`: JSON has no NaN or infinity, so Kubernetes clients refuse it (json: unsupported value); write a number"
    )]
    NotJson(String),
    #[error("more than one document (read the stream with from_str_multi)")]
    MultipleDocuments,
}

/// Which unquoted scalars Kubernetes clients read as something other than their text, by field path
/// (`spec.steps[2].box.true`, the paths [`crate::validate`] reports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words {
    /// Value path → the unquoted word a boolean, null or number came from (`off`, `~`, `0777`).
    pub values: BTreeMap<String, String>,
    /// Field path → the unquoted key the field's name came from, where they differ (`y` named `true`).
    pub keys: BTreeMap<String, String>,
}

/// One document as Kubernetes clients read it, with the words that changed meaning on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub value: Value,
    pub words: Words,
}

/// Reads a one-document YAML text as Kubernetes clients do; nothing at all reads as null, and empty
/// documents around the one (a trailing `---`) are left out, as kubectl leaves them out.
///
/// # Errors
/// [`Yaml11Error`] for text that is not YAML, that the clients refuse, that defines a key twice,
/// nests too deep, expands aliases too far, or holds more than one non-empty document.
pub fn from_str(text: &str) -> Result<Value, Yaml11Error> {
    read(text).map(|reading| reading.value)
}

/// Reads every document of a YAML stream (`---` between them) as Kubernetes clients do.
///
/// # Errors
/// As [`from_str`], except that several documents are fine.
pub fn from_str_multi(text: &str) -> Result<Vec<Value>, Yaml11Error> {
    Ok(read_multi(text)?.into_iter().map(|reading| reading.value).collect())
}

/// [`from_str`], with the [`Words`] that explain a surprising value.
///
/// # Errors
/// As [`from_str`].
pub fn read(text: &str) -> Result<Reading, Yaml11Error> {
    let documents = read_documents(text, true)?;
    let document = documents.into_iter().find(|reading| !reading.value.is_null());
    Ok(document.unwrap_or(Reading { value: Value::Null, words: Words::default() }))
}

/// [`from_str_multi`], with the [`Words`] of each document.
///
/// # Errors
/// As [`from_str_multi`].
pub fn read_multi(text: &str) -> Result<Vec<Reading>, Yaml11Error> {
    read_documents(text, false)
}

/// What Kubernetes clients make of `word` unquoted: "a boolean", "null", "a number" or "a string".
pub fn plain_meaning(word: &str) -> &'static str {
    match resolve_plain(word) {
        Resolved::Null => "null",
        Resolved::Bool(_) => "a boolean",
        Resolved::Int(_) | Resolved::Uint(_) | Resolved::Float(_) => "a number",
        Resolved::Str(_) => "a string",
    }
}

/// A position in the text, counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

impl Pos {
    fn of(marker: Marker) -> Pos {
        Pos { line: marker.line(), column: marker.col() + 1 }
    }

    fn error(self, kind: Yaml11ErrorKind) -> Yaml11Error {
        Yaml11Error { line: self.line, column: self.column, path: String::new(), kind }
    }
}

/// A scalar's meaning, as go-yaml v2 resolves it.
#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone)]
struct Scalar {
    resolved: Resolved,
    /// The unquoted, untagged text, when it resolved to something other than a string.
    word: Option<String>,
    /// An unquoted `<<` (or `!!merge`): in key position, a merge.
    merge: bool,
    at: Pos,
}

#[derive(Debug, Clone)]
enum Node {
    Scalar(Box<Scalar>),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
struct Entry {
    key: Key,
    value: Node,
}

/// A mapping key, already the string JSON will carry.
#[derive(Debug, Clone)]
struct Key {
    name: String,
    /// The unquoted text the name came from, where it differs (`y` for `true`).
    word: Option<String>,
    at: Pos,
}

impl Key {
    fn text(&self) -> &str {
        self.word.as_deref().unwrap_or(&self.name)
    }
}

/// A mapping being read: its entries in order, and the keys written in it (not merged into it).
#[derive(Debug, Default)]
struct MapBuilder {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    explicit: HashMap<String, Key>,
    pending_key: Option<(Node, Pos)>,
}

impl MapBuilder {
    /// Adds a key written in this mapping; a second one with the same name is refused.
    fn insert(&mut self, key: Key, value: Node) -> Result<(), Yaml11Error> {
        if let Some(first) = self.explicit.get(&key.name) {
            let note = if first.text() == key.text() {
                String::new()
            } else {
                format!(" (there as `{}`, here as `{}`)", first.text(), key.text())
            };
            let (first_line, line) = (first.at.line, key.at.line);
            let kind = Yaml11ErrorKind::DuplicateKey { key: key.name.clone(), first_line, line, note };
            return Err(key.at.error(kind));
        }
        self.explicit.insert(key.name.clone(), key.clone());
        self.set(key, value);
        Ok(())
    }

    /// Sets a key, replacing an earlier entry of that name in place (go-yaml v2: the later wins).
    fn set(&mut self, key: Key, value: Node) {
        match self.index.get(&key.name) {
            Some(&i) => self.entries[i] = Entry { key, value },
            None => {
                self.index.insert(key.name.clone(), self.entries.len());
                self.entries.push(Entry { key, value });
            }
        }
    }

    /// Applies `<<: value`: a mapping, or a list of mappings applied last to first.
    fn merge(&mut self, value: Node, at: Pos) -> Result<(), Yaml11Error> {
        let maps = match value {
            Node::Map(entries) => vec![entries],
            Node::Seq(items) => {
                let maps: Option<Vec<Vec<Entry>>> =
                    items.into_iter().rev().map(|item| if let Node::Map(e) = item { Some(e) } else { None }).collect();
                maps.ok_or_else(|| at.error(Yaml11ErrorKind::BadMerge))?
            }
            Node::Scalar(_) => return Err(at.error(Yaml11ErrorKind::BadMerge)),
        };
        for entry in maps.into_iter().flatten() {
            self.set(entry.key, entry.value);
        }
        Ok(())
    }
}

/// A mapping or sequence whose end has not been read yet.
#[derive(Debug)]
struct Open {
    anchor: usize,
    at: Pos,
    /// Nodes in it so far, itself included.
    size: usize,
    kind: OpenKind,
}

#[derive(Debug)]
enum OpenKind {
    Seq(Vec<Node>),
    Map(MapBuilder),
}

/// Builds documents from parser events, without recursion.
struct Reader<'t> {
    text: &'t str,
    /// Refuse a second non-empty document.
    single: bool,
    document_at: Pos,
    stack: Vec<Open>,
    /// This document's anchors: id → (node, node count).
    anchors: HashMap<usize, (Node, usize)>,
    expanded: usize,
    /// Nodes written in this document so far (aliases count in `expanded`).
    nodes: usize,
    root: Option<Node>,
    documents: Vec<Reading>,
}

fn read_documents(text: &str, single: bool) -> Result<Vec<Reading>, Yaml11Error> {
    let mut reader = Reader {
        text,
        single,
        document_at: Pos { line: 1, column: 1 },
        stack: Vec::new(),
        anchors: HashMap::new(),
        expanded: 0,
        nodes: 0,
        root: None,
        documents: Vec::new(),
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let at = Pos::of(*e.marker());
            match e.info() {
                PARSER_DEPTH_LIMIT => reader.at_here(at.error(Yaml11ErrorKind::TooDeep)),
                info => at.error(Yaml11ErrorKind::Syntax(info.to_string())),
            }
        })?;
        let at = Pos::of(span.start);
        match event {
            Event::DocumentStart(_) => reader.start_document(at),
            Event::DocumentEnd => reader.end_document()?,
            Event::Scalar(value, style, anchor, tag) => {
                reader.count_node(at)?;
                let scalar = scalar(&value, style, tag.as_deref(), at).map_err(|kind| at.error(kind))?;
                reader.complete(Node::Scalar(Box::new(scalar)), 1, anchor, at)?;
            }
            Event::SequenceStart(anchor, _) => reader.open(anchor, at, OpenKind::Seq(Vec::new()))?,
            Event::MappingStart(anchor, _) => reader.open(anchor, at, OpenKind::Map(MapBuilder::default()))?,
            Event::SequenceEnd | Event::MappingEnd => reader.close()?,
            Event::Alias(id) => reader.alias(id, span)?,
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
    Ok(reader.documents)
}

impl Reader<'_> {
    fn start_document(&mut self, at: Pos) {
        self.document_at = at;
        self.anchors.clear();
        self.expanded = 0;
        self.nodes = 0;
        self.root = None;
    }

    /// Counts one node written in the text; past [`MAX_NODES`] the document is refused.
    fn count_node(&mut self, at: Pos) -> Result<(), Yaml11Error> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.at_here(at.error(Yaml11ErrorKind::TooManyNodes)));
        }
        Ok(())
    }

    /// `error`, naming the path of the node being read.
    fn at_here(&self, error: Yaml11Error) -> Yaml11Error {
        Yaml11Error { path: path_of(&self.stack), ..error }
    }

    fn end_document(&mut self) -> Result<(), Yaml11Error> {
        let mut words = Words::default();
        let value = match self.root.take() {
            Some(root) => to_json(root, "", &mut words)?,
            None => Value::Null,
        };
        if self.single && !value.is_null() && self.documents.iter().any(|reading| !reading.value.is_null()) {
            return Err(self.document_at.error(Yaml11ErrorKind::MultipleDocuments));
        }
        self.documents.push(Reading { value, words });
        Ok(())
    }

    fn open(&mut self, anchor: usize, at: Pos, kind: OpenKind) -> Result<(), Yaml11Error> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.at_here(at.error(Yaml11ErrorKind::TooDeep)));
        }
        self.count_node(at)?;
        self.stack.push(Open { anchor, at, size: 1, kind });
        Ok(())
    }

    fn close(&mut self) -> Result<(), Yaml11Error> {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        let node = match open.kind {
            OpenKind::Seq(items) => Node::Seq(items),
            OpenKind::Map(map) => Node::Map(map.entries),
        };
        self.complete(node, open.size, open.anchor, open.at)
    }

    fn alias(&mut self, id: usize, span: Span) -> Result<(), Yaml11Error> {
        let at = Pos::of(span.start);
        let name = || chars(self.text, span).trim_start_matches('*').to_string();
        if self.stack.iter().any(|open| open.anchor == id) {
            return Err(at.error(Yaml11ErrorKind::RecursiveAnchor(name())));
        }
        let Some((node, size)) = self.anchors.get(&id) else {
            return Err(at.error(Yaml11ErrorKind::UnknownAnchor(name())));
        };
        self.expanded += size;
        if self.expanded > MAX_ALIAS_NODES {
            return Err(at.error(Yaml11ErrorKind::ExcessiveAliasing));
        }
        let (node, size) = (node.clone(), *size);
        self.attach(node, size, at)
    }

    /// A node has been read in full: remember it under its anchor, and put it where it belongs.
    fn complete(&mut self, node: Node, size: usize, anchor: usize, at: Pos) -> Result<(), Yaml11Error> {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        self.attach(node, size, at)
    }

    /// Puts `node` in the collection being read (a value, or a key awaiting its value); a
    /// collection grown too long is named by its path, a key defined twice by the key's.
    fn attach(&mut self, node: Node, size: usize, at: Pos) -> Result<(), Yaml11Error> {
        let Some(open) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        open.size += size;
        let added = match &mut open.kind {
            OpenKind::Seq(items) => {
                items.push(node);
                Ok(items.len())
            }
            OpenKind::Map(map) => map.add(node, at).map(|()| map.entries.len()),
        };
        match added {
            Ok(entries) if entries > MAX_ITEMS => Err(self.at_collection(at.error(Yaml11ErrorKind::TooManyItems))),
            Ok(_) => Ok(()),
            // A key JSON cannot have or a bad merge is the text's fault, not a field's.
            Err(e) => match &e.kind {
                Yaml11ErrorKind::DuplicateKey { key, .. } => {
                    let key = key.clone();
                    let e = self.at_collection(e);
                    Err(Yaml11Error { path: join(&e.path, &key), ..e })
                }
                _ => Err(e),
            },
        }
    }

    /// `error`, naming the path of the collection being read.
    fn at_collection(&self, error: Yaml11Error) -> Yaml11Error {
        let parents = self.stack.len().saturating_sub(1);
        Yaml11Error { path: path_of(&self.stack[..parents]), ..error }
    }
}

/// The field path where `stack` stands (`spec.steps[2]`): each open mapping adds the key whose
/// value is being read, each open sequence the index of the item being read.
fn path_of(stack: &[Open]) -> String {
    let mut path = String::new();
    for open in stack {
        match &open.kind {
            OpenKind::Seq(items) => path.push_str(&format!("[{}]", items.len())),
            OpenKind::Map(map) => {
                if let Some((key, _)) = &map.pending_key {
                    path = join(&path, &key_label(key));
                }
            }
        }
    }
    path
}

/// The name a key node will have in JSON, for paths in messages (`?` for a key JSON cannot have).
fn key_label(node: &Node) -> String {
    let Node::Scalar(scalar) = node else { return "?".into() };
    match &scalar.resolved {
        Resolved::Str(text) => text.clone(),
        Resolved::Bool(b) => b.to_string(),
        Resolved::Int(i) => i.to_string(),
        Resolved::Float(f) => go_float32_g(*f),
        Resolved::Uint(_) | Resolved::Null => "?".into(),
    }
}

impl MapBuilder {
    /// Adds a node read in this mapping: a key (kept until its value comes), or a key's value.
    fn add(&mut self, node: Node, at: Pos) -> Result<(), Yaml11Error> {
        match self.pending_key.take() {
            None => self.pending_key = Some((node, at)),
            Some((key, key_at)) if is_merge(&key) => self.merge(node, key_at)?,
            Some((key, key_at)) => self.insert(key_of(key, key_at)?, node)?,
        }
        Ok(())
    }
}

/// The text covered by `span` (whose indexes count characters).
fn chars(text: &str, span: Span) -> &str {
    let byte = |index: usize| text.char_indices().nth(index).map_or(text.len(), |(i, _)| i);
    text.get(byte(span.start.index())..byte(span.end.index())).unwrap_or_default()
}

fn is_merge(node: &Node) -> bool {
    matches!(node, Node::Scalar(s) if s.merge)
}

/// The JSON name of a key, as `convertToJSONableObject` makes it.
fn key_of(node: Node, at: Pos) -> Result<Key, Yaml11Error> {
    let Node::Scalar(scalar) = node else {
        return Err(at.error(Yaml11ErrorKind::UnsupportedKey("a mapping or a sequence".into())));
    };
    let name = match scalar.resolved {
        Resolved::Str(text) => text,
        Resolved::Bool(b) => b.to_string(),
        Resolved::Int(i) => i.to_string(),
        Resolved::Float(f) => go_float32_g(f),
        Resolved::Uint(u) => {
            return Err(at.error(Yaml11ErrorKind::UnsupportedKey(format!("the integer {u}, beyond int64,"))));
        }
        Resolved::Null => return Err(at.error(Yaml11ErrorKind::UnsupportedKey("null".into()))),
    };
    let word = scalar.word.filter(|word| *word != name);
    Ok(Key { name, word, at })
}

fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>, at: Pos) -> Result<Scalar, Yaml11ErrorKind> {
    let plain = style == ScalarStyle::Plain;
    let resolved = match tag {
        Some(tag) => resolve_tagged(tag, text)?,
        None if plain => resolve_plain(text),
        None => Resolved::Str(text.to_string()),
    };
    let word =
        (plain && tag.is_none() && !text.is_empty() && !matches!(resolved, Resolved::Str(_))).then(|| text.to_string());
    let merge = text == "<<" && tag.map_or(plain, |t| core_name(t).as_deref() == Some("merge"));
    Ok(Scalar { resolved, word, merge, at })
}

/// `str` for `!!str`: the name of a YAML core schema tag.
fn core_name(tag: &Tag) -> Option<String> {
    let full = format!("{}{}", tag.handle, tag.suffix);
    full.strip_prefix(CORE_TAG).map(str::to_string)
}

/// go-yaml v2's `resolve(tag, text)` for an explicitly tagged scalar.
fn resolve_tagged(tag: &Tag, text: &str) -> Result<Resolved, Yaml11ErrorKind> {
    let name = match core_name(tag) {
        Some(name) if matches!(name.as_str(), "int" | "float" | "bool" | "null" | "timestamp") => name,
        Some(name) if name == "binary" => return Err(Yaml11ErrorKind::Binary),
        // `!!str`, local tags (`!x`) and the rest: go-yaml keeps the text.
        _ => return Ok(Resolved::Str(text.to_string())),
    };
    let resolved = resolve_plain(text);
    match (name.as_str(), resolved) {
        ("int", r @ (Resolved::Int(_) | Resolved::Uint(_)))
        | ("float", r @ Resolved::Float(_))
        | ("bool", r @ Resolved::Bool(_))
        | ("null", r @ Resolved::Null) => Ok(r),
        #[allow(clippy::cast_precision_loss)]
        ("float", Resolved::Int(i)) => Ok(Resolved::Float(i as f64)),
        ("timestamp", Resolved::Str(s)) if looks_like_timestamp(&s) => Ok(Resolved::Str(s)),
        (_, other) => Err(Yaml11ErrorKind::TagMismatch {
            found: short_tag(&other),
            text: text.to_string(),
            tag: format!("!!{name}"),
        }),
    }
}

fn short_tag(resolved: &Resolved) -> &'static str {
    match resolved {
        Resolved::Null => "!!null",
        Resolved::Bool(_) => "!!bool",
        Resolved::Int(_) | Resolved::Uint(_) => "!!int",
        Resolved::Float(_) => "!!float",
        Resolved::Str(_) => "!!str",
    }
}

/// go-yaml's quick check before its timestamp formats: the text starts with `YYYY-`.
fn looks_like_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// go-yaml v2's `resolve("", text)` for a plain scalar: the first byte picks what to try.
fn resolve_plain(text: &str) -> Resolved {
    let Some(&first) = text.as_bytes().first() else {
        return Resolved::Null;
    };
    let found = match first {
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~' => known_word(text),
        b'.' => known_word(text).or_else(|| go_parse_float(text).map(Resolved::Float)),
        b'+' | b'-' | b'0'..=b'9' => known_word(text).or_else(|| number(text)),
        _ => None,
    };
    found.unwrap_or_else(|| Resolved::Str(text.to_string()))
}

/// go-yaml v2's `resolveMap`.
fn known_word(text: &str) -> Option<Resolved> {
    Some(match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Resolved::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Resolved::Bool(false),
        "~" | "null" | "Null" | "NULL" => Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Resolved::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Resolved::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// go-yaml v2's sign-or-digit branch: Go's `ParseInt`, then `ParseUint` (base 0, `_` dropped),
/// then a decimal float. Timestamps are tried first there, but they stay text either way.
fn number(text: &str) -> Option<Resolved> {
    let plain = text.replace('_', "");
    if let Some(i) = go_parse_int(&plain) {
        return Some(Resolved::Int(i));
    }
    if let Some(u) = go_parse_uint(&plain) {
        return Some(Resolved::Uint(u));
    }
    if is_yaml_style_float(&plain) {
        return go_parse_float(&plain).map(Resolved::Float);
    }
    None
}

/// Go's `strconv.ParseInt(s, 0, 64)` on text without underscores.
fn go_parse_int(s: &str) -> Option<i64> {
    match s.as_bytes().first() {
        Some(b'+') => i64::try_from(go_parse_uint(&s[1..])?).ok(),
        Some(b'-') => 0i64.checked_sub_unsigned(go_parse_uint(&s[1..])?),
        _ => i64::try_from(go_parse_uint(s)?).ok(),
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` on text without underscores: `0x`, `0o`, `0b` and a bare
/// leading `0` (octal) pick the base.
fn go_parse_uint(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let (radix, digits) = match b {
        [] => return None,
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'b') => (2, &b[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'o') => (8, &b[2..]),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'x') => (16, &b[2..]),
        [b'0', rest @ ..] => (8, rest),
        _ => (10, b),
    };
    digits.iter().try_fold(0u64, |n, &c| {
        let d = char::from(c).to_digit(36).filter(|d| *d < radix)?;
        n.checked_mul(u64::from(radix))?.checked_add(u64::from(d))
    })
}

/// go-yaml's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    if b.get(i) == Some(&b'.') {
        i += 1;
        if skip_digits(b, &mut i) == 0 {
            return false;
        }
    } else {
        if skip_digits(b, &mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            skip_digits(b, &mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if skip_digits(b, &mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

fn skip_digits(b: &[u8], i: &mut usize) -> usize {
    let start = *i;
    while b.get(*i).is_some_and(u8::is_ascii_digit) {
        *i += 1;
    }
    *i - start
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal text: `_` only between digits, and a result out of
/// range is an error (Go's `ErrRange`), not infinity.
fn go_parse_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let between_digits = |i: usize| i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit);
    if !(0..b.len()).filter(|&i| b[i] == b'_').all(between_digits) {
        return None;
    }
    let plain = s.replace('_', "");
    if !is_yaml_style_float(&plain) {
        return None;
    }
    plain.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `strconv.FormatFloat(f, 'g', -1, 32)`, as `sigs.k8s.io/yaml` names a float key, with its
/// `.inf`, `-.inf` and `.nan`.
fn go_float32_g(f: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let x = f as f32;
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    // Rust's `{:e}` is the shortest text that reads back as the same f32, as Go's -1 precision.
    let sci = format!("{x:e}");
    let (negative, sci) = sci.strip_prefix('-').map_or((false, sci.as_str()), |rest| (true, rest));
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let digits: Vec<char> = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if negative { "-" } else { "" };
    // Go's %g with the shortest digits switches to an exponent below 1e-4 and from 1e6.
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_first().map_or(('0', &[][..]), |(f, r)| (*f, r));
        let rest: String = rest.iter().collect();
        let point = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{point}{rest}e{exp_sign}{:02}", exp.unsigned_abs());
    }
    let digit = |i: i32| usize::try_from(i).ok().and_then(|i| digits.get(i)).copied().unwrap_or('0');
    let before = exp + 1;
    let whole: String = if before <= 0 { "0".into() } else { (0..before).map(digit).collect() };
    let decimals = i32::try_from(digits.len()).unwrap_or(0) - before;
    let fraction: String = (0..decimals.max(0)).map(|i| digit(before + i)).collect();
    let point = if fraction.is_empty() { "" } else { "." };
    format!("{sign}{whole}{point}{fraction}")
}

/// The number the API server receives for `f` from `json.Marshal`: integral floats below 1e21 are
/// written without point or exponent, so they arrive as integers.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn wire_number(f: f64) -> Value {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && f.abs() < 1e21 {
        if (-TWO_63..TWO_63).contains(&f) {
            return Value::from(f as i64);
        } else if (0.0..2.0 * TWO_63).contains(&f) {
            return Value::from(f as u64);
        }
    }
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// The JSON of a read node, noting on the way the words that changed meaning.
fn to_json(node: Node, path: &str, words: &mut Words) -> Result<Value, Yaml11Error> {
    match node {
        Node::Scalar(scalar) => {
            if let Some(word) = &scalar.word {
                words.values.insert(path.to_string(), word.clone());
            }
            json_scalar(*scalar).map_err(|e| Yaml11Error { path: path.to_string(), ..e })
        }
        Node::Seq(items) => {
            let items = items.into_iter().enumerate().map(|(i, item)| to_json(item, &format!("{path}[{i}]"), words));
            Ok(Value::Array(items.collect::<Result<_, _>>()?))
        }
        Node::Map(entries) => {
            let mut map = Map::new();
            for Entry { key, value } in entries {
                let child = join(path, &key.name);
                if let Some(word) = key.word {
                    words.keys.insert(child.clone(), word);
                }
                map.insert(key.name, to_json(value, &child, words)?);
            }
            Ok(Value::Object(map))
        }
    }
}

fn json_scalar(scalar: Scalar) -> Result<Value, Yaml11Error> {
    Ok(match scalar.resolved {
        Resolved::Null => Value::Null,
        Resolved::Bool(b) => Value::Bool(b),
        Resolved::Int(i) => Value::from(i),
        Resolved::Uint(u) => Value::from(u),
        Resolved::Float(f) if f.is_finite() => wire_number(f),
        Resolved::Float(f) => {
            let text = scalar.word.unwrap_or_else(|| f.to_string());
            return Err(scalar.at.error(Yaml11ErrorKind::NotJson(text)));
        }
        Resolved::Str(text) => Value::String(text),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn value(text: &str) -> Value {
        match from_str(&format!("v: {text}\n")) {
            Ok(doc) => doc["v"].clone(),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn error(text: &str) -> Yaml11Error {
        match from_str(text) {
            Ok(v) => panic!("read {text:?} as {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn every_boolean_word_in_every_case_is_a_boolean() {
        for word in ["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"] {
            assert_eq!(value(word), json!(true), "{word}");
        }
        for word in ["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"] {
            assert_eq!(value(word), json!(false), "{word}");
        }
        // Only those spellings: go-yaml's table, not a case-insensitive match.
        for word in ["yES", "oN", "oFF", "tRUE", "nO", "Yess", "ye"] {
            assert_eq!(value(word), json!(word), "{word}");
        }
    }

    #[test]
    fn null_forms_are_null() {
        for word in ["~", "null", "Null", "NULL", ""] {
            assert_eq!(value(word), Value::Null, "{word:?}");
        }
        assert_eq!(value("nULL"), json!("nULL"));
        assert_eq!(from_str("").ok(), Some(Value::Null));
        assert_eq!(from_str("# nothing\n").ok(), Some(Value::Null));
    }

    #[test]
    fn integers_in_every_base() {
        let cases = [
            ("0", 0),
            ("-0", 0),
            ("42", 42),
            ("+42", 42),
            ("-42", -42),
            ("0777", 511),
            ("-0777", -511),
            ("0o17", 15),
            ("0O17", 15),
            ("0x1F", 31),
            ("0X1f", 31),
            ("-0x10", -16),
            ("0b101", 5),
            ("-0b101", -5),
            ("1_000", 1000),
            ("0x_1F", 31),
            ("1__0_", 10),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ];
        for (text, want) in cases {
            assert_eq!(value(text), json!(want), "{text}");
        }
        assert_eq!(value("18446744073709551615"), json!(u64::MAX));
        // Not octal: go-yaml falls through to a decimal float, which arrives as the integer 8.
        assert_eq!(value("08"), json!(8));
        for text in ["0x", "0xG", "0b2", "0o8", "1:30", "190:20:30", "_1", "1-2", "0x1F.5", "1 000"] {
            assert_eq!(value(text), json!(text), "{text}");
        }
    }

    #[test]
    fn floats_and_what_json_makes_of_them() {
        for (text, want) in [("1.5", 1.5), ("-1.5", -1.5), ("+.5", 0.5), (".5", 0.5), ("1.5e-1", 0.15)] {
            assert_eq!(value(text), json!(want), "{text}");
        }
        assert_eq!(value("1e-3"), json!(0.001));
        assert_eq!(value(".5_5"), json!(0.55));
        // Integral floats reach the API server as integers.
        for (text, want) in [("2.0", 2), ("1e3", 1000), ("1.", 1), ("-0.0", 0), ("1_0.0", 10)] {
            assert_eq!(value(text), json!(want), "{text}");
        }
        assert_eq!(value("1.5e3"), json!(1500));
        assert_eq!(value("1e20"), json!(1e20));
        // Out of float64 range is a string to go-yaml (ParseFloat's ErrRange), not infinity.
        for text in ["1e400", "._5", ".5_", ".", "1.5.5", ".e3", "1e", ".iNF"] {
            assert_eq!(value(text), json!(text), "{text}");
        }
        for text in [".inf", ".Inf", ".INF", "+.inf", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN"] {
            let e = error(&format!("v: {text}\n"));
            assert_eq!(e.kind, Yaml11ErrorKind::NotJson(text.to_string()), "{text}: {e}");
            assert_eq!((e.line, e.column, e.path.as_str()), (1, 4, "v"), "{text}");
        }
        let e = error("a:\n  - {fps: 1}\n  - {fps: .nan}\n");
        assert_eq!(e.path, "a[1].fps");
        assert!(e.kind.to_string().starts_with("must be a finite number, found `.nan`"), "{e}");
    }

    #[test]
    fn quoted_and_block_scalars_stay_strings() {
        for word in ["off", "y", "NO", "~", "null", "0777", "0x1F", "1.5", ".inf", "1_000", "true", ""] {
            assert_eq!(value(&format!("'{word}'")), json!(word), "'{word}'");
            assert_eq!(value(&format!("\"{word}\"")), json!(word), "\"{word}\"");
        }
        assert_eq!(from_str("v: |\n  off\n").ok(), Some(json!({"v": "off\n"})));
        assert_eq!(from_str("v: >-\n  0777\n").ok(), Some(json!({"v": "0777"})));
        assert_eq!(value("[off, 'off', 1, '1']"), json!([false, "off", 1, "1"]));
    }

    #[test]
    fn tags_resolve_as_go_yaml_does() {
        assert_eq!(value("!!str off"), json!("off"));
        assert_eq!(value("!!str 0777"), json!("0777"));
        assert_eq!(value("!!int \"0777\""), json!(511));
        assert_eq!(value("!!bool 'yes'"), json!(true));
        assert_eq!(value("!!float 2"), json!(2));
        assert_eq!(value("!!float 1.5"), json!(1.5));
        assert_eq!(value("!!null ''"), Value::Null);
        assert_eq!(value("!local off"), json!("off"));
        assert_eq!(value("!!timestamp 2001-12-14"), json!("2001-12-14"));
        let e = error("v: !!int abc\n");
        assert_eq!(e.to_string(), "line 1, column 4: cannot decode !!str `abc` as a !!int");
        assert!(matches!(error("v: !!binary aGk=\n").kind, Yaml11ErrorKind::Binary));
    }

    #[test]
    fn timestamps_and_other_text_stay_strings() {
        for text in ["2001-12-14", "2001-12-14T21:59:43.10Z", "2001-12-14 21:59:43.10", "1.2.3", "v1", "<<", "=", "+"] {
            assert_eq!(value(text), json!(text), "{text}");
        }
    }

    #[test]
    fn keys_become_the_strings_sigs_k8s_io_yaml_makes() {
        let doc = from_str("y: 1\nn: 2\non: 3\n0x1F: 4\n1.5: 5\n1e6: 6\n0.00001: 7\n'y': 8\n2.0: 9\n.inf: 10\n");
        let want = json!({
            "true": 3, "false": 2, "31": 4, "1.5": 5, "1e+06": 6, "1e-05": 7, "y": 8, "2": 9, ".inf": 10
        });
        // `y` and `on` are both `true`: refused as a duplicate, named with both spellings.
        let e = doc.expect_err("y and on both name true");
        assert_eq!(
            e.to_string(),
            "line 3, column 1: key `true` is defined twice in one mapping, at line 1 and again at line 3 (there as `y`, here as `on`); Kubernetes clients would keep the last one silently: remove one of them"
        );
        assert_eq!(e.path, "true");
        let doc =
            from_str("y: 1\nn: 2\n0x1F: 4\n1.5: 5\n1e6: 6\n0.00001: 7\n'y': 8\n2.0: 9\n.inf: 10\n3.14159265: 11\n");
        let mut want = want;
        want["true"] = json!(1);
        want["3.1415927"] = json!(11);
        assert_eq!(doc.ok(), Some(want));
        let reading = read("box: {y: 0, x: 0}\n").expect("read");
        assert_eq!(reading.value, json!({"box": {"true": 0, "x": 0}}));
        assert_eq!(reading.words.keys.get("box.true").map(String::as_str), Some("y"));
        assert_eq!(reading.words.keys.len(), 1);
    }

    #[test]
    fn keys_json_cannot_have_are_refused() {
        for text in ["~: 1\n", "null: 1\n", "? \n: 1\n", "[a]: 1\n", "{a: 1}: 2\n", "18446744073709551615: 1\n"] {
            let e = error(text);
            assert!(matches!(e.kind, Yaml11ErrorKind::UnsupportedKey(_)), "{text:?}: {e}");
        }
    }

    #[test]
    fn words_name_the_paths_of_values_that_changed_meaning() {
        let reading = read("spec:\n  autoscaling: {mode: off}\n  steps: [{op: a, box: {y: 0}}, NO, '~', ~, 0777, x]\n")
            .expect("read");
        let values: Vec<(&str, &str)> = reading.words.values.iter().map(|(p, w)| (p.as_str(), w.as_str())).collect();
        assert_eq!(
            values,
            [
                ("spec.autoscaling.mode", "off"),
                ("spec.steps[0].box.true", "0"),
                ("spec.steps[1]", "NO"),
                ("spec.steps[3]", "~"),
                ("spec.steps[4]", "0777"),
            ]
        );
        assert_eq!(plain_meaning("off"), "a boolean");
        assert_eq!(plain_meaning("~"), "null");
        assert_eq!(plain_meaning("0x1F"), "a number");
        assert_eq!(plain_meaning("auto"), "a string");
    }

    #[test]
    fn a_key_twice_is_refused_with_its_line() {
        let e = error("a: 1\nb:\n  c: 1\n  c: 2\n");
        assert_eq!((e.line, e.column, e.path.as_str()), (4, 3, "b.c"));
        let kind = Yaml11ErrorKind::DuplicateKey { key: "c".into(), first_line: 3, line: 4, note: String::new() };
        assert_eq!(e.kind, kind);
        let e = error("{a: 1, 'a': 2}");
        assert!(matches!(e.kind, Yaml11ErrorKind::DuplicateKey { .. }), "{e}");
        let e = error("l:\n  - x: 1\n  - {y: 1, z: 2, z: 3}\n");
        assert_eq!((e.line, e.path.as_str()), (3, "l[1].z"));
        // The same name in different mappings is fine.
        assert!(from_str("a: {x: 1}\nb: {x: 1}\n").is_ok());
    }

    #[test]
    fn anchors_aliases_and_merges() {
        let doc = from_str(
            "a: &a {x: 1, y: 2}\nb: *a\nc: {<<: *a, x: 3}\nd: {x: 3, <<: *a}\ne: {<<: [{x: 1}, {x: 2, z: 3}]}\n",
        );
        assert_eq!(
            doc.ok(),
            Some(json!({
                "a": {"x": 1, "true": 2},
                "b": {"x": 1, "true": 2},
                "c": {"x": 3, "true": 2},
                // go-yaml v2 applies a merge where it stands: it overrides the `x` before it.
                "d": {"x": 1, "true": 2},
                "e": {"x": 1, "z": 3},
            }))
        );
        assert_eq!(from_str("'<<': 1\n").ok(), Some(json!({"<<": 1})));
        assert_eq!(from_str("a: &s off\nb: *s\n").ok(), Some(json!({"a": false, "b": false})));
        for bad in ["a: {<<: 1}\n", "a: &x [1]\nb: {<<: *x}\n", "a: {<<: [{x: 1}, 2]}\n"] {
            assert!(matches!(error(bad).kind, Yaml11ErrorKind::BadMerge), "{bad}");
        }
        assert_eq!(error("a: &x [*x]\n").kind, Yaml11ErrorKind::RecursiveAnchor("x".into()));
        let e = error("a: 1\n---\nb: 2\n");
        assert_eq!((e.line, e.column, e.kind), (2, 1, Yaml11ErrorKind::MultipleDocuments));
        assert_eq!(from_str("---\n---\na: 1\n---\n").ok(), Some(json!({"a": 1})));
        let e = from_str_multi("a: &x 1\n---\nb: *x\n").expect_err("anchors are per document");
        assert_eq!(e.kind, Yaml11ErrorKind::UnknownAnchor("x".into()));
    }

    #[test]
    fn aliases_expanding_past_the_cap_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = error(&text);
        assert_eq!(e.kind, Yaml11ErrorKind::ExcessiveAliasing);
        // A few levels are fine.
        let small: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
        assert!(from_str(&small).is_ok());
    }

    #[test]
    fn nesting_past_the_cap_is_refused_fast() {
        let start = std::time::Instant::now();
        let deep = "[".repeat(100_000);
        assert_eq!(error(&deep).kind, Yaml11ErrorKind::TooDeep);
        let deep = "{a: ".repeat(100_000);
        assert_eq!(error(&deep).kind, Yaml11ErrorKind::TooDeep);
        // `- - - x` nests block sequences on one line.
        let deep = format!("{}x\n", "- ".repeat(100_000));
        assert_eq!(error(&deep).kind, Yaml11ErrorKind::TooDeep);
        assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(from_str(&fine).is_ok());
        let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(error(&over).kind, Yaml11ErrorKind::TooDeep);
        assert!(from_str(&format!("{}x\n", "- ".repeat(MAX_DEPTH))).is_ok());
        let over = format!("a:\n  {}x\n", "- ".repeat(MAX_DEPTH));
        assert_eq!(error(&over).kind, Yaml11ErrorKind::TooDeep);
        // The path goes as deep as the reader got: the parser's scanner, which looks ahead in flow
        // collections, may stop first.
        let e = error(&format!("spec:\n  steps: {}", "[".repeat(MAX_DEPTH + 5)));
        assert_eq!(e.kind, Yaml11ErrorKind::TooDeep);
        assert_eq!(e.path, format!("spec.steps{}", "[0]".repeat(MAX_DEPTH - 2)));
        let e = error(&format!("spec:\n  steps: {}", "[".repeat(100_000)));
        assert!(e.kind == Yaml11ErrorKind::TooDeep && e.path.starts_with("spec.steps"), "{e:?}");
    }

    #[test]
    fn a_collection_past_the_entry_cap_is_refused_where_it_is() {
        let long = format!("a:\n  b:\n{}", "    - x\n".repeat(MAX_ITEMS + 5));
        let e = error(&long);
        assert_eq!((e.kind, e.path.as_str(), e.line), (Yaml11ErrorKind::TooManyItems, "a.b", MAX_ITEMS + 3));
        let wide: String = (0..=MAX_ITEMS).map(|i| format!("k{i}: 1\n")).collect();
        assert_eq!(error(&wide).kind, Yaml11ErrorKind::TooManyItems);
        assert!(from_str(&format!("a:\n{}", "  - x\n".repeat(MAX_ITEMS))).is_ok());
    }

    #[test]
    fn a_document_past_the_node_cap_is_refused() {
        let row = format!("  - [{}]\n", vec!["1"; 999].join(", "));
        let e = error(&format!("rows:\n{}", row.repeat(MAX_NODES / 1000 + 1)));
        assert_eq!(e.kind, Yaml11ErrorKind::TooManyNodes);
        assert!(e.path.starts_with("rows[99]["), "{}", e.path);
        // The cap is per document.
        let doc = format!("rows:\n{}", row.repeat(MAX_NODES / 1000 - 1));
        assert_eq!(from_str_multi(&format!("{doc}---\n{doc}")).map(|d| d.len()), Ok(2));
    }

    #[test]
    fn documents_and_syntax_errors() {
        assert_eq!(from_str_multi("a: 1\n---\nb: off\n").ok(), Some(vec![json!({"a": 1}), json!({"b": false})]));
        assert_eq!(from_str_multi("").ok(), Some(vec![]));
        assert_eq!(from_str("---\na: 1\n...\n").ok(), Some(json!({"a": 1})));
        let e = error("a: [1, 2\n");
        assert!(matches!(e.kind, Yaml11ErrorKind::Syntax(_)), "{e}");
        assert!(e.line >= 1 && e.column >= 1, "{e}");
    }

    #[test]
    fn float_keys_are_named_as_go_formats_float32() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (100.0, "100"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.000_012_5, "1.25e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e300, ".inf"),
            (f64::NAN, ".nan"),
            (f64::NEG_INFINITY, "-.inf"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float32_g(f), want, "{f}");
        }
    }
}
