//! Locating the anvil binary shipped by the `@foundry-rs/anvil-linux-amd64`
//! npm package (installed with `npm ci --ignore-scripts`).

use std::path::{Path, PathBuf};

/// Environment variable that overrides the anvil location.
pub const ANVIL_BIN_ENV: &str = "ANVIL_BIN";

/// Where the npm package puts the binary, relative to the repository root.
pub const NPM_ANVIL_PATH: &str =
    "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnvilNotFound {
    #[error("{ANVIL_BIN_ENV} points to {path}, which is not a file")]
    EnvPathMissing { path: PathBuf },
    #[error(
        "anvil not found: no {NPM_ANVIL_PATH} above {} or {}; run \
         `npm ci --ignore-scripts` at the repository root, or set \
         {ANVIL_BIN_ENV}",
        manifest_dir.display(),
        current_dir.as_deref().map_or_else(
            || "<unknown current dir>".into(),
            |dir| dir.display().to_string()
        )
    )]
    NotInstalled {
        manifest_dir: PathBuf,
        current_dir: Option<PathBuf>,
    },
}

/// The anvil binary: `$ANVIL_BIN` if set, else the npm package's binary
/// found by walking up from this crate's manifest dir, then from the current
/// dir.
pub fn anvil_binary() -> Result<PathBuf, AnvilNotFound> {
    if let Some(path) = std::env::var_os(ANVIL_BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(AnvilNotFound::EnvPathMissing { path })
        };
    }

    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let current_dir = std::env::current_dir().ok();
    find_upwards(&manifest_dir)
        .or_else(|| current_dir.as_deref().and_then(find_upwards))
        .ok_or(AnvilNotFound::NotInstalled {
            manifest_dir,
            current_dir,
        })
}

fn find_upwards(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(NPM_ANVIL_PATH))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_npm_binary_from_a_nested_directory() {
        let root = tempfile::tempdir().unwrap();
        let binary = root.path().join(NPM_ANVIL_PATH);
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        std::fs::write(&binary, b"").unwrap();
        let nested = root.path().join("crates/x/src");
        std::fs::create_dir_all(&nested).unwrap();

        assert_eq!(find_upwards(&nested), Some(binary));
    }

    #[test]
    fn reports_nothing_when_no_ancestor_has_the_binary() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(find_upwards(root.path()), None);
    }

    #[test]
    fn not_installed_message_tells_how_to_install() {
        let err = AnvilNotFound::NotInstalled {
            manifest_dir: PathBuf::from("/repo/crates/receipt-vault"),
            current_dir: None,
        };
        assert!(err.to_string().contains("npm ci --ignore-scripts"));
    }
}
