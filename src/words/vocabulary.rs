//! The parsed vocabulary table and the lookups on it.

use std::collections::{BTreeMap, HashMap};

use super::query::{regular_singulars, tokens, STOP_WORDS};
use super::{normalise, Term, WordQuery, NUM_CLASSES};

/// One WordNet synset of the table: a class or an ancestor of classes.
#[derive(Debug)]
struct Synset {
    /// Its lemmas, normalised, WordNet's order (the first is its usual name).
    words: Vec<String>,
    /// Rows of its hypernyms within the table, WordNet's order.
    parents: Vec<usize>,
}

/// Words and phrases over the ImageNet-1k classes: which classes each names, which words
/// describe each class, and the plural forms WordNet lists as irregular.
#[derive(Debug)]
pub struct Vocabulary {
    synsets: Vec<Synset>,
    /// Normalised word -> sorted, unique classes (the union over the word's synsets). Sorted
    /// by word so that prefixes are ranges, for [`Vocabulary::suggest`].
    words: BTreeMap<String, Vec<u16>>,
    /// Normalised irregular plural -> its singulars ("geese" -> ["goose"]).
    plurals: HashMap<String, Vec<String>>,
    /// Class index -> its synset's row.
    class_rows: Vec<usize>,
    /// The most tokens in a vocabulary word: the longest run [`Vocabulary::parse`] tries.
    longest: usize,
}

/// Class indices written as comma-separated runs ("1-3,7"), sorted and unique.
fn parse_ranges(field: &str) -> Result<Vec<u16>, String> {
    let mut out: Vec<u16> = Vec::new();
    for part in field.split(',') {
        let (start, end) = part.split_once('-').unwrap_or((part, part));
        let number = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|&n| usize::from(n) < NUM_CLASSES)
                .ok_or_else(|| format!("bad class index {s:?}"))
        };
        let (start, end) = (number(start)?, number(end)?);
        if start > end || out.last().is_some_and(|&last| last >= start) {
            return Err(format!("class runs out of order at {part:?}"));
        }
        out.extend(start..=end);
    }
    Ok(out)
}

