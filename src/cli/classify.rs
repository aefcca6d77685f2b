//! `lookalike classify`: the top ImageNet classes of images (VisualSearchServer's label
//! lookup). Needs no index.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use lookalike::featurizer::Featurizer;
use lookalike::image::Limits;
use lookalike::model::{top_k, Embedder, ModelKind};
use serde_json::json;

use super::Global;

#[derive(Args)]
pub struct ClassifyArgs {
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Classes per image
    #[arg(short, default_value_t = 5)]
    k: usize,
    /// lite0 or lite2
    #[arg(long, default_value = "lite0")]
    model: ModelKind,
    /// One JSON object per image per line: {"image", "classes": [{"class", "name", "probability"}]}
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: ClassifyArgs) -> Result<ExitCode> {
    let files = global.model_store()?.ensure(args.model)?;
    let threads = global.threads.unwrap_or_else(lookalike::available_cores);
    let featurizer = Featurizer::new(
        Embedder::load(&files, &global.compute())?,
        Limits::default(),
    );
    let mut failed = false;
    for (path, result) in args
        .images
        .iter()
        .zip(featurizer.embed_files(&args.images, threads)?)
    {
        let classes = match result {
            Ok(embedded) => top_k(&embedded.logits, args.k),
            Err(e) => {
                failed = true;
                if args.json {
                    println!(
                        "{}",
                        json!({"image": path, "classes": [], "error": e.to_string()})
                    );
                } else {
                    println!("{}\n  error: {e}", path.display());
                }
                continue;
            }
        };
        if args.json {
            let classes: Vec<_> = classes
                .iter()
                .map(|c| json!({"class": c.index, "name": c.name, "probability": c.probability}))
                .collect();
            println!("{}", json!({"image": path, "classes": classes}));
        } else {
            println!("{}", path.display());
            for c in &classes {
                println!(
                    "  {:>6.2}%  {} ({})",
                    c.probability * 100.0,
                    c.name,
                    c.index
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
