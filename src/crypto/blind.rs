//! A blind index for searching encrypted memory.
//!
//! Memory values are stored Fernet-encrypted, so SQLite cannot index their words. Instead
//! each word (lowercased run of letters and digits) is replaced by a keyed hash,
//! `HMAC-SHA256(key, word)` cut to 64 bits, and those tokens are what FTS5 indexes; a
//! query is hashed the same way. The agent id is indexed as one more token, so a search
//! only ever matches one agent's entries.
//!
//! Trade-off, chosen on purpose: the database holds no plaintext and the tokens cannot be
//! reversed without the key, but equal words give equal tokens, so someone holding the
//! database file can see how often an (unknown) word recurs and which entries share it.
//! Only whole-word matches work: no prefixes, stemming or fuzzy search. Query syntax cannot
//! leak into FTS5 either: a query is reduced to tokens the hub builds itself, so quotes,
//! operators and punctuation in `q` are just word separators. Rotating the key means
//! re-indexing, which is why it is derived from the encryption secret and never stored.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::settings::Secrets;

/// Most words taken from one text (the rest is not searchable).
const MAX_WORDS: usize = 400;
/// Longest word indexed; longer runs are cut.
const MAX_WORD_CHARS: usize = 64;

pub struct BlindIndex {
    key: [u8; 32],
}

impl std::fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndex(***)")
    }
}

impl BlindIndex {
    pub fn from_secrets(secrets: &Secrets) -> Self {
        let secret = secrets
            .encrypt_key
            .as_ref()
            .unwrap_or(&secrets.master_token);
        let mut digest = Sha256::new();
        digest.update(b"m3shd blind index v1\0");
        digest.update(secret.expose().as_bytes());
        Self {
            key: digest.finalize().into(),
        }
    }

    fn hash(&self, kind: char, word: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(&[kind as u8]);
        mac.update(word.as_bytes());
        let bytes = mac.finalize().into_bytes();
        format!("{kind}{}", hex::encode(&bytes[..8]))
    }

    fn agent_token(&self, agent_id: &str) -> String {
        self.hash('a', agent_id)
    }

    /// The indexed text of one memory entry: its agent, then the words of key and value.
    pub fn document(&self, agent_id: &str, key: &str, value: &str) -> String {
        let mut tokens = vec![self.agent_token(agent_id)];
        tokens.extend(words(key).chain(words(value)).map(|w| self.hash('w', &w)));
        tokens.join(" ")
    }

    /// An FTS5 MATCH expression for `agent_id`'s entries holding every word of `q`
    /// (`all`), or any of them. `None` when `q` has no word at all.
    pub fn query(&self, agent_id: &str, q: &str, all: bool) -> Option<String> {
        let mut tokens: Vec<String> = words(q).map(|w| self.hash('w', &w)).collect();
        tokens.sort();
        tokens.dedup();
        if tokens.is_empty() {
            return None;
        }
        let joiner = if all { " AND " } else { " OR " };
        Some(format!(
            "{} AND ({})",
            self.agent_token(agent_id),
            tokens.join(joiner)
        ))
    }
}

/// The searchable words of a text: lowercased runs of letters and digits.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(|w| {
            w.chars()
                .take(MAX_WORD_CHARS)
                .collect::<String>()
                .to_lowercase()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;

    fn index(key: &str) -> BlindIndex {
        BlindIndex::from_secrets(&Secrets {
            master_token: Secret::new("m"),
            encrypt_key: Some(Secret::new(key)),
            legacy_encrypt_key: None,
        })
    }

    #[test]
    fn documents_hold_no_plaintext_and_match_their_queries() {
        let blind = index("k");
        let doc = blind.document("rex", "api_rate_limit", "500 req/min per key");
        assert!(!doc.contains("rate") && !doc.contains("500") && !doc.contains("rex"));
        let q = blind.query("rex", "RATE limit", true).unwrap();
        for token in q
            .split(" AND ")
            .map(|t| t.trim_matches(|c| c == '(' || c == ')'))
        {
            assert!(doc.contains(token), "{token} missing from the document");
        }
    }

    #[test]
    fn query_syntax_in_q_is_only_separators() {
        let blind = index("k");
        let q = blind
            .query("rex", r#""a" OR b* NEAR(c) -- '; DROP"#, true)
            .unwrap();
        assert!(
            q.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '(' || c == ')'),
            "{q}"
        );
        assert!(blind.query("rex", "\"\" ** ()", true).is_none());
    }

    #[test]
    fn tokens_depend_on_the_key() {
        assert_ne!(
            index("a").document("rex", "k", "v"),
            index("b").document("rex", "k", "v")
        );
    }
}
