//! TLS to upstreams: the platform's trust store, plus an upstream's own CA file when it has one
//! (a node behind an internal CA).

use std::{path::Path, sync::Arc};

use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, pem::PemObject};

/// The client TLS config trusting the platform's roots and every certificate in `ca_file`.
/// `Err` is a message naming the file.
pub(crate) fn with_extra_roots(ca_file: &Path) -> Result<ClientConfig, String> {
    let shown = ca_file.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read CA file {shown}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA file {shown} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("CA file {shown} holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(certs, Arc::clone(&provider))
            .map_err(|e| format!("CA file {shown}: {e}"))?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_empty_ca_files_are_named() {
        let dir = std::env::temp_dir().join(format!("keel-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let missing = dir.join("missing.pem");
        let e = with_extra_roots(&missing).expect_err("missing");
        assert!(
            e.contains("cannot read CA file") && e.contains("missing.pem"),
            "{e}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap_or_default();
        let e = with_extra_roots(&empty).expect_err("empty");
        assert!(e.contains("holds no certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
