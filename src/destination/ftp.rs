//! `ftp`: FTP and explicit FTPS (`AUTH TLS`) with suppaftp, blocking.
//!
//! - TLS: the certificate is verified (platform roots + `ca_file`) unless
//!   `insecure_skip_tls_verify` is set for this destination. Data
//!   connections are protected (`PROT P`) and resume the control
//!   connection's TLS session (one rustls config, one session cache), which
//!   vsftpd's `require_ssl_reuse=YES` demands.
//! - Passive mode: EPSV, falling back to PASV when the server does not know
//!   EPSV (`passive = "auto"`). A PASV reply naming another address than the
//!   server's (a private address behind NAT) is ignored: the data connection
//!   goes to the control connection's address.
//! - Always binary (`TYPE I`). Each file goes to `name + temp_suffix`, its
//!   size is checked with `SIZE`, then it is renamed over the final name.
//! - Missing directories are created; existing ones are fine.
//! - Reply codes are classified: 530 → auth (suspend), 550/553 →
//!   permission (manual queue, no retry storm), other 5xx → permanent, 4xx
//!   and broken connections → retry.

use super::*;
use crate::config::{FtpConfig, FtpPassive, FtpTls, FtpTlsMax};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, RustlsConnector, RustlsFtpStream};

pub struct FtpDestination {
    cfg: FtpConfig,
}

const TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13_AND_12: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Reply codes that mean "this server does not know the command".
const NOT_IMPLEMENTED: [u32; 4] = [500, 501, 502, 504];

/// The reply code. suppaftp maps codes it does not know (e.g. vsftpd's 522)
/// to 0; the code is then read from the reply text.
fn reply_code(r: &suppaftp::types::Response) -> u32 {
    match r.status.code() {
        0 => String::from_utf8_lossy(&r.body)
            .trim()
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        c => c,
    }
}

fn reply_text(r: &suppaftp::types::Response) -> String {
    let text = String::from_utf8_lossy(&r.body).trim().to_string();
    let code = reply_code(r).to_string();
    match text.strip_prefix(&code) {
        Some(rest) => rest.trim_start_matches(['-', ' ']).to_string(),
        None => text,
    }
}

fn reply_of(e: &FtpError) -> Option<Box<Reply>> {
    match e {
        FtpError::UnexpectedResponse(r) => Some(Box::new(Reply {
            code: Some(reply_code(r)),
            message: reply_text(r),
            headers: Vec::new(),
            body: None,
        })),
        _ => None,
    }
}

fn classify(e: &FtpError, what: &str) -> DestinationError {
    let class = match e {
        // rustls reports a refused certificate as an I/O error of the handshake.
        FtpError::ConnectionError(io) if tls::is_certificate_error(&io.to_string()) => {
            ErrorClass::HostKey
        }
        FtpError::ConnectionError(io) => io_class(io),
        FtpError::SecureError(m) if tls::is_certificate_error(m) => ErrorClass::HostKey,
        FtpError::SecureError(_) => ErrorClass::Transient,
        FtpError::UnexpectedResponse(r) => match reply_code(r) {
            530 | 331 | 332 => ErrorClass::Auth,
            550 | 553 => ErrorClass::Permission,
            c if (400..500).contains(&c) => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        },
        FtpError::BadResponse | FtpError::DataConnectionAlreadyOpen => ErrorClass::Transient,
        FtpError::InvalidAddress(_) => ErrorClass::Transient,
    };
    let detail = match e {
        FtpError::UnexpectedResponse(r) => {
            format!("server replied {} {}", reply_code(r), reply_text(r))
        }
        FtpError::ConnectionError(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            "no answer within the time limit (io_timeout)".to_string()
        }
        other => other.to_string(),
    };
    let mut err = DestinationError::new(class, format!("{what}: {detail}"));
    err.reply = reply_of(e);
    err
}

fn code_of(e: &FtpError) -> Option<u32> {
    match e {
        FtpError::UnexpectedResponse(r) => Some(reply_code(r)),
        _ => None,
    }
}

struct Session {
    ftp: RustlsFtpStream,
    /// The login directory, for relative `remote_dir`s.
    home: String,
}

impl FtpDestination {
    pub fn new(cfg: FtpConfig) -> Self {
        FtpDestination { cfg }
    }

    fn host(&self) -> &str {
        &self.cfg.host.0
    }

