//! Which stored uploads a replay sends: one filter for the command line, the JSON
//! API and the deliveries page's form.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{parse_time_field, BadTaskId, DeliveryState, TaskId, TimeError, Timestamp};

/// A checked replay filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayFilter {
    /// Only these tasks (none: every task), sorted, without duplicates.
    pub tasks: Vec<TaskId>,
    /// Uploads received from this time on.
    pub since: Option<Timestamp>,
    /// Uploads received before this time.
    pub until: Option<Timestamp>,
    /// Only uploads whose latest delivery is in this state; `None` is any upload.
    pub state: Option<DeliveryState>,
    /// Only the newest selected upload of each task (what SMS keeps).
    pub latest_per_task: bool,
}

/// Why a replay's selection was refused; each names its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// More task ids than one replay takes.
    #[error("tasks: at most {MAX_TASKS} task ids in one replay, not {0} (leave it empty for every task)")]
    TooManyTasks(usize),
    /// A task id that is not one.
    #[error(transparent)]
    Task(#[from] BadTaskId),
    /// A time that is not one, or a range whose ends are out of order.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A state that is not one a delivery has.
    #[error("state: must be pending, failed, dead, delivered, superseded or any, not {0:?}")]
    State(String),
}

/// The most task ids one replay names.
pub const MAX_TASKS: usize = 1000;

impl ReplayFilter {
    /// Checks task ids and the state (`any` or empty: every state).
    /// `tasks` (at most `MAX_TASKS`, 1000, duplicates dropped), a time range, the
    /// deliveries' last state, and whether only each task's newest counts.
    pub fn new(
        tasks: &[String],
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        state: Option<&str>,
        latest_per_task: bool,
    ) -> Result<Self, FilterError> {
        if tasks.len() > MAX_TASKS {
            return Err(FilterError::TooManyTasks(tasks.len()));
        }
        let mut tasks: Vec<TaskId> = tasks
            .iter()
            .map(|t| TaskId::parse(t))
            .collect::<Result<_, _>>()?;
        tasks.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        tasks.dedup();
        super::check_range(since, until)?;
        let state = match state.unwrap_or("") {
            "" | "any" => None,
            s => Some(
                s.parse::<DeliveryState>()
                    .map_err(|_| FilterError::State(s.to_string()))?,
            ),
        };
        Ok(Self {
            tasks,
            since,
            until,
            state,
            latest_per_task,
        })
    }
}

/// A replay filter as a person typed it, in a JSON body or a form: tasks as a list
/// or comma-separated (`tasks`, or the form's `task`), times as RFC 3339 or dates.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct RawReplayFilter {
    /// Task ids, as a list or comma-separated.
    #[serde(default, alias = "task", deserialize_with = "list_or_commas")]
    pub tasks: Vec<String>,
    /// RFC 3339 or a date; blank is none.
    #[serde(default)]
    pub since: Option<String>,
    /// RFC 3339 or a date; blank is none.
    #[serde(default)]
    pub until: Option<String>,
    /// A delivery state, or `any`.
    #[serde(default)]
    pub state: Option<String>,
    /// `true`, `on` or a checked box.
    #[serde(default, deserialize_with = "flag")]
    pub latest_per_task: bool,
}

impl RawReplayFilter {
    /// Blank values mean "not given"; errors name the field.
    pub fn parse(&self) -> Result<ReplayFilter, FilterError> {
        let tasks: Vec<String> = self
            .tasks
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        ReplayFilter::new(
            &tasks,
            parse_time_field("since", self.since.as_deref())?,
            parse_time_field("until", self.until.as_deref())?,
            self.state.as_deref(),
            self.latest_per_task,
        )
    }

    /// The tasks as the form's one text field shows them.
    pub fn tasks_text(&self) -> String {
        self.tasks.join(",")
    }
}

fn list_or_commas<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Tasks;
    impl<'de> Visitor<'de> for Tasks {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of task ids or a comma-separated string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.split(',').map(str::to_string).collect())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element::<String>()? {
                out.push(t);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Tasks)
}

/// A JSON boolean, or a form's `true` (anything else is false, as an unticked box).
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Flag;
    impl<'de> Visitor<'de> for Flag {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(v == "true")
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(Flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_form_shapes_give_the_same_filter() {
        let json: RawReplayFilter = serde_json::from_str(
            r#"{"tasks": [" a ", "b", ""], "since": "2026-11-27", "state": "failed", "latest_per_task": true}"#,
        )
        .unwrap();
        let form: RawReplayFilter =
            serde_json::from_str(r#"{"task": "a,b", "since": "2026-11-27", "until": "", "state": "failed", "latest_per_task": "true"}"#)
                .unwrap();
        assert_eq!(json.parse().unwrap(), form.parse().unwrap());
        let filter = json.parse().unwrap();
        assert_eq!(filter.tasks.len(), 2);
        assert_eq!(filter.state, Some(DeliveryState::Failed));
        assert!(filter.latest_per_task);
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |json: &str| {
            serde_json::from_str::<RawReplayFilter>(json)
                .unwrap()
                .parse()
                .unwrap_err()
                .to_string()
        };
        assert!(bad(r#"{"since": "yesterday"}"#).starts_with("since:"));
        assert!(bad(r#"{"state": "bogus"}"#).starts_with("state:"));
        assert!(bad(r#"{"tasks": ["bad id!"]}"#).starts_with("task_id:"));
        let any: RawReplayFilter = serde_json::from_str(r#"{"state": "any"}"#).unwrap();
        assert_eq!(any.parse().unwrap().state, None);
    }
}
