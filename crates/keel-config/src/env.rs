//! `KEEL_…` environment overrides.
//!
//! A variable `KEEL_GATEWAY__LISTEN=0.0.0.0:8545` sets `gateway.listen`: after the prefix, `__`
//! separates path segments, segments are lower-cased, and a number indexes an array
//! (`KEEL_CHAINS__0__UPSTREAMS__1__URL`). The value is read as a TOML value when it parses as one
//! (`true`, `5`, `"text"`, `["a"]`) and as a plain string otherwise. Variables without `__`
//! (such as `KEEL_DATA_DIR`) belong to the command line, not to the config tree.

use toml::{Table, Value};

use crate::{Config, ConfigError};

/// Prefix of every override variable.
pub const ENV_PREFIX: &str = "KEEL_";

/// One `KEEL_…` variable naming a config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOverride {
    /// Variable name, e.g. `KEEL_GATEWAY__LISTEN`.
    pub var: String,
    /// Its raw value. Never logged: it may be a secret.
    pub value: String,
}

impl EnvOverride {
    /// An override from a variable name and value, if the name is an override name.
    pub fn new(var: &str, value: &str) -> Option<Self> {
        let rest = var.strip_prefix(ENV_PREFIX)?;
        rest.contains("__").then(|| Self {
            var: var.to_owned(),
            value: value.to_owned(),
        })
    }

    fn path(&self) -> Vec<String> {
        self.var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect()
    }
}

/// The overrides set in this process's environment, sorted by name.
pub(crate) fn from_process() -> Vec<EnvOverride> {
    let mut all: Vec<_> = std::env::vars()
        .filter_map(|(var, value)| EnvOverride::new(&var, &value))
        .collect();
    all.sort_by(|a, b| a.var.cmp(&b.var));
    all
}

/// Re-parses `text` with `overrides` applied.
pub(crate) fn apply(
    text: &str,
    origin: &str,
    overrides: &[EnvOverride],
) -> Result<Config, ConfigError> {
    let mut table: Table =
        toml::from_str(text).map_err(|e| ConfigError::parse(origin, text, &e))?;
    for o in overrides {
        set(&mut table, &o.path(), parse_value(&o.value)).map_err(|message| ConfigError::Env {
            var: o.var.clone(),
            message,
        })?;
    }
    let names: Vec<&str> = overrides.iter().map(|o| o.var.as_str()).collect();
    Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Env {
            var: names.join(", "),
            message: e.message().trim().to_owned(),
        })
}

fn parse_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn set(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("names no key")?;
    let mut root = Value::Table(std::mem::take(table));
    let result = (|| {
        let mut cur = &mut root;
        for seg in parents {
            cur = step(cur, seg)?;
        }
        *step(cur, last)? = value;
        Ok(())
    })();
    if let Value::Table(t) = root {
        *table = t;
    }
    result
}

/// The value at `seg` below `cur`; a missing table key is created (as an empty table, which
/// the caller overwrites or descends into).
fn step<'a>(cur: &'a mut Value, seg: &str) -> Result<&'a mut Value, String> {
    match cur {
        Value::Table(t) => Ok(t
            .entry(seg.to_owned())
            .or_insert_with(|| Value::Table(Table::new()))),
        Value::Array(a) => {
            let i: usize = seg
                .parse()
                .map_err(|_| format!("`{seg}` is not an array index"))?;
            let len = a.len();
            a.get_mut(i)
                .ok_or_else(|| format!("index {i} is out of range (the array has {len})"))
        }
        _ => Err(format!("`{seg}` goes through a value that is not a table")),
    }
}
