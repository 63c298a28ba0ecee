//! `plugin`: a destination implemented by a plugin (WASM component or
//! native library). Each attempt takes the plugin's active version for the
//! whole attempt (a reload meanwhile does not change it), records its
//! SHA-256 with the batch, and turns the plugin's typed error, trap or
//! limit breach into the shared error classes.

use super::{Destination, DestinationError, ErrorClass, Receipt, Reply, Shipment};
use crate::config::PluginDestConfig;
use crate::plugin::capability::Grants;
use crate::plugin::{tidy, BatchInput, CallError, CallInput, Failure, FileInput, Loaded, Plugins};
use crate::store::Component;
use std::sync::Arc;

pub struct PluginDestination {
    cfg: PluginDestConfig,
    plugins: Arc<Plugins>,
}

impl PluginDestination {
    pub fn new(cfg: PluginDestConfig, plugins: Arc<Plugins>) -> Self {
        PluginDestination { cfg, plugins }
    }

    /// The active version, or why there is none. A missing plugin suspends
    /// the delivery (its batches wait for the operator; none is dropped).
    fn plugin(&self) -> Result<Arc<Loaded>, DestinationError> {
        self.plugins.get(&self.cfg.plugin).ok_or_else(|| {
            DestinationError::new(
                ErrorClass::PluginSuspended,
                format!(
                    "{}; fix the plugins folder, `consign reload`, then `consign deliveries resume`",
                    self.plugins.why_missing(&self.cfg.plugin)
                ),
            )
        })
    }

    /// The call's config and capabilities for `p`; errors name the key. A
    /// config the plugin's schema refuses suspends the delivery until fixed.
    fn input(
        &self,
        p: &Loaded,
        delivery: &str,
        batch: Option<BatchInput>,
    ) -> Result<CallInput, DestinationError> {
        let config = p.manifest.resolve_config(&self.cfg.config).map_err(|errors| {
            DestinationError::new(
                ErrorClass::PluginSuspended,
                format!(
                    "plugin {} {}: [delivery.destination] {} (fix the config, then `consign deliveries resume`)",
                    p.name(),
                    p.manifest.version,
                    errors.join("; ")
                ),
            )
        })?;
        Ok(CallInput {
            plugin: p.name().to_string(),
            delivery: delivery.to_string(),
            secrets: p.manifest.secret_values(&config),
            config,
            grants: Grants::new(
                p.name(),
                &p.manifest.capabilities,
                &self.cfg.allow_http,
                &self.cfg.allow_env,
            ),
            ca_file: self.cfg.ca_file.clone(),
            batch,
        })
    }

    fn call(
        &self,
        p: &Loaded,
        input: &CallInput,
        accepted: Option<&(dyn Fn(u32) + Sync)>,
    ) -> Result<crate::plugin::Outcome, DestinationError> {
        let limits = self.plugins.limits(
            self.cfg.memory_limit.map(|m| m.0),
            self.cfg.timeout.map(|t| t.0),
            self.cfg.fuel,
        );
        p.call(input, &limits, self.plugins.config().crash_limit, accepted)
            .map(|mut o| {
                o.message = tidy(&o.message, &input.secrets);
                o.remote_ids = o
                    .remote_ids
                    .iter()
                    .take(100)
                    .map(|r| tidy(r, &input.secrets))
                    .collect();
                o
            })
            .map_err(|e| classify(p, e, &input.secrets))
    }
}

