//! The descriptor: how an image becomes the vector an index stores and searches.
//!
//! The classic recipe (global average pooling of the network's last activation, cosine
//! similarity) is the baseline. The image-retrieval literature adds cheap, training-free gains
//! on top: generalized-mean pooling (Radenović et al. 2018), descriptors pooled at several
//! image scales, PCA-whitening learned on the collection itself (Jégou & Chum 2012) and query
//! expansion at search time (alpha-QE). Which of them an index uses is chosen when it is
//! created and recorded in its catalog: vectors made one way are not comparable with vectors
//! made another.

pub mod pooling;
pub mod regions;
pub mod whitening;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use regions::RegionOptions;
pub use whitening::{Whitening, WhiteningError, WhiteningOptions};

/// How the network's last activation map (C x h x w) is pooled into one C-vector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over positions: the classic pipeline's descriptor.
    Average,
    /// Generalized mean `(mean x^p)^(1/p)`: p = 1 is the average, p -> infinity the maximum.
    Gem { p: f32 },
    /// The maximum over positions (MAC).
    Max,
    /// R-MAC (Tolias et al., ICLR 2016): the maximum over each of a set of overlapping square
    /// regions at three sizes, each normalised, summed. A small object counts in the regions
    /// it fills as much as the whole scene does in the global one.
    Rmac,
    /// R-MAC's regions pooled with GeM instead of the maximum.
    Rgem { p: f32 },
}

impl Pooling {
    /// The largest GeM power accepted. Past ~20 GeM is the maximum in all but name, and the
    /// network's ReLU6 activations raised to it (6^100 ~ 6.5e77) stay far inside f64's range,
    /// where a few hundred would overflow into infinite (then NaN) descriptors.
    pub const MAX_P: f32 = 100.0;
}

/// Query expansion at search time: the query is replaced by the normalised sum of itself and
/// its `neighbours` best hits, each weighted by `similarity^alpha` (alpha-QE), and searched
/// again. `neighbours == 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QueryExpansion {
    pub neighbours: usize,
    pub alpha: f32,
}

impl QueryExpansion {
    pub const OFF: QueryExpansion = QueryExpansion {
        neighbours: 0,
        alpha: 3.0,
    };

    /// The most neighbours `--query-expansion` accepts: the literature uses up to ~50, and
    /// each one is a row read per search.
    pub const MAX_NEIGHBOURS: usize = 1000;

    pub fn is_on(&self) -> bool {
        self.neighbours > 0
    }

    /// The expanded query: `normalise(query + sum over hits of max(score, 0)^alpha * vector)`,
    /// from the best hits of a first search (`(score, vector)`, all in the query's space; the
    /// first `neighbours` are used).
    pub fn expand<'a>(
        &self,
        query: &[f32],
        hits: impl IntoIterator<Item = (f32, &'a [f32])>,
    ) -> Vec<f32> {
        let mut expanded = query.to_vec();
        for (score, vector) in hits.into_iter().take(self.neighbours) {
            let weight = score.max(0.0).powf(self.alpha);
            expanded
                .iter_mut()
                .zip(vector)
                .for_each(|(e, v)| *e += weight * v);
        }
        pooling::l2_normalise(&mut expanded);
        expanded
    }
}

/// Everything that decides what an index's vectors are, besides the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorOptions {
    pub pooling: Pooling,
    /// Input scales relative to the model's own input size (1.0 first); the descriptor is the
    /// normalised sum of the normalised descriptors of each scale.
    pub scales: Vec<f32>,
    /// PCA-whitening, learned from the indexed vectors once there are enough of them; None
    /// keeps the pooled vectors as they are.
    pub whitening: Option<WhiteningOptions>,
    /// The query expansion searches use unless told otherwise.
    pub query_expansion: QueryExpansion,
    /// Region descriptors per image (see [`regions`]); None: whole images only, as every
    /// index made before regions existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<RegionOptions>,
}

impl DescriptorOptions {
    /// The classic pipeline: average pooling at one scale, no whitening, no expansion. Also
    /// what an index created before descriptor options existed holds.
    pub fn baseline() -> Self {
        DescriptorOptions {
            pooling: Pooling::Average,
            scales: vec![1.0],
            whitening: None,
            query_expansion: QueryExpansion::OFF,
            regions: None,
        }
    }

    /// The options as stored in the catalog.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("descriptor options always serialise")
    }

    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// The best measured combination at the classic descriptor's cost (BENCHMARKS.md,
