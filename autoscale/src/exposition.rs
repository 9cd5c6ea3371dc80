//! The local supervisor's path: the Prometheus text exposition (format 0.0.4) parsed, and the
//! signals computed from two scrapes of every process.

mod rates;

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::signals::DataProblem;

pub use rates::signals_from_scrapes;

/// One series of a scrape: metric name, labels, value (NaN and infinities kept as they are).
pub type ScrapedSample = (String, BTreeMap<String, String>, f64);

/// One process's `/metrics`, read at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub at: Instant,
    pub samples: Vec<ScrapedSample>,
}

impl Scrape {
    /// Parses `text`, read at `at`.
    ///
    /// # Errors
    /// As [`parse`].
    pub fn parse(at: Instant, text: &str) -> Result<Self, DataProblem> {
        Ok(Self { at, samples: parse(text)? })
    }
}

/// The samples of a text exposition: `# HELP`, `# TYPE` and other comments are skipped, label
/// values unescaped (`\\`, `\"`, `\n`), timestamps checked and dropped.
///
/// # Errors
/// [`DataProblem::Malformed`] naming the first line that is not a sample.
pub fn parse(text: &str) -> Result<Vec<ScrapedSample>, DataProblem> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_line(line).map_err(|why| {
            let shown: String = line.chars().take(120).collect();
            DataProblem::Malformed(format!("line {}: {why}: {shown}", index + 1))
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<ScrapedSample, String> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("expected a metric name".into());
    }
    let after_name = &line[name_end..];
    let mut rest = after_name.trim_start();
    let mut labels = BTreeMap::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = parse_labels(inside, &mut labels)?;
    } else if rest.len() == after_name.len() {
        return Err("expected a space before the value".into());
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("expected a value")?;
    let value: f64 = value.parse().map_err(|_| format!("the value {value:?} is not a number"))?;
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().map_err(|_| format!("the timestamp {timestamp:?} is not an integer"))?;
    }
    if fields.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok((name.into(), labels, value))
}

/// Parses `a="b",c="d"}` into `labels`; returns what follows the `}`.
fn parse_labels<'a>(mut text: &'a str, labels: &mut BTreeMap<String, String>) -> Result<&'a str, String> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
        let name = &text[..end];
        if name.is_empty() {
            return Err("expected a label name".into());
        }
        let rest =
            text[end..].trim_start().strip_prefix('=').ok_or_else(|| format!("expected = after label {name}"))?;
        let rest = rest.trim_start().strip_prefix('"').ok_or_else(|| format!("expected a quoted value for {name}"))?;
        let (value, rest) = label_value(rest)?;
        labels.insert(name.to_string(), value);
        text = rest.trim_start();
        if let Some(rest) = text.strip_prefix(',') {
            text = rest;
        } else if !text.starts_with('}') {
            return Err(format!("expected , or }} after label {name}"));
        }
    }
}

/// Unescapes a label value up to its closing quote; returns it and what follows the quote.
fn label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[index + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => return Err(format!("invalid escape \\{other} in a label value")),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("unterminated label value".into())
}

#[cfg(test)]
mod tests;
