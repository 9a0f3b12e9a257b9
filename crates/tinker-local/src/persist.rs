//! Everything that survives a restart: training runs and their checkpoints under the data
//! directory. Layout:
//!
//! ```text
//! <data>/runs/<run id>/run.json                      run metadata + checkpoint index
//! <data>/runs/<run id>/<segment>/<name>/             one checkpoint (PEFT adapter files,
//!                                                    optimizer/ for training checkpoints)
//! <data>/tmp/                                        staging area for atomic writes
//! ```
//!
//! Every file is written to `tmp/` first and renamed into place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The LoRA settings of a run, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LoraRecord {
    pub(crate) rank: usize,
    pub(crate) seed: Option<u64>,
    pub(crate) train_attn: bool,
    pub(crate) train_mlp: bool,
    pub(crate) train_unembed: bool,
}

/// One checkpoint of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointRecord {
    /// `weights/<name>`, `sampler_weights/<name>` or `external_weights/<name>`.
    pub(crate) checkpoint_id: String,
    pub(crate) time: DateTime<Utc>,
    pub(crate) size_bytes: u64,
    pub(crate) public: bool,
    pub(crate) user_metadata: Option<BTreeMap<String, String>>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) has_optimizer: bool,
}

impl CheckpointRecord {
    /// `training`, `sampler` or `external`.
    pub(crate) fn checkpoint_type(&self) -> &'static str {
        checkpoint_type(self.checkpoint_id.split('/').next().unwrap_or(""))
    }
}

/// Maps a path segment to the checkpoint type the API reports.
pub(crate) fn checkpoint_type(segment: &str) -> &'static str {
    match segment {
        "weights" => "training",
        "sampler_weights" => "sampler",
        _ => "external",
    }
}

/// A training run (one per training model, plus copies).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    pub(crate) training_run_id: String,
    pub(crate) session_id: String,
    pub(crate) base_model: String,
    pub(crate) model_owner: String,
    pub(crate) lora: LoraRecord,
    pub(crate) optimizer_config: serde_json::Value,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) last_request_time: DateTime<Utc>,
    pub(crate) user_metadata: Option<BTreeMap<String, String>>,
    pub(crate) project_id: Option<String>,
    pub(crate) corrupted: bool,
    pub(crate) checkpoints: Vec<CheckpointRecord>,
}

/// Splits `tinker://<run>/<segment>/<name>` into its parts.
pub(crate) fn parse_tinker_path(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("tinker://")?;
    let mut parts = rest.split('/');
    let (run, segment, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || run.is_empty()
        || !matches!(segment, "weights" | "sampler_weights" | "external_weights")
        || !valid_name(name)
    {
        return None;
    }
    Some((run.to_owned(), segment.to_owned(), name.to_owned()))
}

/// Checkpoint names become directory names: keep them tame.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '+' | '='))
}

/// Run ids are server-made (`<session>:train:<n>`), but they also arrive in URLs.
fn valid_run_id(id: &str) -> bool {
    valid_name(id)
}

/// The on-disk store.
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    runs: Mutex<BTreeMap<String, RunRecord>>,
    /// Runs whose `last_request_time` moved since their `run.json` was last written.
    touched: Mutex<BTreeSet<String>>,
}

