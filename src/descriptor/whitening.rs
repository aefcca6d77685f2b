//! PCA-whitening learned on the collection itself (Jégou & Chum, ECCV 2012).
//!
//! CNN descriptors spend most of their variance on a few directions shared by almost every
//! image (co-occurring activations), which dominate the cosine similarity. Whitening centres
//! the vectors, rotates them onto the principal axes of the collection and rescales each axis
//! to unit variance, so that rare, discriminative directions count as much as common ones;
//! keeping only the top axes also shrinks the vectors.
//!
//! How strongly the axes are equalised is a choice ([`WhiteningOptions::power`]): full
//! whitening (power 0.5, unit variance on every axis) is the literature's choice for instance
//! retrieval, where rare details identify an object, but learned on the collection itself
//! (no separate training set) it amplifies the noise of the weak axes; measured on a
//! class-level collection it halves the mAP, while the plain PCA (power 0: centred, projected
//! onto the top axes, variances kept) improves it. Power 0 is the default.
//!
//! Dividing by `sqrt(eigenvalue)` blows up the noise of the weak axes, whose eigenvalues are
//! estimated from few effective samples. As in the paper's follow-ups, the eigenvalues are
//! regularised: each axis is scaled by `(eigenvalue + SHRINK * mean eigenvalue)^-power`, so
//! an axis much weaker than average is damped instead of amplified.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

use super::pooling::dot;

/// The regularisation added to every eigenvalue, as a fraction of their mean. 0.1 leaves axes
/// stronger than the mean within ~10% of unit variance and caps the gain of a vanishing axis
/// at `sqrt(10 / mean eigenvalue)` instead of infinity.
pub const SHRINK: f64 = 0.1;

/// At most this many vectors are used to learn (a deterministic, evenly spaced subsample):
/// 20k samples estimate a 1280-d covariance well, and the cost stays a few seconds.
pub const MAX_TRAINING_VECTORS: usize = 20_000;

/// Rows per block while accumulating the covariance (bounded memory for the f64 copy).
const BLOCK_ROWS: usize = 2048;

/// Bytes at the start of a stored whitening: format and version.
const MAGIC: &[u8; 8] = b"LKWHITE1";

/// The fewest vectors a whitening to `out_dim` dimensions is learned from.
///
/// Why: the top `out_dim` eigenvectors of a sample covariance are only stable when the sample
/// is several times larger than `out_dim` (4x here); and below ~1000 images a collection's own
/// statistics are mostly the statistics of its few subjects, so whitening would overfit them
/// (a small collection is also cheap to search unwhitened).
pub fn min_vectors(out_dim: usize) -> usize {
    (4 * out_dim).max(1000)
}

/// A collection that grew this many times past the one a whitening was learned from gets a
/// new one: its statistics may have moved, and re-learning costs about as much as indexing
/// a quarter of it once (amortised: at most a third more work over the collection's life).
pub const RELEARN_GROWTH: u64 = 4;

/// Whether a collection of `items` should (re)learn its whitening: `learned_from` is the size
/// the active one was learned at (None: none active), `wanted` the dimensions the descriptor
/// asks for.
pub fn is_due(items: u64, learned_from: Option<u64>, wanted: Option<usize>) -> bool {
    match (learned_from, wanted) {
        (Some(learned_from), _) => items >= RELEARN_GROWTH * learned_from,
        (None, Some(dims)) => items >= min_vectors(dims) as u64,
        (None, None) => false,
    }
}

/// What a whitening learns: how many dimensions it keeps and how strongly it equalises them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "WhiteningSpelling")]
pub struct WhiteningOptions {
    /// The top principal axes kept.
    pub dims: usize,
    /// Each kept axis is scaled by `(eigenvalue + shrink)^-power`: 0.5 whitens fully (unit
    /// variance), 0 only centres, rotates and reduces (PCA), values between damp the strong
    /// axes partly.
    pub power: f32,
}

