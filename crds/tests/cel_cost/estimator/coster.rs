//! The worst-case cost of one CEL expression (cel-go's `coster`, with Kubernetes' and the extensions' function costs).

use std::collections::{BTreeMap, HashMap};

use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedEntryExpr, IdedExpr, LiteralValue};

use super::sizes::{Decl, Kind, MAP_KEY, Size, UNKNOWN};

/// Cost per byte of a string scanned (`common.StringTraversalCostFactor`).
const TRAVERSAL: f64 = 0.1;
/// Cost per character of a regular expression (`common.RegexStringLengthCostFactor`).
const REGEX: f64 = 0.25;
/// The base cost of a list literal or a list-allocating call (`common.ListCreateBaseCost`).
const LIST_CREATE: u64 = 10;
/// The base cost of a map literal (`common.MapCreateBaseCost`).
const MAP_CREATE: u64 = 30;

/// The worst-case cost of one evaluation of `expr` on a node of type `root` (`self` and `oldSelf`), or what in
/// it the cost model does not cover.
pub(super) fn max_cost(root: &Decl, expr: &IdedExpr) -> Result<u64, String> {
    Coster { root, locals: HashMap::new() }.estimate(expr).map(|e| e.cost)
}

const TWO_TO_THE_64: f64 = 18_446_744_073_709_551_616.0;

/// cel-go's `multiplyByCostFactor`: `ceil(x * factor)` in `f64`, `u64::MAX` past the range.
fn scaled(size: u64, factor: f64) -> u64 {
    let x = size as f64;
    if x > 0.0 && factor > 0.0 && x > u64::MAX as f64 / factor {
        return u64::MAX;
    }
    let product = (x * factor).ceil();
    if product >= TWO_TO_THE_64 { u64::MAX } else { product as u64 }
}

/// The sizes of a list's or map's entries, known for literals and what is built from them.
#[derive(Debug, Clone, Copy)]
struct Entry {
    list: bool,
    key: Size,
    val: Size,
}

fn union_entries(a: Option<Entry>, b: Option<Entry>) -> Option<Entry> {
    let (a, b) = (a?, b?);
    Some(Entry { list: a.list, key: a.key.union(b.key), val: a.val.union(b.val) })
}

// ---------------------------------------------------------------------------------------------------------------
// CEL types, as far as the estimate depends on them (which overload runs, whether a select costs).

