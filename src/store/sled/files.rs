//! The data dir holds every tenant's records, the key hashes and `operator.key`: only the
//! user the server runs as may read it. The dir is 0700 and every file in it 0600.
//!
//! sled creates its files (`db`, `conf`, `blobs/`, snapshots) whenever it likes, with the
//! process umask and no hook to set a mode. So the binary sets the umask to 0o077 first
//! thing (`restrict_new_files`, in `main`): whatever it creates later, in the data dir or a
//! backup, is its owner's alone. Every open of a data dir makes it 0700 and tightens what an
//! earlier build left (0755 and 0644) to 0700/0600 (`private_data_dir`).

use std::path::Path;

/// Owner-only modes.
#[cfg(unix)]
const PRIVATE_DIR: u32 = 0o700;
#[cfg(unix)]
const PRIVATE_FILE: u32 = 0o600;

/// From now on, files and dirs this process creates are readable by their owner only.
/// Process-wide (umask has no per-thread form); the server and the commands have nothing to
/// create for anyone else.
pub fn restrict_new_files() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (and missing parents) as 0700, or, when it exists, makes it 0700 and every
/// file under it 0600. Symbolic links are left alone: their targets are not the data dir's.
/// The names it creates are made durable (their parents fsync'd): a power cut must not take
/// away a data dir whose database has been written and answered from.
pub fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(PRIVATE_DIR);
    }
    let parents = missing_ancestors(dir);
    builder.create(dir)?;
    parents.iter().try_for_each(|parent| sync_path(parent))?;
    tighten(dir)
}

/// Creates the new dir `dir` (its parent must exist) as 0700, whatever the umask.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(PRIVATE_DIR);
    }
    builder.create(dir)
}

