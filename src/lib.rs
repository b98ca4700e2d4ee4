//! sms-audit: an append-only, hash-chained receiver for Huawei Cloud SMS
//! consistency-verification uploads.
//!
//! Where to look: the upload path is [`routes`] (`ingest`) → [`auth`] →
//! [`domain::upload_body`] → [`storage::writer`]; the chain is [`ledger`]; reads are
//! [`storage::queries`]; the process is put together in [`startup`].

pub mod auth;
pub mod charts;
pub mod cli;
pub mod compare;
pub mod credentials;
pub mod domain;
pub mod error;
pub mod export;
pub mod ledger;
pub mod middleware;
pub mod outbox;
pub mod pages;
pub mod replay;
pub mod routes;
pub mod sessions;
pub mod signing;
pub mod startup;
pub mod storage;
pub mod upstream;

pub use startup::{Application, ServeConfig, TaskPolicy};
