//! The [`Destination`] trait and the glue between it and the generated
//! bindings (used by [`export!`](crate::export)).

use std::sync::OnceLock;

use crate::bindings::consign::destination::types as wit;
use crate::{Batch, PluginInfo, Receipt, Result};

/// A destination plugin: delivers one batch at a time.
///
/// Implement it on a unit struct and register that with
/// [`export!`](crate::export). The functions take no `self`: the host may call
/// each of them in a fresh instance, so keep no state between calls.
///
/// Errors ([`Error`](crate::Error)) say *what kind* of failure happened; the
/// host's retry policy decides what happens next. Never retry inside the
/// plugin.
pub trait Destination {
    /// Name, version and description, shown by `consign plugin inspect`.
    ///
    /// Defaults to the plugin crate's `name`, `version` and `description`
    /// from its `Cargo.toml` ([`PluginInfo::from_package`]). The name and
    /// version must match the plugin's `plugin.toml`.
    fn info() -> PluginInfo {
        PluginInfo::from_package()
    }

    /// Deliver every file of `batch` that is not already delivered
    /// ([`Batch::pending`]), calling [`part_accepted`](crate::part_accepted)
    /// after each one. Delivering the same batch again must be safe: use the
    /// same names and ids every time.
    fn deliver(batch: Batch) -> Result<Receipt>;

    /// Prove the partner is reachable and the credentials work, without
    /// delivering anything; return one line for the operator.
    ///
    /// Defaults to `Ok` with a line saying that the plugin has no check.
    fn check() -> Result<String> {
        let info = PluginInfo::from_package();
        Ok(format!(
            "{} {}: loaded (this plugin has no check)",
            info.name, info.version
        ))
    }
}

/// The plugin crate's metadata, captured by [`export!`](crate::export) with
/// `env!` in the plugin crate.
#[doc(hidden)]
#[derive(Debug)]
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
}

static PACKAGE: OnceLock<&'static Package> = OnceLock::new();

/// The package recorded by the first exported call, if any.
pub(crate) fn package() -> Option<&'static Package> {
    PACKAGE.get().copied()
}

/// Remember the package and, on the first call, install a panic hook that
/// writes the panic's message to the engine's log before the trap (a
/// component has no stderr, so the message would otherwise be lost).
fn record(package: &'static Package) {
    if PACKAGE.set(package).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            let line = info.to_string().replace('\n', " ");
            crate::log::log(crate::log::Level::Error, &format!("plugin {line}"));
        }));
    }
}

#[doc(hidden)]
pub fn info<D: Destination>(package: &'static Package) -> wit::PluginInfo {
    record(package);
    D::info().into()
}

#[doc(hidden)]
pub fn deliver<D: Destination>(
    package: &'static Package,
    batch: wit::Batch,
) -> std::result::Result<wit::Receipt, wit::Error> {
    record(package);
    D::deliver(batch.into()).map(Into::into).map_err(Into::into)
}

#[doc(hidden)]
pub fn check<D: Destination>(package: &'static Package) -> std::result::Result<String, wit::Error> {
    record(package);
    D::check().map_err(Into::into)
}
