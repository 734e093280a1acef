//! Why a data dir cannot be served, said so that a person knows what to do, and an exit code
//! of its own for each case, so that a service manager or a script can tell them apart
//! (docs/DURABILITY.md, "Bad data dirs"; `registrar serve --help`).

use crate::store::StoreError;
use std::io::ErrorKind;
use std::path::Path;

/// What is wrong with the data dir. Each has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A file where the dir should be (or a dir where sled's file `db` should be).
    NotADirectory,
    /// The dir is on a read-only file system.
    ReadOnly,
    /// The dir (or a file in it) belongs to another user, or its mode keeps this user out.
    Permission,
    /// A newer build wrote the data (its stored format is newer than this build reads).
    NewerFormat,
    /// sled's files are damaged or truncated.
    Corrupt,
    /// Another process (a running server) has the database open.
    InUse,
    /// No space left to open the database.
    DiskFull,
    /// Any other I/O error on the data dir (exit status 1, as every other failure).
    Other,
}

impl Problem {
    /// Every problem, for the exit-code table.
    pub const ALL: [Problem; 7] = [
        Problem::NotADirectory,
        Problem::ReadOnly,
        Problem::Permission,
        Problem::NewerFormat,
        Problem::Corrupt,
        Problem::InUse,
        Problem::DiskFull,
    ];

    /// The exit status of `registrar serve` that stopped for this problem. 1 stays "any other
    /// failure" and 2 is the command line's (clap's) own.
    pub fn exit_code(self) -> u8 {
        match self {
            Problem::NotADirectory => 10,
            Problem::ReadOnly => 11,
            Problem::Permission => 12,
            Problem::NewerFormat => 13,
            Problem::Corrupt => 14,
            Problem::InUse => 15,
            Problem::DiskFull => 16,
            Problem::Other => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Problem::NotADirectory => "not a directory",
            Problem::ReadOnly => "read-only",
            Problem::Permission => "wrong owner or mode",
            Problem::NewerFormat => "newer stored format",
            Problem::Corrupt => "damaged database",
            Problem::InUse => "in use",
            Problem::DiskFull => "disk full",
            Problem::Other => "cannot be used",
        }
    }
}

/// A data dir that cannot be served: the problem and a message that names the path, the
/// cause and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadDataDir {
    pub problem: Problem,
    pub message: String,
}

impl BadDataDir {
    fn new(problem: Problem, message: String) -> Self {
        BadDataDir { problem, message }
    }
}