/// "Descriptors"): GeM pooling (p = 3), then PCA to 512 dimensions (power 0) once the
/// collection is big enough to learn it. It beats the classic descriptor on class-level
/// retrieval and matches it on copy detection and same-scene pairs, and its search index
/// holds 512 f32 values per image once the PCA is learned (2 KB, less than the classic 1280
/// f16 values). Regions (see [`regions`]) are on: a detail cut out of a photo finds it, for
/// ~9.6 KB more per image in memory and 0.88x the indexing speed (BENCHMARKS.md, "Regions").
///
/// Left out although they help somewhere:
/// - regional pooling (R-MAC, R-GeM): with the PCA, +0.5 mAP on class-level retrieval over
///   GeM, but one copy-detection query ranked lower, and no gain on same-scene pairs (the
///   literature's gain there comes with a whitening learned on a separate landmark set);
/// - scales 1 and 1.41: the only option that improves same-scene retrieval (mAP 0.981 vs
///   0.949), but it costs 3 network runs' worth of pixels per image: indexing 3.5 to 8x
///   slower and 4x fewer searches by upload per second, which the server's latency
///   targets do not survive;
/// - query expansion: it helps class-level retrieval, but a duplicate then no longer scores
///   1.0 (the score is the similarity to the expanded query), it doubles the search time,
///   and it gained nothing where one image is the right answer.
impl Default for DescriptorOptions {
    fn default() -> Self {
        DescriptorOptions {
            pooling: Pooling::Gem { p: 3.0 },
            scales: vec![1.0],
            whitening: Some(WhiteningOptions {
                dims: 512,
                power: WhiteningOptions::DEFAULT_POWER,
            }),
            query_expansion: QueryExpansion::OFF,
            regions: Some(RegionOptions::default()),
        }
    }
}

impl fmt::Display for DescriptorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scales: Vec<String> = self.scales.iter().map(f32::to_string).collect();
        write!(f, "pooling {}, scales {}, ", self.pooling, scales.join(","))?;
        match self.whitening {
            Some(w) => write!(f, "whitening {}:{}, ", w.dims, w.power)?,
            None => f.write_str("whitening off, ")?,
        }
        match self.query_expansion {
            qe if qe.is_on() => write!(f, "query expansion {}:{}, ", qe.neighbours, qe.alpha)?,
            _ => f.write_str("query expansion off, ")?,
        }
        match self.regions {
            Some(r) => write!(f, "regions {}", r.dims),
            None => f.write_str("regions off"),
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pooling::Average => f.write_str("average"),
            Pooling::Gem { p } => write!(f, "gem:{p}"),
            Pooling::Max => f.write_str("max"),
            Pooling::Rmac => f.write_str("rmac"),
            Pooling::Rgem { p } => write!(f, "rgem:{p}"),
        }
    }
}

/// `average`, `max`, `gem` (p = 3), `gem:P`, `rmac`, `rgem` (p = 3) or `rgem:P`.
impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?}: expected average, max, gem, gem:P, rmac, rgem or rgem:P with P in [1, {}]",
                Pooling::MAX_P
            )
        };
        let p = |p: &str| match p.parse::<f32>() {
            Ok(p) if (1.0..=Pooling::MAX_P).contains(&p) => Ok(p),
            _ => Err(bad()),
        };
        match s {
            "average" | "avg" => Ok(Pooling::Average),
            "max" => Ok(Pooling::Max),
            "gem" => Ok(Pooling::Gem { p: 3.0 }),
            "rmac" => Ok(Pooling::Rmac),
            "rgem" => Ok(Pooling::Rgem { p: 3.0 }),
            _ => match (s.strip_prefix("gem:"), s.strip_prefix("rgem:")) {
                (Some(gem), _) => Ok(Pooling::Gem { p: p(gem)? }),
                (_, Some(rgem)) => Ok(Pooling::Rgem { p: p(rgem)? }),
                _ => Err(bad()),
            },
        }
    }
}

/// `off`, `N` (alpha 3) or `N:ALPHA`.
impl FromStr for QueryExpansion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?}: expected off, N or N:ALPHA (N <= {}, ALPHA >= 0)",
                QueryExpansion::MAX_NEIGHBOURS
            )
        };
        if s == "off" {
            return Ok(QueryExpansion::OFF);
        }
        let (n, alpha) = match s.split_once(':') {
            Some((n, alpha)) => (n, alpha.parse::<f32>().map_err(|_| bad())?),
            None => (s, QueryExpansion::OFF.alpha),
        };
        let neighbours = n.parse::<usize>().map_err(|_| bad())?;
        if neighbours > QueryExpansion::MAX_NEIGHBOURS || !alpha.is_finite() || alpha < 0.0 {
            return Err(bad());
        }
        Ok(QueryExpansion { neighbours, alpha })
    }
}

