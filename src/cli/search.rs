//! `lookalike search`: one result list per query, as text or as JSON lines (a contract that
//! scripts rely on: fields may be added, never changed or removed).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use lookalike::featurizer::ImageQuery;
use lookalike::index::{Hit, MediaKind, Region, SearchMode};
use lookalike::verify::{LocalFeatures, VerifyOptions};
use lookalike::video::{is_supported_video, FileMatch, VideoOptions};
use serde::Serialize;

use super::Global;

#[derive(Args)]
pub struct SearchArgs {
    /// Query images or videos (an indexed path is answered from its stored vectors). A video
    /// query lists the indexed files that share content with it, best first.
    #[arg(value_name = "IMAGE|VIDEO")]
    images: Vec<PathBuf>,
    /// Query by indexed item id (answered first, in the order given)
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<i64>,
    /// Results per query
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// One JSON object per query per line: {"query", "results": [{"path", "score", "id",
    /// "video", "t"?, "query_t"?, "inliers"?, "box"?}], "error"?}
    #[arg(long)]
    json: bool,
    /// List every matching video frame instead of each video once (by its best frame); for a
    /// video query, one result list per sampled query frame
    #[arg(long)]
    frames: bool,
    /// Seconds between sampled frames of a query video (as `index --frame-interval`)
    #[arg(long, value_name = "SECS", default_value_t = VideoOptions::default().frame_interval,
          value_parser = super::index::parse_interval)]
    frame_interval: f64,
    /// Brute-force search over every vector (exact; slow on big indexes, the ground truth for
    /// the approximate search)
    #[arg(long)]
    exact: bool,
    #[command(flatten)]
    verify: VerifyArgs,
}

/// Spatial verification options (shared by `search` and `eval`).
#[derive(Args)]
pub struct VerifyArgs {
    /// Re-rank the top N results of an image query (or of an --id query of an image) by
    /// spatial verification: local features matched between the query and each result,
    /// counted when one transform explains them. Finds an object photographed in a cluttered
    /// scene; each verified result costs a decode of its file (0: off; video queries are not
    /// verified)
    #[arg(long, value_name = "N", default_value_t = 0)]
    verify: usize,
    /// Matches one transform must explain for a result to count as verified
    #[arg(long, value_name = "N", default_value_t = VerifyOptions::DEFAULT_MIN_INLIERS)]
    min_inliers: usize,
}

impl VerifyArgs {
    pub fn options(&self) -> VerifyOptions {
        VerifyOptions {
            depth: self.verify,
            min_inliers: self.min_inliers,
        }
    }
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
    /// The result is a video (`t` then says which moment).
    video: bool,
    /// Seconds into the video of the matching frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<f64>,
    /// For a video query: seconds into the query of the frame that matched best.
    #[serde(skip_serializing_if = "Option::is_none")]
    query_t: Option<f64>,
    /// With --verify: the feature matches with the query that one transform explains.
    #[serde(skip_serializing_if = "Option::is_none")]
    inliers: Option<usize>,
    /// Where in the result the query was found ({"x", "y", "w", "h"}, fractions of its width
    /// and height), when a region of it matched better than the whole.
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

impl From<Hit> for ResultRow {
    fn from(hit: Hit) -> Self {
        ResultRow {
            path: hit.path,
            score: hit.score,
            id: hit.id,
            video: hit.kind == MediaKind::Video,
            t: hit.t,
            query_t: None,
            inliers: hit.inliers,
            region: hit.region,
        }
    }
}

impl From<FileMatch> for ResultRow {
    fn from(m: FileMatch) -> Self {
        ResultRow {
            path: m.path,
            score: m.score,
            id: m.id,
            video: m.kind == MediaKind::Video,
            t: m.t,
            query_t: Some(m.query_t),
            inliers: None,
            region: None,
        }
    }
}

pub fn run(global: &Global, args: SearchArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        !args.images.is_empty() || !args.ids.is_empty(),
        "nothing to search for: give query images, videos or --id"
    );
    let engine = global.engine(true)?;
    let mode = if args.exact {
        SearchMode::Exact
    } else {
        SearchMode::Approximate
    };

    let verify = args.verify.options();
    // A query's results, verified against the query image's features when given.
    let search_image = |image: &ImageQuery, features: lookalike::Result<Option<LocalFeatures>>| {
        engine.search_image(image, args.k, mode, args.frames, verify, features?.as_ref())
    };
    let video_options = VideoOptions {
        frame_interval: args.frame_interval,
        ..VideoOptions::default()
    };

    let mut outputs: Vec<QueryOutput> = Vec::new();
    for &id in &args.ids {
        let features = || match verify.depth {
            0 => Ok(None),
            _ => engine.item_local_features(id),
        };
        let result = engine
            .item_vector(id)
            .and_then(|v| search_image(&ImageQuery::from(v), features()));
        outputs.push(output(id.to_string(), rows(result)));
    }
    for query in &args.images {
        let name = query.display().to_string();
        if !is_supported_video(query) {
            let image = engine.image_query_of_file(query);
            let features = || match verify.depth {
                0 => Ok(None),
                _ => Ok(Some(engine.local_features_of_file(query)?)),
            };
            outputs.push(output(
                name,
                rows(image.and_then(|image| search_image(&image, features()))),
            ));
        } else if args.frames {
            match engine.video_query_frames(query, &video_options) {
                Ok(frames) => outputs.extend(frames.into_iter().map(|(t, v)| {
                    let image = ImageQuery::from(v);
                    output(
                        format!("{name} @ {t:.2}s"),
                        rows(search_image(&image, Ok(None))),
                    )
                })),
                Err(e) => outputs.push(output(name, Err(e.to_string()))),
            }
        } else {
            let result = engine
                .search_video(query, args.k, mode, &video_options)
                .map(|matches| matches.into_iter().map(ResultRow::from).collect())
                .map_err(|e| e.to_string());
            outputs.push(output(name, result));
        }
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

fn rows(result: lookalike::Result<Vec<Hit>>) -> Result<Vec<ResultRow>, String> {
    result
        .map(|hits| hits.into_iter().map(ResultRow::from).collect())
        .map_err(|e| e.to_string())
}

fn output(query: String, result: Result<Vec<ResultRow>, String>) -> QueryOutput {
    match result {
        Ok(results) => QueryOutput {
            query,
            results,
            error: None,
        },
        Err(error) => QueryOutput {
            query,
            results: Vec::new(),
            error: Some(error),
        },
    }
}

fn print_text(out: &QueryOutput) {
    println!("{}", out.query);
    if let Some(error) = &out.error {
        println!("  error: {error}");
    }
    for (rank, row) in out.results.iter().enumerate() {
        let at = row.t.map(|t| format!(" @ {t:.1}s")).unwrap_or_default();
        let query_at = row
            .query_t
            .map(|t| format!(", query @ {t:.1}s"))
            .unwrap_or_default();
        let inliers = row
            .inliers
            .map(|n| format!(", {n} inliers"))
            .unwrap_or_default();
        let region = row
            .region
            .map(|r| format!(", box {:.2},{:.2} {:.2}x{:.2}", r.x, r.y, r.w, r.h))
            .unwrap_or_default();
        println!(
            "  {:>3}. {:.4}  {}{at}  (id {}{query_at}{inliers}{region})",
            rank + 1,
            row.score,
            row.path,
            row.id
        );
    }
}
