//! `tinker checkpoint download`: training checkpoints go through a temporary external
//! weights export (§6.11); every file streams into a private temp folder next to the
//! target, which is renamed into place only when the whole checkpoint is there.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use chrono::Utc;
use tinker_client::{CloseStatus, LoadStateOptions, RestClient, ServiceClient};
use tinker_types::CheckpointKind;

use crate::commands::checkpoint::check_path;
use crate::download;
use crate::error::CliError;
use crate::output::{self, Format, Properties};
use crate::{archive, connect};

const DOWNLOADABLE: &str = "Only training (tinker://run-id/weights/name) and external weights \
     (tinker://run-id/external_weights/name) checkpoints can be downloaded.";
/// TTL of the temporary export of a training checkpoint (renewed when URLs are re-signed).
const EXPORT_TTL_SECONDS: u64 = 3600;
/// Signed URLs this close to expiry are fetched again before use.
const RESIGN_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// A relative file name from the server, checked to stay inside the folder.
fn safe_relative(rel: &str) -> Result<PathBuf, CliError> {
    let path = Path::new(rel);
    let ok = !rel.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(CliError::new(format!(
            "The server named a file outside the checkpoint folder: {rel:?}"
        )))
    }
}

/// Downloads an external-weights export into `dir` (an empty private folder); returns the
/// bytes written. `renew_ttl` also resets the export's TTL whenever URLs are re-signed.
async fn external(
    client: &RestClient,
    path: &str,
    dir: &Path,
    renew_ttl: bool,
    show: bool,
) -> Result<u64, CliError> {
    let mut urls = client.get_external_weights_urls(path).await?;
    if urls.urls.is_empty() {
        return Err(CliError::new(format!(
            "External weights checkpoint has no files: {path}"
        )));
    }
    // Every name is checked before anything is written.
    let files: BTreeMap<String, PathBuf> = urls
        .urls
        .keys()
        .map(|rel| Ok((rel.clone(), safe_relative(rel)?)))
        .collect::<Result<_, CliError>>()?;
    let bar = download::progress(Some(0), "Downloading", show);
    let mut total = 0;
    for (rel, local) in &files {
        if urls.expires - Utc::now() < RESIGN_MARGIN {
            if renew_ttl {
                client
                    .set_checkpoint_ttl_from_tinker_path(path, Some(EXPORT_TTL_SECONDS))
                    .await?;
            }
            urls = client.get_external_weights_urls(path).await?;
        }
        let url = urls
            .urls
            .get(rel)
            .ok_or_else(|| CliError::new(format!("The server no longer lists {rel}")))?;
        let target = dir.join(local);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::io(&format!("creating {}", parent.display()), &e))?;
        }
        bar.set_message(rel.clone());
        total += download::fetch(url, &target, &bar).await?;
    }
    bar.finish_and_clear();
    Ok(total)
}

/// Exports a training checkpoint as temporary external weights, downloads them, deletes
/// the export and closes the session (`success` or `errored`).
async fn training(
    client: &RestClient,
    path: &str,
    dir: &Path,
    format: Format,
) -> Result<u64, CliError> {
    if format == Format::Table {
        eprintln!(
            "Exporting {path} as external weights (this starts a training session on the \
             checkpoint's base model)..."
        );
    }
    let service = ServiceClient::builder().build().await?;
    let result = async {
        let mut options = LoadStateOptions::weights_only();
        options.user_metadata = Some(BTreeMap::from([(
            "created_by".to_owned(),
            "tinker checkpoint download".to_owned(),
        )]));
        let tc = service
            .create_training_client_from_state_with(path, options)
            .await?;
        let export = tc
            .save_weights_external_with("download", Some(EXPORT_TTL_SECONDS), Vec::new())
            .await?
            .path;
        let got = external(client, &export, dir, true, format == Format::Table).await;
        if let Err(e) = client.delete_checkpoint_from_tinker_path(&export).await {
            eprintln!(
                "Warning: failed to delete the temporary export {export} ({}); it expires in \
                 {EXPORT_TTL_SECONDS} seconds.",
                e.message()
            );
        }
        got
    }
    .await;
    let status = if result.is_ok() {
        CloseStatus::Success
    } else {
        CloseStatus::Errored
    };
    let _ = service.close(status, None).await;
    result
}

