//! OpenPGP (sequoia): encrypt to every valid encryption subkey of each
//! recipient, optional ASCII armor and signing. SEIPD v1 unless the operator
//! opts in to v2, so GnuPG 2.2 can read the files. Also decryption with a
//! secret key, for verifying files before delivery.

use crate::config::EncryptionConfig;
use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient, Signer};
use openpgp::types::{Features, RevocationStatus, SymmetricAlgorithm};
use openpgp::{Cert, KeyHandle};
use sequoia_openpgp as openpgp;
use std::io::{self, Read, Write};
use std::path::Path;

static POLICY: StandardPolicy = StandardPolicy::new();

fn load_cert(path: &Path) -> Result<Cert, String> {
    Cert::from_file(path).map_err(|e| format!("cannot read OpenPGP key {}: {e}", path.display()))
}

/// Why a recipient key cannot be used, or `None` when it can.
fn recipient_problem(path: &Path) -> Option<String> {
    let cert = match load_cert(path) {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    let p = StandardPolicy::new();
    let name = format!("key {} ({})", path.display(), cert.fingerprint());
    if let RevocationStatus::Revoked(_) = cert.revocation_status(&p, None) {
        return Some(format!("{name} is revoked"));
    }
    let vc = match cert.with_policy(&p, None) {
        Ok(vc) => vc,
        Err(e) => {
            return Some(format!(
                "{name} is not valid under the standard policy: {e}"
            ))
        }
    };
    if let Err(e) = vc.alive() {
        return Some(format!("{name} is expired or not yet valid: {e}"));
    }
    let usable = vc
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .for_transport_encryption()
        .for_storage_encryption()
        .count();
    if usable == 0 {
        return Some(format!(
            "{name} has no valid encryption subkey (expired, revoked or signing-only)"
        ));
    }
    None
}

/// Problems with an encryption config: (key path, message).
pub fn check(cfg: &EncryptionConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if cfg.recipients.is_empty() {
        out.push((
            "recipients".into(),
            "at least one recipient key is needed".into(),
        ));
    }
    for (i, r) in cfg.recipients.iter().enumerate() {
        if let Some(p) = recipient_problem(r) {
            out.push((format!("recipients[{i}]"), p));
        }
    }
    if let Some(k) = &cfg.sign_key {
        if let Err(e) = signing_keypair(k, cfg.sign_passphrase.as_ref().map(|s| s.expose())) {
            out.push(("sign_key".into(), e));
        }
    }
    if let Some(k) = &cfg.verify_key {
        if let Err(e) = check_verify_key(k, &cfg.recipients) {
            out.push(("verify_key".into(), e));
        }
    }
    out
}

/// The verify key must hold an unprotected secret for one of the recipients'
/// encryption subkeys, or every verification would fail.
fn check_verify_key(path: &Path, recipients: &[std::path::PathBuf]) -> Result<(), String> {
    let cert = load_cert(path)?;
    let secrets: Vec<KeyHandle> = cert.keys().secret().map(|k| k.key().key_handle()).collect();
    if secrets.is_empty() {
        return Err(format!("{} holds no secret key", path.display()));
    }
    let usable: Vec<KeyHandle> = cert
        .keys()
        .secret()
        .filter(|k| !k.key().secret().is_encrypted())
        .map(|k| k.key().key_handle())
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "{}: the secret key is passphrase-protected; use an unprotected copy for verification",
            path.display()
        ));
    }
    for r in recipients {
        if let Ok(rc) = load_cert(r) {
            if rc
                .keys()
                .any(|k| usable.iter().any(|u| u.aliases(k.key().key_handle())))
            {
                return Ok(());
            }
        }
    }
    Err(format!(
        "{} is not the secret key of any recipient, so it could not decrypt the files",
        path.display()
    ))
}