#[derive(Clone)]
enum Ty<'s> {
    Object(&'s BTreeMap<String, Decl>),
    List(Box<Ty<'s>>),
    Map(Box<Ty<'s>>, Box<Ty<'s>>),
    String,
    Bytes,
    Int,
    Uint,
    Double,
    Bool,
    Null,
    Duration,
    Timestamp,
    Dyn,
}

impl<'s> Ty<'s> {
    fn of(decl: &'s Decl) -> Self {
        match &decl.kind {
            Kind::Object(fields) => Ty::Object(fields),
            Kind::List(item) => Ty::List(Box::new(Ty::of(item))),
            Kind::Map(value) => Ty::Map(Box::new(Ty::of(&MAP_KEY)), Box::new(Ty::of(value))),
            Kind::String => Ty::String,
            Kind::Bytes => Ty::Bytes,
            Kind::Int => Ty::Int,
            Kind::Double => Ty::Double,
            Kind::Bool => Ty::Bool,
            Kind::Duration => Ty::Duration,
            Kind::Timestamp => Ty::Timestamp,
            Kind::Dyn => Ty::Dyn,
        }
    }

    /// cel-go's `isScalar`: the types whose size is always 1.
    fn scalar_size(&self) -> Option<Size> {
        matches!(self, Ty::Bool | Ty::Int | Ty::Uint | Ty::Double | Ty::Duration | Ty::Timestamp)
            .then_some(Size::fixed(1))
    }

    /// Whether the string overloads of `<` and `+` may run (a `dyn` may be a string, and cel-go then takes the
    /// costliest overload).
    fn may_be_text(&self) -> bool {
        matches!(self, Ty::String | Ty::Bytes | Ty::Dyn)
    }

    fn is_text(&self) -> bool {
        matches!(self, Ty::String | Ty::Bytes)
    }

    fn is_unknown(&self) -> bool {
        matches!(self, Ty::Dyn | Ty::Null)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The estimator (cel-go's `coster`).

/// What is known about one expression: its cost and, for sizing what uses it, its size, entry sizes, path, type.
#[derive(Clone)]
struct Est<'s> {
    cost: u64,
    /// cel-go's `computeSize`; `None` is an unknown size.
    size: Option<Size>,
    entry: Option<Entry>,
    /// The schema path: `self.steps.@items.input`; empty where cel-go has none.
    path: Vec<String>,
    ty: Ty<'s>,
    /// The value of an int literal (cel-go's `nodeAsUintValue` reads it).
    int_literal: Option<i64>,
}

impl<'s> Est<'s> {
    fn new(cost: u64, ty: Ty<'s>) -> Self {
        Est { cost, size: None, entry: None, path: Vec::new(), ty, int_literal: None }
    }

    fn with_size(cost: u64, size: Size, ty: Ty<'s>) -> Self {
        Est { size: Some(size), ..Est::new(cost, ty) }
    }

    fn size_or_unknown(&self) -> Size {
        self.size.unwrap_or(UNKNOWN)
    }
}

/// A comprehension's variable: what an identifier naming it stands for.
#[derive(Clone)]
struct Local<'s> {
    path: Vec<String>,
    size: Option<Size>,
    entry: Option<Entry>,
    ty: Ty<'s>,
}

type Outcome<T> = Result<T, String>;

struct Coster<'s> {
    /// The type of the node the rule sits on: `self` and `oldSelf`.
    root: &'s Decl,
    locals: HashMap<String, Vec<Local<'s>>>,
}

impl<'s> Coster<'s> {
    fn estimate(&mut self, e: &IdedExpr) -> Outcome<Est<'s>> {
        match &e.expr {
            Expr::Literal(literal) => Ok(literal_estimate(literal)),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(select) if select.test => {
                // `has()`: the API server sets PresenceTestHasCost(false), so only the operand costs.
                let operand = self.estimate(&select.operand)?;
                Ok(self.sized(Est::new(operand.cost, Ty::Bool)))
            }
            Expr::Select(select) => self.select(&select.operand, &select.field),
            Expr::Call(call) => self.call(call),
            Expr::List(list) => self.list_literal(&list.elements),
            Expr::Map(map) => self.map_literal(&map.entries),
            Expr::Comprehension(comprehension) => self.comprehension(comprehension),
            Expr::Struct(_) => Err("a message literal".into()),
            Expr::Unspecified => Err("an empty expression".into()),
        }
    }

    /// cel-go's `EstimateSize` for a path: `0..MaxElements` of the node it names, walked from the rule's node with
    /// the first element (`self`, `oldSelf`, or whatever stands first) skipped.
    fn schema_size(&self, path: &[String]) -> Option<Size> {
        let mut node = self.root;
        for step in path.iter().skip(1) {
            node = match (step.as_str(), &node.kind) {
                ("@items" | "@values", Kind::List(elem) | Kind::Map(elem)) => elem,
                ("@keys", Kind::Map(_)) => &MAP_KEY,
                (field, Kind::Object(fields)) => fields.get(field)?,
                _ => return None,
            };
        }
        Some(Size { min: 0, max: node.max_elements })
    }

    /// Fills in the size cel-go's `computeSize` finds for an expression that has none of its own: the schema's
    /// for its path, else 1 for a scalar.
    fn sized(&self, mut est: Est<'s>) -> Est<'s> {
        if est.size.is_none() {
            est.size = self.path_or_type_size(&est.path, &est.ty);
        }
        est
    }

    fn path_or_type_size(&self, path: &[String], ty: &Ty<'s>) -> Option<Size> {
        let from_schema = if path.is_empty() { None } else { self.schema_size(path) };
        from_schema.or_else(|| ty.scalar_size())
    }

    fn ident(&self, name: &str) -> Outcome<Est<'s>> {
        if let Some(local) = self.locals.get(name).and_then(|stack| stack.last()) {
            let size = self.path_or_type_size(&local.path, &local.ty).or(local.size);
            let est = Est { size, entry: local.entry, path: local.path.clone(), ..Est::new(1, local.ty.clone()) };
            return Ok(est);
        }
        match name {
            "self" | "oldSelf" => {
                let est = Est { path: vec![name.to_string()], ..Est::new(1, Ty::of(self.root)) };
                Ok(self.sized(est))
            }
            _ => Err(format!("the undeclared identifier `{name}`")),
        }
    }

    fn select(&mut self, operand: &IdedExpr, field: &str) -> Outcome<Est<'s>> {
        let operand = self.estimate(operand)?;
        let (ty, select_cost) = match &operand.ty {
            Ty::Object(fields) => {
                (fields.get(field).map(Ty::of).ok_or_else(|| format!("the undefined field `{field}`"))?, 1)
            }
            Ty::Map(_, value) => ((**value).clone(), 1),
            Ty::Dyn => (Ty::Dyn, 0),
            _ => return Err(format!("`.{field}` on a value that has no fields")),
        };
        let mut path = operand.path;
        path.push(field.to_string());
        Ok(self.sized(Est { path, ..Est::new(operand.cost.saturating_add(select_cost), ty) }))
    }

    fn list_literal(&mut self, elements: &[IdedExpr]) -> Outcome<Est<'s>> {
        let mut cost = LIST_CREATE;
        let mut item = if elements.is_empty() { Size::fixed(0) } else { Size { min: u64::MAX, max: 0 } };
        let mut item_ty = Ty::Dyn;
        for (i, element) in elements.iter().enumerate() {
            let element = self.estimate(element)?;
            cost = cost.saturating_add(element.cost);
            item = item.union(element.size_or_unknown());
            if i == 0 {
                item_ty = element.ty;
            }
        }
        let entry = Entry { list: true, key: Size::fixed(1), val: item };
        let size = Some(Size::fixed(elements.len() as u64));
        Ok(Est { size, entry: Some(entry), ..Est::new(cost, Ty::List(Box::new(item_ty))) })
    }

    fn map_literal(&mut self, entries: &[IdedEntryExpr]) -> Outcome<Est<'s>> {
        let mut cost = MAP_CREATE;
        let empty = if entries.is_empty() { Size::fixed(0) } else { Size { min: u64::MAX, max: 0 } };
        let (mut key, mut val) = (empty, empty);
        let (mut key_ty, mut val_ty) = (Ty::Dyn, Ty::Dyn);
        for (i, entry) in entries.iter().enumerate() {
            let EntryExpr::MapEntry(entry) = &entry.expr else { return Err("a message field in a map".into()) };
            let (k, v) = (self.estimate(&entry.key)?, self.estimate(&entry.value)?);
            cost = cost.saturating_add(k.cost).saturating_add(v.cost);
            key = key.union(k.size_or_unknown());
            val = val.union(v.size_or_unknown());
            if i == 0 {
                (key_ty, val_ty) = (k.ty, v.ty);
            }
        }
        let ty = Ty::Map(Box::new(key_ty), Box::new(val_ty));
        let size = Some(Size::fixed(entries.len() as u64));
        Ok(Est { size, entry: Some(Entry { list: false, key, val }), ..Est::new(cost, ty) })
    }

    /// `iterRange + accuInit + result + size(iterRange) * (loopCondition + loopStep)`.
    fn comprehension(&mut self, c: &ComprehensionExpr) -> Outcome<Est<'s>> {
        let range = self.estimate(&c.iter_range)?;
        let init = self.estimate(&c.accu_init)?;
        self.push(&c.accu_var, Local { path: init.path.clone(), size: init.size, entry: init.entry, ty: init.ty });
        self.push_iteration_vars(c, &range)?;
        let condition = self.estimate(&c.loop_cond)?;
        let step = self.estimate(&c.loop_step)?;
        self.pop(&c.iter_var);
        if let Some(second) = &c.iter_var2 {
            self.pop(second);
        }
        let builds_container = matches!(c.accu_init.expr, Expr::List(_) | Expr::Map(_));
        if builds_container && let Some(accu) = self.locals.get_mut(&c.accu_var).and_then(|s| s.last_mut()) {
            accu.ty = step.ty.clone();
        }
        let result = self.estimate(&c.result)?;
        self.pop(&c.accu_var);

        let count = range.size_or_unknown();
        let per_item = condition.cost.saturating_add(step.cost);
        let cost = range
            .cost
            .saturating_add(init.cost)
            .saturating_add(result.cost)
            .saturating_add(count.max.saturating_mul(per_item));
        let (size, entry) = match c.accu_init.expr {
            Expr::Literal(_) => (init.size, None),
            Expr::List(_) | Expr::Map(_) => (Some(count), step.entry),
            _ => (None, None),
        };
        Ok(self.sized(Est { size, entry, ..Est::new(cost, result.ty) }))
    }

    /// cel-go's `pushIterSingle`, or `pushIterKey` and `pushIterValue` for the two-variable forms.
    fn push_iteration_vars(&mut self, c: &ComprehensionExpr, range: &Est<'s>) -> Outcome<()> {
        let (key_ty, value_ty) = match &range.ty {
            Ty::List(item) => (Ty::Int, (**item).clone()),
            Ty::Map(key, value) => ((**key).clone(), (**value).clone()),
            Ty::Dyn => (Ty::Dyn, Ty::Dyn),
            _ => return Err("a comprehension over a value that is neither a list nor a map".into()),
        };
        let list = range.entry.map_or(matches!(range.ty, Ty::List(_)), |e| e.list);
        let (key_size, val_size) = (range.entry.map(|e| e.key), range.entry.map(|e| e.val));
        let local = |subpath: &str, size: Option<Size>, ty: Ty<'s>| {
            let mut path = range.path.clone();
            path.push(subpath.to_string());
            Local { path, size, entry: None, ty }
        };
        match &c.iter_var2 {
            None if list => self.push(&c.iter_var, local("@items", val_size, value_ty)),
            None => self.push(&c.iter_var, local("@keys", key_size, key_ty)),
            Some(second) => {
                let (key_path, value_path) = if list { ("@indices", "@items") } else { ("@keys", "@values") };
                self.push(&c.iter_var, local(key_path, key_size, key_ty));
                self.push(second, local(value_path, val_size, value_ty));
            }
        }
        Ok(())
    }

    fn push(&mut self, name: &str, local: Local<'s>) {
        self.locals.entry(name.to_string()).or_default().push(local);
    }

    fn pop(&mut self, name: &str) {
        if let Some(stack) = self.locals.get_mut(name) {
            stack.pop();
        }
    }

    /// A call costs its target, its arguments and itself (cel-go's `costCall`).
    fn call(&mut self, call: &CallExpr) -> Outcome<Est<'s>> {
        match (call.func_name.as_str(), call.target.is_some(), call.args.as_slice()) {
            ("_?_:_", false, [condition, if_true, if_false]) => return self.conditional(condition, if_true, if_false),
            ("dyn", false, [arg]) => {
                let arg = self.estimate(arg)?;
                return Ok(Est { size: arg.size, entry: arg.entry, ..Est::new(arg.cost.saturating_add(1), Ty::Dyn) });
            }
            _ => {}
        }
        let args = call.args.iter().map(|a| self.estimate(a)).collect::<Outcome<Vec<_>>>()?;
        let target = call.target.as_deref().map(|t| self.estimate(t)).transpose()?;
        let own = self.function(&call.func_name, target.as_ref(), &args)?;
        let inputs = args.iter().chain(&target).fold(0, |sum: u64, e| sum.saturating_add(e.cost));
        Ok(self.sized(Est { cost: inputs.saturating_add(own.cost), ..own }))
    }

    /// `cond ? a : b` costs the condition and the dearer branch; its size covers both.
    fn conditional(&mut self, condition: &IdedExpr, if_true: &IdedExpr, if_false: &IdedExpr) -> Outcome<Est<'s>> {
        let condition = self.estimate(condition)?;
        let (t, f) = (self.estimate(if_true)?, self.estimate(if_false)?);
        let cost = condition.cost.saturating_add(t.cost.max(f.cost));
        let size = Some(t.size_or_unknown().union(f.size_or_unknown()));
        let entry = union_entries(t.entry, f.entry);
        let ty = if t.ty.is_unknown() { f.ty } else { t.ty };
        Ok(Est { size, entry, ..Est::new(cost, ty) })
    }

    /// What the function itself costs, before its target's and arguments' costs are added (cel-go's
    /// `functionCost`, Kubernetes' `EstimateCallCost`, the extension libraries' estimators), with its result's size
    /// where that is not the schema's.
    fn function(&self, name: &str, target: Option<&Est<'s>>, args: &[Est<'s>]) -> Outcome<Est<'s>> {
        let unsupported = || format!("the function `{name}` with {} argument(s)", args.len());
        let Some(target) = target else {
            return global_function(name, args).ok_or_else(unsupported);
        };
        let text = |cost: u64, ty: Ty<'s>| Ok(Est::new(cost, ty));
        match (name, args) {
            ("size", []) => text(1, Ty::Int),
            ("startsWith" | "endsWith", [arg]) => text(scaled(arg.size_or_unknown().max, TRAVERSAL), Ty::Bool),
            ("contains", [arg]) => {
                let scans = scaled(target.size_or_unknown().max, TRAVERSAL);
                text(scans.saturating_mul(scaled(arg.size_or_unknown().max, TRAVERSAL)), Ty::Bool)
            }
            ("matches", [regex]) => text(regex_cost(target, regex), Ty::Bool),
            ("find", [regex]) => Ok(Est::with_size(regex_cost(target, regex), found(target), Ty::String)),
            ("findAll", [regex]) => {
                Ok(Est::with_size(regex_cost(target, regex), found(target), Ty::List(Box::new(Ty::String))))
            }
            ("indexOf" | "lastIndexOf", [_] | [_, _]) => text(self.traversal(target), Ty::Int),
            ("isSorted", []) => text(self.traversal(target), Ty::Bool),
            ("sum" | "min" | "max", []) => text(self.traversal(target), item_ty(&target.ty)),
            ("slice", [start, end]) => Ok(slice(target, start, end)),
            ("lowerAscii" | "upperAscii" | "trim", []) | ("substring", [_] | [_, _]) => {
                let size = target.size_or_unknown();
                Ok(Est::with_size(scaled(size.max, TRAVERSAL), size, Ty::String))
            }
            ("replace", [from, to] | [from, to, _]) => Ok(replace(target, from, to)),
            ("split", [_] | [_, _]) => Ok(split(target, args)),
            ("join", [] | [_]) => Ok(self.join(target, args.first())),
            _ => Err(unsupported()),
        }
    }

    /// Kubernetes' `indexOf`, `lastIndexOf`, `isSorted`, `sum`, `min`, `max`: one comparison per item, plus a scan
    /// of each item where the items are strings; one scan of a string target.
    fn traversal(&self, target: &Est<'s>) -> u64 {
        let size = target.size_or_unknown();
        let Ty::List(item) = &target.ty else { return scaled(size.max, TRAVERSAL) };
        let per_item =
            if item.is_text() { 1u64.saturating_add(scaled(self.item_size(target).max, TRAVERSAL)) } else { 1 };
        size.max.saturating_mul(per_item)
    }

    /// The size of a list's items by the schema path (Kubernetes' `listElementNode`), unknown without a path.
    fn item_size(&self, list: &Est<'s>) -> Size {
        if list.path.is_empty() {
            return UNKNOWN;
        }
        let mut path = list.path.clone();
        path.push("@items".to_string());
        self.schema_size(&path).unwrap_or(UNKNOWN)
    }

    /// Kubernetes' `join`: the result is every item and every separator.
    fn join(&self, target: &Est<'s>, separator: Option<&Est<'s>>) -> Est<'s> {
        let count = target.size_or_unknown();
        let mut size =
            if matches!(target.ty, Ty::List(_)) { count.mul(self.item_size(target)) } else { Size::fixed(0) };
        if let Some(separator) = separator {
            let separators = Size { min: count.min.saturating_sub(1), max: count.max.saturating_sub(1) };
            size = size.add(separator.size_or_unknown().mul(separators));
        }
        Est::with_size(scaled(size.max, TRAVERSAL), size, Ty::String)
    }
}