impl WhiteningOptions {
    /// Full whitening, as in the literature (and as indexes recorded before `power` existed).
    pub const FULL_POWER: f32 = 0.5;
    /// The power when none is given: the best measured (BENCHMARKS.md: on Fashion-MNIST,
    /// mAP 0.558 at power 0, 0.449 at 0.25 and 0.229 at 0.5, from 0.536 unwhitened).
    pub const DEFAULT_POWER: f32 = 0.0;
}

/// `off`, `DIMS` (the default power) or `DIMS:POWER`: `--whiten`'s spelling.
pub fn parse_whitening(s: &str) -> Result<Option<WhiteningOptions>, String> {
    if s == "off" {
        return Ok(None);
    }
    let bad = || format!("{s:?}: expected off, DIMS or DIMS:POWER with DIMS >= 8, POWER in [0, 1]");
    let (dims, power) = match s.split_once(':') {
        Some((dims, power)) => (dims, power.parse::<f32>().map_err(|_| bad())?),
        None => (s, WhiteningOptions::DEFAULT_POWER),
    };
    match dims.parse::<usize>() {
        Ok(dims) if dims >= 8 && (0.0..=1.0).contains(&power) => {
            Ok(Some(WhiteningOptions { dims, power }))
        }
        _ => Err(bad()),
    }
}

/// How the options are stored: a bare number is the dimensions of a full whitening (the
/// spelling of indexes created before `power` existed).
#[derive(Deserialize)]
#[serde(untagged)]
enum WhiteningSpelling {
    Dims(usize),
    Options { dims: usize, power: f32 },
}

impl From<WhiteningSpelling> for WhiteningOptions {
    fn from(spelling: WhiteningSpelling) -> Self {
        match spelling {
            WhiteningSpelling::Dims(dims) => WhiteningOptions {
                dims,
                power: WhiteningOptions::FULL_POWER,
            },
            WhiteningSpelling::Options { dims, power } => WhiteningOptions { dims, power },
        }
    }
}

/// Why a whitening could not be learned or read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WhiteningError {
    #[error("whitening to {out_dim} dimensions needs at least {needed} vectors, got {got}")]
    TooFewVectors {
        out_dim: usize,
        needed: usize,
        got: usize,
    },
    #[error("cannot whiten {in_dim}-d vectors to {out_dim} dimensions (need 0 < out <= in)")]
    BadDimensions { in_dim: usize, out_dim: usize },
    #[error("{len} values is not a whole number of {in_dim}-d vectors")]
    RaggedInput { len: usize, in_dim: usize },
    #[error("whitening power {0} is outside [0, 1]")]
    BadPower(f32),
    #[error("the training vectors contain NaN or infinite values")]
    NotFinite,
    #[error("stored whitening is malformed: {0}")]
    Malformed(String),
}

/// A learned whitening: `apply(v) = normalise(projection * (v - mean))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Whitening {
    pub in_dim: usize,
    pub out_dim: usize,
    mean: Vec<f32>,
    /// `out_dim x in_dim`, row-major: the top eigenvectors of the covariance, strongest first,
    /// each scaled by `(eigenvalue + SHRINK * mean eigenvalue)^-power`.
    projection: Vec<f32>,
    /// `projection * mean`: subtracted after projecting, so that vectors are projected
    /// without a centred copy. Derived, which is why `mean` and `projection` are private.
    offset: Vec<f32>,
}

