//! Secrets read from files (`<key>_file`, as systemd's `LoadCredential`
//! hands them over) and the example's placeholders, both resolved on the
//! merged sources before anything is deserialized.

use std::path::PathBuf;

use rocket::figment::providers::Serialized;
use rocket::figment::value::{Dict, Map, Value};
use rocket::figment::{self, Figment, Metadata, Profile, Provider};

use super::{ConfigError, env_var_name};

/// Keys whose value is a secret. Each may instead name a file in
/// `<key>_file`; setting both is an error. A `*` segment stands for any
/// table name (`chains.*.private_key` covers `chains.base.private_key`).
pub const SECRET_KEYS: &[&str] = &[
    "auth.alpaca.api_key",
    "auth.internal.api_key",
    "alpaca.api_key_id",
    "alpaca.api_secret",
    "chain.private_key",
    // A provider URL usually carries its API key.
    "chain.rpc_url",
    "chains.*.private_key",
    "chains.*.rpc_url",
];

/// Every key `pattern` stands for in `figment`: itself, or with its `*`
/// replaced by each table name found there.
fn expand(figment: &Figment, pattern: &str) -> Vec<String> {
    let Some((parent, rest)) = pattern.split_once(".*.") else {
        return vec![pattern.to_owned()];
    };
    figment
        .find_value(parent)
        .ok()
        .and_then(Value::into_dict)
        .map(|tables| {
            tables
                .keys()
                .map(|name| format!("{parent}.{name}.{rest}"))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `key` is `pattern` (a `*` segment matches any one segment).
fn matches(pattern: &str, key: &str) -> bool {
    let mut keys = key.split('.');
    pattern
        .split('.')
        .all(|want| keys.next().is_some_and(|got| want == "*" || want == got))
        && keys.next().is_none()
}

/// Tables whose every entry is a secret: `<table>_file.<name>` names the
/// file holding entry `<name>`.
pub const SECRET_TABLES: &[&str] = &["telemetry.otlp_headers"];

/// Every value of the example config that must be replaced starts with
/// this (docs/config.example.toml).
pub const PLACEHOLDER_PREFIX: &str = "replace-with-";

/// Suffix of the key naming a secret's file.
pub const FILE_SUFFIX: &str = "_file";

/// One secret read from its file; a provider so that errors about the
/// value name the file and the key that pointed at it.
#[derive(Clone)]
pub(super) struct SecretFromFile {
    key: String,
    file_key: String,
    path: PathBuf,
    value: String,
}

impl Provider for SecretFromFile {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!(
            "file {} ({})",
            self.path.display(),
            self.file_key
        ))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::default(&self.key, &self.value).data()
    }
}

/// What [`resolve`] found: the secrets read from files, and the `_file`
/// keys to drop from every source before deserializing.
#[derive(Default)]
pub(super) struct Resolved {
    pub files: Vec<SecretFromFile>,
    pub consumed: Vec<String>,
}

/// Reads every secret named by a `_file` key in `figment`.
pub(super) fn resolve(figment: &Figment) -> Result<Resolved, ConfigError> {
    let mut resolved = Resolved::default();
    for key in SECRET_KEYS.iter().flat_map(|key| expand(figment, key)) {
        let file_key = format!("{key}{FILE_SUFFIX}");
        if let Some(file) = read_if_named(figment, &key, &file_key)? {
            resolved.files.push(file);
            resolved.consumed.push(file_key);
        }
    }
    for table in SECRET_TABLES {
        let file_table = format!("{table}{FILE_SUFFIX}");
        let Ok(files) = figment.find_value(&file_table) else {
            continue;
        };
        let Some(entries) = files.as_dict() else {
            return Err(ConfigError::SecretFileTable {
                key: file_table,
                source_name: source_of(figment, &files),
            });
        };
        for name in entries.keys() {
            let key = format!("{table}.{name}");
            let file_key = format!("{file_table}.{name}");
            if let Some(file) = read_if_named(figment, &key, &file_key)? {
                resolved.files.push(file);
            }
        }
        resolved.consumed.push(file_table);
    }
    Ok(resolved)
}

fn read_if_named(
    figment: &Figment,
    key: &str,
    file_key: &str,
) -> Result<Option<SecretFromFile>, ConfigError> {
    let Ok(path_value) = figment.find_value(file_key) else {
        return Ok(None);
    };
    if let Ok(value) = figment.find_value(key) {
        return Err(ConfigError::SecretTwice {
            key: key.to_owned(),
            key_source: source_of(figment, &value),
            file_key: file_key.to_owned(),
            file_source: source_of(figment, &path_value),
        });
    }
    let Some(path) = path_value.as_str().filter(|path| !path.is_empty()) else {
        return Err(ConfigError::SecretFilePath {
            file_key: file_key.to_owned(),
            source_name: source_of(figment, &path_value),
        });
    };
    let path = PathBuf::from(path);
    let value = read_secret_file(&path).map_err(|source| {
        ConfigError::SecretFileUnreadable {
            file_key: file_key.to_owned(),
            path: path.clone(),
            source,
        }
    })?;
    Ok(Some(SecretFromFile {
        key: key.to_owned(),
        file_key: file_key.to_owned(),
        path,
        value,
    }))
}

/// A secret file's content without its trailing newline (`echo key >
/// file` and systemd-creds both leave one).
pub fn read_secret_file(path: &std::path::Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn source_of(figment: &Figment, value: &Value) -> String {
    figment
        .get_metadata(value.tag())
        .map_or_else(|| "unknown source".to_owned(), describe_source)
}

/// "TOML file /etc/x.toml", "environment variable ISSUANCE_X", ...
pub(super) fn describe_source(metadata: &Metadata) -> String {
    match &metadata.source {
        Some(source) => format!("{} {source}", metadata.name),
        None => metadata.name.to_string(),
    }
}

/// A provider with some dotted keys removed (the `_file` keys once their
/// files are read), otherwise unchanged: same metadata, so errors still
/// name the file or variable a value came from.
pub(super) struct Without<P> {
    pub inner: P,
    pub keys: Vec<String>,
}

impl<P: Provider> Provider for Without<P> {
    fn metadata(&self) -> Metadata {
        self.inner.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.inner.data()?;
        for dict in data.values_mut() {
            for key in &self.keys {
                let path: Vec<&str> = key.split('.').collect();
                remove_path(dict, &path);
            }
        }
        Ok(data)
    }

    fn profile(&self) -> Option<Profile> {
        self.inner.profile()
    }
}

/// Removes `path` from `dict`, and any table it leaves empty.
fn remove_path(dict: &mut Dict, path: &[&str]) {
    match path {
        [] => {}
        [last] => {
            dict.remove(*last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Dict(_, inner)) = dict.get_mut(*first) {
                remove_path(inner, rest);
                if inner.is_empty() {
                    dict.remove(*first);
                }
            }
        }
    }
}

/// One value still set to the example's placeholder.
#[derive(Debug)]
pub struct Placeholder {
    pub key: String,
    pub source_name: String,
}

impl std::fmt::Display for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is still the example's placeholder ({}): delete that line \
             and set the real value, e.g. with {}",
            self.key,
            self.source_name,
            env_var_name(&self.key)
        )?;
        if is_secret(&self.key) {
            write!(f, " or {}{FILE_SUFFIX}", self.key)?;
        }
        Ok(())
    }
}

/// Whether `key` holds a secret (and so may come from a file).
pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.iter().any(|pattern| matches(pattern, key))
        || SECRET_TABLES.iter().any(|table| {
            key.strip_prefix(table)
                .is_some_and(|rest| rest.starts_with('.'))
        })
}

/// Every string value that still starts with [`PLACEHOLDER_PREFIX`].
pub(super) fn placeholders(figment: &Figment) -> Vec<Placeholder> {
    let mut found = Vec::new();
    if let Ok(data) = figment.data() {
        for dict in data.values() {
            collect_placeholders(figment, dict, "", &mut found);
        }
    }
    found
}

fn collect_placeholders(
    figment: &Figment,
    dict: &Dict,
    prefix: &str,
    found: &mut Vec<Placeholder>,
) {
    for (name, value) in dict {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            Value::String(_, text) if text.starts_with(PLACEHOLDER_PREFIX) => {
                found.push(Placeholder {
                    source_name: source_of(figment, value),
                    key,
                });
            }
            Value::Dict(_, inner) => {
                collect_placeholders(figment, inner, &key, found);
            }
            _ => {}
        }
    }
}
