//! The 1000 ImageNet-1k class names, so that logits can be shown as words ("espresso"). The
//! list is embedded in the binary (about 20 kB); see assets/CREDITS.md for its origin.

use std::sync::OnceLock;

static LABELS_TXT: &str = include_str!("../../assets/imagenet_labels.txt");

/// All class names, indexed by class (WordNet lemmas, e.g. "tabby, tabby cat").
pub fn labels() -> &'static [&'static str] {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    LABELS.get_or_init(|| LABELS_TXT.lines().collect())
}

/// At most this many classes are kept per indexed image or frame (see [`kept_labels`]).
pub const KEPT_LABELS: usize = 8;

/// Classes less probable than this are not kept: at 2%, a confident photo keeps 1-3 classes
/// and an ambiguous one the spread of its guesses (a dog split over several breeds, whose sum
/// is what a search by the word "dog" scores).
pub const MIN_KEPT_PROBABILITY: f32 = 0.02;

/// A class the classifier saw in an indexed image or frame, with its probability: what the
/// catalog keeps for search by words.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Label {
    pub class: u16,
    pub probability: f32,
}

impl Label {
    /// The class's name (its WordNet lemmas, e.g. "tabby, tabby cat").
    pub fn name(&self) -> &'static str {
        labels()
            .get(usize::from(self.class))
            .copied()
            .unwrap_or("?")
    }
}

/// The classes worth keeping from one image's logits: the most probable first, at most
/// [`KEPT_LABELS`], none below [`MIN_KEPT_PROBABILITY`].
pub fn kept_labels(logits: &[f32]) -> Vec<Label> {
    top_k(logits, KEPT_LABELS)
        .into_iter()
        .filter(|c| c.probability >= MIN_KEPT_PROBABILITY)
        .filter_map(|c| {
            Some(Label {
                class: u16::try_from(c.index).ok()?,
                probability: c.probability,
            })
        })
        .collect()
}

/// A predicted class.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    pub index: usize,
    pub name: &'static str,
    pub probability: f32,
}

/// The `k` most probable classes (softmax over `logits`), most probable first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<Class> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order
        .into_iter()
        .take(k)
        .map(|index| Class {
            index,
            name: labels().get(index).copied().unwrap_or("?"),
            probability: (exps[index] / sum) as f32,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousand_labels_at_their_imagenet_indices() {
        let l = labels();
        assert_eq!(l.len(), 1000);
        assert_eq!(l[0], "tench, Tinca tinca");
        assert_eq!(l[281], "tabby, tabby cat");
        assert_eq!(l[872], "tripod");
        assert_eq!(l[967], "espresso");
        assert_eq!(l[999], "toilet tissue, toilet paper, bathroom tissue");
    }

    #[test]
    fn top_k_is_a_sorted_softmax() {
        let mut logits = vec![0.0f32; 1000];
        logits[967] = 3f32.ln() + 10.0;
        logits[5] = 10.0;
        let rest = 998.0 * (-10f64).exp();
        let top = top_k(&logits, 3);
        assert_eq!(top.len(), 3);
        assert_eq!((top[0].index, top[0].name), (967, "espresso"));
        assert_eq!(top[1].index, 5);
        assert!((f64::from(top[0].probability) - 3.0 / (4.0 + rest)).abs() < 1e-6);
        assert!((f64::from(top[1].probability) - 1.0 / (4.0 + rest)).abs() < 1e-6);
        assert!(top[2].probability < 1e-4);
        assert!(top_k(&[], 5).is_empty());
    }

    #[test]
    fn kept_labels_drop_the_improbable_and_stop_at_the_cap() {
        // Three classes share almost all the mass (e^5 each against 997 x e^0).
        let mut logits = vec![0.0f32; 1000];
        for class in [207, 208, 151] {
            logits[class] = 5.0;
        }
        let kept = kept_labels(&logits);
        let classes: Vec<u16> = kept.iter().map(|l| l.class).collect();
        assert_eq!(classes, [151, 207, 208]);
        let each = 5f64.exp() / (3.0 * 5f64.exp() + 997.0);
        assert!(kept
            .iter()
            .all(|l| (f64::from(l.probability) - each).abs() < 1e-6));
        // Uniform logits: every class at 0.1%, none kept.
        assert!(kept_labels(&[1.0; 1000]).is_empty());
        // Twenty classes at ~5% each: capped at KEPT_LABELS.
        let mut spread = vec![-20.0f32; 1000];
        spread[..20].fill(0.0);
        assert_eq!(kept_labels(&spread).len(), KEPT_LABELS);
    }
}
