//! `lookalike duplicates`: near-duplicate groups, their keepers, and tidying them up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use lookalike::duplicates::actions::{self, Action, DropFile, Outcome, Plan, Step};
use lookalike::duplicates::sameness::SamenessOptions;
use lookalike::duplicates::{self, Group, GroupOptions, ScanOptions, ScanReport};
use lookalike::engine::Engine;
use lookalike::ingest::IngestOptions;

use super::Global;

#[derive(Args)]
pub struct DuplicatesArgs {
    /// Only images under these folders [default: the whole index]
    #[arg(value_name = "FOLDER")]
    under: Vec<PathBuf>,
    /// Files under this folder are never dropped, and one of them is the keeper of any
    /// group that has some; repeatable
    #[arg(long, value_name = "DIR")]
    reference: Vec<PathBuf>,
    /// Print JSON (the scan, and every group with its members, keeper first)
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV, one row per image
    #[arg(long)]
    csv: bool,
    /// Move the files each group drops under DIR (at their absolute path below it)
    #[arg(long, value_name = "DIR", group = "action")]
    move_to: Option<PathBuf>,
    /// Replace each dropped file that is an exact copy of its keeper by a hard link to it
    #[arg(long, group = "action")]
    link: bool,
    /// Move the dropped files into the index's trash (undo brings them back; --empty-trash
    /// deletes them)
    #[arg(long, group = "action")]
    delete: bool,
    /// Do the action (without it, only say what it would do)
    #[arg(long, requires = "action")]
    apply: bool,
    /// Where to write the journal of the action [default: DB/journals/duplicates-TIME.jsonl]
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Take back what the journal FILE records (and index the restored files again)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["action", "not_duplicates"])]
    undo: Option<PathBuf>,
    /// Delete for real the files --delete moved into the trash
    #[arg(long, conflicts_with_all = ["action", "undo"])]
    empty_trash: bool,
    /// Record that these indexed files are not duplicates of each other (give two or more);
    /// later runs and the page respect it
    #[arg(long, value_name = "FILE", num_args = 2.., conflicts_with = "action")]
    not_duplicates: Vec<PathBuf>,
    /// Nearest neighbours each image is compared with
    #[arg(long, value_name = "N", default_value_t = ScanOptions::default().neighbours)]
    neighbours: usize,
    /// The least cosine of two images' descriptors for them to be compared at all
    #[arg(long, value_name = "COSINE", default_value_t = ScanOptions::default().min_similarity)]
    min_similarity: f32,
    /// The largest share of two aligned images' cells that may differ for them to be one
    /// photo (a caption)
    #[arg(long, value_name = "SHARE", default_value_t = SamenessOptions::default().max_changed)]
    max_changed: f32,
}

