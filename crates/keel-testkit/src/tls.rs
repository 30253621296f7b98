//! A real TLS endpoint for tests: Debian's nginx terminating TLS in front of a plain HTTP node,
//! with a certificate for `localhost` signed by a throwaway CA.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// nginx serving `https://localhost:<port>/` in front of an upstream; stops when dropped.
pub struct TlsFront {
    dir: tempfile::TempDir,
    port: u16,
    nginx: Child,
}

impl TlsFront {
    /// Starts nginx (`KEEL_NGINX`, else Debian's `/usr/sbin/nginx`, else from `PATH`) proxying to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_certs(dir.path());
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    \
             ssl_certificate {d}/server.pem;\n    ssl_certificate_key {d}/server.key;\n    \
             location / {{ proxy_pass {upstream}; }}\n  }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let nginx = std::env::var_os("KEEL_NGINX").unwrap_or_else(|| {
            // Debian installs it in /usr/sbin, which a non-root PATH may lack.
            let sbin = Path::new("/usr/sbin/nginx");
            if sbin.is_file() {
                sbin.into()
            } else {
                "nginx".into()
            }
        });
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run nginx ({e}); ./scripts/install-tools --test installs it (Debian nginx-light) or set KEEL_NGINX"
                )
            });
        let front = Self {
            dir,
            port,
            nginx: child,
        };
        let up = crate::eventually(Duration::from_secs(10), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "nginx did not listen: {}", front.log());
        front
    }

    /// `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The PEM file of the CA that signed the server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

fn write_certs(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "keel test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