impl Whitening {
    /// Learns the whitening from `vectors` (`in_dim` values per row, concatenated).
    pub fn learn(
        vectors: &[f32],
        in_dim: usize,
        options: WhiteningOptions,
    ) -> Result<Whitening, WhiteningError> {
        let WhiteningOptions {
            dims: out_dim,
            power,
        } = options;
        if !(0.0..=1.0).contains(&power) {
            return Err(WhiteningError::BadPower(power));
        }
        if in_dim == 0 || out_dim == 0 || out_dim > in_dim {
            return Err(WhiteningError::BadDimensions { in_dim, out_dim });
        }
        if !vectors.len().is_multiple_of(in_dim) {
            return Err(WhiteningError::RaggedInput {
                len: vectors.len(),
                in_dim,
            });
        }
        let n = vectors.len() / in_dim;
        let needed = min_vectors(out_dim);
        if n < needed {
            return Err(WhiteningError::TooFewVectors {
                out_dim,
                needed,
                got: n,
            });
        }
        if vectors.iter().any(|x| !x.is_finite()) {
            return Err(WhiteningError::NotFinite);
        }
        let rows: Vec<&[f32]> = subsample(n, MAX_TRAINING_VECTORS)
            .map(|i| &vectors[i * in_dim..(i + 1) * in_dim])
            .collect();
        let mut mean = vec![0.0f64; in_dim];
        for row in &rows {
            mean.iter_mut().zip(*row).for_each(|(m, x)| *m += *x as f64);
        }
        mean.iter_mut().for_each(|m| *m /= rows.len() as f64);

        // Covariance = sum over blocks of B B^T, B the centred block as columns (gemm).
        let mut covariance = DMatrix::<f64>::zeros(in_dim, in_dim);
        for block in rows.chunks(BLOCK_ROWS) {
            let b =
                DMatrix::<f64>::from_fn(in_dim, block.len(), |i, j| block[j][i] as f64 - mean[i]);
            covariance.gemm(1.0, &b, &b.transpose(), 1.0);
        }
        covariance /= (rows.len() - 1) as f64;

        let eigen = SymmetricEigen::new(covariance);
        let mut order: Vec<usize> = (0..in_dim).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        // Rounding can make the eigenvalues of a rank-deficient covariance slightly negative.
        let values: Vec<f64> = order
            .iter()
            .map(|&i| eigen.eigenvalues[i].max(0.0))
            .collect();
        let shrink = SHRINK * values.iter().sum::<f64>() / in_dim as f64;
        let mut projection = Vec::with_capacity(out_dim * in_dim);
        for (&axis, value) in order.iter().zip(&values).take(out_dim) {
            // A zero-variance collection (all vectors equal) would make this infinite.
            let scale = (value + shrink).max(f64::MIN_POSITIVE).powf(-power as f64);
            projection.extend(
                eigen
                    .eigenvectors
                    .column(axis)
                    .iter()
                    .map(|x| (x * scale) as f32),
            );
        }
        Ok(Whitening::new(
            in_dim,
            out_dim,
            mean.iter().map(|m| *m as f32).collect(),
            projection,
        ))
    }

    fn new(in_dim: usize, out_dim: usize, mean: Vec<f32>, projection: Vec<f32>) -> Whitening {
        let mut whitening = Whitening {
            in_dim,
            out_dim,
            mean,
            projection,
            offset: Vec::new(),
        };
        whitening.offset = whitening.project(&whitening.mean);
        whitening
    }

    /// The whitened, L2-normalised version of one `in_dim` vector: for a query. One dot
    /// product per output axis reads the matrix once, where sgemm would first pack a copy of
    /// it (most of a whitened search's projection time). Equal to [`Whitening::apply_batch`]'s
    /// up to float rounding (the sums run in another order), so stored vectors, which must
    /// project to the same bits whenever projected, go through `apply_batch`.
    pub fn apply(&self, v: &[f32]) -> Vec<f32> {
        assert_eq!(v.len(), self.in_dim, "the vector is in_dim long");
        let mut out: Vec<f32> = self
            .projection
            .chunks_exact(self.in_dim)
            .map(|axis| dot(axis, v))
            .collect();
        self.finish(&mut out);
        out
    }

    /// The whitened, L2-normalised versions of many concatenated `in_dim` rows; returns the
    /// concatenated `out_dim` results. Each result is bit for bit the same whatever else is
    /// in the batch (one row alone included), so that an item's score agrees between searches
    /// and between the exact and the approximate search.
    pub fn apply_batch(&self, rows: &[f32]) -> Vec<f32> {
        let mut out = self.project(rows);
        self.finish(&mut out);
        out
    }

