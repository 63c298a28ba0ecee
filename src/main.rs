//! The `consign` binary: parse the command line, set up logging, run, and map
//! the outcome to an exit code.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // SIGPIPE stays ignored (Rust's default): a partner's server closing a
    // connection while the engine writes to it (OpenSSL, libssh2) must be an
    // error of that attempt, never the end of the process. A closed stdout
    // (`consign batches list | head`) ends the command quietly instead.
    quiet_on_closed_stdout();
    let cli = consign::cli::Cli::parse();
    consign::cli::init_logging(&cli);
    match consign::cli::run(cli) {
        Ok(code) => code,
        Err(e) if closed_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(consign::cli::exit_code_for(&e))
        }
    }
}

/// `println!` panics when stdout is a closed pipe: exit quietly then, with
/// the status a shell gives a process ended by SIGPIPE.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info.to_string();
        if text.contains("failed printing to std") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Whether the command ended because its output pipe was closed.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
