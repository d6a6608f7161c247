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
    new_secret(AGENT_TOKEN_PREFIX)
}

/// Seed 002's one-time registration token.
pub const REGISTRATION_TOKEN_PREFIX: &str = "mrt_";
/// Seed 002's runtime credential (an agent token by another name).
pub const RUNTIME_CREDENTIAL_PREFIX: &str = "mrm_rt_";
/// Seed 002's recovery credential, which buys a fresh runtime credential.
pub const RECOVERY_CREDENTIAL_PREFIX: &str = "mrm_rr_";

/// A new secret: `prefix` and 128 random bits in hex. Shown once, stored as its hash.
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", random_hex(16))
}

/// A device-flow verification code a person can read out and type: eight letters from an
/// alphabet without vowels or look-alikes (RFC 8628, 6.1), as `WDJB-MJHT`.
pub fn new_verification_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut code: String = (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    code.insert(4, '-');
    code
}

/// The storage form of a token: lowercase SHA-256 hex.
pub fn hash_token(raw: &str) -> String {
    hex::encode(token_digest(raw))
}

/// The SHA-256 hex of any bytes (a request body, for its idempotency key).
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn token_digest(raw: &str) -> [u8; 32] {
    Sha256::digest(raw.as_bytes()).into()
}

/// Compares two digests in constant time. Comparing digests rather than the secrets
/// themselves leaks nothing about the secrets' lengths either.
pub fn digests_match(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
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
    fn digests_match_only_when_equal() {
        let matches = |a: &str, b: &str| digests_match(&token_digest(a), &token_digest(b));
        assert!(matches("s3cret", "s3cret"));
        assert!(!matches("s3cret", "s3cre"));
        assert!(!matches("", "x"));
    }
}

/// Checks a GitHub `X-Hub-Signature-256` header (`sha256=<hex>`) against the HMAC-SHA256
/// of the exact raw body, in constant time.
pub fn github_signature_matches(secret: &str, body: &[u8], header: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(given) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod github_tests {
    use super::*;

    #[test]
    fn github_signatures_cover_the_exact_bytes() {
        // The example from GitHub's documentation on validating deliveries.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(github_signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            header
        ));
        assert!(!github_signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World! ",
            header
        ));
        assert!(!github_signature_matches("wrong", b"Hello, World!", header));
        assert!(!github_signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha1=abc"
        ));
    }
}
