//! Types that can only hold valid values: parse once at the edge, trust afterwards.

mod role;
mod task_id;
mod time;
pub mod upload_body;

pub use role::{AuthMethod, Role};
pub use task_id::TaskId;
pub use time::{format_timestamp, parse_time_arg, Timestamp};
pub use upload_body::{BodyError, ConsistencyResult, Count, DirCheck, UploadBody};