    /// Centres projected rows (subtracting the projected mean) and normalises them.
    fn finish(&self, projected: &mut [f32]) {
        for row in projected.chunks_exact_mut(self.out_dim) {
            row.iter_mut().zip(&self.offset).for_each(|(y, o)| *y -= o);
            normalise(row);
        }
    }

    /// `projection * row` for each of the concatenated rows, as one matrix product:
    /// matrixmultiply's SIMD, cache-blocked sgemm. Called directly rather than through
    /// nalgebra (its backend), which copies the matrix per call and switches to another
    /// algorithm below 6 rows; sgemm sums each output over `in_dim` in the same blocks and
    /// order whatever the number of rows, which is what makes a row's result independent of
    /// its batch.
    fn project(&self, rows: &[f32]) -> Vec<f32> {
        let (m, k) = (self.out_dim, self.in_dim);
        assert_eq!(
            self.projection.len(),
            m * k,
            "projection is out_dim x in_dim"
        );
        assert_eq!(rows.len() % k, 0, "rows are in_dim long");
        let n = rows.len() / k;
        let mut out = vec![0.0f32; n * m];
        // SAFETY: the pointers and strides address exactly the three slices, whose lengths
        // are checked above: `projection` is m x k row-major (row stride k); `rows`, as a
        // k x n matrix, has column stride k; `out`, as m x n, has column stride m (so it is
        // n x m row-major). matrixmultiply reads A and B and writes only C.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                self.projection.as_ptr(),
                k as isize,
                1,
                rows.as_ptr(),
                1,
                k as isize,
                0.0,
                out.as_mut_ptr(),
                1,
                m as isize,
            );
        }
        out
    }

    /// The storage form: magic, in_dim and out_dim (u32 LE), then mean and projection (f32 LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + 4 * (self.mean.len() + self.projection.len()));
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(self.in_dim as u32).to_le_bytes());
        bytes.extend_from_slice(&(self.out_dim as u32).to_le_bytes());
        for x in self.mean.iter().chain(&self.projection) {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Whitening, WhiteningError> {
        let malformed = |why: &str| WhiteningError::Malformed(why.to_owned());
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| malformed("unknown format"))?;
        if rest.len() < 8 {
            return Err(malformed("truncated header"));
        }
        let dim_at =
            |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (in_dim, out_dim) = (dim_at(0) as usize, dim_at(4) as usize);
        if in_dim == 0 || out_dim == 0 || out_dim > in_dim {
            return Err(WhiteningError::BadDimensions { in_dim, out_dim });
        }
        let values: Vec<f32> = rest[8..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if rest.len() - 8 != 4 * in_dim * (out_dim + 1) {
            return Err(malformed("length does not match its dimensions"));
        }
        let (mean, projection) = values.split_at(in_dim);
        Ok(Whitening::new(
            in_dim,
            out_dim,
            mean.to_vec(),
            projection.to_vec(),
        ))
    }
}

/// Indices of at most `max` rows evenly spread over `0..n` (every row when `n <= max`).
fn subsample(n: usize, max: usize) -> impl Iterator<Item = usize> {
    let take = n.min(max);
    (0..take).map(move |i| i * n / take)
}

