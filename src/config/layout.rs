//! The file layout of a delivery: naming, format, mapping, splitting,
//! compression and manifests. A [`Layout`] is snapshotted (as JSON) with each
//! batch when it is cut, so regenerating a batch later yields the same file
//! even if the config changed meanwhile.

use super::{ByteSize, Secret};
use crate::assemble::mapping::Transform;
use crate::assemble::naming::NamePattern;
use crate::trigger::schedule::Zone;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub(crate) fn default_true() -> bool {
    true
}

/// Everything that decides the bytes of a delivered file (but encryption).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Time zone of `{date}`/`{time}` in names and of schedules.
    #[serde(default)]
    pub timezone: Zone,
    #[serde(default)]
    pub file: FileConfig,
    #[serde(default)]
    pub csv: CsvConfig,
    #[serde(default)]
    pub xml: XmlConfig,
    #[serde(default)]
    pub json: JsonConfig,
    #[serde(default)]
    pub fixed_width: FixedWidthConfig,
    #[serde(default)]
    pub fields: Vec<FieldConfig>,
    #[serde(default)]
    pub manifest: ManifestConfig,
    /// Whether the files are OpenPGP-encrypted (the keys themselves are read
    /// from the current config; a batch cut encrypted is never written in clear).
    #[serde(default)]
    pub encrypted: bool,
}

/// `[delivery.file]`: naming, format, splitting and compression.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Name pattern: `{date} {time} {timestamp} {year} {month} {day} {hour}
    /// {minute} {second} {batch_id} {delivery} {part} {parts} {record_count}`.
    #[serde(default = "default_name")]
    pub name: NamePattern,
    #[serde(default)]
    pub format: FileFormat,
    #[serde(default)]
    pub compression: Compression,
    /// gzip level 0-9.
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// Split a batch into parts of at most this many records.
    pub split_records: Option<u64>,
    /// Split a batch into parts of at most this many bytes (of the final,
    /// compressed and encrypted file).
    pub split_bytes: Option<ByteSize>,
    /// Require `{batch_id}` in names so two batches never share a file name
    /// (a later batch would silently replace the partner's earlier file).
    /// Set false only for partners that expect a fixed name.
    #[serde(default = "default_true")]
    pub unique_names: bool,
}

fn default_name() -> NamePattern {
    NamePattern::parse("{delivery}_{date}_{time}_{batch_id}.csv").expect("default pattern is valid")
}
fn default_gzip_level() -> u32 {
    6
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            name: default_name(),
            format: FileFormat::default(),
            compression: Compression::default(),
            gzip_level: default_gzip_level(),
            split_records: None,
            split_bytes: None,
            unique_names: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    #[default]
    Csv,
    Xml,
    /// One JSON document: an envelope with batch info and the records.
    Json,
    /// One JSON object per line.
    Ndjson,
    FixedWidth,
}

impl FileFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Xml => "xml",
            FileFormat::Json => "json",
            FileFormat::Ndjson => "ndjson",
            FileFormat::FixedWidth => "fixed_width",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// `[delivery.csv]`: the CSV dialect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Escape character for quotes inside quoted fields; the default doubles the quote.
    pub escape: Option<char>,
    /// When to quote: `necessary` (default), `always`, `never`, `non_numeric`.
    #[serde(default)]
    pub quote_style: QuoteStyle,
    /// `"crlf"` (default, RFC 4180) or `"lf"`.
    #[serde(default)]
    pub line_ending: LineEnding,
    /// Written for a missing or null value.
    #[serde(default)]
    pub null_value: String,
    #[serde(default = "default_true")]
    pub header: bool,
    /// Start the file with a UTF-8 byte order mark (for Excel users).
    #[serde(default)]
    pub bom: bool,
    /// Prefix cells starting with `= + - @`, tab or CR with `'` so spreadsheets
    /// do not run them as formulas (numbers such as `-12.50` are left alone).
    #[serde(default)]
    pub formula_protection: bool,
}

