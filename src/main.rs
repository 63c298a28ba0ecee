//! The `consign` binary: parse the command line, set up logging, run, and map
//! the outcome to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `consign batches list | head` must end quietly, not panic on EPIPE.
    sigpipe::reset();
    let cli = consign::cli::Cli::parse();
    consign::cli::init_logging(&cli);
    match consign::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(consign::cli::exit_code_for(&e))
        }
    }
}
