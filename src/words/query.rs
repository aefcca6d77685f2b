//! Phrases into words: tokenising, stop words, plural folding, and the parsed query.

/// Words dropped from a phrase because they name nothing ("a photo of a dog" asks for dogs).
/// They still count inside a longer vocabulary phrase ("hen of the woods").
pub(crate) const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "of", "and", "photo", "photos", "picture", "pictures", "image", "images",
    "with", "in", "on",
];

/// What a query phrase asks for: every term must match (AND); a term is a set of classes.
#[derive(Debug, Clone, PartialEq)]
pub struct WordQuery {
    /// The matched words, in the phrase's order, each once.
    pub terms: Vec<Term>,
    /// Words of the phrase that name no class (lower-cased), each once, so that a caller can
    /// say which words it did not understand.
    pub unknown: Vec<String>,
}

/// One matched word or phrase and the classes it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// The matched word or phrase, normalised and singular ("golden retriever").
    pub word: String,
    /// Sorted, unique class indices.
    pub classes: Vec<u16>,
}

impl WordQuery {
    /// Whether an image with these classes (e.g. its top predicted ones) has something of
    /// every term. A query without terms matches nothing: it asked for nothing we know.
    pub fn matches(&self, classes: &[u16]) -> bool {
        !self.terms.is_empty()
            && self.terms.iter().all(|term| {
                classes
                    .iter()
                    .any(|c| term.classes.binary_search(c).is_ok())
            })
    }
}

/// The words of a phrase: lower case, split on whitespace and punctuation, with hyphens and
/// apostrophes kept inside words as WordNet writes them ("jack-o'-lantern") but trimmed from
/// their ends ("dogs'" is "dogs"). Typographic apostrophes count as `'`.
pub(crate) fn tokens(phrase: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        let trimmed = word.trim_matches(['-', '\'']);
        if !trimmed.is_empty() {
            out.push(trimmed.to_string());
        }
        word.clear();
    };
    for c in phrase.chars().flat_map(char::to_lowercase) {
        let c = if matches!(c, '\u{2019}' | '\u{2018}' | '\u{02bc}') {
            '\''
        } else {
            c
        };
        if c.is_alphanumeric() || c == '-' || c == '\'' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A word or phrase as the vocabulary keys it: lower case, split on whitespace and
/// punctuation (hyphens and apostrophes inside words kept), the words joined by single spaces
/// ("Golden  Retriever" -> "golden retriever", "St. Bernard" -> "st bernard").
pub fn normalise(phrase: &str) -> String {
    tokens(phrase).join(" ")
}

/// Candidate singular forms of a (lower-case) word by the regular English rules, most
/// specific first; the caller keeps the first that is a vocabulary word, so wrong guesses
/// ("horses" -> "hors") cost nothing. Irregular plurals come from WordNet's exception list,
/// which the vocabulary holds.
pub(crate) fn regular_singulars(word: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(stem) = word.strip_suffix("'s") {
        out.push(stem.to_string()); // a possessive: "dog's"
    }
    if let Some(stem) = word.strip_suffix("ies") {
        out.push(format!("{stem}y")); // "butterflies"
    }
    if let Some(stem) = word.strip_suffix("ves") {
        out.push(format!("{stem}f")); // "wolves"
        out.push(format!("{stem}fe")); // "knives"
    }
    if let Some(stem) = word.strip_suffix("men") {
        out.push(format!("{stem}man")); // "firemen"
    }
    if let Some(stem) = word.strip_suffix("es") {
        out.push(stem.to_string()); // "boxes", "buses"
    }
    if let Some(stem) = word.strip_suffix('s') {
        if !stem.ends_with('s') {
            out.push(stem.to_string()); // "dogs", not "glass"
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenising() {
        assert_eq!(
            tokens("A photo of a DOG!"),
            ["a", "photo", "of", "a", "dog"]
        );
        assert_eq!(tokens("jack-o'-lantern"), ["jack-o'-lantern"]);
        assert_eq!(
            tokens("dogs' toys, 'quoted' -dash-"),
            ["dogs", "toys", "quoted", "dash"]
        );
        assert_eq!(tokens("dog\u{2019}s"), ["dog's"]);
        assert_eq!(
            tokens("St. Bernard/Newfoundland"),
            ["st", "bernard", "newfoundland"]
        );
        assert!(tokens(" \t.,;-' ").is_empty());
        assert_eq!(normalise("  Golden\tRetriever "), "golden retriever");
    }

    #[test]
    fn singular_candidates() {
        assert!(regular_singulars("dogs").contains(&"dog".to_string()));
        assert!(regular_singulars("butterflies").contains(&"butterfly".to_string()));
        assert!(regular_singulars("wolves").contains(&"wolf".to_string()));
        assert!(regular_singulars("knives").contains(&"knife".to_string()));
        assert!(regular_singulars("boxes").contains(&"box".to_string()));
        assert!(regular_singulars("firemen").contains(&"fireman".to_string()));
        assert!(regular_singulars("dog's").contains(&"dog".to_string()));
        assert!(regular_singulars("glass").is_empty());
        assert!(regular_singulars("s").is_empty());
    }

    #[test]
    fn matching_needs_every_term() {
        let term = |word: &str, classes: &[u16]| Term {
            word: word.into(),
            classes: classes.to_vec(),
        };
        let q = WordQuery {
            terms: vec![term("x", &[1, 5]), term("y", &[7])],
            unknown: vec![],
        };
        assert!(q.matches(&[5, 7]));
        assert!(!q.matches(&[1, 5]));
        assert!(!q.matches(&[]));
    }
}