/// Downloads a checkpoint (already checked to be downloadable) into the empty folder
/// `dir` and unpacks any archive in it; returns the bytes downloaded.
pub(crate) async fn into_folder(
    client: &RestClient,
    path: &str,
    dir: &Path,
    format: Format,
) -> Result<u64, CliError> {
    let parsed = downloadable(path)?;
    let bytes = if parsed.kind == CheckpointKind::ExternalWeights {
        external(client, path, dir, false, format == Format::Table).await?
    } else {
        training(client, path, dir, format).await?
    };
    archive::unpack_archives(dir)?;
    Ok(bytes)
}

/// A training or external-weights path; sampler checkpoints are refused.
pub(crate) fn downloadable(path: &str) -> Result<tinker_types::TinkerPath, CliError> {
    let parsed = check_path(path).map_err(|e| CliError::with(e.message, DOWNLOADABLE))?;
    if parsed.kind == CheckpointKind::SamplerWeights {
        return Err(CliError::with(
            format!("Sampler checkpoints cannot be downloaded: {path}"),
            DOWNLOADABLE,
        ));
    }
    Ok(parsed)
}

/// Runs `tinker checkpoint download PATH [-o DIR] [--force]`.
pub(crate) async fn run(
    path: &str,
    output: Option<PathBuf>,
    force: bool,
    format: Format,
) -> Result<(), CliError> {
    downloadable(path)?;
    let parent = match output {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CliError::io(&format!("creating {}", dir.display()), &e))?;
            dir
        }
        None => {
            std::env::current_dir().map_err(|e| CliError::io("reading the current folder", &e))?
        }
    };
    let name = path.trim_start_matches("tinker://").replace('/', "_");
    let target = parent.join(&name);
    if target.symlink_metadata().is_ok() && !force {
        return Err(CliError::with(
            format!("Target directory already exists: {}", target.display()),
            "Use --force to overwrite or choose a different output directory.",
        ));
    }
    let client = connect::rest().await?;
    // Private (0700) and removed on any failure; renamed into place when complete.
    let staging = tempfile::Builder::new()
        .prefix(".tinker-download-")
        .tempdir_in(&parent)
        .map_err(|e| CliError::io(&format!("creating a folder in {}", parent.display()), &e))?;
    let bytes = into_folder(&client, path, staging.path(), format).await?;
    if force {
        match target.symlink_metadata() {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&target),
            Ok(_) => std::fs::remove_file(&target),
            Err(_) => Ok(()),
        }
        .map_err(|e| CliError::io(&format!("removing {}", target.display()), &e))?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, &target) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(CliError::io(&format!("creating {}", target.display()), &e));
    }
    let destination = target.display().to_string();
    let mut json = serde_json::json!({ "checkpoint_path": path, "destination": destination });
    let mut rows = vec![
        ("Checkpoint".into(), path.to_owned()),
        ("Destination".into(), destination),
    ];
    if bytes > 0 {
        json["file_size_bytes"] = bytes.into();
        rows.push(("Size".into(), output::size(bytes)));
    }
    let title = Some(format!("Checkpoint Download: {path}"));
    output::print(&Properties { title, rows, json }, format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_file_names_must_stay_inside_the_folder() {
        assert_eq!(
            safe_relative("sub/adapter_model.safetensors").unwrap(),
            PathBuf::from("sub/adapter_model.safetensors")
        );
        for bad in ["", "../x", "/etc/passwd", "a/../../x", "./x"] {
            assert!(safe_relative(bad).is_err(), "{bad:?} accepted");
        }
    }
}
