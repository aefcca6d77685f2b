//! Deterministic synthetic vectors for the index tests (no `rand` dependency needed).

use lookalike::index::{FileStamp, MediaKind, NewFile, NewItem};

/// xorshift64*: deterministic vectors without a `rand` dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box-Muller).
    pub fn gaussian(&mut self) -> f32 {
        let u = self.next_f32().max(1e-7);
        let v = self.next_f32();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    /// A random direction: a unit vector of `dim` gaussian coordinates.
    pub fn unit(&mut self, dim: usize) -> Vec<f32> {
        normalised((0..dim).map(|_| self.gaussian()).collect())
    }
}

pub fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A 1x1 image file of one item with this vector and a fixed stamp: for filling an index
/// without photos.
pub fn synthetic_image(path: String, vector: Vec<f32>) -> NewFile {
    NewFile {
        path,
        stamp: FileStamp {
            size: 1,
            mtime_ns: 1,
        },
        content_hash: None,
        kind: MediaKind::Image,
        facts: Default::default(),
        items: vec![NewItem {
            t: None,
            width: 1,
            height: 1,
            vector,
            regions: Default::default(),
            labels: Vec::new(),
        }],
    }
}
