//! Integration tests: the real application on port 0, a temporary database, HTTP.

mod fake_upstream;
mod helpers;

mod backup;
mod cli;
mod concurrency;
mod errors;
mod evidence;
mod faults;
mod first_use;
mod fleet;
mod forwarding;
mod ingest;
mod ledger;
mod metrics;
mod notify;
mod openapi;
mod pages;
pub mod proxy;
mod read_api;
mod reconcile;
mod replay;
mod retention;
mod secrets;
mod security;
mod tasks_sync;
mod tls;
mod witness;
mod witnessing;
