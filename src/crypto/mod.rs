//! Cryptography of the hub: Fernet encryption at rest ([`Vault`]) and credentials
//! ([`tokens`]): generation, SHA-256 storage form and constant-time comparison.

pub mod blind;
pub mod fallback;
pub mod provenance;
pub mod tokens;
mod vault;

pub use vault::{Opened, Vault};
