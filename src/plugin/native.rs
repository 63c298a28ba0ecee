//! Native plugins: shared libraries implementing `sdk/c/consign_plugin.h`,
//! loaded with libloading. They run inside the engine's process with its
//! rights — trusted code only: no sandbox, no limits, no capability checks.

#![allow(unsafe_code)]

use super::manifest::NATIVE_ABI_VERSION;
use super::{CallError, CallInput, Failure, Info, Outcome};
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::time::Duration;

#[repr(C)]
struct CFile {
    part: u32,
    kind: *const c_char,
    name: *const c_char,
    path: *const c_char,
    size: u64,
    sha256: *const c_char,
    records: u64,
}

#[repr(C)]
struct CBatch {
    id: *const c_char,
    delivery: *const c_char,
    record_count: u64,
    cut_at: *const c_char,
    zone: *const c_char,
    files: *const CFile,
    file_count: usize,
}

#[repr(C)]
struct COutcome {
    status: i32,
    retry_after_seconds: u32,
    code: [c_char; 64],
    message: [c_char; 1024],
}

type CreateFn = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> *mut c_void;
type DeliverFn = unsafe extern "C" fn(*mut c_void, *const CBatch, *mut COutcome) -> i32;
type CheckFn = unsafe extern "C" fn(*mut c_void, *mut COutcome) -> i32;
type DestroyFn = unsafe extern "C" fn(*mut c_void);

#[repr(C)]
struct VTable {
    name: *const c_char,
    version: *const c_char,
    create: Option<CreateFn>,
    deliver: Option<DeliverFn>,
    check: Option<CheckFn>,
    destroy: Option<DestroyFn>,
}

/// A loaded native plugin. The library stays loaded as long as this lives.
pub struct NativePlugin {
    vtable: *const VTable,
    info: Info,
    // Last: dropped after everything that points into it.
    _lib: libloading::Library,
}

// SAFETY: the header requires `deliver` and `check` to be thread-safe, and the
// vtable is static data of the library, which lives as long as `_lib`.
unsafe impl Send for NativePlugin {}
unsafe impl Sync for NativePlugin {}

