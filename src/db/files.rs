//! The data directory and the files the hub keeps there are for the hub's user alone: a
//! directory the hub creates is 0700 and every file 0600, whatever the umask (which can
//! only take bits away, so each mode is also set explicitly afterwards). A file found
//! with a looser mode is tightened, with a warning: it may have been readable by others.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The directory that holds the database file `database_url`; `None` when it is the
/// working directory, which is not the hub's to change.
pub fn data_dir(database_url: &str) -> Option<&Path> {
    Path::new(database_url)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
}

/// Creates `dir` (and missing parents) as 0700. An existing directory is left as it is:
/// it may be shared (`/var/lib`), and the files in it are protected one by one.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

/// Makes sure `file` exists with mode 0600 before anything else (SQLite) opens it, so it
/// is never readable by others, not even for a moment.
pub fn create_private_file(file: &Path) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(file)
        .with_context(|| format!("cannot create {}", file.display()))?;
    tighten(file)
}

/// Writes a new file (it must not exist) readable by the hub's user alone.
pub fn write_private(file: &Path, contents: &str) -> anyhow::Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    out.write_all(contents.as_bytes())?;
    tighten(file)
}

/// Sets 0600 on `file` if it exists, warning when its mode let others in (a missing file
/// is fine: SQLite removes its -wal and -shm when the last connection closes).
pub fn tighten(file: &Path) -> anyhow::Result<()> {
    let Ok(metadata) = std::fs::metadata(file) else {
        return Ok(());
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode == FILE_MODE {
        return Ok(());
    }
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %file.display(),
            mode = %format!("{mode:o}"),
            "the file was readable or writable by other users; setting its mode to 600"
        );
    }
    std::fs::set_permissions(file, Permissions::from_mode(FILE_MODE))
        .with_context(|| format!("cannot set the mode of {}", file.display()))
}

/// The database file and its companions SQLite creates beside it in WAL mode.
pub fn database_files(database_url: &str) -> [std::path::PathBuf; 3] {
    [
        database_url.into(),
        format!("{database_url}-wal").into(),
        format!("{database_url}-shm").into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_private_and_loose_files_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("data");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let db = dir.join("hub.db");
        create_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);

        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        tighten(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        tighten(&dir.join("absent")).unwrap();

        let token = dir.join("master.token");
        write_private(&token, "t").unwrap();
        assert_eq!(mode(&token), 0o600);
        assert!(write_private(&token, "again").is_err(), "never overwrites");
    }

    #[test]
    fn the_working_directory_is_no_data_directory() {
        assert_eq!(data_dir("hub.db"), None);
        assert_eq!(data_dir("data/hub.db"), Some(Path::new("data")));
    }
}