fn signing_keypair(path: &Path, passphrase: Option<&str>) -> Result<KeyPair, String> {
    let cert = load_cert(path)?;
    let p = StandardPolicy::new();
    let ka = cert
        .keys()
        .with_policy(&p, None)
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .secret()
        .next()
        .ok_or_else(|| format!("{} has no usable secret signing key", path.display()))?;
    let mut key = ka.key().clone();
    if key.secret().is_encrypted() {
        let pw = passphrase
            .ok_or_else(|| format!("{} is protected: set sign_passphrase", path.display()))?;
        key = key
            .decrypt_secret(&pw.into())
            .map_err(|_| format!("wrong sign_passphrase for {}", path.display()))?;
    }
    key.into_keypair()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Loaded recipients and signer, ready to encrypt many files.
pub struct Encryption {
    certs: Vec<Cert>,
    armor: bool,
    seipd_v2: bool,
    signer: Option<KeyPair>,
}

impl Encryption {
    pub fn load(cfg: &EncryptionConfig) -> Result<Encryption, String> {
        if let Some((k, m)) = check(cfg).into_iter().next() {
            return Err(format!("encryption.{k}: {m}"));
        }
        let certs = cfg
            .recipients
            .iter()
            .map(|p| load_cert(p))
            .collect::<Result<Vec<_>, _>>()?;
        let signer = match &cfg.sign_key {
            Some(k) => Some(signing_keypair(
                k,
                cfg.sign_passphrase.as_ref().map(|s| s.expose()),
            )?),
            None => None,
        };
        Ok(Encryption {
            certs,
            armor: cfg.armor,
            seipd_v2: cfg.seipd_v2,
            signer,
        })
    }

    /// An encrypting writer over `out`; call `finalize` on it at the end.
    pub fn writer<'a, W: Write + Send + Sync + 'a>(&'a self, out: W) -> io::Result<Message<'a>> {
        let mut recipients = Vec::new();
        for cert in &self.certs {
            let vc = cert.with_policy(&POLICY, None).map_err(io::Error::other)?;
            for ka in vc
                .keys()
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
                .for_storage_encryption()
            {
                let features = if self.seipd_v2 {
                    vc.features().unwrap_or_else(Features::empty)
                } else {
                    Features::empty().set_seipdv1()
                };
                recipients.push(Recipient::new(features, ka.key().key_handle(), ka.key()));
            }
        }
        let mut message = Message::new(out);
        if self.armor {
            message = Armorer::new(message).build().map_err(io::Error::other)?;
        }
        let mut message = Encryptor::for_recipients(message, recipients)
            .build()
            .map_err(io::Error::other)?;
        if let Some(kp) = &self.signer {
            message = Signer::new(message, kp.clone())
                .map_err(io::Error::other)?
                .build()
                .map_err(io::Error::other)?;
        }
        LiteralWriter::new(message)
            .build()
            .map_err(io::Error::other)
    }

    pub fn recipients(&self) -> usize {
        self.certs.len()
    }

    pub fn armored(&self) -> bool {
        self.armor
    }
}

/// Decrypt `input` with the secret keys in `key_file`, streaming.
pub fn decrypt<'a, R: Read + Send + Sync + 'a>(
    key_file: &Path,
    input: R,
) -> Result<Box<dyn Read + 'a>, String> {
    let cert = load_cert(key_file)?;
    let p: &'static StandardPolicy = &POLICY;
    let helper = Helper { cert };
    let d = DecryptorBuilder::from_reader(input)
        .map_err(|e| e.to_string())?
        .with_policy(p, None, helper)
        .map_err(|e| format!("cannot decrypt with {}: {e}", key_file.display()))?;
    Ok(Box::new(d))
}

struct Helper {
    cert: Cert,
}

impl VerificationHelper for Helper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _structure: MessageStructure) -> openpgp::Result<()> {
        Ok(())
    }
}

impl DecryptionHelper for Helper {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let p = StandardPolicy::new();
        for ka in self
            .cert
            .keys()
            .with_policy(&p, None)
            .supported()
            .secret()
            .for_transport_encryption()
            .for_storage_encryption()
        {
            let Ok(mut pair) = ka.key().clone().into_keypair() else {
                continue;
            };
            for pkesk in pkesks {
                if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo) {
                    if decrypt(algo, &sk) {
                        return Ok(None);
                    }
                }
            }
        }
        Err(openpgp::Error::InvalidOperation(
            "no key in the verify key could decrypt the file".into(),
        )
        .into())
    }
}
