//! The services layer: what the service does with stored data, independent of
//! HTTP. Verifying the ledger, sending the outbox, replays, comparing uploads,
//! exports, fleet history, the SMS client, and the background verification job.

pub mod background;
pub mod checkpoints;
pub mod compare;
pub mod evidence;
pub mod export;
pub mod fleet;
pub mod fork;
pub mod ledger;
pub mod notify;
pub mod outbox;
pub mod proxy;
pub mod reconcile;
pub mod replay;
pub mod retention;
pub mod sessions;
pub mod tiles;
pub mod tlog_proof;
pub mod upstream;
pub mod verification;
pub mod witness;
pub mod witnessing;
