//! Writing a shard: rows gathered into row groups and written through Parquet's column API,
//! into a hidden temporary file that is renamed into place once complete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{
    ByteArray, ByteArrayType, DoubleType, FixedLenByteArray, FixedLenByteArrayType, FloatType,
    Int32Type, Int64Type,
};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use super::{Identity, ShardError, ShardRow};
use crate::error::Result;
use crate::image::PhotoFacts;
use crate::index::{encode_labels, encode_regions, NewFile, Regions};
use crate::ingest::{Failure, Sink};

/// The Parquet schema of a shard. The vector is a standard three-level LIST (what Spark and
/// pyarrow write and read as `array<float>` / `list<float>`); the hash is 32 bytes of BLAKE3;
/// `region_boxes` and `region_vectors` hold an item's region descriptors as the catalog stores
/// them (int8, see `crate::descriptor::regions`): opaque to Spark, which only carries them;
/// so is `labels` (the item's kept ImageNet classes, see `crate::index::encode_labels`). The
/// photo's facts (`taken`, `camera_*`, `latitude`, `longitude`) are plain columns, repeated on
/// each of a file's rows.
const SCHEMA: &str = "
message lookalike_shard {
    REQUIRED BYTE_ARRAY path (STRING);
    REQUIRED INT64 size;
    REQUIRED INT64 mtime_ns;
    OPTIONAL FIXED_LEN_BYTE_ARRAY (32) content_hash;
    REQUIRED BYTE_ARRAY kind (STRING);
    OPTIONAL DOUBLE t;
    OPTIONAL INT32 width;
    OPTIONAL INT32 height;
    REQUIRED BYTE_ARRAY model (STRING);
    REQUIRED BYTE_ARRAY descriptor (STRING);
    OPTIONAL group vector (LIST) {
        REPEATED group list {
            REQUIRED FLOAT element;
        }
    }
    OPTIONAL BYTE_ARRAY error (STRING);
    OPTIONAL BYTE_ARRAY partial (STRING);
    OPTIONAL BYTE_ARRAY region_boxes;
    OPTIONAL BYTE_ARRAY region_vectors;
    OPTIONAL BYTE_ARRAY labels;
    OPTIONAL BYTE_ARRAY taken (STRING);
    OPTIONAL BYTE_ARRAY camera_make (STRING);
    OPTIONAL BYTE_ARRAY camera_model (STRING);
    OPTIONAL DOUBLE latitude;
    OPTIONAL DOUBLE longitude;
}
";

/// Rows per row group: ~5 MB of 1280-d vectors, so a writer holds little and a reader can
/// stream.
const ROWS_PER_GROUP: usize = 1024;

/// The version of the layout above, in each file's key-value metadata.
const FORMAT_VERSION: &str = "1";

/// Writes one shard. Nothing appears under a shard's name until [`ShardWriter::finish`]: rows
/// go to a hidden temporary file in the same folder (removed if the writer is dropped), which
/// is then flushed to disk and renamed.
pub struct ShardWriter {
    dir: PathBuf,
    writer: SerializedFileWriter<File>,
    temp: tempfile::TempPath,
    model: ByteArray,
    descriptor: ByteArray,
    group: Columns,
    keys: Vec<String>,
    rows: usize,
}

