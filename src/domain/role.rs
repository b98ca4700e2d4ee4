//! Roles of credentials and how a request was authenticated.

use std::fmt;
use std::str::FromStr;

/// What a credential may do: agents upload, auditors read, operators do both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Auditor,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }

    pub fn may_upload(self) -> bool {
        matches!(self, Role::Agent | Role::Operator)
    }

    pub fn may_read(self) -> bool {
        matches!(self, Role::Auditor | Role::Operator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Role::Agent),
            "auditor" => Ok(Role::Auditor),
            "operator" => Ok(Role::Operator),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

/// How an upload was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Token,
    Aksk,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::Aksk => "aksk",
        }
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "token" => Ok(AuthMethod::Token),
            "aksk" => Ok(AuthMethod::Aksk),
            other => Err(format!("unknown auth method {other:?}")),
        }
    }
}
