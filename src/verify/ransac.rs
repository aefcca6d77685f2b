//! How many feature matches one affine transform explains, found by RANSAC (Fischler and
//! Bolles, 1981): matches between two views of the same scene agree on where things moved;
//! matches between unrelated images do not.

use nalgebra::{Matrix3, Vector3};

/// A point in one image and the point it matched in the other.
pub type Correspondence = ([f32; 2], [f32; 2]);

/// Hypotheses tried at most per pair of images.
const MAX_ITERATIONS: usize = 1000;
/// Stop once a hypothesis this likely to be the best has been tried.
const CONFIDENCE: f64 = 0.999;
/// Transforms that shrink or stretch any direction more than this are not two views of a
/// scene (they are how a handful of random matches line up by chance).
const MAX_STRETCH: f32 = 8.0;

/// `[a, b, c, d, e, f]`: (x, y) goes to (a x + b y + c, d x + e y + f).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [f32; 6]);

impl Affine {
    /// The transform taking three points onto three others; None when the first three are
    /// (nearly) collinear.
    pub fn through(src: [[f32; 2]; 3], dst: [[f32; 2]; 3]) -> Option<Affine> {
        let m = Matrix3::from_fn(|r, c| match c {
            0 => f64::from(src[r][0]),
            1 => f64::from(src[r][1]),
            _ => 1.0,
        });
        // Twice the triangle's area, in pixels squared.
        if m.determinant().abs() < 1.0 {
            return None;
        }
        let inverse = m.try_inverse()?;
        let row = |axis: usize| inverse * Vector3::from_fn(|r, _| f64::from(dst[r][axis]));
        let (x, y) = (row(0), row(1));
        Some(Affine([
            x[0] as f32,
            x[1] as f32,
            x[2] as f32,
            y[0] as f32,
            y[1] as f32,
            y[2] as f32,
        ]))
    }

    pub fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let [a, b, c, d, e, f] = self.0;
        [a * x + b * y + c, d * x + e * y + f]
    }

    /// Whether this could map one photo of a scene onto another: orientation kept (a mirror
    /// image is not another view) and no direction stretched or squashed more than
    /// [`MAX_STRETCH`] times.
    fn is_plausible(&self) -> bool {
        let [a, b, _, d, e, _] = self.0;
        let det = a * e - b * d;
        if det <= 0.0 {
            return false;
        }
        // Singular values of the linear part, from its Frobenius norm and determinant.
        let frobenius_sq = a * a + b * b + d * d + e * e;
        let gap = (frobenius_sq * frobenius_sq - 4.0 * det * det)
            .max(0.0)
            .sqrt();
        let largest = ((frobenius_sq + gap) / 2.0).sqrt();
        let smallest = ((frobenius_sq - gap) / 2.0).max(0.0).sqrt();
        largest <= MAX_STRETCH && smallest >= 1.0 / MAX_STRETCH
    }
}

/// The most correspondences one plausible affine transform maps to within `tolerance`
/// pixels of their match, and that transform. Deterministic (a fixed seed): the same pair of
/// images always gets the same count.
pub fn best_affine(matches: &[Correspondence], tolerance: f32) -> Option<(Affine, usize)> {
    if matches.len() < 3 {
        return None;
    }
    let mut rng = fastrand::Rng::with_seed(0x5eed_ab1e);
    let tolerance_sq = tolerance * tolerance;
    let count = |model: &Affine| {
        matches
            .iter()
            .filter(|(src, dst)| {
                let [x, y] = model.apply(*src);
                (x - dst[0]).powi(2) + (y - dst[1]).powi(2) <= tolerance_sq
            })
            .count()
    };
    let mut best: Option<(Affine, usize)> = None;
    let mut needed = MAX_ITERATIONS;
    let mut tried = 0;
    while tried < needed {
        tried += 1;
        let i = rng.usize(..matches.len());
        let j = rng.usize(..matches.len());
        let k = rng.usize(..matches.len());
        if i == j || j == k || i == k {
            continue;
        }
        let Some(model) = Affine::through(
            [matches[i].0, matches[j].0, matches[k].0],
            [matches[i].1, matches[j].1, matches[k].1],
        ) else {
            continue;
        };
        if !model.is_plausible() {
            continue;
        }
        let inliers = count(&model);
        if best.is_none_or(|(_, n)| inliers > n) {
            best = Some((model, inliers));
            // Enough draws that an all-inlier sample would have come up by now.
            let ratio = inliers as f64 / matches.len() as f64;
            let all_inliers = ratio.powi(3);
            if all_inliers >= 1.0 {
                break;
            }
            let draws = (1.0 - CONFIDENCE).ln() / (1.0 - all_inliers).ln();
            needed = needed.min(draws.ceil() as usize);
        }
    }
    best
}

