//! sms-audit: an append-only, hash-chained receiver for Huawei Cloud SMS
//! consistency-verification uploads.
//!
//! The layers, each importing only from those above it in this list (checked by
//! `tests/layering.rs`; ARCHITECTURE.md tells the whole story):
//!
//! - [`domain`]: validated types, the clock, the chain's hashing, request signing;
//! - [`storage`]: SQLite: connections, migrations, the writer thread, every statement;
//! - [`services`]: ledger verification, the outbox, replays, compare, export, the SMS client;
//! - [`http`]: the upload endpoint, the JSON API and the pages;
//! - [`cli`] and [`startup`]: the command line, and putting the process together.
//!
//! Every public item of `domain`, `storage`, `services` and `startup` has a doc
//! comment (`#[deny(missing_docs)]` on each below).
//!
//! The upload path: `http::routes::ingest` → `http::auth` →
//! `domain::upload_body` → `storage::writer` (group commit) → `storage::uploads`.

pub mod cli;
#[deny(missing_docs)]
pub mod domain;
pub mod http;
#[deny(missing_docs)]
pub mod services;
#[deny(missing_docs)]
pub mod startup;
#[deny(missing_docs)]
pub mod storage;

pub use domain::TaskPolicy;
pub use startup::{Application, ServeConfig};