impl Store {
    /// Opens (creating if needed) the data directory and loads every run.
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("runs"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            // Leftovers of writes interrupted by a crash: never visible, safe to drop.
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let mut runs = BTreeMap::new();
        for entry in fs::read_dir(root.join("runs"))? {
            let entry = entry?;
            let file = entry.path().join("run.json");
            let Ok(bytes) = fs::read(&file) else { continue };
            match serde_json::from_slice::<RunRecord>(&bytes) {
                Ok(mut run) => {
                    // Drop index entries whose files are gone.
                    let dir = entry.path();
                    run.checkpoints
                        .retain(|c| dir.join(&c.checkpoint_id).is_dir());
                    runs.insert(run.training_run_id.clone(), run);
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "skipping unreadable run");
                }
            }
        }
        Ok(Self {
            root: root.to_owned(),
            runs: Mutex::new(runs),
            touched: Mutex::new(BTreeSet::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, RunRecord>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh, empty staging directory (renamed into place by [`Store::commit_checkpoint`]).
    pub(crate) fn staging_dir(&self) -> io::Result<PathBuf> {
        let dir = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Directory of a run.
    fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    /// Directory of a checkpoint (whether or not it exists).
    pub(crate) fn checkpoint_dir(&self, run_id: &str, checkpoint_id: &str) -> PathBuf {
        self.run_dir(run_id).join(checkpoint_id)
    }

    /// Adds a run and writes its metadata.
    pub(crate) fn insert_run(&self, run: RunRecord) -> io::Result<()> {
        if !valid_run_id(&run.training_run_id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad run id"));
        }
        fs::create_dir_all(self.run_dir(&run.training_run_id))?;
        self.write_run(&run)?;
        self.lock().insert(run.training_run_id.clone(), run);
        Ok(())
    }

    fn write_run(&self, run: &RunRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(run).map_err(io::Error::other)?;
        self.write_atomic(&self.run_dir(&run.training_run_id).join("run.json"), &bytes)
    }

    /// Writes a file atomically (staging file + fsync + rename).
    pub(crate) fn write_atomic(&self, target: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.part", uuid::Uuid::new_v4()));
        {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, target)
    }

    /// A copy of a run's record.
    pub(crate) fn run(&self, run_id: &str) -> Option<RunRecord> {
        self.lock().get(run_id).cloned()
    }

    /// Every run.
    pub(crate) fn runs(&self) -> Vec<RunRecord> {
        self.lock().values().cloned().collect()
    }

    /// Records that a run served a request at `time`, in memory only: the time reaches
    /// `run.json` with the run's next write or [`Store::flush_touched`] (the sweeper's tick,
    /// shutdown). Writing it here would put an fsync on every training step, which costs more
    /// than a small step itself; after a crash the stored time may be up to a second old.
    pub(crate) fn touch_run(&self, run_id: &str, time: DateTime<Utc>) {
        if let Some(run) = self.lock().get_mut(run_id) {
            run.last_request_time = time;
            self.touched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(run_id.to_owned());
        }
    }

    /// Writes the `run.json` of every run touched since the last flush.
    pub(crate) fn flush_touched(&self) -> io::Result<()> {
        let touched = std::mem::take(&mut *self.touched.lock().unwrap_or_else(|p| p.into_inner()));
        for run_id in touched {
            // The lock is held across the write, as in `update_run`, so an older copy never
            // overwrites a newer one.
            let runs = self.lock();
            if let Some(run) = runs.get(&run_id) {
                self.write_run(run)?;
            }
        }
        Ok(())
    }

    /// Applies `f` to a run and persists the result.
    pub(crate) fn update_run<T>(
        &self,
        run_id: &str,
        f: impl FnOnce(&mut RunRecord) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        let mut runs = self.lock();
        let Some(run) = runs.get_mut(run_id) else {
            return Ok(None);
        };
        let mut copy = run.clone();
        let out = f(&mut copy)?;
        self.write_run(&copy)
            .map_err(|e| format!("writing run metadata: {e}"))?;
        *run = copy;
        Ok(Some(out))
    }

    /// Moves a fully written staging directory into place as checkpoint `record` of `run_id`
    /// (replacing an existing one of the same id) and indexes it.
    pub(crate) fn commit_checkpoint(
        &self,
        run_id: &str,
        staged: &Path,
        record: CheckpointRecord,
    ) -> Result<(), String> {
        let target = self.checkpoint_dir(run_id, &record.checkpoint_id);
        let io_err = |what: &str, e: io::Error| format!("{what}: {e}");
        let mut runs = self.lock();
        let Some(run) = runs.get_mut(run_id) else {
            return Err(format!("training run {run_id} does not exist"));
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err("creating checkpoint dir", e))?;
        }
        if target.exists() {
            let trash = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
            fs::rename(&target, &trash).map_err(|e| io_err("replacing checkpoint", e))?;
            let _ = fs::remove_dir_all(&trash);
        }
        fs::rename(staged, &target).map_err(|e| io_err("moving checkpoint into place", e))?;
        let mut copy = run.clone();
        copy.checkpoints
            .retain(|c| c.checkpoint_id != record.checkpoint_id);
        copy.last_request_time = Utc::now();
        copy.checkpoints.push(record);
        self.write_run(&copy)
            .map_err(|e| io_err("writing run metadata", e))?;
        *run = copy;
        Ok(())
    }

    /// Deletes a checkpoint (files and index entry). Returns false if it did not exist.
    pub(crate) fn delete_checkpoint(
        &self,
        run_id: &str,
        checkpoint_id: &str,
    ) -> Result<bool, String> {
        let found = self.update_run(run_id, |run| {
            let before = run.checkpoints.len();
            run.checkpoints.retain(|c| c.checkpoint_id != checkpoint_id);
            Ok(before != run.checkpoints.len())
        })?;
        if found == Some(true) {
            let dir = self.checkpoint_dir(run_id, checkpoint_id);
            let trash = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
            if fs::rename(&dir, &trash).is_ok() {
                let _ = fs::remove_dir_all(&trash);
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Removes every checkpoint whose TTL has passed; returns `(run, checkpoint id)` pairs.
    pub(crate) fn expire(&self, now: DateTime<Utc>) -> Vec<(String, String)> {
        let expired: Vec<(String, String)> = self
            .lock()
            .values()
            .flat_map(|run| {
                run.checkpoints
                    .iter()
                    .filter(|c| c.expires_at.is_some_and(|t| t <= now))
                    .map(|c| (run.training_run_id.clone(), c.checkpoint_id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (run, ckpt) in &expired {
            if let Err(e) = self.delete_checkpoint(run, ckpt) {
                tracing::warn!(run, ckpt, error = %e, "could not expire checkpoint");
            }
        }
        expired
    }
}

/// Total size of the files below `dir`.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Files below `dir` as sorted relative paths (`/`-separated).
pub(crate) fn list_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if let Ok(rel) = path.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Recursively copies a directory.
pub(crate) fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tinker_paths() {
        assert_eq!(
            parse_tinker_path("tinker://s:train:0/weights/step-1"),
            Some(("s:train:0".into(), "weights".into(), "step-1".into()))
        );
        assert!(parse_tinker_path("tinker://s:train:0/other/x").is_none());
        assert!(parse_tinker_path("tinker://s/weights/..").is_none());
        assert!(parse_tinker_path("tinker://s/weights/a/b").is_none());
        assert!(parse_tinker_path("s/weights/a").is_none());
    }

    fn run(id: &str, time: DateTime<Utc>) -> RunRecord {
        RunRecord {
            training_run_id: id.to_owned(),
            session_id: "s".to_owned(),
            base_model: "m".to_owned(),
            model_owner: "owner".to_owned(),
            lora: LoraRecord {
                rank: 4,
                seed: None,
                train_attn: true,
                train_mlp: true,
                train_unembed: false,
            },
            optimizer_config: serde_json::Value::Null,
            created_at: time,
            last_request_time: time,
            user_metadata: None,
            project_id: None,
            corrupted: false,
            checkpoints: Vec::new(),
        }
    }

    #[test]
    fn a_touched_run_reaches_disk_at_the_flush_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let created = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let later = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let store = Store::open(dir.path()).unwrap();
        store.insert_run(run("s:train:0", created)).unwrap();
        store.touch_run("s:train:0", later);
        store.touch_run("no-such-run", later);
        assert_eq!(store.run("s:train:0").unwrap().last_request_time, later);
        let on_disk = || {
            Store::open(dir.path())
                .unwrap()
                .run("s:train:0")
                .unwrap()
                .last_request_time
        };
        assert_eq!(on_disk(), created, "touching must not write");
        store.flush_touched().unwrap();
        assert_eq!(on_disk(), later);
    }
}
