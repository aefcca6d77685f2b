//! `lookalike whiten`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Global;

#[derive(Args)]
pub struct WhitenArgs {
    /// Dimensions to keep [default: the active whitening's, else the index's descriptor's]
    #[arg(long, value_name = "N")]
    dims: Option<usize>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: WhitenArgs) -> Result<ExitCode> {
    let engine = global.engine(false)?;
    let info = engine.learn_whitening(args.dims)?;
    if args.json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!(
            "whitening version {}: {}-d to {}-d, learned from {} vectors",
            info.version, info.in_dim, info.out_dim, info.learned_from
        );
    }
    Ok(ExitCode::SUCCESS)
}
