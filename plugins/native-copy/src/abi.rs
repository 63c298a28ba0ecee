//! `#[repr(C)]` mirrors of `sdk/c/consign_plugin.h` (ABI version 1), and the
//! helpers that move strings across it.

use std::ffi::{c_char, c_void, CStr};

/// `CONSIGN_PLUGIN_ABI_VERSION`.
pub const ABI_VERSION: u32 = 1;

/// Outcome statuses (`CONSIGN_OK` ... `CONSIGN_PERMANENT`); this plugin
/// never reports auth or rejected, but the mirror is complete.
pub const CONSIGN_OK: i32 = 0;
pub const CONSIGN_RETRYABLE: i32 = 1;
#[allow(dead_code)]
pub const CONSIGN_AUTH: i32 = 2;
#[allow(dead_code)]
pub const CONSIGN_REJECTED: i32 = 3;
pub const CONSIGN_PERMANENT: i32 = 4;

/// `consign_file`.
#[repr(C)]
pub struct ConsignFile {
    pub part: u32,
    pub kind: *const c_char,
    pub name: *const c_char,
    pub path: *const c_char,
    pub size: u64,
    pub sha256: *const c_char,
    pub records: u64,
}

/// `consign_batch`.
#[repr(C)]
pub struct ConsignBatch {
    pub id: *const c_char,
    pub delivery: *const c_char,
    pub record_count: u64,
    pub cut_at: *const c_char,
    pub zone: *const c_char,
    pub files: *const ConsignFile,
    pub file_count: usize,
}

/// `consign_outcome`.
#[repr(C)]
pub struct ConsignOutcome {
    pub status: i32,
    pub retry_after_seconds: u32,
    pub code: [c_char; 64],
    pub message: [c_char; 1024],
}

/// `consign_plugin_vtable`.
#[repr(C)]
pub struct ConsignPluginVtable {
    pub name: *const c_char,
    pub version: *const c_char,
    pub create: unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> *mut c_void,
    pub deliver: unsafe extern "C" fn(*mut c_void, *const ConsignBatch, *mut ConsignOutcome) -> i32,
    pub check: unsafe extern "C" fn(*mut c_void, *mut ConsignOutcome) -> i32,
    pub destroy: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: the vtable only holds pointers to static C strings and functions.
unsafe impl Sync for ConsignPluginVtable {}

/// A host string: `""` for NULL, invalid UTF-8 replaced.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub unsafe fn str_arg(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Copy `s` into a C buffer of `len` bytes, truncated at a character
/// boundary, always NUL-terminated.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes of writes.
pub unsafe fn write_str(buf: *mut c_char, len: usize, s: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let mut n = s.len().min(len - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: n < len bytes fit in buf, which the caller guarantees.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr().cast::<c_char>(), buf, n);
        *buf.add(n) = 0;
    }
}

impl ConsignOutcome {
    /// Fill the outcome: status, retry wait, code and message.
    pub fn set(&mut self, status: i32, retry_after: u32, code: &str, message: &str) {
        self.status = status;
        self.retry_after_seconds = retry_after;
        // SAFETY: the arrays are ours and we pass their exact sizes.
        unsafe {
            write_str(self.code.as_mut_ptr(), self.code.len(), code);
            write_str(self.message.as_mut_ptr(), self.message.len(), message);
        }
    }
}
