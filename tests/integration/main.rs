//! Integration tests: every test starts the real hub (actors, writer, SQLite file, HTTP
//! server on a free loopback port) and talks HTTP and SSE to it.

mod support;

mod admin;
mod agents;
mod alerts;
mod analytics;
mod approvals;
mod audit_chain;
mod bad_input;
mod cli;
mod config;
mod conventions;
mod dashboard;
mod database_tls;
mod durability;
mod exchange;
mod failover;
mod federation;
mod file_modes;
mod guards;
mod idempotency;
mod layers;
mod leases;
mod managed_agents;
mod matrix;
mod memory;
mod messages;
mod metrics;
mod onboarding;
mod openapi;
mod pipelines;
mod promises;
mod reputation;
mod retention;
mod schedules;
mod security;
mod shutdown;
mod sse;
mod tasks;
mod tokens;
mod users;
mod watchdogs;
mod webhooks;
mod worker;