fn literal_estimate<'s>(literal: &LiteralValue) -> Est<'s> {
    let (ty, size, int_literal) = match literal {
        LiteralValue::String(s) => (Ty::String, s.inner().chars().count() as u64, None),
        LiteralValue::Bytes(b) => (Ty::Bytes, b.inner().len() as u64, None),
        LiteralValue::Int(i) => (Ty::Int, 1, Some(*i.inner())),
        LiteralValue::UInt(_) => (Ty::Uint, 1, None),
        LiteralValue::Double(_) => (Ty::Double, 1, None),
        LiteralValue::Boolean(_) => (Ty::Bool, 1, None),
        LiteralValue::Null => (Ty::Null, 1, None),
    };
    Est { size: Some(Size::fixed(size)), int_literal, ..Est::new(0, ty) }
}

// ---------------------------------------------------------------------------------------------------------------
// What each operator and function costs itself, and the size of its result.

/// Operators and global functions (no target).
fn global_function<'s>(name: &str, args: &[Est<'s>]) -> Option<Est<'s>> {
    let plain = |cost: u64, ty: Ty<'s>| Some(Est::new(cost, ty));
    match (name, args) {
        ("_&&_" | "_||_", [_, _]) => plain(0, Ty::Bool),
        ("!_" | "@not_strictly_false", [_]) => plain(1, Ty::Bool),
        ("-_", [operand]) => plain(1, operand.ty.clone()),
        ("_==_" | "_!=_", [lhs, rhs]) => plain(comparison(lhs, rhs), Ty::Bool),
        ("_<_" | "_<=_" | "_>_" | "_>=_", [lhs, rhs]) => {
            plain(if lhs.ty.may_be_text() { comparison(lhs, rhs) } else { 1 }, Ty::Bool)
        }
        ("_+_", [lhs, rhs]) => Some(add(lhs, rhs)),
        ("_-_" | "_*_" | "_/_" | "_%_", [lhs, _]) => plain(1, lhs.ty.clone()),
        ("@in", [_, container]) => {
            let cost = if matches!(container.ty, Ty::List(_) | Ty::Dyn) {
                scaled(container.size_or_unknown().max, 1.0)
            } else {
                1
            };
            plain(cost, Ty::Bool)
        }
        ("_[_]", [container, _]) => Some(index(container)),
        ("size", [_]) => plain(1, Ty::Int),
        // The global form is not `matches_string`, so cel-go charges it as a plain call.
        ("matches", [_, _]) => plain(1, Ty::Bool),
        ("bytes", [arg]) if matches!(arg.ty, Ty::String) => {
            let size = arg.size_or_unknown();
            let result = Size { min: size.min, max: size.max.saturating_mul(4) };
            Some(Est::with_size(scaled(size.max, TRAVERSAL), result, Ty::Bytes))
        }
        ("string", [arg]) if matches!(arg.ty, Ty::Bytes) => {
            let size = arg.size_or_unknown();
            Some(Est::with_size(scaled(size.max, TRAVERSAL), Size { min: size.min / 4, max: size.max }, Ty::String))
        }
        ("int" | "uint" | "double" | "bool" | "string" | "bytes" | "duration" | "timestamp" | "type", [_]) => {
            plain(1, conversion_ty(name))
        }
        _ => None,
    }
}

