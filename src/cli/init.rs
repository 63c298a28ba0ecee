//! `consign init`: write a starter config.

use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

/// The starter config: a local outbox delivery that works as is, and an SFTP
/// delivery to adapt.
pub const STARTER: &str = r#"# consign configuration. Reference: README.md ("Configuration reference").

[store]
path = "consign.db"          # SQLite queue (relative to this file)
spool_dir = "spool"          # assembled files waiting for delivery
retention = "7d"             # keep records of delivered batches this long

[server]
listen = "127.0.0.1:8080"    # HTTP intake + admin API
max_body = "64MiB"
max_record = "256KiB"

[[delivery]]
name = "outbox"
timezone = "America/New_York"

[delivery.trigger]           # any combination; first to fire cuts a batch
records = 10000
max_age = "4h"
cron = "0 2 * * *"           # standard crontab, in `timezone`

[delivery.batch]
max_records = 50000
empty = "skip"               # or "deliver": header-only file when nothing is pending

[delivery.file]
name = "leads_{date}_{time}_{batch_id}.csv.gz"
compression = "gzip"
gzip_level = 6

[delivery.csv]
delimiter = ","
line_ending = "crlf"
header = true

[[delivery.field]]
name = "first_name"
source = "First Name"
transform = ["trim"]

[[delivery.field]]
name = "last_name"
source = "Last Name"

[[delivery.field]]
name = "email"
source = "Email 1"
transform = ["trim", "lowercase"]

[[delivery.field]]
name = "phone"
source = "Phone 1"
transform = ["digits_only"]

[delivery.destination]
type = "local"
dir = "outbox"

[delivery.retry]
max_attempts = 5
initial_delay = "30s"
max_delay = "30m"

# A partner over SFTP (uncomment and adapt):
# [[delivery]]
# name = "acme"
# [delivery.trigger]
# at = "02:00"
# days = ["mon-fri"]
# [delivery.file]
# name = "acme_{date}_{batch_id}.csv.gz"
# compression = "gzip"
# [delivery.destination]
# type = "sftp"
# host = "sftp.partner.example"
# port = 22
# username = "batch_user"
# private_key = "/etc/consign/keys/acme_ed25519"
# passphrase = "${env:ACME_KEY_PASSPHRASE}"
# known_hosts = "/etc/consign/known_hosts"
# remote_dir = "/incoming/leads"
"#;

pub fn run(path: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if path.exists() && !force {
        eprintln!(
            "{} already exists; use --force to overwrite",
            path.display()
        );
        return Ok(ExitCode::from(super::EXIT_CONFIG));
    }
    std::fs::write(path, STARTER).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {}; check it with `consign check`, then `consign serve`",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn starter_config_is_valid() {
        let c = crate::config::load_str(
            super::STARTER,
            std::path::Path::new("consign.toml"),
            std::path::Path::new("/x"),
        )
        .expect("starter config must load");
        assert_eq!(c.deliveries.len(), 1);
    }
}
