//! rustls client configuration for destinations that speak TLS themselves
//! (FTPS). Certificates are verified against the platform's roots plus an
//! optional `ca_file`; `insecure` (one destination, operator's explicit
//! choice) accepts any certificate.

use super::{DestinationError, ErrorClass};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client config. Session resumption stays on (the default in-memory
/// cache): FTPS data connections resume the control connection's session,
/// which servers such as vsftpd with `require_ssl_reuse` demand.
pub fn client_config(
    ca_file: Option<&Path>,
    insecure: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>, DestinationError> {
    let bad = |m: String| DestinationError::new(ErrorClass::Permanent, m);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| bad(format!("TLS setup: {e}")))?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth()
    } else {
        let mut extra = Vec::new();
        if let Some(ca) = ca_file {
            for cert in CertificateDer::pem_file_iter(ca)
                .map_err(|e| bad(format!("cannot read ca_file {}: {e}", ca.display())))?
            {
                extra.push(cert.map_err(|e| bad(format!("ca_file {}: {e}", ca.display())))?);
            }
            if extra.is_empty() {
                return Err(bad(format!(
                    "ca_file {} holds no certificate",
                    ca.display()
                )));
            }
        }
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider())
            .map_err(|e| bad(format!("TLS roots: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Is this TLS failure about the peer's certificate (suspend the delivery,
/// like a changed SSH host key) rather than the network?
pub fn is_certificate_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("certificate") || m.contains("unknownissuer") || m.contains("invalid peer")
}

#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
