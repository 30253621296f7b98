//! Upstream URLs, which often carry API keys in their path, query or user info.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// A URL whose `Debug` and `Display` show only scheme, host and port.
///
/// Path, query and credentials are replaced by `…`, so the value can be logged, put in metric
/// labels or error messages without leaking an API key. [`SecretUrl::expose`] gives the full URL
/// to the one place that needs it: the HTTP client.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    /// Parses an `http://` or `https://` URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "scheme `{other}` is not supported; use http or https"
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".to_owned());
        }
        Ok(Self(url))
    }

    /// The full URL, secrets included. Only for the HTTP client.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// Whether the URL has anything beyond scheme, host and port (which `Display` hides).
    pub fn has_hidden_parts(&self) -> bool {
        !self.0.username().is_empty()
            || self.0.password().is_some()
            || self.0.path() != "/"
            || self.0.query().is_some()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            self.0.scheme(),
            self.0.host_str().unwrap_or("")
        )?;
        if let Some(port) = self.0.port() {
            write!(f, ":{port}")?;
        }
        if self.has_hidden_parts() {
            f.write_str("/…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // The message must not echo the URL: it may hold a key.
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}
