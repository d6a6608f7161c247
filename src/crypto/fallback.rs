//! The at-rest key when no `M3SHDUP_ENCRYPT_KEY` is set: derived from the master token
//! with Argon2id and a random salt stored beside the data (the `settings` table), so a
//! stolen database cannot be opened by trying a dictionary of tokens at SHA-256 speed.
//!
//! Databases written before this derivation existed keep the old one (SHA-256 of the
//! token) so that nothing they hold becomes unreadable; the hub warns about them at every
//! start and says how to move to a dedicated key.

use argon2::Argon2;
use serde::{Deserialize, Serialize};

use crate::settings::Secret;

/// The settings key the derivation is stored under.
pub const KEY_DERIVATION: &str = "key_derivation";

const ARGON2ID: &str = "argon2id";
const LEGACY_SHA256: &str = "sha256";

/// How this database's fallback key is derived from the master token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDerivation {
    pub kdf: String,
    /// Hex of 16 random bytes (empty for the legacy derivation).
    pub salt: String,
}

impl KeyDerivation {
    /// A fresh Argon2id derivation with a new random salt.
    pub fn generate() -> Self {
        Self {
            kdf: ARGON2ID.into(),
            salt: super::tokens::random_hex(16),
        }
    }

    /// The derivation of databases that predate the salt.
    pub fn legacy() -> Self {
        Self {
            kdf: LEGACY_SHA256.into(),
            salt: String::new(),
        }
    }

    pub fn is_legacy(&self) -> bool {
        self.kdf == LEGACY_SHA256
    }

    /// The key material for the vault, blind index and provenance: the Argon2id output,
    /// or, for the legacy derivation, the token itself (which they hash as before).
    pub fn derive(&self, master: &Secret) -> anyhow::Result<Secret> {
        if self.is_legacy() {
            return Ok(master.clone());
        }
        anyhow::ensure!(
            self.kdf == ARGON2ID,
            "unknown key derivation {:?} in the settings table",
            self.kdf
        );
        let salt = hex::decode(&self.salt)?;
        let mut key = [0u8; 32];
        Argon2::default()
            .hash_password_into(master.expose().as_bytes(), &salt, &mut key)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        Ok(Secret::new(hex::encode(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_salt_gives_the_same_key_and_another_salt_another() {
        let master = Secret::new("correct horse battery staple");
        let derivation = KeyDerivation::generate();
        let once = derivation.derive(&master).unwrap();
        assert_eq!(once.expose(), derivation.derive(&master).unwrap().expose());
        assert_ne!(once.expose(), master.expose());
        let other = KeyDerivation::generate().derive(&master).unwrap();
        assert_ne!(once.expose(), other.expose());
        assert_eq!(
            KeyDerivation::legacy().derive(&master).unwrap().expose(),
            master.expose()
        );
    }
}