/// The checks before the database is opened: what the file system says about `dir`.
/// A dir that does not exist yet is fine (it will be made) if its nearest existing parent can
/// hold it.
pub fn preflight(dir: &Path) -> Result<(), BadDataDir> {
    match std::fs::metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => Err(BadDataDir::new(
            Problem::NotADirectory,
            format!(
                "the data dir {} is a file, not a directory: point --data-dir at the directory \
                 that holds the database (sled's file `db` is inside it), or move the file away \
                 and start again to make a new database there",
                dir.display()
            ),
        )),
        Ok(metadata) => {
            owner(dir, &metadata)?;
            writable(dir)?;
            let db = dir.join("db");
            match std::fs::metadata(&db) {
                Ok(file) if file.is_file() => {
                    owner(&db, &file)?;
                    writable(&db)
                }
                Ok(_) => Err(BadDataDir::new(
                    Problem::NotADirectory,
                    format!(
                        "{} is not a file: it is not a registrar database (sled keeps its data \
                         in a file `db`); point --data-dir at a data dir, or move {} away",
                        db.display(),
                        dir.display()
                    ),
                )),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(from_io(&db, &e).unwrap_or_else(|| other(&db, &e))),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => match dir.parent() {
            // The nearest existing parent decides whether the dir can be made.
            Some(parent) if !parent.as_os_str().is_empty() => match std::fs::metadata(parent) {
                Ok(metadata) if metadata.is_dir() => writable(parent),
                Ok(_) => Err(not_a_directory(dir, parent)),
                Err(e) if e.kind() == ErrorKind::NotFound => preflight_parent(dir, parent),
                Err(e) => Err(from_io(parent, &e).unwrap_or_else(|| other(parent, &e))),
            },
            _ => Ok(()),
        },
        Err(e) => Err(match e.kind() {
            ErrorKind::NotADirectory => {
                let file = dir.ancestors().skip(1).find(|a| a.is_file()).unwrap_or(dir);
                not_a_directory(dir, file)
            }
            _ => from_io(dir, &e).unwrap_or_else(|| other(dir, &e)),
        }),
    }
}

fn preflight_parent(dir: &Path, parent: &Path) -> Result<(), BadDataDir> {
    match preflight(parent) {
        Err(BadDataDir {
            problem: Problem::NotADirectory,
            ..
        }) => {
            let file = dir
                .ancestors()
                .skip(1)
                .find(|a| a.is_file())
                .unwrap_or(parent);
            Err(not_a_directory(dir, file))
        }
        other => other,
    }
}

fn not_a_directory(dir: &Path, file: &Path) -> BadDataDir {
    BadDataDir::new(
        Problem::NotADirectory,
        format!(
            "cannot use the data dir {}: {} is a file, not a directory (Not a directory): \
             point --data-dir at a path under a directory",
            dir.display(),
            file.display()
        ),
    )
}

fn other(path: &Path, e: &std::io::Error) -> BadDataDir {
    BadDataDir::new(
        Problem::Other,
        format!("cannot use {}: {e}", path.display()),
    )
}

/// Root can read and write anything, so the only wrong owner root can see is another user:
/// what root then writes (sled's log, snapshots, `operator.key`) would belong to root, and the
/// server started later as that user could not read its own data dir. Other users meet the
/// owner as a permission error ([`writable`]); a dir shared through a group is theirs to use.
fn owner(path: &Path, metadata: &std::fs::Metadata) -> Result<(), BadDataDir> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if me == 0 && metadata.uid() != 0 {
            return Err(BadDataDir::new(
                Problem::Permission,
                format!(
                    "{} belongs to uid {}, but registrar runs as root: files it made there would \
                     belong to root, and the server run as uid {} could no longer read them. \
                     Start registrar as uid {} (e.g. `sudo -u '#{}' registrar …`), or, if root \
                     is meant to own the data dir, `chown -R root {}`",
                    path.display(),
                    metadata.uid(),
                    metadata.uid(),
                    metadata.uid(),
                    metadata.uid(),
                    path.display()
                ),
            ));
        }
    }
    let _ = (path, metadata);
    Ok(())
}

/// Whether this process may read and write `path`: `access(2)`, which says EROFS for a
/// read-only file system even to root, and EACCES where the owner or mode keeps us out.
fn writable(path: &Path) -> Result<(), BadDataDir> {
    #[cfg(unix)]
    {
        use rustix::fs::{access, Access};
        let wanted = if path.is_dir() {
            Access::READ_OK | Access::WRITE_OK | Access::EXEC_OK
        } else {
            Access::READ_OK | Access::WRITE_OK
        };
        if let Err(errno) = access(path, wanted) {
            let e = std::io::Error::from(errno);
            return Err(from_io(path, &e).unwrap_or_else(|| other(path, &e)));
        }
    }
    let _ = path;
    Ok(())
}