    fn tcp(&self) -> Result<TcpStream, DestinationError> {
        let (host, port) = (self.host(), self.cfg.port);
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| {
                DestinationError::new(ErrorClass::Connect, format!("cannot resolve {host}: {e}"))
            })?
            .collect();
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, self.cfg.connect_timeout.0) {
                Ok(s) => {
                    let io = Some(self.cfg.io_timeout.0);
                    s.set_read_timeout(io)
                        .and_then(|_| s.set_write_timeout(io))
                        .map_err(|e| DestinationError::new(io_class(&e), e.to_string()))?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
        Err(DestinationError::new(
            ErrorClass::Connect,
            format!("cannot connect to {host}:{port}: {e}"),
        ))
    }

    fn connect(&self) -> Result<Session, DestinationError> {
        let tcp = self.tcp()?;
        let server_ip = tcp
            .peer_addr()
            .map_err(|e| DestinationError::new(io_class(&e), e.to_string()))?
            .ip();
        let mut ftp = RustlsFtpStream::connect_with_stream(tcp)
            .map_err(|e| classify(&e, "connect"))?
            .passive_stream_builder(self.data_connector(server_ip));
        if self.cfg.tls == FtpTls::Explicit {
            if self.cfg.insecure_skip_tls_verify {
                tracing::warn!(host = %self.host(), "FTPS certificate NOT verified (insecure_skip_tls_verify = true)");
            }
            // TLS 1.2: its sessions can be resumed by every data connection.
            // TLS 1.3 tickets are single-use (OpenSSL sends two), so servers
            // that demand session reuse (vsftpd `require_ssl_reuse`) refuse
            // the third data connection of a session.
            let config = tls::client_config(
                self.cfg.ca_file.as_deref(),
                self.cfg.insecure_skip_tls_verify,
                match self.cfg.tls_max {
                    FtpTlsMax::Tls12 => TLS12_ONLY,
                    FtpTlsMax::Tls13 => TLS13_AND_12,
                },
            )?;
            ftp = ftp
                .into_secure(RustlsConnector::from(config), self.host())
                .map_err(|e| classify(&e, "AUTH TLS"))?;
        }
        ftp.login(self.cfg.username.0.as_str(), self.cfg.password.expose())
            .map_err(|e| classify(&e, &format!("login as {}", self.cfg.username.0)))?;
        ftp.transfer_type(FileType::Binary)
            .map_err(|e| classify(&e, "TYPE I"))?;
        ftp.set_mode(match self.cfg.passive {
            FtpPassive::Auto | FtpPassive::Epsv => Mode::ExtendedPassive,
            FtpPassive::Pasv => Mode::Passive,
        });
        let home = ftp.pwd().map_err(|e| classify(&e, "PWD"))?;
        Ok(Session { ftp, home })
    }

    /// Opens data connections. A PASV reply naming an address other than the
    /// server's is answered by connecting to the server's own address.
    fn data_connector(
        &self,
        server_ip: IpAddr,
    ) -> impl Fn(SocketAddr) -> suppaftp::FtpResult<TcpStream> + Send + Sync + 'static {
        let (connect, io) = (self.cfg.connect_timeout.0, self.cfg.io_timeout.0);
        move |mut addr: SocketAddr| {
            if addr.ip() != server_ip {
                tracing::debug!(named = %addr.ip(), using = %server_ip, "passive reply names another address (NAT): using the control connection's");
                addr.set_ip(server_ip);
            }
            let s =
                TcpStream::connect_timeout(&addr, connect).map_err(FtpError::ConnectionError)?;
            s.set_read_timeout(Some(io))
                .and_then(|_| s.set_write_timeout(Some(io)))
                .map_err(FtpError::ConnectionError)?;
            Ok(s)
        }
    }

    /// Run a data command; under `passive = "auto"` a server that does not
    /// know EPSV gets PASV instead (and keeps it for the session).
    fn data<R>(
        &self,
        s: &mut Session,
        mut op: impl FnMut(&mut RustlsFtpStream) -> suppaftp::FtpResult<R>,
    ) -> suppaftp::FtpResult<R> {
        match op(&mut s.ftp) {
            Err(e)
                if self.cfg.passive == FtpPassive::Auto
                    && code_of(&e).is_some_and(|c| NOT_IMPLEMENTED.contains(&c)) =>
            {
                tracing::debug!("EPSV refused ({e}); falling back to PASV");
                s.ftp.set_mode(Mode::Passive);
                op(&mut s.ftp)
            }
            other => other,
        }
    }

    fn dir(&self, s: &Session) -> String {
        let dir = self.cfg.remote_dir.trim_end_matches('/');
        if dir.starts_with('/') || dir.is_empty() {
            if dir.is_empty() {
                "/".into()
            } else {
                dir.into()
            }
        } else if dir == "." {
            s.home.clone()
        } else {
            remote_path(&s.home, dir)
        }
    }

    fn mkdir_p(&self, s: &mut Session, dir: &str) -> Result<(), DestinationError> {
        for prefix in dir_prefixes(dir) {
            if s.ftp.cwd(&prefix).is_ok() {
                continue;
            }
            if let Err(e) = s.ftp.mkdir(&prefix) {
                // Lost a race with another writer, or it exists now: fine.
                if s.ftp.cwd(&prefix).is_err() {
                    return Err(classify(
                        &e,
                        &format!("cannot create remote directory {prefix}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn upload(&self, s: &mut Session, file: &OutgoingFile) -> Result<String, DestinationError> {
        let dest = remote_path(&self.dir(s), &file.name);
        if let Some((dir, _)) = dest.rsplit_once('/') {
            if self.cfg.create_dirs && !dir.is_empty() {
                self.mkdir_p(s, dir)?;
            }
        }
        let tmp = format!("{dest}{}", self.cfg.temp_suffix);
        let sent = self
            .data(s, |ftp| {
                let mut local = std::io::BufReader::with_capacity(
                    1 << 20,
                    open_spool(file)
                        .map_err(|e| FtpError::ConnectionError(std::io::Error::other(e.message)))?,
                );
                ftp.put_file(&tmp, &mut local)
            })
            .map_err(|e| classify(&e, &format!("cannot upload {tmp}")))?;
        // The server's own count, where it has SIZE (RFC 3659); else what
        // the completed transfer (226) carried.
        let size = match s.ftp.size(&tmp) {
            Ok(n) => n as u64,
            Err(e) if code_of(&e).is_some_and(|c| NOT_IMPLEMENTED.contains(&c)) => sent,
            Err(e) => return Err(classify(&e, &format!("SIZE {tmp}"))),
        };
        if size != file.bytes || sent != file.bytes {
            let _ = s.ftp.rm(&tmp);
            return Err(DestinationError::new(
                ErrorClass::Transient,
                format!(
                    "remote size of {tmp} is {size} bytes (sent {sent}), expected {}",
                    file.bytes
                ),
            ));
        }
        if let Err(first) = s.ftp.rename(&tmp, &dest) {
            // Some servers refuse to rename over an existing file.
            if s.ftp.size(&dest).is_ok() {
                s.ftp
                    .rm(&dest)
                    .map_err(|e| classify(&e, &format!("cannot replace existing {dest}")))?;
                s.ftp
                    .rename(&tmp, &dest)
                    .map_err(|e| classify(&e, &format!("cannot rename {tmp} to {dest}")))?;
            } else {
                return Err(classify(&first, &format!("cannot rename {tmp} to {dest}")));
            }
        }
        Ok(dest)
    }

    fn scheme(&self) -> &'static str {
        match self.cfg.tls {
            FtpTls::Explicit => "ftps",
            FtpTls::None => "ftp",
        }
    }
}

impl Destination for FtpDestination {
    fn describe(&self) -> String {
        format!(
            "{}://{}@{}:{}/{}",
            self.scheme(),
            self.cfg.username.0,
            self.host(),
            self.cfg.port,
            self.cfg.remote_dir.trim_start_matches('/')
        )
    }

    fn deliver(&self, shipment: &Shipment) -> Result<Receipt, DestinationError> {
        let mut s = self.connect()?;
        let mut placed = Vec::new();
        for f in &shipment.files {
            let dest = self.upload(&mut s, f)?;
            placed.push(format!("{dest} ({} bytes)", f.bytes));
        }
        let _ = s.ftp.quit();
        Ok(Receipt {
            reply: None,
            delivered: Vec::new(),
            detail: format!("{}: {}", self.describe(), placed.join(", ")),
        })
    }

    fn check(&self) -> Result<String, DestinationError> {
        const DATA_CONNECTIONS_CHECKED: u32 = 5;
        let mut s = self.connect()?;
        let dir = self.dir(&s);
        if self.cfg.create_dirs {
            self.mkdir_p(&mut s, &dir)?;
        }
        let probe = remote_path(&dir, ".consign-check");
        // Several uploads, as a batch of several files makes: a server that
        // requires TLS session reuse may accept the first ones and refuse
        // later ones (TLS 1.3 tickets are single-use and an upload brings
        // no new one), so one upload would prove too little.
        for round in 1..DATA_CONNECTIONS_CHECKED {
            if let Err(e) = self.data(&mut s, |ftp| ftp.put_file(&probe, &mut &b"ok"[..])) {
                // The failed transfer may leave the control connection unusable.
                if s.ftp.rm(&probe).is_err() {
                    if let Ok(mut again) = self.connect() {
                        let _ = again.ftp.rm(&probe);
                        let _ = again.ftp.quit();
                    }
                }
                return Err(classify(
                    &e,
                    &format!(
                        "cannot write in {dir} (upload {round} of {})",
                        DATA_CONNECTIONS_CHECKED - 1
                    ),
                ));
            }
        }
        let back = self.data(&mut s, |ftp| ftp.retr_as_buffer(&probe));
        let back = match back {
            Ok(b) => b.into_inner(),
            Err(e) => {
                let _ = s.ftp.rm(&probe);
                return Err(classify(&e, &format!("cannot read back {probe}")));
            }
        };
        let _ = s.ftp.rm(&probe);
        let _ = s.ftp.quit();
        if back != b"ok" {
            return Err(DestinationError::new(
                ErrorClass::Permanent,
                format!("{probe} read back differs from what was written"),
            ));
        }
        let tls = match (self.cfg.tls, self.cfg.insecure_skip_tls_verify) {
            (FtpTls::None, _) => "plain FTP (no TLS)",
            (FtpTls::Explicit, false) => "TLS verified",
            (FtpTls::Explicit, true) => "TLS NOT verified (insecure_skip_tls_verify)",
        };
        Ok(format!(
            "{}: connected, {tls}, {dir} writable and readable ({DATA_CONNECTIONS_CHECKED} data connections)",
            self.describe()
        ))
    }
}
