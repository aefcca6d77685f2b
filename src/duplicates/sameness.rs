//! Whether two images are the same photograph.
//!
//! A global descriptor cannot tell: copies of a photo turned grey or cropped score as low as
//! 0.47 against it, while two shots of one scene seconds apart score up to 0.99 (measured on
//! the benchmark of BENCHMARKS.md, "Near-duplicate groups"). What does tell is how the two
//! differ. Renditions of one photo differ by a transform of the whole frame (scaled, cropped,
//! turned a few degrees, mirrored) and of the whole tone range (recompressed, grey, brighter),
//! with at most a small local edit such as a caption. Two shots of a burst or of one scene
//! differ locally: the subject moved, the viewpoint shifted, so no single transform lines all
//! of one up with the other.
//!
//! So the test aligns the two images, first by their frames (when their shapes agree) and
//! else by their local features ([`verify`]'s ORB and RANSAC), each also mirrored; it fits
//! one linear tone map over the overlap; and it counts the blocks where the aligned images
//! still disagree. The same photo is an alignment under which the overlap covers enough of
//! both, the tones correlate, and almost no block disagrees.

use std::sync::OnceLock;

use image::{imageops, GrayImage, RgbImage};

use crate::image::ImageError;
use crate::verify::orb::{self, LocalFeatures};
use crate::verify::ransac::Affine;
use crate::verify::{self};

/// Cells along the longer side of the first image: what is compared is each cell's mean,
/// which averages away recompression and resampling noise but not a moved subject.
const GRID: usize = 128;
/// The fewest cells an overlap must have to say anything.
const MIN_CELLS: usize = 64;
/// Frames whose aspect ratios differ by less than this are tried aligned edge to edge.
const ASPECT_TOLERANCE: f32 = 0.02;
/// Images flatter than this (standard deviation of their cells, grey levels) carry no
/// evidence either way.
const MIN_CONTRAST: f32 = 2.0;

/// The thresholds of the test ([`SamenessOptions::default`] says how they were chosen).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamenessOptions {
    /// The share of each image the aligned overlap must cover (a crop keeps at least this
    /// much of the photo it was cut from).
    pub min_overlap: f32,
    /// The least correlation of the two images' cells over the overlap.
    pub min_correlation: f32,
    /// The largest share of the overlap's cells that may disagree (a caption).
    pub max_changed: f32,
    /// A cell disagrees when it is further than this many standard deviations of the first
    /// image's cells from where the tone map puts it.
    pub cell_residual: f32,
    /// The fewest feature matches an alignment by features must explain.
    pub min_inliers: usize,
}

impl Default for SamenessOptions {
    /// Chosen on the benchmark of BENCHMARKS.md ("Near-duplicate groups"): copies of real
    /// photos by the nine copy-detection transforms against same-scene pairs and video bursts.
    /// Nine in ten uncaptioned copies leave no cell disagreeing (crops and turns up to 2%),
    /// captioned ones 0.4-2.5% (median 1.6%), burst frames a second apart 1.6-34% (median
    /// 8%), other views of a scene a median of 11%, but near-still frames (consecutive frames
    /// of a slow scene) from 0%: no threshold tells those from a recompressed copy. 2% keeps
    /// pair precision above 0.99 and loses a quarter of the captioned copies; the table there
    /// shows the trade-off.
    fn default() -> Self {
        SamenessOptions {
            min_overlap: 0.2,
            min_correlation: 0.8,
            max_changed: 0.02,
            cell_residual: 1.0,
            min_inliers: 12,
        }
    }
}

/// How the second image was lined up with the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alignment {
    /// Frame onto frame (same shape).
    Frame,
    /// Frame onto frame, mirrored left to right.
    MirroredFrame,
    /// By matched local features.
    Features,
    /// By matched local features, mirrored.
    MirroredFeatures,
}

/// What comparing two images under one alignment found.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub alignment: Alignment,
    /// Share of the first image and of the second that the overlap covers.
    pub overlap: [f32; 2],
    /// Correlation of the cells over the overlap.
    pub correlation: f32,
    /// Share of the overlap's cells that disagree.
    pub changed: f32,
}

impl Comparison {
    /// Whether this is the same photo under `options`.
    pub fn is_same(&self, options: &SamenessOptions) -> bool {
        self.overlap[0].min(self.overlap[1]) >= options.min_overlap
            && self.correlation >= options.min_correlation
            && self.changed <= options.max_changed
    }
}

