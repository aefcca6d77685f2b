//! The `lookalike` command line: parse, call the library, print. Each subcommand lives in
//! its own module under `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.global.verbose, args.global.quiet);
    match cli::run(args) {
        Ok(code) => code,
        // The reader of our output went away (`lookalike search ... | head`): nothing to
        // report, as for any Unix tool.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookalike: error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause said once: many errors print their
/// source in their own message (`"{path}: {source}"`), which a plain walk of the chain would
/// then repeat.
fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let said = line == text || line.ends_with(&format!(": {text}"));
        if !said {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::report;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Read {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Read {
            path: "/db/catalog".into(),
            source: io,
        })
        .context("opening the index");
        assert_eq!(report(&e), "opening the index: /db/catalog: no such file");
        // Causes that say something new are all kept, even when a message ends with their
        // words.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(report(&e), "outer: middle: inner");
        let e = anyhow::anyhow!("denied").context("permission denied");
        assert_eq!(report(&e), "permission denied: denied");
    }
}
