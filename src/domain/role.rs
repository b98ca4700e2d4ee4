//! Roles of credentials and how a request was authenticated.

/// What a credential may do: agents upload, auditors read, operators do both.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    Agent,
    Auditor,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn may_upload(self) -> bool {
        matches!(self, Role::Agent | Role::Operator)
    }

    pub fn may_read(self) -> bool {
        matches!(self, Role::Auditor | Role::Operator)
    }
}

/// How an upload was authenticated.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, strum::EnumString, strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum AuthMethod {
    Token,
    Aksk,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
