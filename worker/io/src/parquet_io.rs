//! Parquet over object stores: an [`AsyncFileReader`] that fetches byte ranges, and the writer
//! that uploads a part file whole (multipart, or temp file and rename on local disks).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

/// Reads one Parquet object by ranged GETs.
#[derive(Debug, Clone)]
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl ObjectReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self { store, path }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        let options = GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() };
        async move { self.store.get_opts(&self.path, options).await.map_err(external)?.bytes().await.map_err(external) }
            .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move { self.store.get_ranges(&self.path, &ranges).await.map_err(external) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let reader = ParquetMetaDataReader::new().with_arrow_reader_options(options);
            Ok(Arc::new(reader.load_via_suffix_and_finish(self).await?))
        }
        .boxed()
    }
}

/// The footer is fetched as a suffix, so the file size need not be known.
impl MetadataSuffixFetch for &mut ObjectReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, Result<Bytes>> {
        let options = GetOptions { range: Some(GetRange::Suffix(suffix as u64)), ..Default::default() };
        async move { self.store.get_opts(&self.path, options).await.map_err(external)?.bytes().await.map_err(external) }
            .boxed()
    }
}

/// An upload of one object that becomes visible only when closed.
pub fn object_writer(store: Arc<dyn ObjectStore>, path: Path) -> BufWriter {
    BufWriter::new(store, path)
}
