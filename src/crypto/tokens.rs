//! Credentials: agent tokens are `m3shd_ag_` + 32 hex characters (128 bits), stored only
//! as their SHA-256 hex digest; comparisons of secrets run in constant time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const AGENT_TOKEN_PREFIX: &str = "m3shd_ag_";

/// A new random secret of `bytes` bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new raw agent token. Shown once to the caller, then only its hash is kept.
pub fn new_agent_token() -> String {
    format!("{AGENT_TOKEN_PREFIX}{}", random_hex(16))
}

/// The storage form of a token: lowercase SHA-256 hex.
pub fn hash_token(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// Compares two secrets without leaking where they differ. Both sides are hashed
/// first so that their lengths leak nothing either.
pub fn secrets_match(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_tokens_have_the_documented_shape() {
        let token = new_agent_token();
        let hex_part = token.strip_prefix(AGENT_TOKEN_PREFIX).unwrap();
        assert_eq!(hex_part.len(), 32);
        assert!(hex_part.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(token, new_agent_token());
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secrets_match("s3cret", "s3cret"));
        assert!(!secrets_match("s3cret", "s3cre"));
        assert!(!secrets_match("", "x"));
    }
}
