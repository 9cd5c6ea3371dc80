//! The objects a model step is built from, and which ones each architecture needs.
//!
//! The caller (the planner, which owns the object stores) reads them before the step is built,
//! so a missing file fails the job at start.

use bytes::Bytes;
use weir_crds::{ModelArch, ModelSpec};

/// One object read whole, with the URI it came from (for messages).
#[derive(Debug, Clone)]
pub struct Asset {
    pub uri: String,
    pub bytes: Bytes,
}

impl Asset {
    /// A local file read whole, named by its path.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn read(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self { uri: path.display().to_string(), bytes: Bytes::from(std::fs::read(path)?) })
    }
}

/// What a model needs besides the weights, by field name (`model.tokenizer`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Companion {
    Tokenizer,
    Config,
    Labels,
}

impl Companion {
    /// The manifest field that names it.
    pub fn field(self) -> &'static str {
        match self {
            Companion::Tokenizer => "model.tokenizer",
            Companion::Config => "model.config",
            Companion::Labels => "model.labels",
        }
    }
}

/// The weights and companion files of one model.
#[derive(Debug, Clone)]
pub struct ModelAssets {
    pub weights: Asset,
    pub tokenizer: Option<Asset>,
    pub config: Option<Asset>,
    pub labels: Option<Asset>,
}

impl ModelAssets {
    /// Assets with only the weights, companions to be added with [`ModelAssets::with`].
    pub fn new(weights: Asset) -> Self {
        Self { weights, tokenizer: None, config: None, labels: None }
    }

    /// Adds a companion file.
    pub fn with(mut self, companion: Companion, asset: Asset) -> Self {
        match companion {
            Companion::Tokenizer => self.tokenizer = Some(asset),
            Companion::Config => self.config = Some(asset),
            Companion::Labels => self.labels = Some(asset),
        }
        self
    }
}

/// The companion files `spec` needs and where to read each: the URI it names, or for files a
/// text model cannot do without, the file of the usual name beside the weights.
pub fn companions(spec: &ModelSpec) -> Vec<(Companion, String)> {
    let mut wanted = Vec::new();
    if matches!(spec.arch, ModelArch::Bert | ModelArch::Whisper) {
        let tokenizer = spec.tokenizer.clone().unwrap_or_else(|| sibling(&spec.uri, "tokenizer.json"));
        wanted.push((Companion::Tokenizer, tokenizer));
    }
    if spec.arch == ModelArch::Bert {
        let config = spec.config.clone().unwrap_or_else(|| sibling(&spec.uri, "config.json"));
        wanted.push((Companion::Config, config));
    }
    if let Some(labels) = &spec.labels {
        wanted.push((Companion::Labels, labels.clone()));
    }
    wanted
}

/// The object named `name` in the same folder as `uri`.
fn sibling(uri: &str, name: &str) -> String {
    match uri.rfind('/') {
        Some(slash) => format!("{}{name}", &uri[..=slash]),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_models_read_tokenizer_and_config_beside_the_weights_unless_named() {
        let mut spec = ModelSpec {
            config: Some("/etc/minilm.json".into()),
            ..ModelSpec::new(ModelArch::Bert, "s3://models/minilm/model.safetensors")
        };
        assert_eq!(
            companions(&spec),
            vec![
                (Companion::Tokenizer, "s3://models/minilm/tokenizer.json".to_string()),
                (Companion::Config, "/etc/minilm.json".to_string())
            ]
        );
        spec.arch = ModelArch::Whisper;
        assert_eq!(companions(&spec), vec![(Companion::Tokenizer, "s3://models/minilm/tokenizer.json".to_string())]);
        spec.arch = ModelArch::Resnet18;
        spec.uri = "model.safetensors".into();
        assert!(companions(&spec).is_empty());
        spec.labels = Some("labels.txt".into());
        assert_eq!(companions(&spec), vec![(Companion::Labels, "labels.txt".to_string())]);
    }
}
