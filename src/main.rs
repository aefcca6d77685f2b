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
        Err(e) => {
            eprintln!("lookalike: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
