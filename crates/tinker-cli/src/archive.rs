//! Safe unpacking of checkpoint tar archives (the v0.25 download format, still found in
//! older exports): every entry is checked before it is written, so an archive cannot
//! write outside its folder, through a link, or as a link that points out.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::CliError;

/// Unpacks every `*.tar` file directly inside `dir` into `dir`, then removes the archive.
pub(crate) fn unpack_archives(dir: &Path) -> Result<(), CliError> {
    let entries =
        fs::read_dir(dir).map_err(|e| CliError::io(&format!("reading {}", dir.display()), &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CliError::io(&format!("reading {}", dir.display()), &e))?;
        let path = entry.path();
        let is_tar = path.extension().is_some_and(|x| x == "tar")
            && entry.file_type().is_ok_and(|t| t.is_file());
        if is_tar {
            let file = fs::File::open(&path)
                .map_err(|e| CliError::io(&format!("opening {}", path.display()), &e))?;
            unpack(file, dir).map_err(|e| {
                CliError::with(
                    format!("Refused the archive {}", path.display()),
                    e.to_string(),
                )
            })?;
            fs::remove_file(&path)
                .map_err(|e| CliError::io(&format!("removing {}", path.display()), &e))?;
        }
    }
    Ok(())
}

/// A relative path made only of normal components.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn refuse(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Unpacks a tar stream into `dest`: regular files and folders only, relative paths without
/// `..`, no links (a link could later redirect a write), no entry written twice.
pub(crate) fn unpack(reader: impl io::Read, dest: &Path) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let rel = inside(&raw).ok_or_else(|| refuse(format!("unsafe path {}", raw.display())))?;
        let target = dest.join(&rel);
        // No parent may be a link (made by an earlier entry or present already).
        let mut walk = dest.to_path_buf();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            walk.push(part);
            if walk.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                return Err(refuse(format!(
                    "{} goes through a non-folder",
                    raw.display()
                )));
            }
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&target)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)?;
                io::copy(&mut entry, &mut out)?;
            }
            other => {
                return Err(refuse(format!(
                    "{} is a {other:?} entry (links are refused)",
                    raw.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &[u8], data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        // Written raw so names the builder would refuse (`..`, absolute) can be tested.
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn unpacks_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let tar = archive(|b| {
            file(b, b"adapter_config.json", b"{}");
            file(b, b"sub/adapter_model.safetensors", b"weights");
        });
        unpack(&tar[..], dir.path()).unwrap();
        assert_eq!(
            fs::read(dir.path().join("sub/adapter_model.safetensors")).unwrap(),
            b"weights"
        );
    }

    #[test]
    fn refuses_escapes_and_links() {
        for (name, tar) in [
            ("parent", archive(|b| file(b, b"../evil", b"x"))),
            ("absolute", archive(|b| file(b, b"/tmp/evil", b"x"))),
            (
                "symlink",
                archive(|b| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, "link", "/etc").unwrap();
                }),
            ),
            (
                "hardlink",
                archive(|b| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, "hard", "/etc/passwd").unwrap();
                }),
            ),
            (
                "twice",
                archive(|b| {
                    file(b, b"a", b"1");
                    file(b, b"a", b"2");
                }),
            ),
        ] {
            let root = tempfile::tempdir().unwrap();
            let dest = root.path().join("dest");
            fs::create_dir(&dest).unwrap();
            assert!(unpack(&tar[..], &dest).is_err(), "{name} was accepted");
            assert!(!root.path().join("evil").exists(), "{name} escaped");
            assert!(
                !dest.join("link").exists() && !dest.join("hard").exists(),
                "{name}"
            );
        }
    }

    #[test]
    fn refuses_writing_through_an_existing_link() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let outside = root.path().join("outside");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(&outside).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
        let tar = archive(|b| file(b, b"sub/x", b"x"));
        #[cfg(unix)]
        {
            assert!(unpack(&tar[..], &dest).is_err());
            assert!(!outside.join("x").exists());
        }
    }
}