fn conversion_ty<'s>(name: &str) -> Ty<'s> {
    match name {
        "int" => Ty::Int,
        "uint" => Ty::Uint,
        "double" => Ty::Double,
        "bool" => Ty::Bool,
        "string" => Ty::String,
        "bytes" => Ty::Bytes,
        "duration" => Ty::Duration,
        "timestamp" => Ty::Timestamp,
        _ => Ty::Dyn,
    }
}

/// `==`, `!=`, and `<` on strings: a scan of the shorter operand.
fn comparison(lhs: &Est<'_>, rhs: &Est<'_>) -> u64 {
    scaled(lhs.size_or_unknown().max.min(rhs.size_or_unknown().max), TRAVERSAL)
}

/// `+`: strings cost a scan of the result; lists and numbers cost 1.
fn add<'s>(lhs: &Est<'s>, rhs: &Est<'s>) -> Est<'s> {
    let size = lhs.size_or_unknown().add(rhs.size_or_unknown());
    let entry = union_entries(rhs.entry, lhs.entry);
    match (&lhs.ty, &rhs.ty) {
        (Ty::List(l), Ty::List(r)) => {
            let item = if l.is_unknown() { r.clone() } else { l.clone() };
            Est { entry, ..Est::with_size(1, size, Ty::List(item)) }
        }
        (l, _) if l.may_be_text() => {
            let ty = if matches!(l, Ty::Dyn) { rhs.ty.clone() } else { l.clone() };
            Est { entry, ..Est::with_size(scaled(size.max, TRAVERSAL), size, ty) }
        }
        _ => Est::new(1, lhs.ty.clone()),
    }
}

