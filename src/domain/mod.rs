//! The domain layer: types that can only hold valid values (parse once at the
//! edge, trust afterwards), the clock, the chain's hashing and request signing.
//! Nothing here touches the database or HTTP.

pub mod chain;
pub mod checkpoint;
pub mod cosignature;
mod credential;
mod delivery;
pub mod fleet;
pub mod policy;
pub mod proxy;
pub mod reconcile;
mod replay_filter;
mod role;
pub mod signing;
mod task_id;
mod text;
mod time;
pub mod tlog_proof;
pub mod upload_body;
pub mod witness;

pub use credential::{csrf_equal, random_hex, token_hash, Credential, Session, TaskPolicy};
pub use delivery::{AttemptResult, DeliveryState, Outcome, ReplayRunner, Runner, Trigger};
pub use replay_filter::{FilterError, RawReplayFilter, ReplayFilter};
pub use role::{AuthMethod, Role};
pub use task_id::{BadTaskId, TaskId};
pub use text::{
    counted, escape_invisible, is_bidi_control, plural, printable, shell_word, without_path,
    without_userinfo,
};
pub use time::{
    check_range, format_timestamp, now_ms, parse_time_arg, parse_time_field, TimeError, Timestamp,
};
pub use upload_body::{BodyError, ConsistencyResult, Count, DirCheck, Totals, UploadBody};
