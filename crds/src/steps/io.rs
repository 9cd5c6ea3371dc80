//! Steps that read and write objects: `download` and `upload` (their kernels are in `weir-io`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PoolName, StepConfig};

step_config!(
    /// Read the object a URI column names (local path, `file://`, `s3://`, `http(s)://`) into bytes.
    Download {
        input: String,
        output: String,
        /// Requests in flight at once per worker; default 32.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1024))]
        max_connections: Option<u32>,
        /// Retries of a transient failure, with exponential backoff; default 5.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(max = 100))]
        retries: Option<u32>,
        /// Per-request timeout; default 60.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        timeout_seconds: Option<u32>,
    }
);
impl_step_config!(Download, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Write each row of a bytes column to an object under `uri`, named from the row's source
    /// reference (so a retried unit rewrites the same objects), and output the object's URI.
    Upload {
        input: String,
        output: String,
        /// Prefix to write under (`s3://bucket/frames/`, `file:///data/out/`).
        uri: String,
        /// File name extension, e.g. `jpg`; default none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extension: Option<String>,
        /// Requests in flight at once per worker; default 32.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1024))]
        max_connections: Option<u32>,
        /// Retries of a transient failure, with exponential backoff; default 5.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(max = 100))]
        retries: Option<u32>,
    }
);
impl_step_config!(Upload, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));
