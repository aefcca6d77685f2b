//! `lookalike stats`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Global;

#[derive(Args)]
pub struct StatsArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: StatsArgs) -> Result<ExitCode> {
    let engine = global.engine(true)?;
    let stats = engine.stats()?;
    if args.json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        println!("index:  {}", global.db_dir()?.display());
        println!("model:  {} ({}-d)", stats.model, stats.dim);
        println!(
            "files:  {} ({} images, {} videos)",
            stats.files, stats.images, stats.videos
        );
        println!("items:  {}", stats.items);
        println!("descr:  {}", stats.descriptor);
        if let Some(w) = stats.whitening {
            println!(
                "whiten: version {}, {}-d to {}-d, learned from {} vectors",
                w.version, w.in_dim, w.out_dim, w.learned_from
            );
        }
        println!(
            "size:   {:.1} MB catalog, {:.1} MB ANN",
            stats.catalog_bytes as f64 / 1e6,
            stats.ann_bytes as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}
