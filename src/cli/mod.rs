//! Command-line interface: argument definitions and dispatch. Each
//! subcommand lives in its own file.

mod batches;
mod check;
mod demo;
mod enqueue;
mod flush;
mod init;
mod plugin;
mod preview;
mod reload;
mod script;
mod status;

use crate::config::{self, Config};
use crate::engine::Engine;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Runtime failure (store, I/O).
pub const EXIT_ERROR: u8 = 1;
/// Bad configuration or input.
pub const EXIT_CONFIG: u8 = 2;
/// A delivery was attempted and did not succeed (retry scheduled, suspended, manual).
pub const EXIT_NOT_DELIVERED: u8 = 3;
/// `check --connect`: a destination is not reachable or writable.
pub const EXIT_UNREACHABLE: u8 = 4;
/// `batches verify`: a file does not match what was assembled.
pub const EXIT_VERIFY: u8 = 5;

#[derive(Debug, Parser)]
#[command(
    name = "consign",
    version,
    about = "Batch file delivery engine: queue leads, cut batches, assemble files, deliver them"
)]
pub struct Cli {
    /// Config file.
    #[arg(
        short,
        long,
        global = true,
        env = "CONSIGN_CONFIG",
        default_value = "consign.toml"
    )]
    pub config: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a starter config file.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate the config (all errors at once); `--connect` also tests destinations.
    Check {
        /// Connect to each destination and prove it is writable.
        #[arg(long)]
        connect: bool,
        /// Only this delivery (with --connect).
        delivery: Option<String>,
    },
    /// Run the engine: HTTP intake, schedulers and delivery workers.
    Serve,
    /// Queue records from CSV, NDJSON or JSON files.
    Enqueue {
        /// Delivery that receives the records.
        #[arg(short, long)]
        delivery: String,
        /// Input format (default: from the file extension).
        #[arg(short, long, value_enum)]
        format: Option<crate::intake::Format>,
        /// Files to read.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Cut a batch now from everything pending, assemble and deliver it.
    Flush {
        delivery: String,
        /// Only cut and assemble; leave delivery to `consign serve`.
        #[arg(long)]
        no_deliver: bool,
    },
    /// Per delivery: pending records, oldest age, next trigger, state.
    Status,
    /// Render a delivery's file from sample leads without queueing anything.
    Preview {
        delivery: String,
        /// Sample records: CSV (header row), NDJSON or JSON.
        #[arg(long)]
        sample: PathBuf,
        /// Use the first N records of the sample.
        #[arg(long, default_value_t = 10)]
        records: usize,
        /// Also write the final files (compressed, encrypted, with sidecars) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Inspect and retry batches.
    #[command(subcommand)]
    Batches(BatchesCommand),
    /// Manage deliveries.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Purge records of delivered batches older than the retention period.
    Purge,
    /// Reload scripts (and plugins) in the running `consign serve`
    /// (same as SIGHUP or POST /v1/admin/reload); failures keep the last good version.
    Reload,
    /// Lua scripts: run a hook on sample input.
    #[command(subcommand)]
    Script(ScriptCommand),
    /// Destination plugins: list the plugins folder, inspect or check a package.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// The main job on an embedded default: generate sample leads, queue them,
    /// cut, assemble (CSV + gzip) and deliver to a local outbox.
    Demo {
        /// Working directory for the demo's config, database and outbox.
        #[arg(long, default_value = "consign-demo")]
        dir: PathBuf,
        /// How many sample leads to generate.
        #[arg(long, default_value_t = 1000)]
        records: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum BatchesCommand {
    /// List recent batches.
    List {
        #[arg(long)]
        delivery: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A batch with its files, attempts and life-cycle events.
    Show { id: String },
    /// Check a batch's spool files: hashes, then decompress, parse and count.
    Verify { id: String },
    /// Rebuild a batch's files from its stored records with the layout it was cut with.
    Regenerate { id: String },
    /// Deliver a batch again (manual, failed, suspended, retry_wait or delivered).
    Retry {
        id: String,
        /// Only re-queue it for `consign serve`; do not attempt now.
        #[arg(long)]
        queue_only: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScriptCommand {
    /// Run a hook of SCRIPT on sample input and print the result.
    Test {
        script: PathBuf,
        /// Transform: records (CSV, NDJSON, JSON). Response: an outcome as
        /// JSON (`{"ok":false,"class":"transient","status":429,"headers":{},"body":"..."}`).
        /// Schedule: metrics as JSON (`{"pending":10,"oldest_age":300}`).
        #[arg(long)]
        input: PathBuf,
        #[arg(long, value_enum, default_value = "transform")]
        hook: script::Hook,
        /// Use this delivery's mapping, mode, limits and zone.
        #[arg(long)]
        delivery: Option<String>,
        /// Transform: at most this many records of the input.
        #[arg(long, default_value_t = 20)]
        records: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Every package in the config's plugins folder: version, kind, SDK,
    /// hash, capabilities, which deliveries use it, load errors.
    List,
    /// A package's manifest, SDK version, imports/exports, capabilities,
    /// config schema, SHA-256 and load time (PATH: its folder or plugin.toml).
    Inspect { path: PathBuf },
    /// Load a package and run its connection check with the given config.
    Check {
        path: PathBuf,
        /// A config value, KEY=VALUE (TOML value; bare words are strings). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Grant HTTP to HOST[:PORT] (if the manifest asks for it). Repeatable.
        #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
        allow_http: Vec<String>,
        /// Grant reading environment variable NAME (if the manifest asks). Repeatable.
        #[arg(long = "allow-env", value_name = "NAME")]
        allow_env: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// Lift a suspension (after fixing credentials or host keys).
    Resume { name: String },
}

/// Exit code for an error that ended a command: bad input (unknown delivery
/// or batch, a batch in the wrong state) is 2, anything else 1.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    use crate::engine::EngineError;
    match e.downcast_ref::<EngineError>() {
        Some(
            EngineError::UnknownDelivery(_)
            | EngineError::UnknownBatch(_)
            | EngineError::NotRetryable { .. },
        ) => EXIT_CONFIG,
        _ => EXIT_ERROR,
    }
}

pub fn init_logging(cli: &Cli) {
    let default = match (cli.verbose, &cli.command) {
        (0, Command::Serve) => "info",
        (0, _) => "warn",
        (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            // Libraries whose errors consign reports itself (classified, once) stay quiet.
            "consign={default},warn,rustls_platform_verifier=off,suppaftp=off,gcp_auth=warn"
        ))
    });
    // suppaftp traces every command, `PASS <password>` included: never on,
    // whatever RUST_LOG asks for (secrets are never logged).
    let filter = match "suppaftp=off".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Load the config or print every error and return the exit code.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprint!("{e}");
        if e.errors
            .iter()
            .any(|x| x.path == "(file)" && x.message.starts_with("cannot read"))
        {
            eprintln!("hint: create one with `consign init`, or pass --config PATH");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

fn open_engine(path: &Path) -> Result<Result<Engine, ExitCode>, anyhow::Error> {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(Err(code)),
    };
    let store_path = cfg.store.path.clone();
    Ok(Ok(Engine::open(cfg).with_context(|| {
        format!("opening store {}", store_path.display())
    })?))
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    macro_rules! engine {
        () => {
            match open_engine(&cli.config)? {
                Ok(e) => e,
                Err(code) => return Ok(code),
            }
        };
    }
    match cli.command {
        Command::Init { force } => init::run(&cli.config, force),
        Command::Check {
            connect,
            ref delivery,
        } => check::run(&cli.config, connect, delivery.as_deref(), json),
        Command::Serve => {
            let engine = Arc::new(engine!());
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let result = rt.block_on(crate::serve::serve(engine));
            // Idle blocking-pool threads would keep the process alive for seconds.
            rt.shutdown_background();
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Enqueue {
            ref delivery,
            format,
            ref files,
        } => enqueue::run(&engine!(), delivery, format, files, json),
        Command::Flush {
            ref delivery,
            no_deliver,
        } => flush::run(&engine!(), delivery, !no_deliver, json),
        Command::Status => status::run(&engine!(), json),
        Command::Preview {
            ref delivery,
            ref sample,
            records,
            ref out,
        } => {
            let cfg = match load_config(&cli.config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            preview::run(&cfg, delivery, sample, records, out.as_deref())
        }
        Command::Batches(ref cmd) => batches::run(&engine!(), cmd, json),
        Command::Deliveries(DeliveriesCommand::Resume { ref name }) => {
            let e = engine!();
            let n = e.resume(name)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "resumed": name, "batches_ready": n })
                );
            } else {
                println!("delivery {name} resumed; {n} suspended batch(es) are ready again (delivered by `consign serve`, or `consign batches retry ID`)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Purge => {
            let n = engine!().purge()?;
            println!("purged {n} record(s) of delivered batches past retention");
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { ref dir, records } => demo::run(dir, records, json),
        Command::Reload => reload::run(&cli.config, json),
        Command::Plugin(PluginCommand::List) => plugin::list(&cli.config, json),
        Command::Plugin(PluginCommand::Inspect { ref path }) => {
            plugin::inspect(&cli.config, path, json)
        }
        Command::Plugin(PluginCommand::Check {
            ref path,
            ref set,
            ref allow_http,
            ref allow_env,
        }) => plugin::check(
            &cli.config,
            &plugin::CheckArgs {
                path,
                set,
                allow_http,
                allow_env,
            },
            json,
        ),
        Command::Script(ScriptCommand::Test {
            ref script,
            ref input,
            hook,
            ref delivery,
            records,
        }) => script::test(
            &cli.config,
            &script::TestArgs {
                script,
                input,
                hook,
                delivery: delivery.as_deref(),
                records,
                json,
            },
        ),
    }
}

/// A compact one-line description of a batch for human output.
pub(crate) fn batch_line(b: &crate::store::Batch) -> String {
    format!(
        "{:<24} {:<14} {:<11} {:>8} records  {:>3} attempt(s)  {}",
        b.id,
        b.delivery,
        b.state.as_str(),
        b.record_count,
        b.attempts,
        b.last_error.as_deref().unwrap_or("")
    )
}
