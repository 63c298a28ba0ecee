//! `sftp`: upload over SSH with libssh2 (the `ssh2` crate, blocking).
//!
//! Host keys are checked against known_hosts (`[host]:port` entries too)
//! unless `insecure_accept_any_host_key` is set for this destination. Each
//! file is written under `name + temp_suffix`, its remote size verified, then
//! renamed over the final name. OpenSSH's plain SFTP rename refuses to replace
//! an existing file; then the old file is removed and the rename repeated
//! (libssh2 via the `ssh2` crate does not expose `posix-rename@openssh.com`).

use super::*;
use crate::config::SftpConfig;
use ssh2::{
    CheckResult, ErrorCode, KnownHostFileKind, MethodType, OpenFlags, OpenType, RenameFlags,
    Session, Sftp,
};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};

const CIPHERS: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";

pub struct SftpDestination {
    cfg: SftpConfig,
}

/// libssh2 session error codes we classify.
mod code {
    pub const BANNER_RECV: i32 = -2;
    pub const BANNER_SEND: i32 = -3;
    pub const KEX_FAILURE: i32 = -5;
    pub const SOCKET_SEND: i32 = -7;
    pub const TIMEOUT: i32 = -9;
    pub const SOCKET_DISCONNECT: i32 = -13;
    pub const FILE: i32 = -16;
    pub const AUTHENTICATION_FAILED: i32 = -18;
    pub const PUBLICKEY_UNVERIFIED: i32 = -19;
    pub const SOCKET_TIMEOUT: i32 = -30;
    pub const SOCKET_RECV: i32 = -43;
}

/// SFTP status codes (draft-ietf-secsh-filexfer-02).
mod status {
    pub const NO_SUCH_FILE: i32 = 2;
    pub const PERMISSION_DENIED: i32 = 3;
    pub const FAILURE: i32 = 4;
    pub const NO_CONNECTION: i32 = 6;
    pub const CONNECTION_LOST: i32 = 7;
}

fn classify(e: &ssh2::Error, what: &str) -> DestinationError {
    let class = match e.code() {
        ErrorCode::SFTP(status::NO_SUCH_FILE) => ErrorClass::NotFound,
        ErrorCode::SFTP(status::PERMISSION_DENIED) => ErrorClass::Permission,
        ErrorCode::SFTP(status::NO_CONNECTION | status::CONNECTION_LOST | status::FAILURE) => {
            ErrorClass::Transient
        }
        ErrorCode::SFTP(_) => ErrorClass::Permanent,
        ErrorCode::Session(code::TIMEOUT | code::SOCKET_TIMEOUT) => ErrorClass::Timeout,
        ErrorCode::Session(
            code::AUTHENTICATION_FAILED | code::PUBLICKEY_UNVERIFIED | code::FILE,
        ) => ErrorClass::Auth,
        ErrorCode::Session(
            code::BANNER_RECV
            | code::BANNER_SEND
            | code::KEX_FAILURE
            | code::SOCKET_SEND
            | code::SOCKET_DISCONNECT
            | code::SOCKET_RECV,
        ) => ErrorClass::Connect,
        ErrorCode::Session(_) => ErrorClass::Transient,
    };
    DestinationError::new(class, format!("{what}: {}", e.message()))
}

struct Connection {
    _session: Session,
    sftp: Sftp,
}

impl SftpDestination {
    pub fn new(cfg: SftpConfig) -> Self {
        SftpDestination { cfg }
    }

    fn host(&self) -> &str {
        &self.cfg.host.0
    }

