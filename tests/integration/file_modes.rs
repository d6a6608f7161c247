//! Files only the hub can read: the real binary, started with no umask at all so only the
//! modes it sets itself protect its data directory, database and master token.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use crate::support::process::{m3shd, HubProcess};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `m3shd serve` on `data/hub.db` under `dir`, with umask 0 and warnings to `log`.
async fn start(dir: &Path, log: &Path) -> HubProcess {
    let mut command = m3shd();
    command
        .arg("serve")
        .env("M3SHDUP_DATABASE_URL", dir.join("data").join("hub.db"))
        .env("M3SHDUP_ALERTS_ENABLED", "false")
        .env("RUST_LOG", "warn")
        // Plain text, so the warnings can be matched.
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(log).unwrap());
    // SAFETY: umask is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    HubProcess::start(command).await
}

#[actix_web::test]
async fn a_new_hub_keeps_its_directory_and_every_file_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut hub = start(dir.path(), &log).await;
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    for name in ["hub.db", "hub.db-wal", "hub.db-shm", "master.token"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    hub.stop(Duration::from_secs(10)).await;
    let warnings = std::fs::read_to_string(&log).unwrap();
    assert!(!warnings.contains("other users"), "{warnings}");
}

#[actix_web::test]
async fn loose_files_left_from_before_are_reported_and_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for (name, contents) in [("hub.db", ""), ("master.token", "an-old-master-token")] {
        let file = data.join(name);
        std::fs::write(&file, contents).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let log = dir.path().join("log");
    let mut hub = start(dir.path(), &log).await;
    assert_eq!(mode(&data.join("hub.db")), 0o600);
    assert_eq!(mode(&data.join("master.token")), 0o600);
    hub.stop(Duration::from_secs(10)).await;
    let warnings = std::fs::read_to_string(&log).unwrap();
    for name in ["hub.db", "master.token"] {
        let line = warnings
            .lines()
            .find(|l| l.contains("other users") && l.contains(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no warning for {name} in:\n{warnings}"));
        assert!(line.contains("WARN") && line.contains("mode=644"), "{line}");
    }
}