impl ShardWriter {
    /// Starts a shard in `dir` (created if needed) whose vectors were made with `identity`.
    pub fn create(dir: &Path, identity: &Identity) -> Result<ShardWriter, ShardError> {
        std::fs::create_dir_all(dir).map_err(|e| ShardError::io(dir, e))?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".lookalike-shard-").suffix(".tmp");
        // Readable as any new file is (the umask decides), not private like a temporary file:
        // whoever imports the shard may be another user.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let (file, temp) = builder
            .tempfile_in(dir)
            .map_err(|e| ShardError::io(dir, e))?
            .into_parts();
        let schema = Arc::new(parse_message_type(SCHEMA).expect("the shard schema parses"));
        let vector = ColumnPath::from(vec!["vector".into(), "list".into(), "element".into()]);
        let descriptor = identity.descriptor.to_json();
        let metadata = [
            ("lookalike.format", FORMAT_VERSION.to_owned()),
            ("lookalike.model", identity.model.clone()),
            ("lookalike.descriptor", descriptor.clone()),
        ]
        .into_iter()
        .map(|(key, value)| KeyValue::new(key.to_owned(), value))
        .collect();
        let properties = WriterProperties::builder()
            .set_created_by(format!("lookalike {}", env!("CARGO_PKG_VERSION")))
            .set_compression(Compression::SNAPPY)
            // Floats from a network barely compress, and per-page min/max says nothing.
            .set_column_compression(vector.clone(), Compression::UNCOMPRESSED)
            .set_column_dictionary_enabled(vector.clone(), false)
            .set_column_statistics_enabled(vector, EnabledStatistics::None)
            .set_column_dictionary_enabled(ColumnPath::from("path"), false)
            .set_column_dictionary_enabled(ColumnPath::from("content_hash"), false)
            .set_key_value_metadata(Some(metadata))
            .build();
        let writer = SerializedFileWriter::new(file, schema, Arc::new(properties))
            .map_err(|e| ShardError::parquet(&temp, e))?;
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            writer,
            temp,
            model: ByteArray::from(identity.model.as_str()),
            descriptor: ByteArray::from(descriptor.as_str()),
            group: Columns::default(),
            keys: Vec::new(),
            rows: 0,
        })
    }

    /// Adds one row.
    pub fn push(&mut self, row: ShardRow) -> Result<(), ShardError> {
        if self.keys.last() != Some(&row.path) {
            self.keys.push(row.path.clone());
        }
        self.group.push(row, &self.model, &self.descriptor);
        self.rows += 1;
        if self.group.rows >= ROWS_PER_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> Result<(), ShardError> {
        if self.group.rows == 0 {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        group
            .write(&mut self.writer)
            .map_err(|e| ShardError::parquet(&self.temp, e))
    }

    /// Completes the shard and renames it to `name` in its folder, or, when `name` is None, to
    /// the name of its inputs ([`super::inputs_name`] of every path it holds). The file and the
    /// folder are flushed to disk first, so a shard that has its name is whole.
    pub fn finish(mut self, name: Option<&str>) -> Result<PathBuf, ShardError> {
        self.flush()?;
        let name = match name {
            Some(name) => name.to_owned(),
            None => super::inputs_name(&self.keys),
        };
        let file = self
            .writer
            .into_inner()
            .map_err(|e| ShardError::parquet(&self.temp, e))?;
        file.sync_all().map_err(|e| ShardError::io(&self.temp, e))?;
        let target = self.dir.join(name);
        self.temp
            .persist(&target)
            .map_err(|e| ShardError::io(&target, e.error))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| ShardError::io(&self.dir, e))?;
        Ok(target)
    }
}

/// One row group's values, column by column, with the definition and repetition levels of
/// the optional and repeated ones (Parquet's Dremel encoding).
#[derive(Default)]
struct Columns {
    rows: usize,
    path: Vec<ByteArray>,
    size: Vec<i64>,
    mtime_ns: Vec<i64>,
    content_hash: Optional<FixedLenByteArray>,
    kind: Vec<ByteArray>,
    t: Optional<f64>,
    width: Optional<i32>,
    height: Optional<i32>,
    model: Vec<ByteArray>,
    descriptor: Vec<ByteArray>,
    vector: Vec<f32>,
    vector_def: Vec<i16>,
    vector_rep: Vec<i16>,
    error: Optional<ByteArray>,
    partial: Optional<ByteArray>,
    region_boxes: Optional<ByteArray>,
    region_vectors: Optional<ByteArray>,
    labels: Optional<ByteArray>,
    taken: Optional<ByteArray>,
    camera_make: Optional<ByteArray>,
    camera_model: Optional<ByteArray>,
    latitude: Optional<f64>,
    longitude: Optional<f64>,
}

