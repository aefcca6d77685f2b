//! Reading a shard, row by row. Columns are found by name and read through Parquet's record
//! API, so a shard that another tool rewrote (Spark merging shards, pyarrow filtering them)
//! reads as well as one `embed` wrote: nullable list elements, plain binary hashes, 32-bit
//! sizes and extra columns are all accepted.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use parquet::basic::Repetition;
use parquet::column::reader::{get_typed_column_reader, ColumnReaderImpl};
use parquet::data_type::FloatType;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use parquet::schema::types::{SchemaDescriptor, Type};

use super::{Identity, ShardError};
use crate::descriptor::DescriptorOptions;
use crate::image::PhotoFacts;
use crate::index::{decode_labels, decode_regions, ContentHash, FileStamp, MediaKind, Regions};
use crate::model::Label;

/// One row of a shard: an image, a video frame, or a file that could not be embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRow {
    pub path: String,
    pub stamp: FileStamp,
    pub content_hash: Option<ContentHash>,
    pub kind: MediaKind,
    /// What the file's metadata says (the same on each of its rows).
    pub facts: PhotoFacts,
    /// Seconds into a video; None for an image.
    pub t: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The raw (pre-PCA) descriptor; None for a failed file or a video with no frame kept.
    pub vector: Option<Vec<f32>>,
    /// Its region descriptors (empty when the shard's descriptor keeps none).
    pub regions: Regions,
    /// Its kept ImageNet classes (empty in shards written before labels were kept).
    pub labels: Vec<Label>,
    /// Why the file could not be embedded.
    pub error: Option<String>,
    /// Why a video was embedded only in part.
    pub partial: Option<String>,
}

/// A row's `region_boxes` and `region_vectors`, as read.
type EncodedBlobs = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The columns a shard must have (the others are optional).
const REQUIRED: [&str; 7] = [
    "path",
    "size",
    "mtime_ns",
    "kind",
    "model",
    "descriptor",
    "vector",
];

/// An open shard.
pub struct ShardReader {
    path: PathBuf,
    reader: SerializedFileReader<File>,
}

