//! TCP connect checks and TLS handshakes with certificate expiry.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use keel_config::monitor::TcpProbeConfig;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;

use crate::metrics::{MonitorMetrics, ProbeLabels};

/// The TLS client config: the platform's roots plus `ca_file`'s.
pub fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = match ca_file {
        Some(f) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f)
                .map_err(|e| format!("cannot read CA file {}: {e}", f.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CA file {} is not valid PEM: {e}", f.display()))?;
            rustls_platform_verifier::Verifier::new_with_extra_roots(certs, provider.clone())
                .map_err(|e| format!("CA file {}: {e}", f.display()))?
        }
        None => rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| format!("TLS setup failed: {e}"))?,
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Seconds from now until the certificate's `notAfter`.
pub fn expiry_seconds(cert: &[u8]) -> Result<f64, String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let not_after = c.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Ok((not_after - now) as f64)
}

/// One check: `Ok(Some(expiry))` for TLS, `Ok(None)` for plain TCP.
pub async fn check_once(
    cfg: &TcpProbeConfig,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Option<f64>, String> {
    let stream = tokio::time::timeout(cfg.timeout, TcpStream::connect(&cfg.address))
        .await
        .map_err(|_| format!("connect timed out after {:?}", cfg.timeout))?
        .map_err(|e| format!("connect failed: {e}"))?;
    let Some(tls) = tls else {
        return Ok(None);
    };
    let host = cfg.server_name.clone().unwrap_or_else(|| {
        cfg.address
            .rsplit_once(':')
            .map_or(cfg.address.clone(), |(h, _)| {
                h.trim_matches(['[', ']']).to_owned()
            })
    });
    let name = ServerName::try_from(host.clone())
        .map_err(|_| format!("`{host}` is not a valid server name"))?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let conn = tokio::time::timeout(cfg.timeout, connector.connect(name, stream))
        .await
        .map_err(|_| format!("TLS handshake timed out after {:?}", cfg.timeout))?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (_, session) = conn.get_ref();
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server sent no certificate")?;
    expiry_seconds(cert.as_ref()).map(Some)
}

/// Runs the check until cancelled.
pub async fn run(cfg: TcpProbeConfig, tls: Option<Arc<ClientConfig>>, metrics: MonitorMetrics) {
    let labels = ProbeLabels {
        kind: if cfg.tls { "tls" } else { "tcp" },
        probe: cfg.name.clone(),
    };
    tokio::time::sleep(super::spread(&cfg.name, cfg.interval)).await;
    let mut ticker = super::ticker(cfg.interval);
    let mut last_error: Option<String> = None;
    loop {
        ticker.tick().await;
        let t0 = Instant::now();
        let result = check_once(&cfg, tls.as_ref()).await;
        metrics
            .probe_duration_seconds
            .get_or_create(&labels)
            .set(t0.elapsed().as_secs_f64());
        match result {
            Ok(expiry) => {
                metrics.probe_up.get_or_create(&labels).set(1);
                if let Some(e) = expiry {
                    metrics
                        .tls_cert_expiry_seconds
                        .get_or_create(&labels)
                        .set(e);
                }
                last_error = None;
            }
            Err(e) => {
                metrics.probe_up.get_or_create(&labels).set(0);
                metrics.probe_failures.get_or_create(&labels).inc();
                if last_error.as_deref() != Some(&e) {
                    tracing::warn!(probe = %cfg.name, address = %cfg.address, error = %e, "tcp probe fails");
                    last_error = Some(e);
                }
            }
        }
    }
}
