//! native-copy: a native consign destination plugin (a shared library with
//! the C ABI of `sdk/c/consign_plugin.h`), written in Rust with `#[repr(C)]`
//! mirrors of the header.
//!
//! Config `dir` (required, an absolute path): every file of the batch is
//! copied to `dir/name` through a temp name and a rename (the directory is
//! created when missing). `check`: the directory exists and is writable, or
//! it does not exist yet and its nearest existing parent is writable.
//!
//! Native plugins run inside the engine with its rights: no sandbox. Trusted
//! code only.

mod abi;
mod copy;

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use abi::{
    str_arg, write_str, ConsignBatch, ConsignOutcome, ConsignPluginVtable, CONSIGN_OK,
    CONSIGN_PERMANENT,
};
use copy::{Copier, Source};

/// The ABI version the host checks before anything else.
#[no_mangle]
pub extern "C" fn consign_plugin_abi_version() -> u32 {
    if cfg!(feature = "wrong-abi") {
        999
    } else {
        abi::ABI_VERSION
    }
}

static VTABLE: ConsignPluginVtable = ConsignPluginVtable {
    name: c"native-copy".as_ptr(),
    version: c"1.0.0".as_ptr(),
    create,
    deliver,
    check,
    destroy,
};

/// The plugin's vtable (static: valid while the library is loaded).
#[no_mangle]
pub extern "C" fn consign_plugin_vtable() -> *const ConsignPluginVtable {
    &VTABLE
}