/// `list[i]` and `map[k]`: the result's path is the container's plus `@items` or `@values`.
fn index<'s>(container: &Est<'s>) -> Est<'s> {
    let (subpath, ty) = match &container.ty {
        Ty::List(item) => ("@items", (**item).clone()),
        Ty::Map(_, value) => ("@values", (**value).clone()),
        _ => return Est::new(1, Ty::Dyn),
    };
    let mut path = container.path.clone();
    path.push(subpath.to_string());
    Est { size: container.entry.map(|e| e.val), path, ..Est::new(1, ty) }
}

/// `matches`, `find`, `findAll`: a scan of the string (plus one) times a quarter of the pattern's length.
fn regex_cost(target: &Est<'_>, regex: &Est<'_>) -> u64 {
    let scans = scaled(target.size_or_unknown().add(Size::fixed(1)).max, TRAVERSAL);
    scans.saturating_mul(scaled(regex.size_or_unknown().max, REGEX))
}

fn found(target: &Est<'_>) -> Size {
    Size { min: 0, max: target.size_or_unknown().max }
}

fn item_ty<'s>(ty: &Ty<'s>) -> Ty<'s> {
    match ty {
        Ty::List(item) => (**item).clone(),
        _ => Ty::Dyn,
    }
}

/// cel-go's `ext.Lists` v3 `slice`: one per item of the result, plus a call and a list allocation. The result's
/// length is `end - start` where both are int literals, else `size(list) - start`; like cel-go, that subtraction
/// wraps (a literal start past a list's bound yields a huge size).
fn slice<'s>(target: &Est<'s>, start: &Est<'s>, end: &Est<'s>) -> Est<'s> {
    let literal = |e: &Est<'_>, default: u64| e.int_literal.map_or(default, |n| n.max(0).unsigned_abs());
    let length = literal(end, target.size_or_unknown().max).wrapping_sub(literal(start, 0));
    let cost = scaled(length, 1.0).saturating_add(1).saturating_add(LIST_CREATE);
    Est::with_size(cost, Size::fixed(length), target.ty.clone())
}