/// Sorted, unique union of two sorted, unique lists.
fn union(a: &[u16], b: &[u16]) -> Vec<u16> {
    let mut out: Vec<u16> = a.iter().chain(b).copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Vocabulary {
    /// Parses the table `scripts/words/make_vocabulary.py` writes (its header comment lines
    /// describe the format). Errors name the line, so a bad regeneration is found by the test
    /// that parses the embedded table rather than at a user's first query.
    pub(crate) fn from_tsv(text: &str) -> Result<Vocabulary, String> {
        #[derive(PartialEq)]
        enum Section {
            None,
            Synsets,
            Plurals,
        }
        let mut section = Section::None;
        let mut rows: Vec<(Vec<String>, Vec<&str>, Vec<u16>)> = Vec::new();
        let mut row_of: HashMap<&str, usize> = HashMap::new();
        let mut class_rows: Vec<Option<usize>> = vec![None; NUM_CLASSES];
        let mut plurals: HashMap<String, Vec<String>> = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let at = |message: String| format!("line {}: {message}", number + 1);
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            match line {
                "[synsets]" => section = Section::Synsets,
                "[plurals]" => section = Section::Plurals,
                _ if section == Section::Synsets => {
                    let fields: Vec<&str> = line.split('\t').collect();
                    let [wnid, lemmas, parents, class, classes] = fields[..] else {
                        return Err(at(format!("{} fields, not 5", fields.len())));
                    };
                    let mut words: Vec<String> = Vec::new();
                    for word in lemmas.split('|').map(normalise) {
                        if !word.is_empty() && !words.contains(&word) {
                            words.push(word);
                        }
                    }
                    if words.is_empty() {
                        return Err(at(format!("{wnid} has no lemmas")));
                    }
                    let classes = parse_ranges(classes).map_err(at)?;
                    if class != "-" {
                        let index = class
                            .parse::<usize>()
                            .ok()
                            .filter(|&c| c < NUM_CLASSES)
                            .ok_or_else(|| at(format!("bad class {class:?}")))?;
                        if class_rows[index].replace(rows.len()).is_some() {
                            return Err(at(format!("class {index} twice")));
                        }
                        if !classes.contains(&(index as u16)) {
                            return Err(at(format!("class {index} not under itself")));
                        }
                    }
                    if row_of.insert(wnid, rows.len()).is_some() {
                        return Err(at(format!("{wnid} twice")));
                    }
                    rows.push((words, parents.split_whitespace().collect(), classes));
                }
                _ if section == Section::Plurals => {
                    let Some((plural, singulars)) = line.split_once('\t') else {
                        return Err(at("a plural without its singular".into()));
                    };
                    let singulars: Vec<String> = singulars.split('|').map(normalise).collect();
                    plurals.insert(normalise(plural), singulars);
                }
                _ => return Err(at(format!("{line:?} outside a section"))),
            }
        }
        let mut synsets = Vec::with_capacity(rows.len());
        let mut words: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        for (lemmas, parents, classes) in rows {
            let parents = parents
                .iter()
                .map(|p| {
                    row_of
                        .get(p)
                        .copied()
                        .ok_or_else(|| format!("hypernym {p} is not in the table"))
                })
                .collect::<Result<Vec<usize>, String>>()?;
            for word in &lemmas {
                let merged = match words.get(word) {
                    Some(known) => union(known, &classes),
                    None => classes.clone(),
                };
                words.insert(word.clone(), merged);
            }
            synsets.push(Synset {
                words: lemmas,
                parents,
            });
        }
        let class_rows = class_rows
            .into_iter()
            .enumerate()
            .map(|(class, row)| row.ok_or_else(|| format!("class {class} has no synset")))
            .collect::<Result<Vec<usize>, String>>()?;
        let longest = words
            .keys()
            .map(|w| w.split(' ').count())
            .max()
            .unwrap_or(1);
        Ok(Vocabulary {
            synsets,
            words,
            plurals,
            class_rows,
            longest,
        })
    }

    /// Parses a phrase: lower case; split on whitespace and punctuation (hyphens and
    /// apostrophes inside words kept, "jack-o'-lantern"); then, left to right, the longest run
    /// of consecutive words that is a vocabulary word becomes a term ("golden retriever" and
    /// "hot dog" are one term each), its last word also tried in the singular ("hot dogs").
    /// Stop words ("a", "the", "photo", ...) are dropped unless inside such a run ("hen of the
    /// woods"); other words that match nothing are `unknown`. Repeated terms and unknown
    /// words are kept once.
    pub fn parse(&self, phrase: &str) -> WordQuery {
        let tokens = tokens(phrase);
        let mut query = WordQuery {
            terms: Vec::new(),
            unknown: Vec::new(),
        };
        let mut i = 0;
        while i < tokens.len() {
            let longest = self.longest.min(tokens.len() - i);
            let found = (1..=longest).rev().find_map(|len| {
                let run = &tokens[i..i + len];
                if len == 1 && STOP_WORDS.contains(&run[0].as_str()) {
                    return None;
                }
                self.lookup(run).map(|term| (len, term))
            });
            match found {
                Some((len, term)) => {
                    if !query.terms.iter().any(|t| t.word == term.word) {
                        query.terms.push(term);
                    }
                    i += len;
                }
                None => {
                    let word = &tokens[i];
                    if !STOP_WORDS.contains(&word.as_str()) && !query.unknown.contains(word) {
                        query.unknown.push(word.clone());
                    }
                    i += 1;
                }
            }
        }
        query
    }

    /// The term a run of tokens names: the run as it is, else as an irregular plural, else
    /// with its last word in a singular form.
    fn lookup(&self, run: &[String]) -> Option<Term> {
        let term = |word: &str| {
            self.words.get_key_value(word).map(|(word, classes)| Term {
                word: word.clone(),
                classes: classes.clone(),
            })
        };
        let phrase = run.join(" ");
        if let Some(found) = term(&phrase) {
            return Some(found);
        }
        let (last, head) = run.split_last()?;
        let irregular = self.plurals.get(last).into_iter().flatten().cloned();
        irregular
            .chain(regular_singulars(last))
            .find_map(|singular| {
                if head.is_empty() {
                    term(&singular)
                } else {
                    term(&format!("{} {singular}", head.join(" ")))
                }
            })
    }

    /// Vocabulary words starting with `prefix` (normalised like a phrase), for suggestions
    /// as the user types: at most `limit`, words naming more classes first (the broader, more
    /// likely meant word), then alphabetically; each with the number of classes under it.
    pub fn suggest(&self, prefix: &str, limit: usize) -> Vec<(String, usize)> {
        let prefix = normalise(prefix);
        let mut found: Vec<(String, usize)> = self
            .words
            .range(prefix.clone()..)
            .take_while(|(word, _)| word.starts_with(&prefix))
            .map(|(word, classes)| (word.clone(), classes.len()))
            .collect();
        found.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        found.truncate(limit);
        found
    }

    /// The classes a single word or phrase names (normalised first; no plural folding), if
    /// it is in the vocabulary: sorted and unique.
    pub fn classes(&self, word: &str) -> Option<&[u16]> {
        self.words.get(&normalise(word)).map(Vec::as_slice)
    }

    /// The vocabulary words describing class `class`, most specific first, to display: the
    /// class's own lemmas, then the first lemma of each ancestor from nearest to farthest,
    /// each word once. "Nearest" is by the longest hypernym path from the class, so that a word
    /// always comes after every more specific word below it even where WordNet has shortcuts
    /// (a dog is also a "domestic animal", one step below "animal", yet "animal" belongs after
    /// "mammal"); WordNet's order breaks ties. For 207: "golden retriever", "retriever",
    /// "sporting dog", "hunting dog", "dog", ..., "mammal", ..., "animal", ..., "entity".
    /// Empty for an index that is not a class.
    pub fn words_of_class(&self, class: u16) -> Vec<&str> {
        let Some(&row) = self.class_rows.get(usize::from(class)) else {
            return Vec::new();
        };
        // The ancestors, in breadth-first (WordNet) order of discovery.
        let mut ancestors: Vec<usize> = vec![row];
        let mut seen = vec![false; self.synsets.len()];
        seen[row] = true;
        let mut next = 0;
        while let Some(&node) = ancestors.get(next) {
            next += 1;
            for &p in &self.synsets[node].parents {
                if !seen[p] {
                    seen[p] = true;
                    ancestors.push(p);
                }
            }
        }
        // Longest path from the class: relax until stable (the hierarchy is acyclic, so at
        // most one round per ancestor; a cyclic table would stop there rather than loop).
        let mut depth: HashMap<usize, usize> = HashMap::from([(row, 0)]);
        for _ in 0..ancestors.len() {
            let mut changed = false;
            for &node in &ancestors {
                let Some(&d) = depth.get(&node) else { continue };
                for &p in &self.synsets[node].parents {
                    let entry = depth.entry(p).or_insert(0);
                    if *entry < d + 1 {
                        *entry = d + 1;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut order: Vec<(usize, usize)> = ancestors[1..]
            .iter()
            .map(|&a| (depth.get(&a).copied().unwrap_or(0), a))
            .collect();
        order.sort_by_key(|&(d, _)| d); // stable: discovery order among equals
        let mut out: Vec<&str> = self.synsets[row].words.iter().map(String::as_str).collect();
        for (_, a) in order {
            if let Some(word) = self.synsets[a].words.first() {
                if !out.contains(&word.as_str()) {
                    out.push(word);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_runs() {
        assert_eq!(parse_ranges("1-3,7"), Ok(vec![1, 2, 3, 7]));
        assert_eq!(parse_ranges("999"), Ok(vec![999]));
        assert!(parse_ranges("1000").is_err());
        assert!(parse_ranges("3,1").is_err());
        assert!(parse_ranges("1-3,3").is_err());
        assert!(parse_ranges("").is_err());
        assert!(parse_ranges("a-b").is_err());
    }
}
