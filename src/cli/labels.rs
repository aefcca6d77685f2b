//! `lookalike labels`: the library's most common ImageNet labels, and the words that reach them.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use lookalike::engine::MIN_WORD_SCORE;
use lookalike::model::Label;
use serde::Serialize;

use super::Global;

#[derive(Args)]
pub struct LabelsArgs {
    /// How many labels to list
    #[arg(short, default_value_t = 30)]
    n: usize,
    /// Count an item for a label only when the label is at least this probable
    #[arg(long, value_name = "P", default_value_t = MIN_WORD_SCORE)]
    min_probability: f32,
    /// One JSON object per label per line: {"class", "name", "items", "words"}
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct LabelCount {
    class: u16,
    name: &'static str,
    /// Items (images and video frames) carrying the label.
    items: u64,
    /// The broader words that find it, nearest first ("retriever", "dog", ...).
    words: Vec<&'static str>,
}

pub fn run(global: &Global, args: LabelsArgs) -> Result<ExitCode> {
    let engine = global.engine(true)?;
    let vocabulary = lookalike::words::vocabulary();
    let counts = engine.label_counts(args.min_probability)?;
    for (class, items) in counts.into_iter().take(args.n) {
        let name = Label {
            class,
            probability: 1.0,
        }
        .name();
        // The class's own lemmas are its name already: list the words above it.
        let own = name.split(", ").count();
        let words: Vec<&str> = vocabulary
            .words_of_class(class)
            .into_iter()
            .skip(own)
            .take(6)
            .collect();
        let row = LabelCount {
            class,
            name,
            items,
            words,
        };
        if args.json {
            println!("{}", serde_json::to_string(&row)?);
        } else {
            println!("{:>8}  {}  ({})", row.items, row.name, row.words.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
