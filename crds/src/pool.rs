//! Pool names: short DNS labels that name a job's worker pools (`cpu`, `gpu-l4`, `gpu-h100`).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Longest pool name: a worker pod is named `<job>-<pool>-<index>`, and with a job name of at
/// most [`crate::MAX_JOB_NAME`] characters and up to four index digits it stays a DNS label.
pub const MAX_POOL_NAME: usize = 16;

/// Most pools one job may declare (keeps status and the CRD's rules bounded).
pub const MAX_POOLS: usize = 8;

/// The shape of a pool name, as a regular expression (also the CRD's `pattern`).
pub const POOL_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// The name of a worker pool: a lower-case DNS label of at most [`MAX_POOL_NAME`] characters
/// that starts with a letter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(try_from = "String", into = "String")]
pub struct PoolName(String);

/// A string that is not a valid pool name, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a pool name: {why}")]
pub struct InvalidPoolName {
    pub name: String,
    pub why: &'static str,
}

impl PoolName {
    /// The default pool: it leases units and runs every step that names no pool.
    pub fn cpu() -> Self {
        Self("cpu".to_string())
    }

    /// The pool model steps run on by default when the job declares it.
    pub fn gpu() -> Self {
        Self("gpu".to_string())
    }

    /// # Errors
    /// [`InvalidPoolName`] unless `name` is a DNS label of at most [`MAX_POOL_NAME`] characters
    /// starting with a letter.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidPoolName> {
        let name = name.into();
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_POOL_NAME {
            Some("it is longer than 16 characters")
        } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            Some("only lower-case letters, digits and `-` are allowed")
        } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) || name.ends_with('-') {
            Some("it must start with a letter and end with a letter or digit")
        } else {
            None
        };
        match why {
            Some(why) => Err(InvalidPoolName { name, why }),
            None => Ok(Self(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Pools named `gpu` or `gpu-*` ask for one GPU per pod and the GPU worker image unless
    /// their spec says otherwise.
    pub fn is_gpu_by_name(&self) -> bool {
        self.0 == "gpu" || self.0.starts_with("gpu-")
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PoolName {
    type Error = InvalidPoolName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl From<PoolName> for String {
    fn from(pool: PoolName) -> Self {
        pool.0
    }
}

impl std::str::FromStr for PoolName {
    type Err = InvalidPoolName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl JsonSchema for PoolName {
    fn schema_name() -> Cow<'static, str> {
        "PoolName".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A pool of `spec.pools` (a DNS label of at most 16 characters).",
            "maxLength": MAX_POOL_NAME,
            "pattern": POOL_NAME_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_short_dns_labels() {
        for good in ["cpu", "gpu", "gpu-l4", "gpu-h100", "a", "x9"] {
            assert_eq!(PoolName::new(good).map(|p| p.to_string()), Ok(good.to_string()));
        }
        for bad in ["", "GPU", "gpu_l4", "-gpu", "gpu-", "9gpu", "a-very-long-pool-name"] {
            assert!(PoolName::new(bad).is_err(), "{bad}");
        }
        assert!(PoolName::new("gpu-l4").is_ok_and(|p| p.is_gpu_by_name()));
        assert!(!PoolName::cpu().is_gpu_by_name());
    }
}
