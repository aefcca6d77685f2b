//! `lookalike search`: one result list per query, as text or as JSON lines (a contract that
//! scripts rely on: fields may be added, never changed or removed).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use lookalike::engine::Engine;
use lookalike::index::{Hit, SearchMode};
use serde::Serialize;

use super::Global;

#[derive(Args)]
pub struct SearchArgs {
    /// Query images (an indexed path is answered from its stored vector)
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Query by indexed item id (answered first, in the order given)
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<i64>,
    /// Results per query
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// One JSON object per query per line: {"query", "results": [{"path", "score", "id"}], "error"?}
    #[arg(long)]
    json: bool,
    /// Brute-force search over every vector (exact; slow on big indexes, the ground truth for
    /// the approximate search)
    #[arg(long)]
    exact: bool,
}

/// One line of `--json` output.
#[derive(Serialize)]
struct QueryOutput {
    query: String,
    results: Vec<ResultRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct ResultRow {
    path: String,
    score: f32,
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<f64>,
}

impl From<Hit> for ResultRow {
    fn from(hit: Hit) -> Self {
        ResultRow {
            path: hit.path,
            score: hit.score,
            id: hit.id,
            t: hit.t,
        }
    }
}

pub fn run(global: &Global, args: SearchArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        !args.images.is_empty() || !args.ids.is_empty(),
        "nothing to search for: give query images or --id"
    );
    let engine = global.engine(None, true)?;
    let mode = if args.exact {
        SearchMode::Exact
    } else {
        SearchMode::Approximate
    };

    let mut outputs: Vec<QueryOutput> = Vec::new();
    for &id in &args.ids {
        let result = engine
            .item_vector(id)
            .and_then(|v| engine.search_vector(&v, args.k, mode));
        outputs.push(output(id.to_string(), result));
    }
    for (query, vector) in args
        .images
        .iter()
        .zip(query_vectors(&engine, &args.images)?)
    {
        let result = vector.and_then(|v| engine.search_vector(&v, args.k, mode));
        outputs.push(output(query.display().to_string(), result));
    }

    let mut failed = false;
    for out in &outputs {
        failed |= out.error.is_some();
        if args.json {
            println!("{}", serde_json::to_string(out)?);
        } else {
            print_text(out);
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The feature vector of each query file: its stored vector when it is indexed and unchanged,
/// otherwise decoded and embedded (all such files in batches, with the model loaded once).
fn query_vectors(engine: &Engine, images: &[PathBuf]) -> Result<Vec<lookalike::Result<Vec<f32>>>> {
    let mut vectors: Vec<Option<lookalike::Result<Vec<f32>>>> = Vec::with_capacity(images.len());
    let mut to_embed = Vec::new();
    for path in images {
        match engine.indexed_vector(path)? {
            Some((_, vector)) => vectors.push(Some(Ok(vector))),
            None => {
                to_embed.push(path.clone());
                vectors.push(None);
            }
        }
    }
    let mut embedded = engine.embed_files(&to_embed)?.into_iter();
    Ok(vectors
        .into_iter()
        .map(|v| match v {
            Some(v) => v,
            None => embedded
                .next()
                .expect("one embedding per file to embed")
                .map(|e| e.vector)
                .map_err(lookalike::Error::from),
        })
        .collect())
}

fn output(query: String, result: lookalike::Result<Vec<Hit>>) -> QueryOutput {
    match result {
        Ok(hits) => QueryOutput {
            query,
            results: hits.into_iter().map(ResultRow::from).collect(),
            error: None,
        },
        Err(e) => QueryOutput {
            query,
            results: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

fn print_text(out: &QueryOutput) {
    println!("{}", out.query);
    if let Some(error) = &out.error {
        println!("  error: {error}");
    }
    for (rank, row) in out.results.iter().enumerate() {
        match row.t {
            Some(t) => println!(
                "  {:>3}. {:.4}  {} @ {t:.1}s  (id {})",
                rank + 1,
                row.score,
                row.path,
                row.id
            ),
            None => println!(
                "  {:>3}. {:.4}  {}  (id {})",
                rank + 1,
                row.score,
                row.path,
                row.id
            ),
        }
    }
}