impl ShardReader {
    /// Opens a shard, checking that it is Parquet with a shard's columns.
    pub fn open(path: &Path) -> Result<ShardReader, ShardError> {
        let file = File::open(path).map_err(|e| ShardError::io(path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|e| ShardError::parquet(path, e))?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let names: Vec<&str> = schema
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name())
            .collect();
        if let Some(missing) = REQUIRED.iter().find(|c| !names.contains(c)) {
            return Err(ShardError::NotAShard {
                path: path.to_path_buf(),
                reason: format!("no column `{missing}` (it has {})", names.join(", ")),
            });
        }
        Ok(ShardReader {
            path: path.to_path_buf(),
            reader,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many rows the shard holds (from its footer).
    pub fn row_count(&self) -> u64 {
        u64::try_from(self.reader.metadata().file_metadata().num_rows()).unwrap_or(0)
    }

    /// What made the vectors of the shard's first row; None for an empty shard.
    pub fn first_identity(&self) -> Result<Option<Identity>, ShardError> {
        let mut rows = self
            .reader
            .get_row_iter(None)
            .map_err(|e| self.parquet(e))?;
        match rows.next() {
            None => Ok(None),
            Some(row) => {
                let row = row.map_err(|e| self.parquet(e))?;
                let (model, descriptor) = self.identity_strings(&row)?;
                self.parse_identity(model, descriptor).map(Some)
            }
        }
    }

    /// Calls `each` with every row in order, after checking that its vector was made with
    /// `expected`'s model and descriptor ([`Identity::same_vectors`]); stops at the first
    /// error, of the shard or of `each`, or when `each` says to.
    pub fn for_each<E: From<ShardError>>(
        &self,
        expected: &Identity,
        mut each: impl FnMut(ShardRow) -> Result<ControlFlow<()>, E>,
    ) -> Result<ControlFlow<()>, E> {
        // The strings of the last identity checked: a shard repeats one, so each row costs
        // two string comparisons, not a JSON parse.
        let mut accepted: Option<(String, String)> = None;
        let metadata = self.reader.metadata();
        let schema = metadata.file_metadata().schema_descr();
        // The vector through the column API, the rest through the record API: a vector as
        // a list of 1280 `Field`s costs more than everything else in the row together.
        let vector_column = (0..schema.num_columns())
            .find(|&i| {
                schema.column(i).path().parts().first().map(String::as_str) == Some("vector")
            })
            .ok_or_else(|| self.bad("no leaf column under `vector`"))?;
        let levels = VectorLevels::of(schema, vector_column);
        let projection = Type::group_type_builder(schema.root_schema().name())
            .with_fields(
                schema
                    .root_schema()
                    .get_fields()
                    .iter()
                    .filter(|f| f.name() != "vector")
                    .cloned()
                    .collect(),
            )
            .build()
            .map_err(|e| self.parquet(e))?;
        for group in 0..metadata.num_row_groups() {
            let group = self
                .reader
                .get_row_group(group)
                .map_err(|e| self.parquet(e))?;
            let column = group
                .get_column_reader(vector_column)
                .map_err(|e| self.parquet(e))?;
            let mut vectors =
                VectorReader::new(get_typed_column_reader::<FloatType>(column), levels);
            let rows = group
                .get_row_iter(Some(projection.clone()))
                .map_err(|e| self.parquet(e))?;
            for row in rows {
                let row = row.map_err(|e| self.parquet(e))?;
                let (model, descriptor) = self.identity_strings(&row)?;
                let known = accepted
                    .as_ref()
                    .is_some_and(|(m, d)| m == model && d == descriptor);
                if !known {
                    let found = self.parse_identity(model, descriptor)?;
                    if !found.same_vectors(expected) {
                        return Err(ShardError::Mismatch {
                            path: self.path.clone(),
                            found: found.to_string(),
                            index: expected.to_string(),
                        }
                        .into());
                    }
                    accepted = Some((model.to_owned(), descriptor.to_owned()));
                }
                let (mut shard_row, regions) = self.row(&row)?;
                shard_row.vector = vectors.next().map_err(|reason| self.bad(reason))?;
                if let ((Some(boxes), Some(vectors)), Some(vector)) = (regions, &shard_row.vector) {
                    shard_row.regions = decode_regions(&boxes, &vectors, vector.len(), 0)
                        .map_err(|e| self.bad(format!("unreadable regions: {e}")))?;
                }
                if each(shard_row)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn identity_strings<'r>(&self, row: &'r Row) -> Result<(&'r str, &'r str), ShardError> {
        let (mut model, mut descriptor) = (None, None);
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("model", Field::Str(s)) => model = Some(s.as_str()),
                ("descriptor", Field::Str(s)) => descriptor = Some(s.as_str()),
                _ => {}
            }
        }
        match (model, descriptor) {
            (Some(model), Some(descriptor)) => Ok((model, descriptor)),
            _ => Err(self.bad("a row without its model or descriptor")),
        }
    }

    fn parse_identity(&self, model: &str, descriptor: &str) -> Result<Identity, ShardError> {
        let descriptor = DescriptorOptions::from_json(descriptor)
            .map_err(|e| self.bad(format!("unreadable descriptor {descriptor:?}: {e}")))?;
        Ok(Identity {
            model: model.to_owned(),
            descriptor,
        })
    }

    /// The row's fields but the vector, and its encoded region boxes and vectors if any
    /// (decoded once the vector gives their dimension).
    fn row(&self, row: &Row) -> Result<(ShardRow, EncodedBlobs), ShardError> {
        let mut regions: EncodedBlobs = (None, None);
        let mut out = ShardRow {
            path: String::new(),
            stamp: FileStamp::default(),
            content_hash: None,
            kind: MediaKind::Image,
            facts: PhotoFacts::default(),
            t: None,
            width: None,
            height: None,
            vector: None,
            regions: Regions::default(),
            labels: Vec::new(),
            error: None,
            partial: None,
        };
        let mut path = None;
        for (name, field) in row.get_column_iter() {
            let bad = |what: &str| self.bad(format!("column `{name}` holds {what}: {field:?}"));
            match name.as_str() {
                "path" => path = Some(string(field).ok_or_else(|| bad("no path"))?),
                "size" => {
                    out.stamp.size = integer(field)
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(|| bad("no size"))?;
                }
                "mtime_ns" => out.stamp.mtime_ns = integer(field).ok_or_else(|| bad("no time"))?,
                "content_hash" => {
                    out.content_hash = match field {
                        Field::Null => None,
                        Field::Bytes(b) => Some(
                            ContentHash::from_slice(b.data())
                                .ok_or_else(|| bad("no 32-byte hash"))?,
                        ),
                        _ => return Err(bad("no hash")),
                    };
                }
                "kind" => {
                    out.kind = string(field)
                        .and_then(|s| MediaKind::parse(&s))
                        .ok_or_else(|| bad("no media kind"))?;
                }
                "t" => {
                    out.t = match field {
                        Field::Null => None,
                        Field::Double(t) => Some(*t),
                        Field::Float(t) => Some(f64::from(*t)),
                        _ => return Err(bad("no time")),
                    };
                }
                "width" | "height" => {
                    let value = match field {
                        Field::Null => None,
                        field => Some(
                            integer(field)
                                .and_then(|v| u32::try_from(v).ok())
                                .ok_or_else(|| bad("no size in pixels"))?,
                        ),
                    };
                    if name == "width" {
                        out.width = value;
                    } else {
                        out.height = value;
                    }
                }
                "error" => out.error = string(field),
                "partial" => out.partial = string(field),
                "labels" => {
                    out.labels = match field {
                        Field::Null => Vec::new(),
                        Field::Bytes(b) => {
                            decode_labels(b.data()).map_err(|e| bad(&format!("no labels ({e})")))?
                        }
                        _ => return Err(bad("no labels")),
                    };
                }
                "taken" => out.facts.taken = string(field),
                "camera_make" => out.facts.camera_make = string(field),
                "camera_model" => out.facts.camera_model = string(field),
                "latitude" | "longitude" => {
                    let degrees = match field {
                        Field::Null => None,
                        Field::Double(v) => Some(*v),
                        Field::Float(v) => Some(f64::from(*v)),
                        _ => return Err(bad("no degrees")),
                    };
                    if name == "latitude" {
                        out.facts.latitude = degrees;
                    } else {
                        out.facts.longitude = degrees;
                    }
                }
                "region_boxes" | "region_vectors" => {
                    let bytes = match field {
                        Field::Null => None,
                        Field::Bytes(b) => Some(b.data().to_vec()),
                        _ => return Err(bad("no region bytes")),
                    };
                    if name == "region_boxes" {
                        regions.0 = bytes;
                    } else {
                        regions.1 = bytes;
                    }
                }
                _ => {}
            }
        }
        out.path = path.ok_or_else(|| self.bad("a row without a path"))?;
        Ok((out, regions))
    }

    fn bad(&self, reason: impl Into<String>) -> ShardError {
        ShardError::NotAShard {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn parquet(&self, e: parquet::errors::ParquetError) -> ShardError {
        ShardError::parquet(&self.path, e)
    }
}

/// The definition levels of the `vector` column's leaf, whatever the writer's nesting: a
/// level below `present` is a null vector, `present` an empty list, `value` an element (and
/// anything between a null element, which a vector may not have).
#[derive(Debug, Clone, Copy)]
struct VectorLevels {
    present: i16,
    value: i16,
}

impl VectorLevels {
    fn of(schema: &SchemaDescriptor, column: usize) -> VectorLevels {
        let value = schema.column(column).max_def_level();
        // The top-level `vector` field adds a level when it is optional; the repeated group
        // under it adds the next.
        let optional = schema
            .root_schema()
            .get_fields()
            .iter()
            .find(|f| f.name() == "vector")
            .is_some_and(|f| f.get_basic_info().repetition() == Repetition::OPTIONAL);
        VectorLevels {
            present: i16::from(optional),
            value,
        }
    }
}

/// Reads one vector (one record of the list column) at a time, in batches.
struct VectorReader {
    column: ColumnReaderImpl<FloatType>,
    levels: VectorLevels,
    def: Vec<i16>,
    rep: Vec<i16>,
    values: Vec<f32>,
    /// The next level and value to hand out.
    level: usize,
    value: usize,
}

impl VectorReader {
    /// Records read from the column at a time.
    const BATCH: usize = 64;

    fn new(column: ColumnReaderImpl<FloatType>, levels: VectorLevels) -> Self {
        VectorReader {
            column,
            levels,
            def: Vec::new(),
            rep: Vec::new(),
            values: Vec::new(),
            level: 0,
            value: 0,
        }
    }

    /// The next row's vector (None: a null vector).
    fn next(&mut self) -> Result<Option<Vec<f32>>, String> {
        if self.level >= self.def.len() {
            self.def.clear();
            self.rep.clear();
            self.values.clear();
            (self.level, self.value) = (0, 0);
            let (records, _, _) = self
                .column
                .read_records(
                    Self::BATCH,
                    Some(&mut self.def),
                    Some(&mut self.rep),
                    &mut self.values,
                )
                .map_err(|e| e.to_string())?;
            if records == 0 {
                return Err("fewer vectors than rows".into());
            }
        }
        let start = self.level;
        let end = (start + 1..self.def.len())
            .find(|&i| self.rep[i] == 0)
            .unwrap_or(self.def.len());
        self.level = end;
        let def = &self.def[start..end];
        if def[0] < self.levels.present {
            return Ok(None);
        }
        if def[0] == self.levels.present {
            return Ok(Some(Vec::new()));
        }
        if def.iter().any(|&d| d != self.levels.value) {
            return Err("a vector with a null element".into());
        }
        let vector = self.values[self.value..self.value + def.len()].to_vec();
        self.value += def.len();
        Ok(Some(vector))
    }
}

fn string(field: &Field) -> Option<String> {
    match field {
        Field::Str(s) => Some(s.clone()),
        _ => None,
    }
}

fn integer(field: &Field) -> Option<i64> {
    match field {
        Field::Long(v) => Some(*v),
        Field::Int(v) => Some(i64::from(*v)),
        Field::ULong(v) => i64::try_from(*v).ok(),
        Field::UInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::Pooling;
    use crate::shard::{ShardWriter, EXTENSION};

    fn identity(pooling: Pooling) -> Identity {
        Identity {
            model: "efficientnet-lite0".into(),
            descriptor: DescriptorOptions {
                pooling,
                ..DescriptorOptions::default()
            },
        }
    }

    fn rows() -> Vec<ShardRow> {
        let base = ShardRow {
            path: "/photos/a.jpg".into(),
            stamp: FileStamp {
                size: 1234,
                mtime_ns: 1_700_000_000_123_456_789,
            },
            content_hash: Some(ContentHash([7; 32])),
            kind: MediaKind::Image,
            facts: PhotoFacts {
                taken: Some("2019-07-14T16:32:05".into()),
                camera_make: Some("Canon".into()),
                camera_model: Some("Canon EOS 5D Mark II".into()),
                latitude: Some(48.8584),
                longitude: Some(-2.2945),
            },
            t: None,
            width: Some(640),
            height: Some(480),
            vector: Some(vec![0.6, 0.8, 0.0]),
            regions: Regions::default(),
            labels: vec![
                Label {
                    class: 207,
                    probability: 0.75,
                },
                Label {
                    class: 999,
                    probability: 0.03125,
                },
            ],
            error: None,
            partial: None,
        };
        vec![
            base.clone(),
            ShardRow {
                path: "/videos/v.mp4".into(),
                kind: MediaKind::Video,
                t: Some(0.0),
                partial: Some("stopped at 3.2 s".into()),
                ..base.clone()
            },
            ShardRow {
                path: "/videos/v.mp4".into(),
                kind: MediaKind::Video,
                t: Some(2.5),
                vector: Some(vec![0.0, 1.0, 0.0]),
                // Values the encoding keeps exactly (int8 multiples of 1/127 of the largest,
                // u16 fractions of 65535).
                regions: Regions {
                    boxes: vec![crate::index::Region::WHOLE],
                    vectors: vec![0.0, 1.0, -1.0],
                },
                partial: Some("stopped at 3.2 s".into()),
                ..base.clone()
            },
            ShardRow {
                path: "/photos/bad.jpg".into(),
                content_hash: None,
                width: None,
                height: None,
                vector: None,
                labels: Vec::new(),
                facts: PhotoFacts::default(),
                error: Some("not an image".into()),
                ..base
            },
        ]
    }

    fn read_all(reader: &ShardReader, expected: &Identity) -> Result<Vec<ShardRow>, ShardError> {
        let mut read = Vec::new();
        let flow = reader.for_each(expected, |row| {
            read.push(row);
            Ok::<_, ShardError>(ControlFlow::Continue(()))
        })?;
        assert!(flow.is_continue(), "nothing asked to stop");
        Ok(read)
    }

    #[test]
    fn rows_come_back_as_written_across_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let gem = identity(Pooling::Gem { p: 3.0 });
        let mut writer = ShardWriter::create(dir.path(), &gem).unwrap();
        // More rows than one row group holds.
        let mut written = Vec::new();
        for i in 0..1500 {
            for mut row in rows() {
                row.path = format!("{}.{i}", row.path);
                written.push(row.clone());
                writer.push(row).unwrap();
            }
        }
        let path = writer.finish(None).unwrap();
        assert_eq!(path.extension().unwrap(), EXTENSION);
        let reader = ShardReader::open(&path).unwrap();
        assert_eq!(reader.row_count(), written.len() as u64);
        assert_eq!(reader.first_identity().unwrap(), Some(gem.clone()));
        assert_eq!(read_all(&reader, &gem).unwrap(), written);
    }

    #[test]
    fn vectors_of_another_descriptor_are_refused_and_whitening_may_differ() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ShardWriter::create(dir.path(), &identity(Pooling::Average)).unwrap();
        for row in rows() {
            writer.push(row).unwrap();
        }
        let reader = ShardReader::open(&writer.finish(Some("s.parquet")).unwrap()).unwrap();
        let err = read_all(&reader, &identity(Pooling::Max)).unwrap_err();
        assert!(
            matches!(err, ShardError::Mismatch { .. }) && err.to_string().contains("average"),
            "{err}"
        );
        let mut unwhitened = identity(Pooling::Average);
        unwhitened.descriptor.whitening = None;
        assert_eq!(read_all(&reader, &unwhitened).unwrap().len(), 4);
    }

    #[test]
    fn a_shard_appears_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ShardWriter::create(dir.path(), &identity(Pooling::Average)).unwrap();
        writer.push(rows().remove(0)).unwrap();
        let visible = || crate::shard::list_shards(&[dir.path().to_path_buf()]).unwrap();
        assert!(visible().is_empty(), "a shard in progress is hidden");
        drop(writer);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "a dropped writer leaves nothing behind"
        );
    }

    #[test]
    fn other_parquet_files_are_not_shards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, b"PAR1 not really").unwrap();
        assert!(matches!(
            ShardReader::open(&path),
            Err(ShardError::Parquet { .. })
        ));
    }
}
