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
    /// Uploads (and, through the pass-through, calls SMS).
    Agent,
    /// Reads: pages, the JSON API, exports, evidence.
    Auditor,
    /// Both, and the operator's actions (replays, verification).
    Operator,
}

impl Role {
    /// The role's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Agents and operators upload.
    pub fn may_upload(self) -> bool {
        matches!(self, Role::Agent | Role::Operator)
    }

    /// Auditors and operators read.
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
    /// `X-Auth-Token`.
    Token,
    /// An SDK-HMAC-SHA256 signature with an access key.
    Aksk,
}

impl AuthMethod {
    /// The method's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