/// The longest wait a plugin may ask for (as the built-in HTTP destination).
const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The shared error class of a plugin's failure; the plugin's text is tidied.
fn classify(p: &Loaded, e: CallError, secrets: &[String]) -> DestinationError {
    let who = format!("plugin {} {}", p.name(), p.manifest.version);
    let e = match e {
        CallError::Plugin(Failure::Retryable { message, after }) => {
            CallError::Plugin(Failure::Retryable {
                message: tidy(&message, secrets),
                after: after.map(|a| a.min(MAX_RETRY_AFTER)),
            })
        }
        CallError::Plugin(Failure::Auth(m)) => CallError::Plugin(Failure::Auth(tidy(&m, secrets))),
        CallError::Plugin(Failure::Rejected { code, message }) => {
            CallError::Plugin(Failure::Rejected {
                code: tidy(&code, secrets).chars().take(64).collect(),
                message: tidy(&message, secrets),
            })
        }
        CallError::Plugin(Failure::Permanent(m)) => {
            CallError::Plugin(Failure::Permanent(tidy(&m, secrets)))
        }
        CallError::Trap(m) => CallError::Trap(tidy(&m, secrets)),
        other => other,
    };
    match e {
        CallError::Plugin(Failure::Retryable { message, after }) => {
            let mut d = DestinationError::new(ErrorClass::Transient, format!("{who}: {message}"));
            d.retry_after = after;
            d
        }
        CallError::Plugin(Failure::Auth(m)) => {
            DestinationError::new(ErrorClass::Auth, format!("{who}: credentials refused: {m}"))
        }
        CallError::Plugin(Failure::Rejected { code, message }) => {
            let mut d = DestinationError::new(
                ErrorClass::Permanent,
                format!("{who}: the partner rejected the batch ({code}): {message}"),
            );
            d.reply = Some(Box::new(Reply {
                code: code.parse().ok(),
                message: format!("{code}: {message}"),
                headers: Vec::new(),
                body: None,
            }));
            d
        }
        CallError::Plugin(Failure::Permanent(m)) => {
            DestinationError::new(ErrorClass::Permanent, format!("{who}: {m}"))
        }
        // A crash fails this attempt; the retry policy takes over (and the
        // crash-loop limit stops a plugin that keeps crashing).
        CallError::Trap(m) => {
            DestinationError::new(ErrorClass::Transient, format!("{who} trapped: {m}"))
        }
        CallError::Deadline(m) | CallError::Memory(m) => {
            DestinationError::new(ErrorClass::Transient, format!("{who} stopped: {m}"))
        }
        CallError::Host(m) => {
            DestinationError::new(ErrorClass::Transient, format!("{who}: host: {m}"))
        }
        CallError::CrashLoop(m) => DestinationError::new(ErrorClass::PluginSuspended, m),
    }
}

impl Destination for PluginDestination {
    fn describe(&self) -> String {
        match self.plugins.get(&self.cfg.plugin) {
            Some(p) => format!(
                "plugin:{} {} ({:?})",
                p.name(),
                p.manifest.version,
                p.kind()
            )
            .to_lowercase(),
            None => format!("plugin:{} (not loaded)", self.cfg.plugin),
        }
    }

    fn deliver(&self, s: &Shipment) -> Result<Receipt, DestinationError> {
        let p = self.plugin()?;
        if let Some(record) = s.component {
            record(Component {
                kind: "plugin".into(),
                name: format!("{}@{}", p.name(), p.manifest.version),
                sha256: p.sha256.clone(),
            });
        }
        let batch = BatchInput {
            id: s.batch_id.clone(),
            delivery: s.delivery.clone(),
            record_count: s.record_count,
            cut_at: s.cut_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            zone: s.zone.name().to_string(),
            files: s
                .files
                .iter()
                .map(|f| FileInput {
                    part: f.part,
                    kind: f.kind.clone(),
                    name: f.name.clone(),
                    path: f.path.clone(),
                    size: f.bytes,
                    sha256: f.sha256.clone(),
                    records: f.records,
                })
                .collect(),
            already: s.already.clone(),
        };
        let input = self.input(&p, &s.delivery, Some(batch))?;
        let delivered = std::sync::Mutex::new(Vec::new());
        let accepted = |part: u32| {
            delivered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(part);
            if let Some(f) = s.accepted {
                f(part);
            }
        };
        let r = self.call(&p, &input, Some(&accepted));
        let delivered = delivered.into_inner().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(o) => Ok(Receipt {
                detail: if o.remote_ids.is_empty() {
                    o.message
                } else {
                    format!("{} (remote ids: {})", o.message, o.remote_ids.join(", "))
                },
                delivered: if delivered.is_empty() {
                    s.files.iter().map(|f| f.part).collect()
                } else {
                    delivered
                },
                reply: None,
            }),
            Err(mut e) => {
                e.delivered = delivered;
                Err(e)
            }
        }
    }

    fn check(&self) -> Result<String, DestinationError> {
        let p = self.plugin()?;
        let input = self.input(&p, "check", None)?;
        let unused = input.grants.unused();
        let o = self.call(&p, &input, None)?;
        let mut line = format!("{}: {}", self.describe(), o.message);
        if !unused.is_empty() {
            line.push_str(&format!(
                " (allowed but never asked for by the manifest: {})",
                unused.join(", ")
            ));
        }
        Ok(line)
    }
}