    fn known_hosts_path(&self) -> PathBuf {
        self.cfg.known_hosts.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".ssh").join("known_hosts")
        })
    }

    fn connect(&self) -> Result<Connection, DestinationError> {
        let host = self.host();
        let port = self.cfg.port;
        let addrs: Vec<_> = (host, port)
            .to_socket_addrs()
            .map_err(|e| {
                DestinationError::new(ErrorClass::Connect, format!("cannot resolve {host}: {e}"))
            })?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.cfg.connect_timeout.0) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            let e = last
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no address".into());
            let class = if e.contains("timed out") {
                ErrorClass::Timeout
            } else {
                ErrorClass::Connect
            };
            DestinationError::new(class, format!("cannot connect to {host}:{port}: {e}"))
        })?;
        let io = Some(self.cfg.io_timeout.0);
        tcp.set_read_timeout(io)
            .and_then(|_| tcp.set_write_timeout(io))
            .map_err(|e| {
                DestinationError::new(ErrorClass::Connect, format!("socket setup: {e}"))
            })?;
        let mut session = Session::new().map_err(|e| classify(&e, "ssh session"))?;
        session.set_tcp_stream(tcp);
        // OpenSSH's own cipher order: libssh2 puts AES-GCM first, which
        // measured slower on loopback (bench P5). A failure leaves libssh2's order.
        for t in [MethodType::CryptCs, MethodType::CryptSc] {
            let _ = session.method_pref(t, CIPHERS);
        }
        session.set_timeout(self.cfg.io_timeout.0.as_millis().min(u32::MAX as u128) as u32);
        session
            .handshake()
            .map_err(|e| classify(&e, &format!("SSH handshake with {host}:{port}")))?;
        self.verify_host_key(&session)?;
        self.authenticate(&session)?;
        let sftp = session
            .sftp()
            .map_err(|e| classify(&e, "starting the SFTP subsystem"))?;
        Ok(Connection {
            _session: session,
            sftp,
        })
    }

    fn verify_host_key(&self, session: &Session) -> Result<(), DestinationError> {
        let host = self.host();
        let port = self.cfg.port;
        if self.cfg.insecure_accept_any_host_key {
            tracing::warn!(
                host,
                port,
                "host key NOT verified (insecure_accept_any_host_key = true)"
            );
            return Ok(());
        }
        let (key, _) = session.host_key().ok_or_else(|| {
            DestinationError::new(
                ErrorClass::HostKey,
                format!("{host}:{port} sent no host key"),
            )
        })?;
        let path = self.known_hosts_path();
        let mut kh = session
            .known_hosts()
            .map_err(|e| classify(&e, "known_hosts"))?;
        kh.read_file(&path, KnownHostFileKind::OpenSSH)
            .map_err(|e| {
                DestinationError::new(
                    ErrorClass::HostKey,
                    format!(
                        "cannot read known_hosts file {}: {}",
                        path.display(),
                        e.message()
                    ),
                )
            })?;
        let entry = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        match kh.check_port(host, port, key) {
            CheckResult::Match => Ok(()),
            CheckResult::NotFound => Err(DestinationError::new(
                ErrorClass::HostKey,
                format!(
                    "unknown host: {entry} is not in {}; after checking its fingerprint with the partner, add it with `ssh-keyscan -p {port} {host} >> {}`",
                    path.display(),
                    path.display()
                ),
            )),
            CheckResult::Mismatch => Err(DestinationError::new(
                ErrorClass::HostKey,
                format!(
                    "HOST KEY CHANGED for {entry}: the key it presented does not match {}; refusing to connect (possible man-in-the-middle, or the partner rotated its key)",
                    path.display()
                ),
            )),
            CheckResult::Failure => Err(DestinationError::new(
                ErrorClass::HostKey,
                format!("could not check the host key of {entry} against {}", path.display()),
            )),
        }
    }

    fn authenticate(&self, session: &Session) -> Result<(), DestinationError> {
        let user = &self.cfg.username.0;
        let mut failures = Vec::new();
        if let Some(key) = &self.cfg.private_key {
            if !key.exists() {
                return Err(DestinationError::new(
                    ErrorClass::Auth,
                    format!("private key {} does not exist", key.display()),
                ));
            }
            let pass = self.cfg.passphrase.as_ref().map(|p| p.expose());
            match session.userauth_pubkey_file(user, None, key, pass) {
                Ok(()) if session.authenticated() => return Ok(()),
                Ok(()) => failures.push(format!("key {} not accepted", key.display())),
                Err(e) => {
                    let hint = if self.cfg.passphrase.is_some() {
                        " — wrong passphrase, or a key format libssh2 cannot read"
                    } else {
                        " — if the key is passphrase-protected, set `passphrase`"
                    };
                    failures.push(format!("key {}: {}{hint}", key.display(), e.message()))
                }
            }
        }
        if let Some(pw) = &self.cfg.password {
            match session.userauth_password(user, pw.expose()) {
                Ok(()) if session.authenticated() => return Ok(()),
                Ok(()) => failures.push("password not accepted".into()),
                Err(e) => failures.push(format!("password: {}", e.message())),
            }
        }
        Err(DestinationError::new(
            ErrorClass::Auth,
            format!(
                "authentication failed for user {user:?} at {}:{} ({})",
                self.host(),
                self.cfg.port,
                failures.join("; ")
            ),
        ))
    }

    fn remote_path(&self, name: &str) -> String {
        remote_path(&self.cfg.remote_dir, name)
    }

    fn mkdir_p(&self, sftp: &Sftp, dir: &str) -> Result<(), DestinationError> {
        if dir.is_empty() || dir == "." || dir == "/" {
            return Ok(());
        }
        if sftp.stat(Path::new(dir)).is_ok() {
            return Ok(());
        }
        for prefix in dir_prefixes(dir) {
            let p = Path::new(&prefix);
            if sftp.stat(p).is_ok() {
                continue;
            }
            if let Err(e) = sftp.mkdir(p, 0o755) {
                // Lost a race with another writer, or it exists now: fine.
                if sftp.stat(p).is_err() {
                    return Err(classify(
                        &e,
                        &format!("cannot create remote directory {prefix}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn upload(&self, sftp: &Sftp, file: &OutgoingFile) -> Result<String, DestinationError> {
        let dest = self.remote_path(&file.name);
        if let Some((dir, _)) = dest.rsplit_once('/') {
            if self.cfg.create_dirs {
                self.mkdir_p(sftp, dir)?;
            }
        }
        let tmp = format!("{dest}{}", self.cfg.temp_suffix);
        let mut local = open_spool(file)?;
        let mut remote = sftp
            .open_mode(
                Path::new(&tmp),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                0o644,
                OpenType::File,
            )
            .map_err(|e| classify(&e, &format!("cannot create {tmp}")))?;
        let mut buf = vec![0u8; 4 << 20];
        loop {
            let n = local.read(&mut buf).map_err(|e| {
                DestinationError::new(
                    io_class(&e),
                    format!("reading {}: {e}", file.path.display()),
                )
            })?;
            if n == 0 {
                break;
            }
            remote
                .write_all(&buf[..n])
                .map_err(|e| DestinationError::new(io_class(&e), format!("writing {tmp}: {e}")))?;
        }
        remote
            .close()
            .map_err(|e| classify(&e, &format!("closing {tmp}")))?;
        let size = sftp
            .stat(Path::new(&tmp))
            .map_err(|e| classify(&e, &format!("cannot stat {tmp}")))?
            .size
            .unwrap_or(0);
        if size != file.bytes {
            let _ = sftp.unlink(Path::new(&tmp));
            return Err(DestinationError::new(
                ErrorClass::Transient,
                format!(
                    "remote size of {tmp} is {size} bytes, expected {}",
                    file.bytes
                ),
            ));
        }
        let flags = Some(RenameFlags::OVERWRITE | RenameFlags::ATOMIC | RenameFlags::NATIVE);
        if let Err(first) = sftp.rename(Path::new(&tmp), Path::new(&dest), flags) {
            if sftp.stat(Path::new(&dest)).is_ok() {
                sftp.unlink(Path::new(&dest))
                    .map_err(|e| classify(&e, &format!("cannot replace existing {dest}")))?;
                sftp.rename(Path::new(&tmp), Path::new(&dest), flags)
                    .map_err(|e| classify(&e, &format!("cannot rename {tmp} to {dest}")))?;
            } else {
                return Err(classify(&first, &format!("cannot rename {tmp} to {dest}")));
            }
        }
        Ok(dest)
    }
}

impl Destination for SftpDestination {
    fn describe(&self) -> String {
        format!(
            "sftp://{}@{}:{}/{}",
            self.cfg.username.0,
            self.host(),
            self.cfg.port,
            self.cfg.remote_dir.trim_start_matches('/')
        )
    }

    fn deliver(&self, shipment: &Shipment) -> Result<Receipt, DestinationError> {
        let conn = self.connect()?;
        let mut placed = Vec::new();
        for f in &shipment.files {
            let dest = self.upload(&conn.sftp, f)?;
            placed.push(format!("{dest} ({} bytes)", f.bytes));
        }
        Ok(Receipt {
            reply: None,
            delivered: Vec::new(),
            detail: format!("{}: {}", self.describe(), placed.join(", ")),
        })
    }

    fn check(&self) -> Result<String, DestinationError> {
        let conn = self.connect()?;
        let dir = self.cfg.remote_dir.trim_end_matches('/');
        let dir = if dir.is_empty() { "/" } else { dir };
        if self.cfg.create_dirs {
            self.mkdir_p(&conn.sftp, dir)?;
        }
        let probe = self.remote_path(".consign-check");
        let mut f = conn
            .sftp
            .open_mode(
                Path::new(&probe),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                0o644,
                OpenType::File,
            )
            .map_err(|e| classify(&e, &format!("cannot write in {dir}")))?;
        f.write_all(b"ok")
            .map_err(|e| DestinationError::new(io_class(&e), format!("writing {probe}: {e}")))?;
        drop(f);
        let _ = conn.sftp.unlink(Path::new(&probe));
        Ok(format!(
            "{}: connected, host key verified, {dir} writable",
            self.describe()
        ))
    }
}
