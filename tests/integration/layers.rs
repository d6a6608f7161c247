//! The layering rule of ARCHITECTURE.md: `domain`, `crypto`, `db` and `actors` (and the
//! helpers they use) never import `api`, `startup` or `federation`; lower layers get what
//! they need as arguments, channels or small traits. Checked on the source text, so a new
//! upward import fails here, naming the file and the line.

use std::path::{Path, PathBuf};

/// The modules below the HTTP surface, and what they must not reach.
const LOWER: &[&str] = &[
    "domain",
    "crypto",
    "db",
    "actors",
    "views.rs",
    "alerts.rs",
    "settings.rs",
    "error.rs",
    "metrics.rs",
    "dashboard",
];
const UPPER: &[&str] = &["crate::api", "crate::startup", "crate::federation"];

fn rust_files(path: &Path, found: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), found);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        found.push(path.to_path_buf());
    }
}

#[test]
fn lower_layers_never_import_upper_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for module in LOWER {
        rust_files(&src.join(module), &mut files);
    }
    assert!(
        files.len() > 40,
        "the lower layers were found: {}",
        files.len()
    );
    let mut upward = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if UPPER.iter().any(|upper| line.contains(upper)) {
                upward.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(&src).unwrap().display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up:\n{}",
        upward.join("\n")
    );
}