/// `off`, `on` (256 dimensions) or the dimensions to keep.
pub fn parse_regions(s: &str) -> Result<Option<RegionOptions>, String> {
    match s {
        "off" => Ok(None),
        "on" => Ok(Some(RegionOptions::default())),
        _ => match s.parse::<usize>() {
            Ok(dims) if (8..=4096).contains(&dims) => Ok(Some(RegionOptions { dims })),
            _ => Err(format!(
                "{s:?}: expected off, on or dimensions in [8, 4096]"
            )),
        },
    }
}

/// A comma-separated list of scales in (0, 2], e.g. `1,0.75`; 1 is put first if missing.
pub fn parse_scales(s: &str) -> Result<Vec<f32>, String> {
    let mut scales = Vec::new();
    for part in s.split(',') {
        match part.trim().parse::<f32>() {
            Ok(v) if v > 0.0 && v <= 2.0 => scales.push(v),
            _ => return Err(format!("{part:?} is not a scale in (0, 2]")),
        }
    }
    if !scales.contains(&1.0) {
        scales.insert(0, 1.0);
    }
    Ok(scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_the_catalog_spelling() {
        let options = DescriptorOptions {
            pooling: Pooling::Gem { p: 3.0 },
            scales: vec![1.0, 0.75],
            whitening: Some(WhiteningOptions {
                dims: 512,
                power: 0.25,
            }),
            query_expansion: QueryExpansion {
                neighbours: 2,
                alpha: 3.0,
            },
            regions: Some(RegionOptions { dims: 128 }),
        };
        let json = options.to_json();
        assert_eq!(DescriptorOptions::from_json(&json).unwrap(), options);
        assert_eq!(
            options.to_string(),
            "pooling gem:3, scales 1,0.75, whitening 512:0.25, query expansion 2:3, regions 128"
        );
        assert!(DescriptorOptions::from_json(r#"{"pooling":{"kind":"median"}}"#).is_err());
        // Options stored before regions existed read as regions off, and spell the same.
        let old = DescriptorOptions {
            regions: None,
            ..options
        };
        let json = old.to_json();
        assert!(!json.contains("regions"));
        assert_eq!(DescriptorOptions::from_json(&json).unwrap(), old);
    }

    #[test]
    fn query_expansion_weights_hits_by_similarity_to_the_alpha() {
        let qe = QueryExpansion {
            neighbours: 2,
            alpha: 2.0,
        };
        let (a, b, c) = ([0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]);
        // Weights 0.5^2 for b; c is past `neighbours`; a negative score would weigh 0.
        let got = qe.expand(&[1.0, 0.0], [(1.0, &a[..]), (0.5, &b[..]), (0.9, &c[..])]);
        let (x, y) = (1.25f32, 1.0f32);
        let norm = (x * x + y * y).sqrt();
        assert!((got[0] - x / norm).abs() < 1e-6 && (got[1] - y / norm).abs() < 1e-6);
        let ignored = qe.expand(&[1.0, 0.0], [(-0.3, &a[..])]);
        assert_eq!(ignored, vec![1.0, 0.0]);
    }

    #[test]
    fn command_line_spellings() {
        assert_eq!("gem".parse(), Ok(Pooling::Gem { p: 3.0 }));
        assert_eq!("gem:4.5".parse(), Ok(Pooling::Gem { p: 4.5 }));
        assert_eq!("max".parse(), Ok(Pooling::Max));
        assert!("gem:0.5".parse::<Pooling>().is_err());
        assert_eq!("rmac".parse(), Ok(Pooling::Rmac));
        assert_eq!("rgem".parse(), Ok(Pooling::Rgem { p: 3.0 }));
        assert_eq!("rgem:2".parse(), Ok(Pooling::Rgem { p: 2.0 }));
        assert!("rgem:x".parse::<Pooling>().is_err());
        assert_eq!("gem:100".parse(), Ok(Pooling::Gem { p: 100.0 }));
        assert!("gem:101".parse::<Pooling>().is_err());
        assert!("rgem:1000".parse::<Pooling>().is_err());
        assert!("gem:inf".parse::<Pooling>().is_err());
        for pooling in [Pooling::Rmac, Pooling::Rgem { p: 4.0 }] {
            assert_eq!(pooling.to_string().parse(), Ok(pooling));
        }
        assert!("median".parse::<Pooling>().is_err());
        assert_eq!("off".parse(), Ok(QueryExpansion::OFF));
        assert_eq!(
            "5:1.5".parse(),
            Ok(QueryExpansion {
                neighbours: 5,
                alpha: 1.5
            })
        );
        assert!("x".parse::<QueryExpansion>().is_err());
        assert!("1001".parse::<QueryExpansion>().is_err());
        assert!("10:-1".parse::<QueryExpansion>().is_err());
        assert_eq!(parse_scales("0.75").unwrap(), vec![1.0, 0.75]);
        assert!(parse_scales("1,0").is_err());
    }
}