/// What the test needs of one image: its grey rendition at [`orb::WORKING_SIDE`], with the
/// sums that average any box of it, and its local features (mirrored too) once asked for.
pub struct Look {
    sums: Integral,
    grey: GrayImage,
    features: OnceLock<Option<LocalFeatures>>,
    mirrored: OnceLock<Option<LocalFeatures>>,
}

impl Look {
    pub fn of(image: &RgbImage) -> Result<Look, ImageError> {
        let grey = orb::working_grey(image)?;
        Ok(Look {
            sums: Integral::of(&grey),
            grey,
            features: OnceLock::new(),
            mirrored: OnceLock::new(),
        })
    }

    fn width(&self) -> f32 {
        self.grey.width() as f32
    }

    fn height(&self) -> f32 {
        self.grey.height() as f32
    }

    fn features(&self, mirrored: bool) -> Option<&LocalFeatures> {
        if mirrored {
            self.mirrored
                .get_or_init(|| {
                    LocalFeatures::of_working(&imageops::flip_horizontal(&self.grey)).ok()
                })
                .as_ref()
        } else {
            self.features
                .get_or_init(|| LocalFeatures::of_working(&self.grey).ok())
                .as_ref()
        }
    }
}

/// Compares `a` with `b` under each alignment in turn until one shows the same photo; the
/// comparison that did, or else the closest one (fewest disagreeing blocks), or None when no
/// alignment was found at all.
pub fn compare(a: &Look, b: &Look, options: &SamenessOptions) -> Option<Comparison> {
    let mut closest: Option<Comparison> = None;
    for alignment in [
        Alignment::Frame,
        Alignment::MirroredFrame,
        Alignment::Features,
        Alignment::MirroredFeatures,
    ] {
        let Some(transform) = align(a, b, alignment, options) else {
            continue;
        };
        let Some(found) = photometric(a, b, &transform, alignment, options) else {
            continue;
        };
        if found.is_same(options) {
            return Some(found);
        }
        if closest.is_none_or(|c| found.changed < c.changed) {
            closest = Some(found);
        }
    }
    closest
}

/// The transform from `a`'s pixels to `b`'s under `alignment`, if it exists.
fn align(a: &Look, b: &Look, alignment: Alignment, options: &SamenessOptions) -> Option<Affine> {
    let (sx, sy) = (b.width() / a.width(), b.height() / a.height());
    let mirror = |t: Affine| {
        let [p, q, r, s, u, v] = t.0;
        Affine([-p, -q, b.width() - r, s, u, v])
    };
    match alignment {
        Alignment::Frame | Alignment::MirroredFrame => {
            let aspect = |l: &Look| l.width() / l.height();
            if (aspect(a) / aspect(b) - 1.0).abs() > ASPECT_TOLERANCE {
                return None;
            }
            let frame = Affine([sx, 0.0, 0.0, 0.0, sy, 0.0]);
            Some(if alignment == Alignment::Frame {
                frame
            } else {
                mirror(frame)
            })
        }
        Alignment::Features | Alignment::MirroredFeatures => {
            let mirrored = alignment == Alignment::MirroredFeatures;
            let (fa, fb) = (a.features(false)?, b.features(mirrored)?);
            let (transform, inliers) = verify::alignment(fa, fb)?;
            (inliers >= options.min_inliers).then(|| {
                if mirrored {
                    mirror(transform)
                } else {
                    transform
                }
            })
        }
    }
}

/// Lines `b` up with `a` through `transform` and measures how far the two agree.
fn photometric(
    a: &Look,
    b: &Look,
    transform: &Affine,
    alignment: Alignment,
    options: &SamenessOptions,
) -> Option<Comparison> {
    let cell = a.width().max(a.height()) / GRID as f32;
    let columns = ((a.width() / cell).round() as usize).max(1);
    let rows = ((a.height() / cell).round() as usize).max(1);
    let (cw, ch) = (a.width() / columns as f32, a.height() / rows as f32);
    // Each cell's mean in a and, where the cell lands inside b, in b.
    let mut pairs: Vec<Option<(f32, f32)>> = Vec::with_capacity(columns * rows);
    for row in 0..rows {
        for column in 0..columns {
            let (x0, y0) = (column as f32 * cw, row as f32 * ch);
            let (x1, y1) = (x0 + cw, y0 + ch);
            let mean_a = a.sums.mean(x0, y0, x1, y1);
            let corners = [[x0, y0], [x1, y0], [x0, y1], [x1, y1]].map(|p| transform.apply(p));
            let (bx0, bx1) = span(corners.map(|p| p[0]));
            let (by0, by1) = span(corners.map(|p| p[1]));
            let inside =
                bx0 >= -0.5 && by0 >= -0.5 && bx1 <= b.width() + 0.5 && by1 <= b.height() + 0.5;
            pairs.push(inside.then(|| (mean_a, b.sums.mean(bx0, by0, bx1, by1))));
        }
    }
    let valid: Vec<(f32, f32)> = pairs.iter().flatten().copied().collect();
    if valid.len() < MIN_CELLS {
        return None;
    }
    let fit = ToneFit::of(&valid)?;
    let disagreeing = valid
        .iter()
        .filter(|&&(va, vb)| (va - fit.predict(vb)).abs() > options.cell_residual * fit.contrast)
        .count();
    let scale = {
        let [p, q, _, s, u, _] = transform.0;
        (p * u - q * s).abs()
    };
    let covered = valid.len() as f32 * cw * ch;
    Some(Comparison {
        alignment,
        overlap: [
            covered / (a.width() * a.height()),
            (covered * scale / (b.width() * b.height())).min(1.0),
        ],
        correlation: fit.correlation,
        changed: disagreeing as f32 / valid.len() as f32,
    })
}

