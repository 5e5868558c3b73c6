//! Where the values came from: the manifest's text, the flags, the
//! environment's layer; so that an error names the flag, the variable or
//! the manifest's line that set the value, and a path resolves against the
//! working directory or the manifest's folder.

use camino::{Utf8Path, Utf8PathBuf};

use crate::cli::Overrides;
use crate::manifest::keys::{self, env_name};
use crate::manifest::{ManifestError, line_of_key};
use crate::roots::{self, Resolved};

/// Where the values came from: the manifest's text, the flags, the
/// environment's layer.
pub(in crate::manifest) struct Origins<'a> {
    pub manifest: &'a Utf8Path,
    pub text: &'a str,
    pub overrides: &'a Overrides,
    pub env: &'a toml::Table,
}

impl Origins<'_> {
    /// Whether `key` was set by a flag or a `JOBRUN_*` variable.
    pub(super) fn set_outside(&self, key: &str) -> bool {
        self.overrides.given(key) || self.env.contains_key(key)
    }

    /// `key`'s value is refused for `reason`: named by the flag or the
    /// variable that set it, else by the manifest's line.
    pub fn invalid(&self, key: &'static str, reason: String) -> ManifestError {
        if self.overrides.given(key) {
            ManifestError::Override {
                key: key.into(),
                origin: format!("flag `{}`", keys::flag_name(key)),
                message: reason,
            }
        } else if self.env.contains_key(key) {
            ManifestError::Override {
                key: key.into(),
                origin: format!("environment variable `{}`", env_name(key)),
                message: reason,
            }
        } else {
            ManifestError::Invalid {
                path: self.manifest.to_owned(),
                line: line_of_key(self.text, key),
                key,
                reason,
            }
        }
    }

    /// A path given by a flag or JOBRUN_* is relative to where the command
    /// ran; one written in the manifest is relative to the manifest.
    pub(super) fn place(
        &self,
        key: &'static str,
        value: String,
    ) -> Result<Utf8PathBuf, ManifestError> {
        if value.trim().is_empty() {
            return Err(self.invalid(key, "empty path".into()));
        }
        let p = Utf8PathBuf::from(value);
        let base = if p.is_absolute() {
            Utf8PathBuf::new()
        } else if self.set_outside(key) {
            Utf8PathBuf::from_path_buf(std::env::current_dir().unwrap_or_else(|_| "/".into()))
                .map_err(|_| self.invalid(key, "working directory is not UTF-8".into()))?
        } else {
            self.manifest
                .parent()
                .unwrap_or(Utf8Path::new("/"))
                .to_owned()
        };
        Ok(base.join(p))
    }

    pub(super) fn required(
        &self,
        key: &'static str,
        v: Option<String>,
    ) -> Result<String, ManifestError> {
        v.ok_or(ManifestError::Missing {
            path: self.manifest.to_owned(),
            key,
        })
    }

    pub(super) fn real(&self, key: &'static str, p: &Utf8Path) -> Result<Resolved, ManifestError> {
        roots::resolve(p).map_err(|e| self.invalid(key, e))
    }
}