/// The values present and a definition level per row (1: present, 0: null).
struct Optional<T> {
    values: Vec<T>,
    def: Vec<i16>,
}

impl<T> Default for Optional<T> {
    fn default() -> Self {
        Optional {
            values: Vec::new(),
            def: Vec::new(),
        }
    }
}

impl<T> Optional<T> {
    fn push(&mut self, value: Option<T>) {
        self.def.push(i16::from(value.is_some()));
        self.values.extend(value);
    }
}

impl Columns {
    fn push(&mut self, row: ShardRow, model: &ByteArray, descriptor: &ByteArray) {
        self.rows += 1;
        self.path.push(ByteArray::from(row.path.into_bytes()));
        self.size
            .push(i64::try_from(row.stamp.size).unwrap_or(i64::MAX));
        self.mtime_ns.push(row.stamp.mtime_ns);
        self.content_hash.push(
            row.content_hash
                .map(|h| FixedLenByteArray::from(ByteArray::from(h.0.to_vec()))),
        );
        self.kind.push(ByteArray::from(row.kind.as_str()));
        self.t.push(row.t);
        let int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        self.width.push(row.width.map(int));
        self.height.push(row.height.map(int));
        self.model.push(model.clone());
        self.descriptor.push(descriptor.clone());
        let regions = match &row.vector {
            Some(vector) if !row.regions.is_empty() => {
                Some(encode_regions(&row.regions, vector.len()))
            }
            _ => None,
        };
        let (boxes, vectors) = regions.map(|r| (r.boxes.into(), r.vectors.into())).unzip();
        self.region_boxes.push(boxes);
        self.region_vectors.push(vectors);
        self.labels.push(
            (row.vector.is_some() && !row.labels.is_empty())
                .then(|| ByteArray::from(encode_labels(&row.labels))),
        );
        let text = |s: Option<String>| s.map(|s| ByteArray::from(s.into_bytes()));
        self.taken.push(text(row.facts.taken));
        self.camera_make.push(text(row.facts.camera_make));
        self.camera_model.push(text(row.facts.camera_model));
        self.latitude.push(row.facts.latitude);
        self.longitude.push(row.facts.longitude);
        // Levels of vector.list.element: def 0 = no vector, 2 = an element; rep 1 = the
        // same list goes on. A vector is never empty.
        match row.vector.filter(|v| !v.is_empty()) {
            None => {
                self.vector_def.push(0);
                self.vector_rep.push(0);
            }
            Some(vector) => {
                self.vector_def.extend(std::iter::repeat_n(2, vector.len()));
                self.vector_rep.push(0);
                self.vector_rep
                    .extend(std::iter::repeat_n(1, vector.len() - 1));
                self.vector.extend(vector);
            }
        }
        self.error
            .push(row.error.map(|e| ByteArray::from(e.into_bytes())));
        self.partial
            .push(row.partial.map(|p| ByteArray::from(p.into_bytes())));
    }

