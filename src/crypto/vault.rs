//! Fernet encryption at rest for prompts, outputs, memory values and stored secrets.
//!
//! Keys are derived as `base64url(SHA-256(secret))`, so any string (the documented "random
//! 32-char string") is a valid key. A legacy key may be configured for rotation: values it
//! opens are reported as stale so the caller re-encrypts them under the current key.

use base64::Engine;
use fernet::Fernet;
use sha2::{Digest, Sha256};

use crate::settings::Secrets;

/// Seals and opens values at rest. Holds no plaintext key material in `Debug` output.
pub struct Vault {
    current: Fernet,
    legacy: Option<Fernet>,
}

/// The plaintext of a sealed value, and whether it was sealed under the legacy key.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub plaintext: String,
    pub stale: bool,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(***)")
    }
}

impl Vault {
    /// Builds the vault from the configured secrets; without an encryption key, from the
    /// master token (the hub always sets one: see `crypto::fallback`).
    pub fn from_secrets(secrets: &Secrets) -> Self {
        let current = secrets
            .encrypt_key
            .as_ref()
            .unwrap_or(&secrets.master_token);
        Self {
            current: fernet_for(current.expose()),
            legacy: secrets
                .legacy_encrypt_key
                .as_ref()
                .map(|k| fernet_for(k.expose())),
        }
    }

    pub fn seal(&self, plaintext: &str) -> String {
        self.current.encrypt(plaintext.as_bytes())
    }

    /// Opens a sealed value with the current key, falling back to the legacy key.
    /// `None` means neither key opens it (tampered, or sealed under an unknown key).
    /// The value sealed again under the current key, if it was sealed under the legacy one.
    pub fn reseal(&self, sealed: &str) -> Option<String> {
        let opened = self.open(sealed)?;
        opened.stale.then(|| self.seal(&opened.plaintext))
    }

    pub fn open(&self, sealed: &str) -> Option<Opened> {
        if let Ok(bytes) = self.current.decrypt(sealed) {
            return Some(Opened {
                plaintext: String::from_utf8_lossy(&bytes).into_owned(),
                stale: false,
            });
        }
        let bytes = self.legacy.as_ref()?.decrypt(sealed).ok()?;
        Some(Opened {
            plaintext: String::from_utf8_lossy(&bytes).into_owned(),
            stale: true,
        })
    }
}

fn fernet_for(secret: &str) -> Fernet {
    let digest = Sha256::digest(secret.as_bytes());
    let key = base64::engine::general_purpose::URL_SAFE.encode(digest);
    // A 32-byte key in URL-safe base64 is exactly what Fernet::new accepts.
    Fernet::new(&key).expect("a SHA-256 digest is always a valid Fernet key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;

    fn secrets(key: &str, legacy: Option<&str>) -> Secrets {
        Secrets {
            master_token: Secret::new("master"),
            encrypt_key: Some(Secret::new(key)),
            legacy_encrypt_key: legacy.map(Secret::new),
        }
    }

    #[test]
    fn sealed_values_round_trip_and_hide_the_plaintext() {
        let vault = Vault::from_secrets(&secrets("k1", None));
        let sealed = vault.seal("launch codes");
        assert!(!sealed.contains("launch"));
        assert_eq!(
            vault.open(&sealed),
            Some(Opened {
                plaintext: "launch codes".into(),
                stale: false
            })
        );
    }

    #[test]
    fn legacy_values_open_and_are_reported_stale() {
        let old = Vault::from_secrets(&secrets("old", None));
        let sealed = old.seal("v");
        let rotated = Vault::from_secrets(&secrets("new", Some("old")));
        assert!(rotated.open(&sealed).unwrap().stale);
        let resealed = rotated.reseal(&sealed).unwrap();
        assert!(!rotated.open(&resealed).unwrap().stale);
        assert_eq!(rotated.reseal(&resealed), None);
        let stranger = Vault::from_secrets(&secrets("other", None));
        assert_eq!(stranger.open(&sealed), None);
    }

    #[test]
    fn the_key_falls_back_to_the_master_token() {
        let s = Secrets {
            master_token: Secret::new("m"),
            encrypt_key: None,
            legacy_encrypt_key: None,
        };
        let vault = Vault::from_secrets(&s);
        assert_eq!(vault.open(&vault.seal("x")).unwrap().plaintext, "x");
    }
}
