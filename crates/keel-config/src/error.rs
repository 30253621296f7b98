//! The one error type of keel-config.

use std::fmt;

/// Why a configuration could not be loaded. Every variant names where the problem is and how to
/// fix it; none ever contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path that was read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type.
    #[error("{origin}{}: {message}", Line(*line))]
    Parse {
        /// File name or `<embedded defaults>`.
        origin: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What the parser said.
        message: String,
    },
    /// A value that parses but breaks a rule.
    #[error("{origin}{}: `{key}`: {message}; {fix}", Line(*line))]
    Invalid {
        /// File name, env variable or `<embedded defaults>`.
        origin: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// Dotted path of the key.
        key: String,
        /// What is wrong.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// A `KEEL_…` variable that names no key or holds a bad value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong.
        message: String,
    },
}

struct Line(Option<usize>);

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

impl ConfigError {
    pub(crate) fn parse(origin: &str, text: &str, err: &toml::de::Error) -> Self {
        let line = err.span().map(|span| line_of(text, span.start));
        let mut message = err.message().trim().to_owned();
        if message.starts_with("unknown field") {
            message.push_str(
                "; remove the key or check its spelling (docs/config.md lists every key)",
            );
        }
        Self::Parse {
            origin: origin.to_owned(),
            line,
            message,
        }
    }
}

/// 1-based line number of byte offset `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
