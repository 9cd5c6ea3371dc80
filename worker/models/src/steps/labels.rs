//! Class names for a classifier: a JSON list, a JSON object from index to name (as
//! `imagenet_class_index.json` and `imagenet1k_clean_names.json` ship them), or one per line.

use serde_json::Value;

use crate::ModelError;
use crate::assets::Asset;

/// Parses `asset` into exactly `classes` names.
///
/// # Errors
/// [`ModelError::Asset`] naming `model.labels` when the file is unreadable or its count differs
/// from the classifier's.
pub fn parse(asset: &Asset, classes: usize) -> Result<Vec<String>, ModelError> {
    let refuse = |message: String| ModelError::Asset { field: "model.labels", uri: asset.uri.clone(), message };
    let text = std::str::from_utf8(&asset.bytes).map_err(|e| refuse(format!("is not UTF-8 text: {e}")))?;
    let labels = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items.iter().map(name_of).collect::<Option<Vec<_>>>(),
        Ok(Value::Object(map)) => {
            let mut indexed = Vec::with_capacity(map.len());
            for (key, value) in &map {
                let index: usize =
                    key.trim().parse().map_err(|_| refuse(format!("key `{key}` is not a class index")))?;
                indexed.push((index, name_of(value)));
            }
            indexed.sort_by_key(|(i, _)| *i);
            if indexed.iter().enumerate().any(|(position, (index, _))| position != *index) {
                return Err(refuse("class indices are not 0, 1, 2, ... without gaps".into()));
            }
            indexed.into_iter().map(|(_, name)| name).collect()
        }
        _ => Some(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()),
    };
    let labels = labels.ok_or_else(|| refuse("holds an entry that is neither a name nor [id, name]".into()))?;
    if labels.len() != classes {
        return Err(refuse(format!("has {} labels, the classifier scores {classes} classes", labels.len())));
    }
    Ok(labels)
}

/// A label entry: `"tabby"`, or `["n02123045", "tabby"]` (the WordNet id first).
fn name_of(value: &Value) -> Option<String> {
    match value {
        Value::String(name) => Some(name.clone()),
        Value::Array(parts) => parts.last().and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

/// Labels `0`, `1`, ... for a classifier without a labels file.
pub fn indices(classes: usize) -> Vec<String> {
    (0..classes).map(|i| i.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn asset(text: &str) -> Asset {
        Asset { uri: "labels".into(), bytes: Bytes::from(text.to_string()) }
    }

    #[test]
    fn reads_lists_index_maps_and_lines() {
        let want = vec!["tench".to_string(), "goldfish".to_string()];
        assert_eq!(parse(&asset(r#"["tench", "goldfish"]"#), 2).expect("list"), want);
        assert_eq!(
            parse(&asset(r#"{"1": ["n01443537", "goldfish"], "0": ["n01440764", "tench"]}"#), 2).expect("map"),
            want
        );
        assert_eq!(parse(&asset("tench\ngoldfish\n"), 2).expect("lines"), want);
    }

    #[test]
    fn a_count_that_differs_from_the_classifier_is_refused() {
        let err = parse(&asset("a\nb\nc\n"), 1000).expect_err("count");
        assert_eq!(err.to_string(), "model.labels `labels`: has 3 labels, the classifier scores 1000 classes");
    }
}