/// The problem an I/O error on `path` stands for, with its message; `None` for the others.
pub fn from_io(path: &Path, e: &std::io::Error) -> Option<BadDataDir> {
    let owner = owner_and_mode(path);
    let problem = match e.kind() {
        ErrorKind::NotADirectory => Problem::NotADirectory,
        ErrorKind::ReadOnlyFilesystem => Problem::ReadOnly,
        ErrorKind::PermissionDenied => Problem::Permission,
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Problem::DiskFull,
        _ => return None,
    };
    let message = match problem {
        Problem::NotADirectory => format!(
            "cannot use the data dir {}: {e}: a part of the path is a file; point --data-dir \
             at a directory",
            path.display()
        ),
        Problem::ReadOnly => format!(
            "the data dir {} is on a read-only file system ({e}): registrar must write to it \
             to serve. Remount it read-write (a file system the kernel remounted read-only \
             after disk errors needs a look at `dmesg` and an fsck first), or copy the data \
             dir to a writable disk and point --data-dir there",
            path.display()
        ),
        Problem::Permission => format!(
            "cannot use {} ({e}){owner}: this user (uid {}) must own the data dir and may \
             read and write it. Start registrar as the data dir's owner, or `chown -R` it to \
             this user and `chmod 700` it",
            path.display(),
            current_uid()
        ),
        Problem::DiskFull => format!(
            "no space left on the disk of the data dir {} ({e}): free some space (or grow \
             the file system) and start again; nothing was changed",
            path.display()
        ),
        _ => unreachable_message(),
    };
    Some(BadDataDir::new(problem, message))
}

fn unreachable_message() -> String {
    "an unexpected data dir problem".into()
}

fn owner_and_mode(path: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            return format!(
                "; it belongs to uid {} with mode {:o}",
                metadata.uid(),
                metadata.mode() & 0o7777
            );
        }
    }
    let _ = path;
    String::new()
}

fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        rustix::process::geteuid().as_raw()
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// The problem a failed open of the database in `dir` stands for; `None` for the others.
pub fn from_store(dir: &Path, e: &StoreError) -> Option<BadDataDir> {
    let (problem, message) = match e {
        StoreError::NewerFormat { found, newest } => (
            Problem::NewerFormat,
            format!(
                "the data dir {} was written by a newer build of registrar, in stored format \
                 {found}; this build reads stored formats 1 to {newest}. Run the newer build \
                 (going back to an older build after a newer one has written is not \
                 supported), or restore a backup this build made",
                dir.display()
            ),
        ),
        StoreError::Corrupt(why) => (
            Problem::Corrupt,
            format!(
                "the database in {} is damaged or truncated ({why}). Keep a copy of the dir as \
                 it is, run `registrar check --data-dir {}` to see what can be read, and \
                 restore the latest backup (docs/DURABILITY.md, \"Backup and restore\")",
                dir.display(),
                dir.display()
            ),
        ),
        StoreError::Locked(_) => (Problem::InUse, e.to_string()),
        StoreError::StorageFull(why) => (
            Problem::DiskFull,
            format!(
                "no space left on the disk of the data dir {} ({why}): free some space (or \
                 grow the file system) and start again; nothing was changed",
                dir.display()
            ),
        ),
        _ => return None,
    };
    Some(BadDataDir::new(problem, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_has_an_exit_code_of_its_own_above_the_generic_ones() {
        let mut codes: Vec<u8> = Problem::ALL.iter().map(|p| p.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Problem::ALL.len());
        assert!(codes.iter().all(|code| *code > 2));
    }

    #[test]
    fn the_help_text_lists_every_exit_code() {
        for problem in Problem::ALL {
            let listed = format!("{} ", problem.exit_code());
            assert!(
                crate::config::SERVE_EXIT_STATUS.contains(&listed),
                "{problem:?}"
            );
        }
    }

    #[test]
    fn a_file_as_the_data_dir_or_above_it_is_not_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            preflight(&file).unwrap_err().problem,
            Problem::NotADirectory
        );
        let under = file.join("db/deeper");
        let refused = preflight(&under).unwrap_err();
        assert_eq!(refused.problem, Problem::NotADirectory);
        assert!(
            refused.message.contains(file.to_str().unwrap()),
            "{refused}"
        );
        assert!(preflight(&root.path().join("new/db")).is_ok());
    }
}