pub fn run(global: &Global, args: DuplicatesArgs) -> Result<ExitCode> {
    let db = global.db_dir()?;
    if args.empty_trash {
        let removed = actions::empty_trash(&db.join(duplicates::TRASH_DIR))?;
        println!("deleted {removed} files from the trash");
        return Ok(ExitCode::SUCCESS);
    }
    let engine = global.engine(false)?;
    if let Some(journal) = &args.undo {
        return undo(&engine, journal);
    }
    if !args.not_duplicates.is_empty() {
        return not_duplicates(&engine, &args.not_duplicates);
    }
    let scan_options = ScanOptions {
        neighbours: args.neighbours,
        min_similarity: args.min_similarity,
        sameness: SamenessOptions {
            max_changed: args.max_changed,
            ..SamenessOptions::default()
        },
        ..ScanOptions::default()
    };
    let report = duplicates::scan(&engine, &scan_options)?;
    let group_options = GroupOptions {
        under: args.under.clone(),
        references: args.reference.clone(),
    };
    let groups = duplicates::groups(&engine, &group_options)?;
    let action = action_of(&args, &db);
    let outcome = match &action {
        Some(action) if args.apply => Some(apply(&engine, &args, &db, action, &groups)?),
        _ => None,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::json!({ "scan": report, "groups": groups, "applied": outcome });
        writeln!(out, "{json}")?;
    } else if args.csv {
        write_csv(&mut out, &groups)?;
    } else {
        write_text(
            &mut out,
            &report,
            &groups,
            action.as_ref(),
            outcome.as_ref(),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn action_of(args: &DuplicatesArgs, db: &Path) -> Option<Action> {
    if let Some(dir) = &args.move_to {
        Some(Action::MoveTo(dir.clone()))
    } else if args.link {
        Some(Action::Link)
    } else if args.delete {
        Some(Action::Delete {
            trash: db.join(duplicates::TRASH_DIR),
        })
    } else {
        None
    }
}

/// Applies `action` to every dropped member, then forgets the files that moved away.
fn apply(
    engine: &Engine,
    args: &DuplicatesArgs,
    db: &Path,
    action: &Action,
    groups: &[Group],
) -> Result<Outcome> {
    let drops = groups
        .iter()
        .flat_map(|group| {
            let keeper = PathBuf::from(&group.keeper().path);
            group
                .members
                .iter()
                .filter(|m| m.is_dropped())
                .map(move |m| DropFile {
                    path: PathBuf::from(&m.path),
                    keeper: keeper.clone(),
                })
        })
        .collect();
    let plan = Plan {
        action: action.clone(),
        drops,
        references: args.reference.clone(),
    };
    let journal = match &args.journal {
        Some(journal) => journal.clone(),
        None => duplicates::new_journal(db),
    };
    let (outcome, _) = duplicates::apply(engine, &plan, &journal)
        .with_context(|| format!("applying the action (journal: {})", journal.display()))?;
    Ok(outcome)
}

fn undo(engine: &Engine, journal: &Path) -> Result<ExitCode> {
    let outcome = actions::undo(journal)?;
    let restored: Vec<PathBuf> = outcome
        .done
        .iter()
        .filter(|step| matches!(step, Step::Move { .. }))
        .map(|step| step.path().to_path_buf())
        .collect();
    if !restored.is_empty() {
        engine.index_paths(&restored, &IngestOptions::default())?;
    }
    println!(
        "restored {} files ({} skipped), journal {}",
        outcome.done.len(),
        outcome.skipped.len(),
        journal.display()
    );
    for skipped in &outcome.skipped {
        println!("  skipped {}: {}", skipped.path.display(), skipped.reason);
    }
    Ok(ExitCode::SUCCESS)
}

fn not_duplicates(engine: &Engine, paths: &[PathBuf]) -> Result<ExitCode> {
    let mut ids = Vec::with_capacity(paths.len());
    for path in paths {
        let items = engine
            .indexed_items(path)?
            .with_context(|| format!("not in the index: {}", path.display()))?;
        ids.extend(items.iter().map(|(record, _)| record.id));
    }
    let added = duplicates::mark_distinct(engine, &ids)?;
    println!("recorded {added} pairs as not duplicates");
    Ok(ExitCode::SUCCESS)
}

fn write_text(
    out: &mut impl Write,
    report: &ScanReport,
    groups: &[Group],
    action: Option<&Action>,
    outcome: Option<&Outcome>,
) -> Result<()> {
    let dropped: Vec<_> = groups
        .iter()
        .flat_map(|g| g.members.iter().filter(|m| m.is_dropped()))
        .collect();
    let bytes: u64 = dropped.iter().map(|m| m.bytes).sum();
    writeln!(
        out,
        "{} groups, {} images to drop ({:.1} MB); scanned {} new images, compared {} pairs",
        groups.len(),
        dropped.len(),
        bytes as f64 / 1e6,
        report.scanned,
        report.compared
    )?;
    for (n, group) in groups.iter().enumerate() {
        writeln!(
            out,
            "\ngroup {} ({}, {} images)",
            n + 1,
            group.tier.name(),
            group.members.len()
        )?;
        for m in &group.members {
            writeln!(
                out,
                "  {:<9} {:>5}x{:<5} {:>8.1} KB  {:<5} {}",
                m.role(),
                m.width,
                m.height,
                m.bytes as f64 / 1e3,
                m.tier.name(),
                m.path
            )?;
        }
    }
    match (action, outcome) {
        (Some(_), Some(outcome)) => {
            writeln!(
                out,
                "\n{} files done, {} skipped; undo with: lookalike duplicates --undo {}",
                outcome.done.len(),
                outcome.skipped.len(),
                outcome.journal.display()
            )?;
            for skipped in &outcome.skipped {
                writeln!(
                    out,
                    "  skipped {}: {}",
                    skipped.path.display(),
                    skipped.reason
                )?;
            }
        }
        (Some(_), None) if !dropped.is_empty() => {
            writeln!(
                out,
                "\ndry run: add --apply to act on the {} files marked drop",
                dropped.len()
            )?;
        }
        _ => {}
    }
    Ok(())
}

fn write_csv(out: &mut impl Write, groups: &[Group]) -> Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record([
        "group", "tier", "role", "path", "width", "height", "bytes", "modified", "format",
    ])?;
    for (n, group) in groups.iter().enumerate() {
        for m in &group.members {
            csv.write_record([
                (n + 1).to_string(),
                m.tier.name().to_owned(),
                m.role().to_owned(),
                m.path.clone(),
                m.width.to_string(),
                m.height.to_string(),
                m.bytes.to_string(),
                m.modified.to_string(),
                m.format.clone(),
            ])?;
        }
    }
    csv.flush()?;
    Ok(())
}
