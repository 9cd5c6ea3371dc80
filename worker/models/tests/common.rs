//! Shared test helpers: where the fetched model files are.

#![allow(dead_code)]

use std::path::PathBuf;

use weir_models::assets::Asset;

/// `$WEIR_MODELS` (default `~/.cache/weir/models`), as filled by `scripts/fetch-models.sh`.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("WEIR_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir/models")))
        .expect("WEIR_MODELS or HOME");
    assert!(
        dir.join("efficientnet-lite0").exists() && dir.join("all-MiniLM-L6-v2").exists(),
        "{} lacks the model files: run scripts/fetch-models.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A file read whole, as the planner hands it to a model.
pub fn asset(path: &std::path::Path) -> Asset {
    Asset::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
