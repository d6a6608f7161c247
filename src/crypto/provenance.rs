//! Provenance: every change of a task appends a link to an HMAC-SHA256 chain. Each link
//! signs the previous link's hash together with its own content, so changing, removing or
//! reordering any stored link breaks every link after it.
//!
//! The HMAC key is derived from the at-rest encryption secret (never stored beside the
//! data). Links signed under the legacy key still verify, so a key rotation does not
//! invalidate old chains.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::settings::Secrets;

/// The `prev_hash` of a task's first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The content of one link, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkBody<'a> {
    pub task_id: i32,
    pub seq: i32,
    pub action: &'a str,
    pub actor: &'a str,
    pub detail: &'a str,
    pub created_at: &'a str,
    pub prev_hash: &'a str,
}

/// Signs and checks links.
pub struct Notary {
    /// The signing key first, then any key that may still verify old links: each as an
    /// HMAC already keyed, cloned per link, so the key's two blocks are hashed once.
    keys: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for Notary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notary(***)")
    }
}

impl Notary {
    pub fn from_secrets(secrets: &Secrets) -> Self {
        let current = secrets
            .encrypt_key
            .as_ref()
            .unwrap_or(&secrets.master_token);
        let mut keys = vec![keyed(current.expose())];
        if let Some(legacy) = &secrets.legacy_encrypt_key {
            keys.push(keyed(legacy.expose()));
        }
        Self { keys }
    }

    /// The hash of a link, signed with the current key.
    pub fn sign(&self, link: &LinkBody<'_>) -> String {
        let mut signer = self.keys[0].clone();
        feed(&mut signer, link);
        hex::encode(signer.finalize().into_bytes())
    }

    /// Whether `hash` is a valid signature of `link` under any known key.
    pub fn verify(&self, link: &LinkBody<'_>, hash: &str) -> bool {
        let Ok(expected) = hex::decode(hash) else {
            return false;
        };
        self.keys.iter().any(|key| {
            let mut check = key.clone();
            feed(&mut check, link);
            check.verify_slice(&expected).is_ok()
        })
    }
}

/// The HMAC keyed with the key derived from `secret`.
fn keyed(secret: &str) -> Hmac<Sha256> {
    let mut digest = Sha256::new();
    digest.update(b"m3shd provenance v1\0");
    digest.update(secret.as_bytes());
    let key: [u8; 32] = digest.finalize().into();
    <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes keys of any length")
}

/// Length-prefixed fields, so no two different links feed the same bytes.
fn feed(mac: &mut Hmac<Sha256>, link: &LinkBody<'_>) {
    mac.update(&link.task_id.to_be_bytes());
    mac.update(&link.seq.to_be_bytes());
    for field in [
        link.prev_hash,
        link.action,
        link.actor,
        link.detail,
        link.created_at,
    ] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
}

/// SHA-256 hex of a value a link vouches for (an output, a chunk) without holding it.
pub fn fingerprint(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;

    fn notary(key: &str, legacy: Option<&str>) -> Notary {
        Notary::from_secrets(&Secrets {
            master_token: Secret::new("m"),
            encrypt_key: Some(Secret::new(key)),
            legacy_encrypt_key: legacy.map(Secret::new),
        })
    }

    fn link(detail: &str) -> LinkBody<'_> {
        LinkBody {
            task_id: 1,
            seq: 0,
            action: "created",
            actor: "master",
            detail,
            created_at: "t",
            prev_hash: GENESIS,
        }
    }

    #[test]
    fn a_signed_link_verifies_and_any_change_breaks_it() {
        let n = notary("k", None);
        let hash = n.sign(&link("{}"));
        assert!(n.verify(&link("{}"), &hash));
        assert!(!n.verify(&link("{\"x\":1}"), &hash));
        assert!(!n.verify(&link("{}"), "not hex"));
        assert!(!notary("other", None).verify(&link("{}"), &hash));
    }

    #[test]
    fn links_signed_under_the_legacy_key_still_verify() {
        let hash = notary("old", None).sign(&link("{}"));
        assert!(notary("new", Some("old")).verify(&link("{}"), &hash));
    }
}