/// `model` re-fitted by least squares to all the matches it maps within `tolerance`: three
/// matches fix a hypothesis, dozens fix it to a fraction of a pixel. `model` itself when
/// fewer than three are within reach or they are degenerate.
pub fn refine(matches: &[Correspondence], model: Affine, tolerance: f32) -> Affine {
    let tolerance_sq = tolerance * tolerance;
    let mut normal = Matrix3::<f64>::zeros();
    let (mut rhs_x, mut rhs_y) = (Vector3::<f64>::zeros(), Vector3::<f64>::zeros());
    let mut used = 0;
    for (src, dst) in matches {
        let [x, y] = model.apply(*src);
        if (x - dst[0]).powi(2) + (y - dst[1]).powi(2) > tolerance_sq {
            continue;
        }
        let p = Vector3::new(f64::from(src[0]), f64::from(src[1]), 1.0);
        normal += p * p.transpose();
        rhs_x += p * f64::from(dst[0]);
        rhs_y += p * f64::from(dst[1]);
        used += 1;
    }
    let Some(inverse) = (used >= 3).then(|| normal.try_inverse()).flatten() else {
        return model;
    };
    let (x, y) = (inverse * rhs_x, inverse * rhs_y);
    Affine([x[0], x[1], x[2], y[0], y[1], y[2]].map(|v| v as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rotation by 20 degrees, a scale of 0.6 and a shift: how box.png sits in
    /// box_in_scene.png, roughly.
    fn known() -> Affine {
        let (sin, cos) = 20f32.to_radians().sin_cos();
        Affine([0.6 * cos, -0.6 * sin, 120.0, 0.6 * sin, 0.6 * cos, 40.0])
    }

    #[test]
    fn three_points_determine_the_transform() {
        let t = known();
        let src = [[10.0, 20.0], [300.0, 40.0], [50.0, 250.0]];
        let found = Affine::through(src, src.map(|p| t.apply(p))).expect("not collinear");
        for (got, want) in found.0.iter().zip(t.0) {
            assert!((got - want).abs() < 1e-3, "{found:?} vs {t:?}");
        }
        assert!(Affine::through([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], src).is_none());
    }

    #[test]
    fn counts_the_matches_one_transform_explains_among_random_ones() {
        let t = known();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut point = || [rng.f32() * 512.0, rng.f32() * 384.0];
        let mut matches: Vec<Correspondence> =
            (0..40).map(|_| point()).map(|p| (p, t.apply(p))).collect();
        // 160 matches that agree on nothing.
        matches.extend((0..160).map(|_| (point(), point())));
        let (model, inliers) = best_affine(&matches, 3.0).expect("a model");
        // The 40 true ones, and perhaps a stray random one that lands within 3 pixels.
        assert!((40..=42).contains(&inliers), "{inliers} inliers");
        let [x, y] = model.apply([200.0, 100.0]);
        let [wx, wy] = t.apply([200.0, 100.0]);
        assert!((x - wx).abs() < 3.0 && (y - wy).abs() < 3.0);
    }

    #[test]
    fn mirror_images_and_collapsing_maps_are_not_views_of_a_scene() {
        assert!(known().is_plausible());
        assert!(!Affine([-1.0, 0.0, 500.0, 0.0, 1.0, 0.0]).is_plausible());
        assert!(!Affine([0.05, 0.0, 0.0, 0.0, 1.0, 0.0]).is_plausible());
        assert!(!Affine([20.0, 0.0, 0.0, 0.0, 1.0, 0.0]).is_plausible());
    }
}
