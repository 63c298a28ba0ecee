//! Small host calls: environment variables, the clock, and reporting a part
//! as delivered.

use crate::bindings::consign::destination::host;

/// An environment variable of the engine, through the `env` capability.
///
/// `Err` carries the host's reason (not granted by the manifest, not allowed
/// by the operator, or not set): pass it on verbatim in your error message.
pub fn env_var(name: &str) -> Result<String, String> {
    host::env_var(name)
}

/// Wall-clock time, milliseconds since the Unix epoch (the component has no
/// other clock: `std::time::SystemTime::now()` is unavailable).
pub fn now_unix_ms() -> u64 {
    host::now_unix_ms()
}

/// Report that `part` went through. The host records it at once, so a crash
/// or a failure later in this attempt does not resend it; the next attempt
/// lists it in [`Batch::already_delivered`](crate::Batch::already_delivered).
pub fn part_accepted(part: u32) {
    host::part_accepted(part)
}
