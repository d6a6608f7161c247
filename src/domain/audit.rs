//! The audit log's hash chain. Each entry's hash is the SHA-256 of the previous entry's hash
//! and its own content, so editing, deleting or reordering a row breaks the chain at that
//! row, whether in the database or in an export. (Whoever can rewrite every later hash can
//! hide an edit; keep a copy of a recent hash elsewhere to rule that out.)

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit entry as exported (one JSON line) and as checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<Value>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// The hash of an entry with this content following `prev`. `detail` is hashed as JSON, so
/// the stored text and an export's object give the same hash.
pub fn link_hash(
    prev: &str,
    id: i64,
    at: &str,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: Option<&Value>,
) -> String {
    // Serialized straight into the hasher (the same bytes as the JSON array
    // `[prev, id, at, actor, action, target, detail]`): every audit row pays for this.
    let mut hasher = Sha256::new();
    let content = (prev, id, at, actor, action, target, detail);
    serde_json::to_writer(&mut hasher, &content).expect("hashing cannot fail to write");
    hex::encode(hasher.finalize())
}

impl AuditEntry {
    /// This entry's hash were it to follow `prev`.
    pub fn hash_after(&self, prev: &str) -> String {
        link_hash(
            prev,
            self.id,
            &self.at,
            &self.actor,
            &self.action,
            self.target.as_deref(),
            self.detail.as_ref(),
        )
    }

    fn expected_hash(&self) -> Option<String> {
        self.prev_hash.as_deref().map(|prev| self.hash_after(prev))
    }
}

/// Where a chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The row has no hash: written outside the hub, or never chained.
    Unchained { id: i64 },
    /// The row's content no longer matches its hash: it was edited.
    Edited { id: i64 },
    /// The row does not follow the one before it: a row was deleted, inserted or moved.
    Unlinked { id: i64, after: Option<i64> },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unchained { id } => write!(f, "row {id} has no hash"),
            Self::Edited { id } => write!(f, "row {id} was changed after it was written"),
            Self::Unlinked { id, after: Some(after) } => write!(
                f,
                "row {id} does not follow row {after}: a row between them was deleted or added, or rows were reordered"
            ),
            Self::Unlinked { id, after: None } => write!(
                f,
                "row {id} is first but does not start the chain: earlier rows were deleted"
            ),
        }
    }
}

/// Checks entries one by one in their order.
#[derive(Debug)]
pub struct ChainCheck {
    last: Option<(i64, String)>,
    pub checked: u64,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainCheck {
    pub fn new() -> Self {
        Self {
            last: None,
            checked: 0,
        }
    }

    /// Checks the next entry: its own hash, and that it follows the previous one.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), Break> {
        let id = entry.id;
        let (Some(hash), Some(expected)) = (entry.hash.as_deref(), entry.expected_hash()) else {
            return Err(Break::Unchained { id });
        };
        if hash != expected {
            return Err(Break::Edited { id });
        }
        let want_prev = self.last.as_ref().map_or(GENESIS, |(_, h)| h.as_str());
        if entry.prev_hash.as_deref() != Some(want_prev) {
            return Err(Break::Unlinked {
                id,
                after: self.last.as_ref().map(|(id, _)| *id),
            });
        }
        self.last = Some((id, hash.to_string()));
        self.checked += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|id| {
                let detail = serde_json::json!({ "n": id });
                let hash = link_hash(
                    &prev,
                    id,
                    "2026-11-28T00:00:00Z",
                    "master",
                    "task.create",
                    Some("task:1"),
                    Some(&detail),
                );
                let entry = AuditEntry {
                    id,
                    at: "2026-11-28T00:00:00Z".into(),
                    actor: "master".into(),
                    action: "task.create".into(),
                    target: Some("task:1".into()),
                    detail: Some(detail),
                    prev_hash: Some(prev.clone()),
                    hash: Some(hash.clone()),
                };
                prev = hash;
                entry
            })
            .collect()
    }

    fn first_break(entries: &[AuditEntry]) -> Option<Break> {
        let mut check = ChainCheck::new();
        entries.iter().find_map(|e| check.push(e).err())
    }

    #[test]
    fn the_hash_covers_the_content_as_one_json_array() {
        let detail = serde_json::json!({ "b": 1, "a": [true, null] });
        let text = serde_json::json!([GENESIS, 7, "at", "me", "x.y", null, detail]).to_string();
        let expected = hex::encode(Sha256::digest(text));
        assert_eq!(
            link_hash(GENESIS, 7, "at", "me", "x.y", None, Some(&detail)),
            expected
        );
    }

    #[test]
    fn an_untouched_chain_holds() {
        assert_eq!(first_break(&chain(5)), None);
    }

    #[test]
    fn an_edit_a_deletion_and_a_reordering_each_break_it_where_they_are() {
        let mut edited = chain(5);
        edited[2].actor = "someone-else".into();
        assert_eq!(first_break(&edited), Some(Break::Edited { id: 3 }));
        let mut deleted = chain(5);
        deleted.remove(2);
        assert_eq!(
            first_break(&deleted),
            Some(Break::Unlinked {
                id: 4,
                after: Some(2)
            })
        );
        let mut reordered = chain(5);
        reordered.swap(1, 3);
        assert_eq!(
            first_break(&reordered),
            Some(Break::Unlinked {
                id: 4,
                after: Some(1)
            })
        );
        let mut headless = chain(3);
        headless.remove(0);
        assert_eq!(
            first_break(&headless),
            Some(Break::Unlinked { id: 2, after: None })
        );
    }
}
