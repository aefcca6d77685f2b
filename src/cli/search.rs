//! `lookalike search`: one result list per query, as text or as JSON lines (a contract that
//! scripts rely on: fields may be added, never changed or removed).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use lookalike::engine::{Engine, SearchOptions, MIN_WORD_SCORE};
use lookalike::featurizer::ImageQuery;
use lookalike::index::{Filter, Hit, MediaKind, Near, Region, SearchMode, TakenRange};
use lookalike::model::Label;
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
    /// Search by words: the photos whose ImageNet labels the words name, through WordNet
    /// ("dog" finds every breed; "bird", "vehicle", "fruit", "golden retriever"). With query
    /// images, a filter: only results the words describe
    #[arg(long, value_name = "WORDS")]
    text: Option<String>,
    /// How sure the labels must be for a word to describe a photo: the summed probability
    /// of its labels under the word (0 to 1)
    #[arg(long, value_name = "P", default_value_t = MIN_WORD_SCORE,
          value_parser = parse_probability)]
    min_score: f32,
    #[command(flatten)]
    filter: FilterArgs,
    /// Results per query
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// One JSON object per query per line: {"query", "results": [{"path", "score", "id",
    /// "video", "t"?, "query_t"?, "inliers"?, "box"?, "labels"?}], "error"?,
    /// "unknown_words"?}. For --text alone, "score" is the words' label score (0 to 1)
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

/// Filters on the photos' facts and folders (each narrows every query).
#[derive(Args)]
pub struct FilterArgs {
    /// Only photos taken in this range (their EXIF date): 2019..2021, 2020-06, ..2018,
    /// 2019-03-01..
    #[arg(long, value_name = "FROM..TO", value_parser = |s: &str| s.parse::<TakenRange>())]
    taken: Option<TakenRange>,
    /// Only photos whose camera make or model contains this text (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    camera: Option<String>,
    /// Only photos taken within KM kilometres of a place (their EXIF position)
    #[arg(long, value_name = "LAT,LON,KM", value_parser = |s: &str| s.parse::<Near>())]
    near: Option<Near>,
    /// Only files under this folder (repeat for several)
    #[arg(long, value_name = "FOLDER")]
    under: Vec<PathBuf>,
}

impl FilterArgs {
    /// The filter these flags ask for; folders resolved as indexing stored them (absolute).
    pub fn filter(&self) -> Result<Filter> {
        let under = self
            .under
            .iter()
            .map(|dir| {
                let dir = dir
                    .canonicalize()
                    .with_context(|| format!("--under {}", dir.display()))?;
                dir.to_str()
                    .map(str::to_owned)
                    .with_context(|| format!("--under {}: not UTF-8", dir.display()))
            })
            .collect::<Result<_>>()?;
        Ok(Filter {
            taken: self.taken.clone(),
            camera: self.camera.clone(),
            near: self.near,
            under,
            labels: Vec::new(),
        })
    }
}

fn parse_probability(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability (0 to 1)")),
    }
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
    /// For a search by words: the words that name no ImageNet class (the answer is then
    /// empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unknown_words: Vec<String>,
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
    /// The result's most probable ImageNet classes ({"class", "name", "probability"}), most
    /// probable first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<LabelRow>,
}

#[derive(Serialize)]
struct LabelRow {
    class: u16,
    name: &'static str,
    probability: f32,
}

impl From<Label> for LabelRow {
    fn from(label: Label) -> Self {
        LabelRow {
            class: label.class,
            name: label.name(),
            probability: label.probability,
        }
    }
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
            labels: Vec::new(),
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
            labels: Vec::new(),
        }
    }
}

pub fn run(global: &Global, args: SearchArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        !args.images.is_empty() || !args.ids.is_empty() || args.text.is_some(),
        "nothing to search for: give query images, videos, --id or --text"
    );
    let engine = global.engine(true)?;
    let mode = if args.exact {
        SearchMode::Exact
    } else {
        SearchMode::Approximate
    };
    let mut filter = args.filter.filter()?;
    let mut outputs: Vec<QueryOutput> = Vec::new();
    let by_example = !args.images.is_empty() || !args.ids.is_empty();
    let words = args
        .text
        .as_deref()
        .map(|text| lookalike::words::vocabulary().parse(text));
    if let (Some(words), true) = (&words, by_example) {
        // Words narrow the search by example.
        filter.labels = Engine::word_terms(words, args.min_score);
    }
    let within = engine.matching_items(&filter)?;
    let options = SearchOptions {
        k: args.k,
        mode,
        frames: args.frames,
        verify: args.verify.options(),
        within: within.as_ref(),
    };
    if let (Some(text), false) = (&args.text, by_example) {
        let output = match engine.search_words(text, args.min_score, &options) {
            Ok((query, hits)) => QueryOutput {
                unknown_words: query.unknown,
                ..output(
                    text.clone(),
                    Ok(hits.into_iter().map(ResultRow::from).collect()),
                )
            },
            Err(e) => output(text.clone(), Err(e.to_string())),
        };
        outputs.push(output);
    }

    let verify = options.verify;
    // A query's results, verified against the query image's features when given.
    let search_image = |image: &ImageQuery, features: lookalike::Result<Option<LocalFeatures>>| {
        engine.search_image(image, &options, features?.as_ref())
    };
    let video_options = VideoOptions {
        frame_interval: args.frame_interval,
        ..VideoOptions::default()
    };

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
                .search_video(query, args.k, mode, options.within, &video_options)
                .map(|matches| matches.into_iter().map(ResultRow::from).collect())
                .map_err(|e| e.to_string());
            outputs.push(output(name, result));
        }
    }

    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    for out in &mut outputs {
        let ids: Vec<i64> = out.results.iter().map(|r| r.id).collect();
        let mut labels = engine.labels_of(&ids)?;
        for row in &mut out.results {
            row.labels = labels
                .remove(&row.id)
                .unwrap_or_default()
                .into_iter()
                .map(LabelRow::from)
                .collect();
        }
        failed |= out.error.is_some();
        if args.json {
            writeln!(stdout, "{}", serde_json::to_string(out)?)?;
        } else {
            print_text(&mut stdout, out)?;
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
            unknown_words: Vec::new(),
        },
        Err(error) => QueryOutput {
            query,
            results: Vec::new(),
            error: Some(error),
            unknown_words: Vec::new(),
        },
    }
}

fn print_text(w: &mut impl Write, out: &QueryOutput) -> std::io::Result<()> {
    writeln!(w, "{}", out.query)?;
    if let Some(error) = &out.error {
        writeln!(w, "  error: {error}")?;
    }
    if !out.unknown_words.is_empty() {
        writeln!(
            w,
            "  no ImageNet class for: {}",
            out.unknown_words.join(", ")
        )?;
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
        let labels = match row.labels.first() {
            Some(top) => format!(", {} {:.2}", top.name, top.probability),
            None => String::new(),
        };
        writeln!(
            w,
            "  {:>3}. {:.4}  {}{at}  (id {}{query_at}{inliers}{region}{labels})",
            rank + 1,
            row.score,
            row.path,
            row.id
        )?;
    }
    Ok(())
}
