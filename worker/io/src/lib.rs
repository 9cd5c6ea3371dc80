//! Weir's object-storage I/O: URI resolution, the files and Parquet sources, the Parquet sink and
//! the `download` step.
//!
//! # Layout
//! - [`store`]: turns `s3://`, `file://`, `http(s)://` URIs and local paths into object stores.
//! - [`source`]: plans work units from a job's source and reads them as Arrow batches.
//! - [`sink`]: writes each unit's rows (and failed rows) as Parquet part files.
//! - [`download`]: the `download` step.
//! - [`parquet_io`]: Parquet reading and writing over object stores.

pub mod download;
pub mod parquet_io;
pub mod sink;
pub mod source;
pub mod store;

pub use store::{StoreError, StoreRegistry};
