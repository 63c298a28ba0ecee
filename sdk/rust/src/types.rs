//! What `deliver` receives and returns: [`Batch`], [`FileInfo`],
//! [`Receipt`], and [`PluginInfo`] for `info`.

use crate::bindings::consign::destination::types as wit;
use crate::{BatchFile, Result};

/// What a plugin says about itself (`consign plugin inspect` shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Plugin name; must equal `name` in `plugin.toml`.
    pub name: String,
    /// Plugin version; must equal `version` in `plugin.toml`.
    pub version: String,
    /// One line about what it does.
    pub description: String,
}

impl PluginInfo {
    /// Build one from its three parts.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
        }
    }

    /// The plugin crate's `name`, `version` and `description` from its
    /// `Cargo.toml`, as recorded by [`export!`](crate::export). Outside an
    /// exported call (e.g. in a native unit test) it is this SDK's own.
    pub fn from_package() -> Self {
        match crate::destination::package() {
            Some(p) => PluginInfo::new(p.name, p.version, p.description),
            None => PluginInfo::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
                env!("CARGO_PKG_DESCRIPTION"),
            ),
        }
    }
}

/// One file of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Position in the batch, stable across attempts.
    pub part: u32,
    /// `data`, or a sidecar kind: `sha256`, `md5`, `manifest`, `done`.
    pub kind: String,
    /// The final name the partner should see (fixed when the batch was cut).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// Records in the file (data files; 0 for sidecars).
    pub records: u64,
}

impl FileInfo {
    /// Whether this is a data file (not a sidecar).
    pub fn is_data(&self) -> bool {
        self.kind == "data"
    }

    /// Open the file for reading through the host.
    pub fn open(&self) -> Result<BatchFile> {
        BatchFile::open(self.part)
    }
}

/// A batch to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Batch id, e.g. `acme-20261204-000042`. Stable across attempts: use it
    /// as an idempotency key.
    pub id: String,
    /// The delivery (partner) name from the operator's config.
    pub delivery: String,
    /// Records in the whole batch.
    pub record_count: u64,
    /// When the batch was cut, RFC 3339 in UTC.
    pub cut_at: String,
    /// The delivery's IANA time zone, e.g. `America/New_York`.
    pub zone: String,
    /// Every file, data files first, sidecars after, in part order.
    pub files: Vec<FileInfo>,
    /// Parts an earlier attempt already delivered: skip them.
    pub already_delivered: Vec<u32>,
}

impl Batch {
    /// Whether an earlier attempt already delivered `part`.
    pub fn is_delivered(&self, part: u32) -> bool {
        self.already_delivered.contains(&part)
    }

    /// The files still to deliver, in part order (data files first).
    pub fn pending(&self) -> impl Iterator<Item = &FileInfo> + '_ {
        self.files.iter().filter(|f| !self.is_delivered(f.part))
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Proof of delivery, stored with the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Ids the partner gave (upload ids, object names).
    pub remote_ids: Vec<String>,
    /// One line for the operator.
    pub message: String,
}

impl Receipt {
    /// A receipt with this message and no remote ids.
    pub fn new(message: impl Into<String>) -> Self {
        Receipt {
            remote_ids: Vec::new(),
            message: message.into(),
        }
    }

    /// Add one remote id.
    pub fn with_remote_id(mut self, id: impl Into<String>) -> Self {
        self.remote_ids.push(id.into());
        self
    }
}

impl From<wit::FileInfo> for FileInfo {
    fn from(f: wit::FileInfo) -> Self {
        FileInfo {
            part: f.part,
            kind: f.kind,
            name: f.name,
            size: f.size,
            sha256: f.sha256,
            records: f.records,
        }
    }
}

impl From<wit::Batch> for Batch {
    fn from(b: wit::Batch) -> Self {
        Batch {
            id: b.id,
            delivery: b.delivery,
            record_count: b.record_count,
            cut_at: b.cut_at,
            zone: b.zone,
            files: b.files.into_iter().map(Into::into).collect(),
            already_delivered: b.already_delivered,
        }
    }
}

impl From<Receipt> for wit::Receipt {
    fn from(r: Receipt) -> Self {
        wit::Receipt {
            remote_ids: r.remote_ids,
            message: r.message,
        }
    }
}

impl From<PluginInfo> for wit::PluginInfo {
    fn from(i: PluginInfo) -> Self {
        wit::PluginInfo {
            name: i.name,
            version: i.version,
            description: i.description,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(part: u32, kind: &str) -> FileInfo {
        FileInfo {
            part,
            kind: kind.into(),
            name: format!("f{part}"),
            size: 10,
            sha256: String::new(),
            records: 1,
        }
    }

    #[test]
    fn pending_skips_delivered_parts() {
        let batch = Batch {
            id: "b".into(),
            delivery: "d".into(),
            record_count: 2,
            cut_at: String::new(),
            zone: "UTC".into(),
            files: vec![file(0, "data"), file(1, "data"), file(2, "sha256")],
            already_delivered: vec![1],
        };
        let parts: Vec<u32> = batch.pending().map(|f| f.part).collect();
        assert_eq!(parts, vec![0, 2]);
        assert_eq!(batch.total_bytes(), 30);
        assert!(batch.files[0].is_data() && !batch.files[2].is_data());
    }
}
