//! The plain data types of the index API.

use crate::descriptor::DescriptorOptions;
use crate::image::PhotoFacts;
use crate::model::Label;

/// The id of one item (an image, or one frame of a video). Ids are never reused, even after a
/// removal, so an id seen once always names the same item or none.
pub type ItemId = i64;

/// What the vectors of an index were made with. Vectors of different models (or sizes) are not
/// comparable, so an index is bound to one config for life.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexConfig {
    pub model: String,
    pub dim: usize,
    pub descriptor: DescriptorOptions,
}

impl IndexConfig {
    /// A config with the baseline descriptor.
    pub fn new(model: impl Into<String>, dim: usize) -> Self {
        IndexConfig {
            model: model.into(),
            dim,
            descriptor: DescriptorOptions::baseline(),
        }
    }
}

impl std::fmt::Display for IndexConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "model {:?} ({}-d vectors, descriptor {})",
            self.model,
            self.dim,
            self.descriptor.to_json()
        )
    }
}

/// Size and modification time of a file when it was indexed: the scanner compares them with the
/// file system to skip unchanged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
}

/// The BLAKE3 hash of a file's bytes: what tells an exact copy from a file that only looks the
/// same, whatever its name or date. Computed from the bytes read for decoding, so it costs
/// no extra read of an image.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of_bytes(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    /// The hash of everything `reader` yields (a video, streamed rather than held).
    pub fn of_reader(reader: impl std::io::Read) -> std::io::Result<ContentHash> {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(reader)?;
        Ok(ContentHash(*hasher.finalize().as_bytes()))
    }

    /// From 32 stored bytes; None for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<ContentHash> {
        bytes.try_into().ok().map(ContentHash)
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// What a file is: an image gives one item, a video one item per sampled frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Video,
}

impl MediaKind {
    /// The spelling stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<MediaKind> {
        match s {
            "image" => Some(MediaKind::Image),
            "video" => Some(MediaKind::Video),
            _ => None,
        }
    }
}

/// A file to store, with all its items. Adding a path that is already present replaces its items.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub path: String,
    pub stamp: FileStamp,
    /// None when unknown (a file indexed before hashes were kept).
    pub content_hash: Option<ContentHash>,
    pub kind: MediaKind,
    /// What the file's metadata says (EXIF: date taken, camera, place); empty for a video.
    pub facts: PhotoFacts,
    /// May be empty: the file is then remembered (so an unchanged file is not retried) but has
    /// nothing to search.
    pub items: Vec<NewItem>,
}

/// One image or video frame with its L2-normalised feature vector.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// Seconds from the start of a video; `None` for an image.
    pub t: Option<f64>,
    pub width: u32,
    pub height: u32,
    pub vector: Vec<f32>,
    /// Region descriptors (see [`crate::descriptor::regions`]); empty when the index keeps
    /// none.
    pub regions: Regions,
    /// Its most probable ImageNet classes (see [`crate::model::kept_labels`]), for search by
    /// words.
    pub labels: Vec<Label>,
}

/// An item's region descriptors: where each region lies in the image, and its raw
/// (unprojected, L2-normalised) vector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Regions {
    pub boxes: Vec<Region>,
    /// `boxes.len()` vectors of the index's dimension, one after the other.
    pub vectors: Vec<f32>,
}

impl Regions {
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.boxes.len()
    }
}

/// A rectangle of an image, as fractions of its width and height (so it holds whatever size
/// the image is shown at): `x`, `y` the top-left corner, `w`, `h` the size, all in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Region {
    /// The whole image.
    pub const WHOLE: Region = Region {
        x: 0.0,
        y: 0.0,
        w: 1.0,
        h: 1.0,
    };

    /// Intersection over union: 1 for the same rectangle, 0 for disjoint ones.
    pub fn iou(&self, other: &Region) -> f32 {
        let w = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let h = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        let inter = w.max(0.0) * h.max(0.0);
        let union = self.w * self.h + other.w * other.h - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// Its share of the image's area.
    pub fn area(&self) -> f32 {
        self.w * self.h
    }
}

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// HNSW graph search: fast, recall slightly below 1.
    Approximate,
    /// Brute force over every stored f32 vector: slow on big collections, the ground truth.
    Exact,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: ItemId,
    /// Cosine similarity of the stored f32 vector with the query: 1 = same direction. Both
    /// whitened first when the index has an active whitening.
    pub score: f32,
    pub path: String,
    pub t: Option<f64>,
    pub kind: MediaKind,
    /// Feature matches with the query that one transform explains, when the search verified
    /// this hit (see [`crate::verify`]).
    pub inliers: Option<usize>,
    /// Where in the result the query was found, when a region of it matched better than the
    /// whole (or verification located the query in it).
    pub region: Option<Region>,
}

/// Everything the catalog knows about an item, except its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    pub id: ItemId,
    pub path: String,
    pub t: Option<f64>,
    pub width: u32,
    pub height: u32,
    pub kind: MediaKind,
    pub stamp: FileStamp,
}

/// Counts and sizes, for `lookalike stats` and the server's metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub files: u64,
    /// Files of kind image.
    pub images: u64,
    /// Files of kind video.
    pub videos: u64,
    /// Searchable items (images plus video frames).
    pub items: u64,
    pub dim: usize,
    pub model: String,
    /// SQLite database plus its WAL.
    pub catalog_bytes: u64,
    /// ANN snapshot files.
    pub ann_bytes: u64,
    /// How the index describes images (fixed at its creation).
    pub descriptor: DescriptorOptions,
    /// The active PCA-whitening, if any.
    pub whitening: Option<WhiteningInfo>,
}

/// What is known about a learned PCA-whitening (see [`crate::descriptor::whitening`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WhiteningInfo {
    /// Grows with every (re)learning; ANN snapshots are named after it.
    pub version: i64,
    pub in_dim: usize,
    pub out_dim: usize,
    /// How many items the collection held when it was learned.
    pub learned_from: u64,
    /// Unix nanoseconds.
    pub created_ns: i64,
}