/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `err` is NULL or valid
/// for `errlen` bytes.
unsafe extern "C" fn create(
    config_json: *const c_char,
    err: *mut c_char,
    errlen: usize,
) -> *mut c_void {
    // SAFETY: guaranteed by the caller (the host).
    let json = unsafe { str_arg(config_json) };
    match catch_unwind(|| Copier::from_config(&json)) {
        Ok(Ok(copier)) => Box::into_raw(Box::new(copier)).cast(),
        Ok(Err(message)) => {
            // SAFETY: guaranteed by the caller.
            unsafe { write_str(err, errlen, &message) };
            std::ptr::null_mut()
        }
        Err(_) => {
            // SAFETY: guaranteed by the caller.
            unsafe { write_str(err, errlen, "native-copy: panic while reading the config") };
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `instance` came from `create` and is not destroyed; `batch` and `out` are
/// valid for the call.
unsafe extern "C" fn deliver(
    instance: *mut c_void,
    batch: *const ConsignBatch,
    out: *mut ConsignOutcome,
) -> i32 {
    if out.is_null() {
        return CONSIGN_PERMANENT;
    }
    // SAFETY: guaranteed by the caller.
    let out = unsafe { &mut *out };
    if instance.is_null() || batch.is_null() {
        out.set(
            CONSIGN_PERMANENT,
            0,
            "",
            "native-copy: called without an instance or a batch",
        );
        return out.status;
    }
    // SAFETY: `instance` is a live `Copier` from `create`.
    let copier = unsafe { &*instance.cast::<Copier>() };
    // SAFETY: the batch and its strings are valid during the call.
    let (id, files) = unsafe { read_batch(&*batch) };
    let result = catch_unwind(AssertUnwindSafe(|| copier.deliver(&id, &files)));
    finish(out, result)
}

/// # Safety
/// `instance` came from `create`; `out` is valid for the call.
unsafe extern "C" fn check(instance: *mut c_void, out: *mut ConsignOutcome) -> i32 {
    if out.is_null() {
        return CONSIGN_PERMANENT;
    }
    // SAFETY: guaranteed by the caller.
    let out = unsafe { &mut *out };
    if instance.is_null() {
        out.set(
            CONSIGN_PERMANENT,
            0,
            "",
            "native-copy: called without an instance",
        );
        return out.status;
    }
    // SAFETY: `instance` is a live `Copier` from `create`.
    let copier = unsafe { &*instance.cast::<Copier>() };
    let result = catch_unwind(AssertUnwindSafe(|| copier.check()));
    finish(out, result)
}

/// # Safety
/// `instance` came from `create` and is not used afterwards.
unsafe extern "C" fn destroy(instance: *mut c_void) {
    if !instance.is_null() {
        // SAFETY: created by Box::into_raw in `create`, destroyed once.
        drop(unsafe { Box::from_raw(instance.cast::<Copier>()) });
    }
}

/// Copy what the plugin needs out of the host's batch.
///
/// # Safety
/// `batch.files` points to `file_count` valid `consign_file`s.
unsafe fn read_batch(batch: &ConsignBatch) -> (String, Vec<Source>) {
    // SAFETY: guaranteed by the caller.
    let id = unsafe { str_arg(batch.id) };
    let files = if batch.files.is_null() || batch.file_count == 0 {
        &[][..]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(batch.files, batch.file_count) }
    };
    let sources = files
        .iter()
        .map(|f| Source {
            // SAFETY: the host's strings are valid during the call.
            name: unsafe { str_arg(f.name) },
            // SAFETY: as above.
            path: PathBuf::from(unsafe { str_arg(f.path) }),
        })
        .collect();
    (id, sources)
}

fn finish(
    out: &mut ConsignOutcome,
    result: std::thread::Result<Result<String, copy::Failure>>,
) -> i32 {
    match result {
        Ok(Ok(message)) => out.set(CONSIGN_OK, 0, "", &message),
        Ok(Err(f)) => out.set(f.status, 0, "", &f.message),
        Err(_) => out.set(
            CONSIGN_PERMANENT,
            0,
            "",
            "native-copy: panicked (a bug in the plugin)",
        ),
    }
    out.status
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{CStr, CString};

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("native-copy-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn blank() -> ConsignOutcome {
        ConsignOutcome {
            status: -1,
            retry_after_seconds: 0,
            code: [0; 64],
            message: [0; 1024],
        }
    }

    fn message(out: &ConsignOutcome) -> String {
        // SAFETY: write_str always NUL-terminates.
        unsafe { CStr::from_ptr(out.message.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn abi_and_vtable() {
        assert_eq!(
            consign_plugin_abi_version(),
            if cfg!(feature = "wrong-abi") { 999 } else { 1 }
        );
        // SAFETY: the vtable and its strings are static.
        let name = unsafe { CStr::from_ptr((*consign_plugin_vtable()).name) };
        assert_eq!(name.to_str(), Ok("native-copy"));
    }

    #[test]
    fn create_deliver_check_through_the_abi() {
        let root = scratch("abi");
        let src = root.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.csv"), b"id\n1\n").unwrap();
        std::fs::write(src.join("a.csv.sha256"), b"abc  a.csv\n").unwrap();
        let dest = root.join("out/nested");

        let mut err = [0 as c_char; 256];
        let cfg = CString::new(format!("{{\"dir\":{:?}}}", dest.to_str().unwrap())).unwrap();
        // SAFETY: valid arguments.
        let inst = unsafe { (VTABLE.create)(cfg.as_ptr(), err.as_mut_ptr(), err.len()) };
        assert!(!inst.is_null());

        // check before the dir exists: ok, its nearest existing parent
        // (root) is writable; nothing is created
        let mut out = blank();
        // SAFETY: valid instance and outcome.
        assert_eq!(
            unsafe { (VTABLE.check)(inst, &mut out) },
            CONSIGN_OK,
            "{}",
            message(&out)
        );
        assert_eq!(
            message(&out),
            format!(
                "{} will be created (its parent {} is writable)",
                dest.display(),
                root.display()
            )
        );
        assert!(!root.join("out").exists());

        let strs: Vec<CString> = [
            "a.csv",
            "a.csv.sha256",
            "data",
            "sha256",
            "x",
            "id-1",
            "d",
            "t",
            "UTC",
        ]
        .iter()
        .map(|s| CString::new(*s).unwrap())
        .collect();
        let paths: Vec<CString> = ["a.csv", "a.csv.sha256"]
            .iter()
            .map(|n| CString::new(src.join(n).to_str().unwrap()).unwrap())
            .collect();
        let files = [
            abi::ConsignFile {
                part: 0,
                kind: strs[2].as_ptr(),
                name: strs[0].as_ptr(),
                path: paths[0].as_ptr(),
                size: 5,
                sha256: strs[4].as_ptr(),
                records: 1,
            },
            abi::ConsignFile {
                part: 1,
                kind: strs[3].as_ptr(),
                name: strs[1].as_ptr(),
                path: paths[1].as_ptr(),
                size: 11,
                sha256: strs[4].as_ptr(),
                records: 0,
            },
        ];
        let batch = ConsignBatch {
            id: strs[5].as_ptr(),
            delivery: strs[6].as_ptr(),
            record_count: 1,
            cut_at: strs[7].as_ptr(),
            zone: strs[8].as_ptr(),
            files: files.as_ptr(),
            file_count: files.len(),
        };
        let mut out = blank();
        // SAFETY: valid instance, batch and outcome.
        let status = unsafe { (VTABLE.deliver)(inst, &batch, &mut out) };
        assert_eq!(status, CONSIGN_OK, "{}", message(&out));
        assert_eq!(
            message(&out),
            format!("copied 2 files to {}", dest.display())
        );
        assert_eq!(std::fs::read(dest.join("a.csv")).unwrap(), b"id\n1\n");
        let leftovers: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temp files left: {leftovers:?}");

        let mut out = blank();
        // SAFETY: valid instance and outcome.
        assert_eq!(
            unsafe { (VTABLE.check)(inst, &mut out) },
            CONSIGN_OK,
            "{}",
            message(&out)
        );
        // SAFETY: created above, destroyed once.
        unsafe { (VTABLE.destroy)(inst) };
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn create_refuses_missing_dir() {
        let mut err = [0 as c_char; 64];
        let cfg = CString::new("{}").unwrap();
        // SAFETY: valid arguments.
        let inst = unsafe { (VTABLE.create)(cfg.as_ptr(), err.as_mut_ptr(), err.len()) };
        assert!(inst.is_null());
        // SAFETY: NUL-terminated by write_str.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(msg, "native-copy: config `dir` is required");
    }

    #[test]
    fn create_refuses_a_relative_dir() {
        let mut err = [0 as c_char; 128];
        let cfg = CString::new(r#"{"dir":"out/files"}"#).unwrap();
        // SAFETY: valid arguments.
        let inst = unsafe { (VTABLE.create)(cfg.as_ptr(), err.as_mut_ptr(), err.len()) };
        assert!(inst.is_null());
        // SAFETY: NUL-terminated by write_str.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_str().unwrap();
        assert_eq!(
            msg,
            "native-copy: dir must be an absolute path, not \"out/files\" (config `dir`)"
        );
    }

    #[test]
    fn check_refuses_a_file_in_the_way() {
        let root = scratch("file-in-the-way");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f"), b"x").unwrap();
        let copier = Copier::from_config(&format!(
            "{{\"dir\":{:?}}}",
            root.join("f/sub").to_str().unwrap()
        ))
        .unwrap();
        // f/sub: ENOTDIR; f itself: exists, not a directory
        let f = copier.check().unwrap_err();
        assert_eq!(f.status, CONSIGN_PERMANENT, "{}", f.message);
        let copier = Copier::from_config(&format!(
            "{{\"dir\":{:?}}}",
            root.join("f").to_str().unwrap()
        ))
        .unwrap();
        let f = copier.check().unwrap_err();
        assert_eq!(f.status, CONSIGN_PERMANENT);
        assert_eq!(
            f.message,
            format!("{} is not a directory", root.join("f").display())
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn truncates_at_char_boundary() {
        let mut buf = [1 as c_char; 4];
        // SAFETY: buf is 4 bytes.
        unsafe { write_str(buf.as_mut_ptr(), buf.len(), "aéé") };
        // "a" + "é" (2 bytes) = 3 bytes + NUL
        // SAFETY: NUL-terminated.
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str(), Ok("aé"));
    }

    #[test]
    fn refuses_path_names() {
        let root = scratch("names");
        let copier =
            Copier::from_config(&format!("{{\"dir\":{:?}}}", root.to_str().unwrap())).unwrap();
        let bad = [Source {
            name: "../escape".into(),
            path: root.join("x"),
        }];
        assert_eq!(
            copier.deliver("b", &bad).unwrap_err().status,
            CONSIGN_PERMANENT
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
