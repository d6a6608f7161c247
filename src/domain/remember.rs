//! `[REMEMBER]` blocks in task output: what an agent asks the hub to keep in its memory.
//!
//! ```text
//! [REMEMBER]
//! api_rate_limit: 500 req/min per key
//! [/REMEMBER]
//! ```
//! At most [`MAX_BLOCKS`] blocks are read; a block may hold several `key: value` lines.
//! Keys over [`MAX_KEY_CHARS`] or values over [`MAX_VALUE_CHARS`] are skipped, and keys
//! that look like secrets are refused (so injected output cannot plant credentials).

pub const MAX_BLOCKS: usize = 20;
pub const MAX_KEY_CHARS: usize = 120;
pub const MAX_VALUE_CHARS: usize = 4000;

/// Substrings (case-insensitive) of keys that are never stored from task output.
const SENSITIVE: &[&str] = &[
    "token",
    "password",
    "passwd",
    "passphrase",
    "api_key",
    "apikey",
    "api-key",
    "secret",
    "credential",
    "private_key",
    "privatekey",
    "ssh_key",
    "access_key",
    "session",
    "cookie",
    "bearer",
];

/// What one output asks to remember.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    pub accepted: Vec<(String, String)>,
    /// Keys refused because they look like secrets.
    pub refused: Vec<String>,
}

impl Extracted {
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty() && self.refused.is_empty()
    }
}

pub fn is_sensitive(key: &str) -> bool {
    let key = key.to_lowercase();
    SENSITIVE.iter().any(|pattern| key.contains(pattern))
}

/// Reads the `[REMEMBER]` blocks of `output`.
pub fn extract(output: &str) -> Extracted {
    let mut extracted = Extracted::default();
    let mut rest = output;
    for _ in 0..MAX_BLOCKS {
        let Some(start) = rest.find("[REMEMBER]") else {
            break;
        };
        let body = &rest[start + "[REMEMBER]".len()..];
        let Some(end) = body.find("[/REMEMBER]") else {
            break;
        };
        for line in body[..end].lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty()
                || key.chars().count() > MAX_KEY_CHARS
                || value.chars().count() > MAX_VALUE_CHARS
            {
                continue;
            }
            if is_sensitive(key) {
                extracted.refused.push(key.to_string());
            } else {
                extracted
                    .accepted
                    .push((key.to_string(), value.to_string()));
            }
        }
        rest = &body[end + "[/REMEMBER]".len()..];
    }
    extracted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_anywhere_in_the_output_are_read() {
        let out = "Research complete.\n[REMEMBER]\napi_rate_limit: 500 req/min per key\n[/REMEMBER]\nbye\n[REMEMBER]\na: 1\nb: x: y\n[/REMEMBER]";
        let got = extract(out);
        assert_eq!(
            got.accepted,
            vec![
                ("api_rate_limit".into(), "500 req/min per key".into()),
                ("a".into(), "1".into()),
                ("b".into(), "x: y".into())
            ]
        );
        assert!(got.refused.is_empty());
    }

    #[test]
    fn secrets_are_refused_and_limits_skip() {
        let long_key = "k".repeat(121);
        let long_value = "v".repeat(4001);
        let out = format!("[REMEMBER]\nGitHub_TOKEN: abc\nDB Password: x\n{long_key}: v\nok: {long_value}\nfine: yes\n[/REMEMBER]");
        let got = extract(&out);
        assert_eq!(got.accepted, vec![("fine".into(), "yes".into())]);
        assert_eq!(
            got.refused,
            vec!["GitHub_TOKEN".to_string(), "DB Password".to_string()]
        );
    }

    #[test]
    fn at_most_twenty_blocks_and_unclosed_blocks_are_ignored() {
        let out: String = (0..25)
            .map(|i| format!("[REMEMBER]\nk{i}: v\n[/REMEMBER]\n"))
            .collect();
        assert_eq!(extract(&out).accepted.len(), MAX_BLOCKS);
        assert!(extract("[REMEMBER]\nk: v\n").is_empty());
    }
}