fn span(values: [f32; 4]) -> (f32, f32) {
    values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// The least-squares line taking `b`'s cell means to `a`'s: a recompressed, grey, brighter
/// or lower-contrast copy is such a line away from its original.
struct ToneFit {
    slope: f32,
    offset: f32,
    correlation: f32,
    /// `a`'s standard deviation: the unit residuals are measured in.
    contrast: f32,
}

impl ToneFit {
    fn of(pairs: &[(f32, f32)]) -> Option<ToneFit> {
        let n = pairs.len() as f64;
        let (mut sa, mut sb) = (0.0f64, 0.0f64);
        for &(a, b) in pairs {
            sa += f64::from(a);
            sb += f64::from(b);
        }
        let (ma, mb) = (sa / n, sb / n);
        let (mut vaa, mut vbb, mut vab) = (0.0f64, 0.0f64, 0.0f64);
        for &(a, b) in pairs {
            let (da, db) = (f64::from(a) - ma, f64::from(b) - mb);
            vaa += da * da;
            vbb += db * db;
            vab += da * db;
        }
        let (sd_a, sd_b) = ((vaa / n).sqrt(), (vbb / n).sqrt());
        if sd_a < f64::from(MIN_CONTRAST) || sd_b < f64::from(MIN_CONTRAST) || vab <= 0.0 {
            return None;
        }
        let slope = vab / vbb;
        Some(ToneFit {
            slope: slope as f32,
            offset: (ma - slope * mb) as f32,
            correlation: (vab / (vaa * vbb).sqrt()) as f32,
            contrast: sd_a as f32,
        })
    }

    fn predict(&self, b: f32) -> f32 {
        self.slope * b + self.offset
    }
}

/// Summed-area table of a grey image: the mean of any box in four lookups.
struct Integral {
    width: usize,
    height: usize,
    /// `(width + 1) * (height + 1)` sums; row 0 and column 0 are zero.
    sums: Vec<u32>,
}

impl Integral {
    fn of(grey: &GrayImage) -> Integral {
        let (width, height) = (grey.width() as usize, grey.height() as usize);
        let stride = width + 1;
        let mut sums = vec![0u32; stride * (height + 1)];
        for y in 0..height {
            let mut row = 0u32;
            for x in 0..width {
                row += u32::from(grey.as_raw()[y * width + x]);
                sums[(y + 1) * stride + x + 1] = sums[y * stride + x + 1] + row;
            }
        }
        Integral {
            width,
            height,
            sums,
        }
    }

    /// The mean over the box [x0, x1) x [y0, y1) in pixels, rounded to whole pixels, at least
    /// one pixel, clamped to the image.
    fn mean(&self, x0: f32, y0: f32, x1: f32, y1: f32) -> f32 {
        let clamp = |v: f32, max: usize| (v.round().max(0.0) as usize).min(max);
        let (mut x0, mut x1) = (clamp(x0, self.width), clamp(x1, self.width));
        let (mut y0, mut y1) = (clamp(y0, self.height), clamp(y1, self.height));
        if x1 <= x0 {
            (x0, x1) = (x0.min(self.width - 1), x0.min(self.width - 1) + 1);
        }
        if y1 <= y0 {
            (y0, y1) = (y0.min(self.height - 1), y0.min(self.height - 1) + 1);
        }
        let stride = self.width + 1;
        let at = |x: usize, y: usize| i64::from(self.sums[y * stride + x]);
        let total = at(x1, y1) - at(x0, y1) - at(x1, y0) + at(x0, y0);
        total as f32 / ((x1 - x0) * (y1 - y0)) as f32
    }
}