fn text(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the ABI says these are NUL-terminated strings owned by the library.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn buf_text(b: &[c_char]) -> String {
    let bytes: Vec<u8> = b
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl NativePlugin {
    /// Load the library at `path` (a private copy of `shown`, which errors name).
    pub fn load(path: &Path, shown: &Path) -> Result<NativePlugin, String> {
        let shown = shown.display();
        // SAFETY: loading a library runs its initialisers: native plugins are
        // trusted code by definition (documented in sdk/c/README.md).
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("{shown}: cannot load the library: {e}"))?;
        // SAFETY: the symbol's type is fixed by sdk/c/consign_plugin.h.
        let abi = unsafe {
            lib.get::<unsafe extern "C" fn() -> u32>(b"consign_plugin_abi_version\0")
                .map_err(|e| {
                    format!(
                        "{shown}: not a consign native plugin (no consign_plugin_abi_version: {e})"
                    )
                })?()
        };
        if abi != NATIVE_ABI_VERSION {
            return Err(format!(
                "{shown}: built for native plugin ABI {abi}, but this consign speaks ABI {NATIVE_ABI_VERSION}: rebuild it against sdk/c/consign_plugin.h of this consign"
            ));
        }
        // SAFETY: as above.
        let vtable = unsafe {
            lib.get::<unsafe extern "C" fn() -> *const VTable>(b"consign_plugin_vtable\0")
                .map_err(|e| format!("{shown}: no consign_plugin_vtable: {e}"))?()
        };
        if vtable.is_null() {
            return Err(format!("{shown}: consign_plugin_vtable() returned NULL"));
        }
        // SAFETY: non-null pointer to the library's static vtable.
        let vt = unsafe { &*vtable };
        if vt.create.is_none() || vt.deliver.is_none() || vt.check.is_none() || vt.destroy.is_none()
        {
            return Err(format!(
                "{shown}: the vtable lacks create, deliver, check or destroy"
            ));
        }
        let info = Info {
            name: text(vt.name).unwrap_or_default(),
            version: text(vt.version).unwrap_or_default(),
            description: String::new(),
        };
        Ok(NativePlugin {
            vtable,
            info,
            _lib: lib,
        })
    }

    pub fn info(&self) -> Info {
        self.info.clone()
    }

    pub fn call(&self, input: &CallInput) -> Result<Outcome, CallError> {
        // SAFETY: checked non-null with every function present at load.
        let vt = unsafe { &*self.vtable };
        let (Some(create), Some(deliver), Some(check), Some(destroy)) =
            (vt.create, vt.deliver, vt.check, vt.destroy)
        else {
            return Err(CallError::Host("incomplete vtable".into()));
        };
        let config = cstring(&serde_json::Value::Object(input.config.clone()).to_string());
        let mut err = [0 as c_char; 1024];
        // SAFETY: valid NUL-terminated config and an error buffer of the given size.
        let inst = unsafe { create(config.as_ptr(), err.as_mut_ptr(), err.len()) };
        if inst.is_null() {
            return Err(CallError::Plugin(Failure::Permanent(format!(
                "plugin {} refused its config: {}",
                self.info.name,
                buf_text(&err)
            ))));
        }
        let mut out = COutcome {
            status: -1,
            retry_after_seconds: 0,
            code: [0; 64],
            message: [0; 1024],
        };
        let rc = match &input.batch {
            None => {
                // SAFETY: instance from create, outcome buffer we own.
                unsafe { check(inst, &mut out) }
            }
            Some(b) => {
                let strings: Vec<[CString; 4]> = b
                    .files
                    .iter()
                    .map(|f| {
                        [
                            cstring(&f.kind),
                            cstring(&f.name),
                            cstring(&f.path.to_string_lossy()),
                            cstring(&f.sha256),
                        ]
                    })
                    .collect();
                let files: Vec<CFile> = b
                    .files
                    .iter()
                    .zip(&strings)
                    .filter(|(f, _)| !b.already.contains(&f.part))
                    .map(|(f, s)| CFile {
                        part: f.part,
                        kind: s[0].as_ptr(),
                        name: s[1].as_ptr(),
                        path: s[2].as_ptr(),
                        size: f.size,
                        sha256: s[3].as_ptr(),
                        records: f.records,
                    })
                    .collect();
                let (id, delivery, cut_at, zone) = (
                    cstring(&b.id),
                    cstring(&b.delivery),
                    cstring(&b.cut_at),
                    cstring(&b.zone),
                );
                let batch = CBatch {
                    id: id.as_ptr(),
                    delivery: delivery.as_ptr(),
                    record_count: b.record_count,
                    cut_at: cut_at.as_ptr(),
                    zone: zone.as_ptr(),
                    files: files.as_ptr(),
                    file_count: files.len(),
                };
                // SAFETY: every pointer in `batch` outlives the call.
                unsafe { deliver(inst, &batch, &mut out) }
            }
        };
        // SAFETY: the instance is not used after this.
        unsafe { destroy(inst) };
        let status = if out.status == -1 { rc } else { out.status };
        let message = buf_text(&out.message);
        match status {
            0 => Ok(Outcome {
                message,
                remote_ids: Vec::new(),
            }),
            1 => Err(CallError::Plugin(Failure::Retryable {
                message,
                after: (out.retry_after_seconds > 0)
                    .then(|| Duration::from_secs(u64::from(out.retry_after_seconds))),
            })),
            2 => Err(CallError::Plugin(Failure::Auth(message))),
            3 => Err(CallError::Plugin(Failure::Rejected {
                code: buf_text(&out.code),
                message,
            })),
            4 => Err(CallError::Plugin(Failure::Permanent(message))),
            other => Err(CallError::Plugin(Failure::Permanent(format!(
                "plugin {} returned unknown status {other}: {message}",
                self.info.name
            )))),
        }
    }
}