    fn write(self, writer: &mut SerializedFileWriter<File>) -> parquet::errors::Result<()> {
        let mut group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&self.path, None, None)?,
                1 => column
                    .typed::<Int64Type>()
                    .write_batch(&self.size, None, None)?,
                2 => column
                    .typed::<Int64Type>()
                    .write_batch(&self.mtime_ns, None, None)?,
                3 => column.typed::<FixedLenByteArrayType>().write_batch(
                    &self.content_hash.values,
                    Some(&self.content_hash.def),
                    None,
                )?,
                4 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&self.kind, None, None)?,
                5 => column.typed::<DoubleType>().write_batch(
                    &self.t.values,
                    Some(&self.t.def),
                    None,
                )?,
                6 => column.typed::<Int32Type>().write_batch(
                    &self.width.values,
                    Some(&self.width.def),
                    None,
                )?,
                7 => column.typed::<Int32Type>().write_batch(
                    &self.height.values,
                    Some(&self.height.def),
                    None,
                )?,
                8 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&self.model, None, None)?,
                9 => column
                    .typed::<ByteArrayType>()
                    .write_batch(&self.descriptor, None, None)?,
                10 => column.typed::<FloatType>().write_batch(
                    &self.vector,
                    Some(&self.vector_def),
                    Some(&self.vector_rep),
                )?,
                11 => column.typed::<ByteArrayType>().write_batch(
                    &self.error.values,
                    Some(&self.error.def),
                    None,
                )?,
                12 => column.typed::<ByteArrayType>().write_batch(
                    &self.partial.values,
                    Some(&self.partial.def),
                    None,
                )?,
                13 => column.typed::<ByteArrayType>().write_batch(
                    &self.region_boxes.values,
                    Some(&self.region_boxes.def),
                    None,
                )?,
                14 => column.typed::<ByteArrayType>().write_batch(
                    &self.region_vectors.values,
                    Some(&self.region_vectors.def),
                    None,
                )?,
                15..=18 => {
                    let text = [
                        &self.labels,
                        &self.taken,
                        &self.camera_make,
                        &self.camera_model,
                    ][index - 15];
                    column.typed::<ByteArrayType>().write_batch(
                        &text.values,
                        Some(&text.def),
                        None,
                    )?
                }
                19 | 20 => {
                    let degrees = [&self.latitude, &self.longitude][index - 19];
                    column.typed::<DoubleType>().write_batch(
                        &degrees.values,
                        Some(&degrees.def),
                        None,
                    )?
                }
                _ => unreachable!("the shard schema has 21 leaf columns"),
            };
            column.close()?;
            index += 1;
        }
        group.close()?;
        Ok(())
    }
}

/// The sink of `lookalike embed`: every file becomes rows of a shard (one per image, one per
/// kept video frame; one without a vector for a video with no frame kept) and every failure
/// an error row.
pub struct ShardSink {
    writer: ShardWriter,
}

impl ShardSink {
    pub fn new(writer: ShardWriter) -> Self {
        ShardSink { writer }
    }

    /// The writer, to [`ShardWriter::finish`] once the run is over.
    pub fn into_writer(self) -> ShardWriter {
        self.writer
    }
}

impl Sink for ShardSink {
    fn put(&mut self, file: NewFile, partial: Option<&str>) -> Result<()> {
        let NewFile {
            path,
            stamp,
            content_hash,
            kind,
            facts,
            items,
        } = file;
        let row = |t, width, height, vector, regions, labels| ShardRow {
            path: path.clone(),
            stamp,
            content_hash,
            kind,
            facts: facts.clone(),
            t,
            width,
            height,
            vector,
            regions,
            labels,
            error: None,
            partial: partial.map(str::to_owned),
        };
        if items.is_empty() {
            self.writer
                .push(row(None, None, None, None, Regions::default(), Vec::new()))?;
        }
        for item in items {
            self.writer.push(row(
                item.t,
                Some(item.width),
                Some(item.height),
                Some(item.vector),
                item.regions,
                item.labels,
            ))?;
        }
        Ok(())
    }

    fn fail(&mut self, failure: &Failure) -> Result<()> {
        self.writer.push(ShardRow {
            path: failure.key.clone(),
            stamp: failure.stamp.unwrap_or_default(),
            content_hash: failure.content_hash,
            kind: failure.kind,
            facts: PhotoFacts::default(),
            t: None,
            width: None,
            height: None,
            vector: None,
            regions: Regions::default(),
            labels: Vec::new(),
            error: Some(failure.reason.clone()),
            partial: None,
        })?;
        Ok(())
    }

    /// Row groups are written as they fill; the last one goes with [`ShardWriter::finish`].
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
