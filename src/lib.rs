//! m3shd: the Commander hub of a multi-agent AI mesh. See ARCHITECTURE.md (in the shared
//! docs) for how the actors, the writer and the event bus meet.

pub mod actors;
pub mod agents_file;
pub mod alerts;
pub mod api;
pub mod bench;
pub mod cluster;
pub mod crypto;
pub mod dashboard;
pub mod db;
pub mod domain;
pub mod error;
pub mod exchange_log;
pub mod exchange_notify;
pub mod federation;
pub mod metrics;
pub mod rate_limit;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod views;
pub mod worker;
