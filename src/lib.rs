//! consign — a batch file delivery engine.
//!
//! Data flows one way: intake → queue (store) → trigger → assemble → deliver
//! → confirm. See `ARCHITECTURE.md` for the map of modules.

pub mod api;
pub mod assemble;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod destination;
pub mod engine;
pub mod intake;
pub mod plugin;
pub mod sample;
pub mod script;
pub mod serve;
pub mod store;
pub mod trigger;
pub mod watch;