/// Kubernetes' `replace`: a scan and a rebuild of the string; the result may grow by every replacement.
fn replace<'s>(target: &Est<'s>, from: &Est<'s>, to: &Est<'s>) -> Est<'s> {
    let (size, from, to) = (target.size_or_unknown(), from.size_or_unknown(), to.size_or_unknown());
    let (mut count, mut kept) = (Size::fixed(0), Size::fixed(0));
    if from.min == 0 {
        count.max = if size.max < u64::MAX { size.max + 1 } else { size.max };
        kept.max = size.max;
    } else if to.max <= from.min {
        kept.max = size.max;
    } else {
        count.max = (size.max as f64 / from.min as f64).ceil() as u64;
    }
    if from.max == 0 {
        count.min = if size.min < u64::MAX { size.min + 1 } else { size.min };
        kept.min = size.min;
    } else if from.max <= to.min {
        kept.min = size.min;
    } else {
        count.min = (size.min as f64 / from.max as f64).ceil() as u64;
    }
    Est::with_size(scaled(size.max, 2.0 * TRAVERSAL), count.mul(to).add(kept), Ty::String)
}

/// Kubernetes' `split`: a scan and a rebuild; at most one item per character, or the literal limit.
fn split<'s>(target: &Est<'s>, args: &[Est<'s>]) -> Est<'s> {
    let size = target.size_or_unknown();
    let limit = args.get(1).and_then(|a| a.int_literal).and_then(|n| u64::try_from(n).ok());
    let result = Size { min: 0, max: limit.unwrap_or(size.max) };
    Est::with_size(scaled(size.max, 2.0 * TRAVERSAL), result, Ty::List(Box::new(Ty::String)))
}
