//! What every page's frame (`templates/base.html`) shows besides the page: the
//! logged-in user, their role, and the CSRF token of the logout form.

use crate::domain::Session;

/// What the layout shows of the logged-in user.
pub struct Nav {
    pub user: String,
    pub role: String,
    pub csrf_token: String,
}

impl From<&Session> for Nav {
    fn from(s: &Session) -> Self {
        Nav {
            user: s.credential.name.clone(),
            role: s.credential.role.to_string(),
            csrf_token: s.csrf_token.clone(),
        }
    }
}
