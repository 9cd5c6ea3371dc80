//! Weir's object-storage I/O: URI resolution, the files and Parquet sources, the Parquet sink and
//! the `download` and `upload` steps.
//!
//! # Layout
//! - [`store`]: turns `s3://`, `file://`, `http(s)://` URIs and local paths into object stores.
//! - [`source`]: plans work units from a job's source and reads them as Arrow batches.
//! - [`sink`]: writes each unit's rows (and failed rows) as Parquet part files.
//! - [`download`]: the `download` step.
//! - [`upload`]: the `upload` step.
//! - [`rowio`]: one bounded, retried request per row, shared by `download` and `upload`.
//! - [`fetch`]: reads a whole object (a tokenizer, model weights) before a job starts.
//! - [`parquet_io`]: Parquet reading and writing over object stores.

pub mod download;
pub mod fetch;
pub mod parquet_io;
pub mod rowio;
pub mod sink;
pub mod source;
pub mod store;
pub mod upload;

pub use store::{Location, StoreError, StoreRegistry};