/// Scales `v` to unit length; a zero vector stays zero rather than becoming NaN.
fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64* and Box-Muller: deterministic gaussian samples.
    struct Rng(u64);

    impl Rng {
        fn gaussian(&mut self) -> f64 {
            let mut uniform = || {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
            };
            let (u, v) = (uniform().max(1e-12), uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    const IN: usize = 24;
    const OUT: usize = 6;

    fn full(dims: usize) -> WhiteningOptions {
        WhiteningOptions {
            dims,
            power: WhiteningOptions::FULL_POWER,
        }
    }

    /// Samples with a known covariance: `OUT` strong axes (standard deviations 10..5) and
    /// weak ones (0.5), rotated by a fixed mixing of coordinates and offset from the origin.
    fn samples(n: usize) -> Vec<f32> {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut out = Vec::with_capacity(n * IN);
        for _ in 0..n {
            let z: Vec<f64> = (0..IN).map(|i| sigma(i) * rng.gaussian()).collect();
            // An orthogonal mixing: a rotation by 0.7 rad in each plane (2k, 2k+1).
            let (c, s) = (0.7f64.cos(), 0.7f64.sin());
            for k in 0..IN / 2 {
                let (a, b) = (z[2 * k], z[2 * k + 1]);
                out.push((c * a - s * b + 3.0) as f32);
                out.push((s * a + c * b - 1.0) as f32);
            }
        }
        out
    }

    fn sigma(axis: usize) -> f64 {
        if axis < OUT {
            10.0 - axis as f64
        } else {
            0.5
        }
    }

    /// The variance the regularisation leaves on the kept `axis`, from the true eigenvalues:
    /// 1 without it, lambda / (lambda + SHRINK * mean lambda) with it (0.94 to 0.99 here).
    fn kept_variance(axis: usize) -> f64 {
        let mean = (0..IN).map(|i| sigma(i).powi(2)).sum::<f64>() / IN as f64;
        let lambda = sigma(axis).powi(2);
        lambda / (lambda + SHRINK * mean)
    }

    /// Whitened (not normalised) training rows.
    fn unnormalised(w: &Whitening, rows: &[f32]) -> Vec<Vec<f64>> {
        rows.chunks_exact(IN)
            .map(|v| {
                w.projection
                    .chunks_exact(IN)
                    .map(|p| {
                        p.iter()
                            .zip(v.iter().zip(&w.mean))
                            .map(|(a, (x, m))| *a as f64 * (*x - *m) as f64)
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn whitened_training_vectors_have_about_identity_covariance() {
        let n = 4000;
        let data = samples(n);
        let w = Whitening::learn(&data, IN, full(OUT)).unwrap();
        assert_eq!((w.in_dim, w.out_dim), (IN, OUT));
        assert_eq!(w.projection.len(), IN * OUT);
        let y = unnormalised(&w, &data);
        for a in 0..OUT {
            let mean = y.iter().map(|r| r[a]).sum::<f64>() / n as f64;
            assert!(mean.abs() < 0.05, "axis {a} mean {mean}");
            for b in 0..OUT {
                let cov = y.iter().map(|r| r[a] * r[b]).sum::<f64>() / (n - 1) as f64;
                let expected = if a == b { kept_variance(a) } else { 0.0 };
                assert!(
                    (cov - expected).abs() < 0.08,
                    "cov[{a}][{b}] = {cov}, expected about {expected}"
                );
            }
        }
    }

    #[test]
    fn power_zero_keeps_the_principal_variances() {
        let n = 4000;
        let data = samples(n);
        let options = WhiteningOptions {
            dims: OUT,
            power: 0.0,
        };
        let y = unnormalised(&Whitening::learn(&data, IN, options).unwrap(), &data);
        for a in 0..OUT {
            let var = y.iter().map(|r| r[a] * r[a]).sum::<f64>() / (n - 1) as f64;
            let expected = sigma(a).powi(2);
            assert!(
                (var / expected - 1.0).abs() < 0.1,
                "axis {a}: variance {var}, expected about {expected}"
            );
        }
    }

    #[test]
    fn options_read_the_old_bare_dimensions_as_full_whitening() {
        let old: WhiteningOptions = serde_json::from_str("512").unwrap();
        assert_eq!(old, full(512));
        let options = WhiteningOptions {
            dims: 256,
            power: 0.0,
        };
        let json = serde_json::to_string(&options).unwrap();
        assert_eq!(
            serde_json::from_str::<WhiteningOptions>(&json).unwrap(),
            options
        );
        let bad = WhiteningOptions {
            dims: OUT,
            power: 2.0,
        };
        assert_eq!(
            Whitening::learn(&samples(1000), IN, bad),
            Err(WhiteningError::BadPower(2.0))
        );
    }

    #[test]
    fn command_line_spellings() {
        assert_eq!(parse_whitening("off"), Ok(None));
        assert_eq!(
            parse_whitening("256:0"),
            Ok(Some(WhiteningOptions {
                dims: 256,
                power: 0.0
            }))
        );
        assert_eq!(
            parse_whitening("512").unwrap().unwrap().power,
            WhiteningOptions::DEFAULT_POWER
        );
        for bad in ["4", "512:2", "512:x", "many", ""] {
            assert!(parse_whitening(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_row_projects_the_same_alone_or_in_any_batch() {
        let data = samples(1200);
        let w = Whitening::learn(&data, IN, full(OUT)).unwrap();
        let rows = &data[..40 * IN];
        let batch = w.apply_batch(rows);
        assert_eq!(batch.len(), 40 * OUT);
        // Batches of 1, 6 and 40 rows, across the sizes where algorithms could change.
        let sixes = w.apply_batch(&rows[..6 * IN]);
        for (i, (row, got)) in rows
            .chunks_exact(IN)
            .zip(batch.chunks_exact(OUT))
            .enumerate()
        {
            let single = w.apply_batch(row);
            let norm = single.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
            assert_eq!(single, got, "row {i}");
            if i < 6 {
                assert_eq!(single, sixes[i * OUT..(i + 1) * OUT], "row {i} of 6");
            }
            // A query's projection: the same up to rounding.
            for (q, s) in w.apply(row).iter().zip(&single) {
                assert!((q - s).abs() < 1e-6, "row {i}: {q} vs {s}");
            }
            // And it is the definition's.
            let mut expected: Vec<f32> = w
                .projection
                .chunks_exact(IN)
                .map(|p| {
                    p.iter()
                        .zip(row.iter().zip(&w.mean))
                        .map(|(a, (x, m))| a * (x - m))
                        .sum()
                })
                .collect();
            normalise(&mut expected);
            for (a, e) in single.iter().zip(&expected) {
                assert!((a - e).abs() < 1e-5, "{a} vs {e}");
            }
        }
    }

    #[test]
    fn bytes_round_trip_and_reject_garbage() {
        let w = Whitening::learn(&samples(1000), IN, full(OUT)).unwrap();
        let bytes = w.to_bytes();
        assert_eq!(Whitening::from_bytes(&bytes).unwrap(), w);
        assert!(Whitening::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Whitening::from_bytes(b"nonsense").is_err());
    }

    #[test]
    fn too_few_vectors_or_bad_dimensions_are_errors() {
        let data = samples(999);
        assert_eq!(
            Whitening::learn(&data, IN, full(OUT)),
            Err(WhiteningError::TooFewVectors {
                out_dim: OUT,
                needed: 1000,
                got: 999
            })
        );
        assert!(matches!(
            Whitening::learn(&data, IN, full(IN + 1)),
            Err(WhiteningError::BadDimensions { .. })
        ));
        assert!(matches!(
            Whitening::learn(&data[1..], IN, full(OUT)),
            Err(WhiteningError::RaggedInput { .. })
        ));
    }

    #[test]
    fn learning_is_due_with_enough_vectors_and_again_after_growth() {
        assert!(!is_due(999, None, Some(64)));
        assert!(is_due(1000, None, Some(64)));
        assert!(!is_due(1_000_000, None, None));
        assert!(is_due(4000, None, Some(1000)));
        assert!(!is_due(3999, None, Some(1000)));
        assert!(!is_due(3999, Some(1000), None));
        assert!(is_due(4000, Some(1000), Some(64)));
    }

    #[test]
    fn subsample_is_even_and_bounded() {
        let picked: Vec<usize> = subsample(10, 4).collect();
        assert_eq!(picked, vec![0, 2, 5, 7]);
        assert_eq!(subsample(3, 4).count(), 3);
    }
}
