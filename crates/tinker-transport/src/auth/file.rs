//! `~/.tinker/credentials.json`, the key store written by `tinker auth login` (§1.3).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::TransportError;

/// One stored key. Only the fields the transport needs are typed; the rest of the record
/// (`note`, `details`, …) is kept verbatim so a rewrite does not lose it.
#[derive(Clone)]
#[non_exhaustive]
pub struct StoredKey {
    /// The key id the record is stored under.
    pub id: String,
    /// The API key.
    pub key: SecretString,
    /// `"manual"` or `"generated"`.
    pub kind: String,
    /// The key's display name.
    pub name: String,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish()
    }
}

#[derive(Serialize, Deserialize, Default)]
struct FileV1 {
    #[serde(default = "one")]
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    #[serde(default)]
    keys: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

fn one() -> u32 {
    1
}

/// The credentials file: read by credential resolution, written (mode 0600, directory
/// 0700, atomic rename) by the CLI.
#[derive(Debug, Clone)]
pub struct CredentialsFile {
    path: PathBuf,
}

impl CredentialsFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `~/.tinker/credentials.json` under the environment's home directory.
    pub fn default_path(env: &Env) -> Option<PathBuf> {
        Some(env.home_dir()?.join(".tinker").join("credentials.json"))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<FileV1, TransportError> {
        let raw = match std::fs::read(&self.path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileV1::default()),
            Err(e) => {
                return Err(TransportError::credential(format!(
                    "could not read {}: {e}",
                    self.path.display()
                )));
            }
        };
        // The serde error message could quote file content; report only its position.
        serde_json::from_slice(&raw).map_err(|e| {
            TransportError::credential(format!(
                "{} is not a valid credentials file (line {}, column {})",
                self.path.display(),
                e.line(),
                e.column()
            ))
        })
    }

    fn record(id: &str, fields: &serde_json::Map<String, serde_json::Value>) -> Option<StoredKey> {
        let text = |k: &str| {
            fields
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let key = fields.get("key")?.as_str()?;
        Some(StoredKey {
            id: id.to_owned(),
            key: SecretString::from(key.to_owned()),
            kind: {
                let t = text("type");
                if t.is_empty() { "manual".to_owned() } else { t }
            },
            name: text("name"),
        })
    }

    /// The default key, or `None` when no default is set or it names a missing key.
    pub fn default_key(&self) -> Result<Option<StoredKey>, TransportError> {
        let file = self.load()?;
        Ok(file
            .default
            .as_deref()
            .and_then(|id| Some((id, file.keys.get(id)?)))
            .and_then(|(id, fields)| Self::record(id, fields)))
    }

    /// Every stored key.
    pub fn keys(&self) -> Result<Vec<StoredKey>, TransportError> {
        let file = self.load()?;
        Ok(file
            .keys
            .iter()
            .filter_map(|(id, fields)| Self::record(id, fields))
            .collect())
    }

    /// Stores (or replaces) a manual key under `id`, optionally making it the default.
    pub fn add_key(
        &self,
        id: &str,
        key: &SecretString,
        name: &str,
        make_default: bool,
    ) -> Result<(), TransportError> {
        let mut file = self.load()?;
        let mut fields = serde_json::Map::new();
        fields.insert("type".into(), "manual".into());
        fields.insert("key".into(), key.expose_secret().into());
        fields.insert("name".into(), name.into());
        file.keys.insert(id.to_owned(), fields);
        if make_default {
            file.default = Some(id.to_owned());
        }
        self.save(&file)
    }

    /// Removes the key `id` (clearing the default if it pointed there); false if absent.
    pub fn delete_key(&self, id: &str) -> Result<bool, TransportError> {
        let mut file = self.load()?;
        if file.keys.remove(id).is_none() {
            return Ok(false);
        }
        if file.default.as_deref() == Some(id) {
            file.default = None;
        }
        self.save(&file)?;
        Ok(true)
    }

    fn save(&self, file: &FileV1) -> Result<(), TransportError> {
        let fail = |e: std::io::Error| {
            TransportError::credential(format!("could not write {}: {e}", self.path.display()))
        };
        let dir = self
            .path
            .parent()
            .ok_or_else(|| TransportError::credential("credentials path has no directory"))?;
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(fail)?;
            set_mode(dir, 0o700).map_err(fail)?;
        }
        let json = serde_json::to_vec_pretty(file).map_err(|e| {
            TransportError::credential(format!("could not encode credentials: {e}"))
        })?;
        // Write a private temp file then rename it over the target: readers never see a
        // partial or world-readable file.
        let tmp = dir.join(format!(
            ".{}.{}",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("credentials"),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            let mut f = open_private(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(fail)
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let file = CredentialsFile::new(dir.path().join("sub/.tinker/credentials.json"));
        assert!(file.default_key().unwrap().is_none());
        file.add_key("k1", &SecretString::from("tml-one".to_owned()), "cli", true)
            .unwrap();
        let got = file.default_key().unwrap().unwrap();
        assert_eq!(got.key.expose_secret(), "tml-one");
        assert_eq!(got.id, "k1");
        assert!(!format!("{got:?}").contains("tml-one"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(file.path().parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        assert!(file.delete_key("k1").unwrap());
        assert!(file.default_key().unwrap().is_none());
    }

    #[test]
    fn reads_the_sdk_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        std::fs::write(
            &path,
            r#"{"version":1,"default":"a","keys":{"a":{"type":"generated","key":"tml-x","name":"n",
               "details":{"org_details":{"name":"o"},"user_details":{"email":"e"}}}}}"#,
        )
        .unwrap();
        let k = CredentialsFile::new(&path).default_key().unwrap().unwrap();
        assert_eq!(k.kind, "generated");
        assert_eq!(k.key.expose_secret(), "tml-x");
    }
}