#[cfg(unix)]
fn tighten(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::symlink_metadata(path)?;
    let kind = metadata.file_type();
    let wanted = if kind.is_dir() {
        PRIVATE_DIR
    } else if kind.is_file() {
        PRIVATE_FILE
    } else {
        return Ok(());
    };
    if metadata.permissions().mode() & 0o7777 != wanted {
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)) {
            // Not the owner (a dir shared through its group): the server can still use it,
            // so say so rather than refuse to start.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => log::warn!(
                "cannot make {} readable by its owner only: {e}",
                path.display()
            ),
            other => other?,
        }
    }
    if kind.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Whether `dir` holds a database (sled's file `db`), telling "there is none" apart from
/// "it cannot be read": a permission problem or a file where a dir should be is an error
/// that names the path and the cause, never "no database".
pub fn has_database(dir: &Path) -> Result<bool, String> {
    let file = dir.join("db");
    match std::fs::metadata(&file) {
        Ok(metadata) if metadata.is_file() => Ok(true),
        Ok(_) => Err(format!(
            "{} is not a file: it is not a registrar database",
            file.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::metadata(dir) {
            Ok(metadata) if metadata.is_dir() => Ok(false),
            Ok(_) => Err(format!("{} is not a directory", dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("cannot read {}: {e}", dir.display())),
        },
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

/// Removes the snapshot files sled left unfinished in `dir` (`snap.<lsn>.generating`) and
/// says how many there were. Call it only while no process has the database open
/// ([`remove_unfinished_snapshots_if_unused`]).
///
/// sled 0.34 writes a snapshot of its page table each time it opens a database (and only
/// then): to `snap.<lsn>.generating`, fsynced, then renamed to `snap.<lsn>`, and only after the
/// rename are older snapshots removed. An open that fails midway (a full disk, a kill) leaves
/// the `.generating` file, and sled's next open reads it as the newest snapshot, because it
/// takes every file whose name starts with `snap.`: an empty or partial one fails that open
/// with "Read corrupted data" (issue 18), though nothing is lost. Removing it is safe: the
/// older snapshot it was to replace is still there (or there was none, and sled replays the
/// log from its start), and nothing was written to the log after the snapshot was started.
pub fn remove_unfinished_snapshots(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())?;
            log::warn!(
                "removed {}, a snapshot an earlier open of the database left unfinished",
                entry.path().display()
            );
            removed += 1;
        }
    }
    if removed > 0 {
        sync_path(dir)?;
    }
    Ok(removed)
}

/// [`remove_unfinished_snapshots`] under the lock sled takes on `<dir>/db` (an exclusive
/// `flock`): when another process has the database open, nothing is touched and this answers
/// `Ok(false)`. Without a database file there is nothing to clean.
pub fn remove_unfinished_snapshots_if_unused(dir: &Path) -> std::io::Result<bool> {
    let file = match std::fs::OpenOptions::new().read(true).open(dir.join("db")) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    #[cfg(unix)]
    {
        use rustix::fs::{flock, FlockOperation};
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(false);
        }
    }
    remove_unfinished_snapshots(dir)?;
    // Closing the file releases the lock.
    drop(file);
    Ok(true)
}

/// The file in the data dir, beside sled's, that says which stored format this build wrote
/// (one line, the format number). Written once a database has been opened and set up, so it
/// also says "registrar has used this database": sled reads a log file cut to nothing as a
/// new, empty database, and without this file that could not be told apart from a new data
/// dir (`Store::open`). Being outside sled's files, it is read before sled is opened: an
/// older build refuses a newer build's dir without touching it.
pub const FORMAT_FILE: &str = "registrar-format";

/// The stored format the data dir's [`FORMAT_FILE`] records; `None` without one.
pub fn read_format_file(dir: &Path) -> std::io::Result<Option<u8>> {
    match std::fs::read_to_string(dir.join(FORMAT_FILE)) {
        Ok(text) => text.trim().parse::<u8>().map(Some).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold a format number",
                    dir.join(FORMAT_FILE).display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records `format` in the data dir's [`FORMAT_FILE`], durably: a temp file, fsync, rename,
/// fsync of the dir.
pub fn write_format_file(dir: &Path, format: u8) -> std::io::Result<()> {
    use std::io::Write;
    let temp = dir.join(format!(".{FORMAT_FILE}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    writeln!(file, "{format}")?;
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(FORMAT_FILE))?;
    sync_path(dir)
}

/// Makes what was written to `path` (a file, or a dir's entries) durable.
pub fn sync_path(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// The directories whose entries gain a name when `dir` is created with its missing parents:
/// the parent of each missing one, nearest first. Empty when `dir` exists.
fn missing_ancestors(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut parents = Vec::new();
    let mut missing = dir;
    while std::fs::symlink_metadata(missing).is_err() {
        let parent = match missing.parent() {
            Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
            Some(parent) => parent,
            None => break,
        };
        parents.push(parent.to_owned());
        missing = parent;
    }
    parents
}

/// `sync_path` on every file and dir under `dir`, and `dir` itself last.
pub fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            sync_path(&entry.path())?;
        }
    }
    sync_path(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_open_data_dir_of_an_earlier_build_is_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("db");
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        std::fs::write(dir.join("db"), b"x").unwrap();
        std::fs::write(dir.join("blobs/1"), b"x").unwrap();
        for (path, m) in [
            (dir.clone(), 0o755),
            (dir.join("blobs"), 0o755),
            (dir.join("db"), 0o644),
            (dir.join("blobs/1"), 0o644),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
        }
        private_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("blobs")), 0o700);
        assert_eq!(mode(&dir.join("db")), 0o600);
        assert_eq!(mode(&dir.join("blobs/1")), 0o600);
    }

    #[test]
    fn a_new_data_dir_is_made_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}

/// Checks that `to` can receive a backup: it does not exist, or is an empty directory.
pub fn check_backup_target(to: &Path) -> Result<(), String> {
    match std::fs::read_dir(to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot read {}: {e}", to.display())),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!(
                "{} is not empty: a backup goes into a new or empty directory",
                to.display()
            )),
        },
    }
}