fn default_delimiter() -> char {
    ','
}
fn default_quote() -> char {
    '"'
}

impl Default for CsvConfig {
    fn default() -> Self {
        CsvConfig {
            delimiter: default_delimiter(),
            quote: default_quote(),
            escape: None,
            quote_style: QuoteStyle::default(),
            line_ending: LineEnding::default(),
            null_value: String::new(),
            header: true,
            bom: false,
            formula_protection: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QuoteStyle {
    #[default]
    Necessary,
    Always,
    Never,
    NonNumeric,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LineEnding {
    #[default]
    Crlf,
    Lf,
}

impl LineEnding {
    pub fn bytes(self) -> &'static [u8] {
        match self {
            LineEnding::Crlf => b"\r\n",
            LineEnding::Lf => b"\n",
        }
    }
}

/// `[delivery.xml]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmlConfig {
    /// Root element name.
    #[serde(default = "default_root")]
    pub root: String,
    /// Element name of one record.
    #[serde(default = "default_record")]
    pub record: String,
    /// Attributes of the root element; values may use `{batch_id}`,
    /// `{record_count}` (records in this file), `{part}`, `{delivery}`, `{created}`.
    #[serde(default = "default_root_attributes")]
    pub root_attributes: IndexMap<String, String>,
    /// Write `<?xml version="1.0" encoding="UTF-8"?>`.
    #[serde(default = "default_true")]
    pub declaration: bool,
    /// Spaces per nesting level; 0 writes each record on one line.
    #[serde(default = "default_indent")]
    pub indent: usize,
    /// Characters not allowed in XML 1.0: `remove` (default) or `replace` (U+FFFD).
    #[serde(default)]
    pub illegal_chars: IllegalChars,
    /// Missing values: `empty` element (default) or `omit` the element.
    #[serde(default)]
    pub null: NullPolicy,
}

fn default_root() -> String {
    "leads".into()
}
fn default_record() -> String {
    "lead".into()
}
fn default_root_attributes() -> IndexMap<String, String> {
    let mut m = IndexMap::new();
    m.insert("batch_id".into(), "{batch_id}".into());
    m.insert("count".into(), "{record_count}".into());
    m
}
fn default_indent() -> usize {
    2
}

impl Default for XmlConfig {
    fn default() -> Self {
        XmlConfig {
            root: default_root(),
            record: default_record(),
            root_attributes: default_root_attributes(),
            declaration: true,
            indent: default_indent(),
            illegal_chars: IllegalChars::default(),
            null: NullPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IllegalChars {
    #[default]
    Remove,
    Replace,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NullPolicy {
    /// XML: an empty element; JSON: `null`.
    #[default]
    Empty,
    /// Leave the element or key out.
    Omit,
}

/// `[delivery.json]`: key names of the envelope (format `json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    #[serde(default = "default_info_key")]
    pub info_key: String,
    #[serde(default = "default_records_key")]
    pub records_key: String,
    #[serde(default = "default_id_key")]
    pub id_key: String,
    #[serde(default = "default_created_key")]
    pub created_key: String,
    #[serde(default = "default_count_key")]
    pub count_key: String,
    /// Missing values: `empty` writes `null` (default), `omit` leaves the key out.
    #[serde(default)]
    pub null: NullPolicy,
}

fn default_info_key() -> String {
    "batch_info".into()
}
fn default_records_key() -> String {
    "leads".into()
}
fn default_id_key() -> String {
    "id".into()
}
fn default_created_key() -> String {
    "created".into()
}
fn default_count_key() -> String {
    "record_count".into()
}

impl Default for JsonConfig {
    fn default() -> Self {
        JsonConfig {
            info_key: default_info_key(),
            records_key: default_records_key(),
            id_key: default_id_key(),
            created_key: default_created_key(),
            count_key: default_count_key(),
            null: NullPolicy::default(),
        }
    }
}

/// `[delivery.fixed_width]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedWidthConfig {
    /// `utf-8`, `iso-8859-1` (Latin-1, exact), or another WHATWG label such as `windows-1252`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// A character the encoding cannot represent: `replace` (with `replacement`),
    /// `transliterate` (`é` → `e`, `ß` → `ss`), or `reject` the record.
    #[serde(default)]
    pub unmappable: Unmappable,
    #[serde(default = "default_replacement")]
    pub replacement: char,
    /// A value longer than its field: `truncate` (at a character boundary) or `reject` the record.
    #[serde(default)]
    pub overflow: Overflow,
    #[serde(default = "default_lf")]
    pub line_ending: LineEnding,
}

fn default_encoding() -> String {
    "utf-8".into()
}
fn default_replacement() -> char {
    '?'
}
fn default_lf() -> LineEnding {
    LineEnding::Lf
}

impl Default for FixedWidthConfig {
    fn default() -> Self {
        FixedWidthConfig {
            encoding: default_encoding(),
            unmappable: Unmappable::default(),
            replacement: default_replacement(),
            overflow: Overflow::default(),
            line_ending: default_lf(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unmappable {
    #[default]
    Replace,
    Transliterate,
    Reject,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    #[default]
    Truncate,
    Reject,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    #[default]
    Left,
    Right,
}

/// `[[delivery.field]]`: one output column / element / key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// Output name. XML and JSON: a `/` path nests (`contact/name/first`); in
    /// XML a last part `@name` is an attribute (`@id`, `contact/@type`).
    pub name: String,
    /// Where the value comes from: a key of the record (`"First Name"`) or a
    /// dotted path into nested objects (`"lead.phone_1"`). Defaults to `name`.
    pub source: Option<String>,
    /// Built-in transforms applied in order: `digits_only`, `uppercase`,
    /// `lowercase`, `trim`, `default:VALUE`, `truncate:N`.
    #[serde(default)]
    pub transform: Vec<Transform>,
    /// Fixed width: 1-based start column (default: right after the previous field).
    pub start: Option<usize>,
    /// Fixed width: length in bytes of the output encoding.
    pub length: Option<usize>,
    /// Fixed width: `left` (pad on the right, default) or `right`.
    pub align: Option<Align>,
    /// Fixed width: pad character (default space). With `"0"` and right
    /// alignment a sign stays in front: `-0042`.
    pub fill: Option<char>,
}

/// `[delivery.manifest]`: integrity sidecars delivered with the data files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestConfig {
    /// Deliver `NAME.sha256` (sha256sum format) beside each file.
    #[serde(default)]
    pub sha256_sidecar: bool,
    /// Compute MD5 too (manifest and `NAME.md5` when `sha256_sidecar` is on).
    #[serde(default)]
    pub md5: bool,
    /// Name pattern of a JSON manifest listing every file (e.g. `"{batch_id}.manifest.json"`).
    pub json: Option<NamePattern>,
    /// Name pattern of a control file written last (e.g. `"{batch_id}.done"`).
    pub done: Option<NamePattern>,
}

/// `[delivery.encryption]`: OpenPGP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Recipients' public keys (`.asc` or binary); every valid encryption subkey is used.
    pub recipients: Vec<PathBuf>,
    /// ASCII armor.
    #[serde(default)]
    pub armor: bool,
    /// Use SEIPD v2 (AEAD) when every recipient supports it. Off by default:
    /// GnuPG 2.2 cannot read it.
    #[serde(default)]
    pub seipd_v2: bool,
    /// Sign with this secret key (our own).
    pub sign_key: Option<PathBuf>,
    pub sign_passphrase: Option<Secret>,
    /// A secret key that can decrypt the output, used to verify each file
    /// before delivery (typically a test or escrow key).
    pub verify_key: Option<PathBuf>,
}
