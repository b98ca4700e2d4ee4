//! Task ids as SMS accepts them.

use std::fmt;

/// What is wrong with a string that is not a task id (one message for every
/// way: SMS gives one too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "task_id: must be 1 to {} characters of A-Z a-z 0-9 _ -",
    TaskId::MAX_LEN
)]
pub struct BadTaskId;

/// An SMS task id: 1 to 36 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

impl TaskId {
    /// The longest task id SMS accepts.
    pub const MAX_LEN: usize = 36;

    /// A task id, or why `s` is none.
    pub fn parse(s: &str) -> Result<Self, BadTaskId> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.bytes().all(allowed) {
            return Err(BadTaskId);
        }
        Ok(Self(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskId;

    #[test]
    fn accepts_uuid_and_rejects_bad_ids() {
        assert!(TaskId::parse("137224b7-8d7c-4919-b33e-ed1597780000").is_ok());
        assert!(TaskId::parse("a_B-9").is_ok());
        assert!(TaskId::parse(&"x".repeat(36)).is_ok());
        for bad in ["", &"x".repeat(37), "a b", "a/b", "tâche", "a.b"] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
