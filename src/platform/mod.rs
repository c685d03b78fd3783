//! The platform clients: Omnidesk ([`omnidesk`]) and Udesk ([`udesk`], signed by
//! [`udesk_sign`]) behind one [`Target`] trait, over one [`transport`]. What the documents
//! state about both platforms is in [`documented`], shared with the sandbox that emulates
//! them (`crate::sandbox`).
//!
//! A client splits *encoding* (a [`Customer`] → form fields or JSON, pure and testable
//! without a network) from *transport* ([`transport::Transport`]: retries, the shared pause, the
//! rate limit, adaptive concurrency). Replies are decoded into [`CallError`] kinds so the
//! import driver can tell a refusal from a retryable failure.

pub mod documented;
pub mod omnidesk;
pub mod transport;
pub mod udesk;
pub mod udesk_sign;

use crate::model::Customer;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// A credential: never printed, logged or serialized (it can be read from a config file).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a call did not give the answer asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No customer with that id (lookup, update).
    #[error("not found on the platform")]
    NotFound,
    /// A create refused because the external id is already used.
    #[error("already exists: {message}")]
    Conflict {
        /// The platform id of the existing customer, when the reply names it.
        platform_id: Option<String>,
        /// The platform's message.
        message: String,
    },
    /// Refused for good (validation and the like): retrying cannot help.
    #[error("refused by the platform: {message}")]
    Rejected {
        /// The platform's message.
        message: String,
    },
    /// The credentials or signature were refused: the run stops.
    #[error("credentials refused: {message}")]
    Auth {
        /// The platform's message.
        message: String,
    },
    /// Refused by a rate or capacity limit before it was applied: wait and retry.
    #[error("rate limited")]
    Throttled {
        /// How long the platform asked to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// A cursor the platform no longer knows (an expired or used Udesk scroll id): start the
    /// listing again.
    #[error("cursor expired: {message}")]
    Expired {
        /// The platform's message.
        message: String,
    },
    /// No usable reply (5xx, cut connection, timeout): retryable; the request may or may
    /// not have been applied.
    #[error("no usable reply: {message}")]
    Unavailable {
        /// What went wrong.
        message: String,
        /// Whether the request may have been applied (false only when it never left).
        maybe_applied: bool,
    },
}

/// A bulk import the platform refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkError {
    /// The platform named the row that made it refuse the call (0-based index in the call).
    Poison {
        /// Index of the refused row within the call.
        index: usize,
        /// The platform's message about it.
        message: String,
    },
    /// Any other failure.
    Call(CallError),
}

/// What one platform can do for an import. Implementations are cheap to share (`Arc`).
pub trait Target: Send + Sync + 'static {
    /// `omnidesk` or `udesk`.
    fn name(&self) -> &'static str;

    /// The platform id of the customer with this external id, if there is one.
    fn lookup(
        &self,
        customer: &Customer,
    ) -> impl Future<Output = Result<Option<String>, CallError>> + Send;

    /// Creates the customer; `CallError::Conflict` when the external id is taken. Not
    /// idempotent: after an `Unavailable` reply, look up before trying again.
    fn create(&self, customer: &Customer)
        -> impl Future<Output = Result<String, CallError>> + Send;

    /// Work that completes a create and is safe to repeat (Omnidesk: channels beyond those a
    /// create carries). Runs after a create and after a lookup finds an interrupted create.
    fn complete(
        &self,
        _customer: &Customer,
        _platform_id: &str,
    ) -> impl Future<Output = Result<(), CallError>> + Send {
        async { Ok(()) }
    }

    /// Updates the customer with this external id; `CallError::NotFound` when there is none.
    /// Idempotent.
    fn update(&self, customer: &Customer)
        -> impl Future<Output = Result<String, CallError>> + Send;

    /// Most rows one bulk create carries (0: the platform has no bulk create).
    fn bulk_rows(&self) -> usize {
        0
    }

    /// Sends an asynchronous bulk create. Accepted rows are only *pending*: confirm them.
    fn bulk_create(
        &self,
        _customers: &[&Customer],
    ) -> impl Future<Output = Result<(), BulkError>> + Send {
        async {
            Err(BulkError::Call(CallError::Rejected {
                message: "this platform has no bulk create".into(),
            }))
        }
    }

    /// Which of these customers exist: external id → platform id. The default looks each up.
    fn confirm<'a>(
        &'a self,
        customers: &'a [&'a Customer],
    ) -> impl Future<Output = Result<HashMap<String, String>, CallError>> + Send + 'a {
        async move {
            let mut found = HashMap::new();
            for c in customers {
                if let Some(id) = self.lookup(c).await? {
                    found.insert(c.external_id.clone(), id);
                }
            }
            Ok(found)
        }
    }

    /// The first requests an import of `customer` would send, with secrets redacted (dry run).
    fn describe_create(&self, customer: &Customer) -> String;

    /// The transport, for its statistics and pause state.
    fn transport(&self) -> &transport::Transport;
}

/// A platform origin as the user knows it (`https://acme.omnidesk.com`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(reqwest::Url);

/// A `--base-url` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaseUrlError {
    /// Not a URL.
    #[error("--base-url {0:?} is not a URL")]
    Invalid(String),
    /// Not http(s).
    #[error("--base-url {0:?} must start with https://")]
    Scheme(String),
    /// Plain http to a host that is not this machine.
    #[error("--base-url {0:?}: plain http:// is only allowed to this machine (127.0.0.1, ::1, localhost); use https://")]
    PlainHttp(String),
}

impl BaseUrl {
    /// Parses and checks an origin; a trailing `/api/v2` or `/open_api_v1` is tolerated.
    pub fn parse(raw: &str) -> Result<Self, BaseUrlError> {
        let mut url =
            reqwest::Url::parse(raw.trim()).map_err(|_| BaseUrlError::Invalid(raw.into()))?;
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    None => false,
                };
                if !loopback {
                    return Err(BaseUrlError::PlainHttp(raw.into()));
                }
            }
            _ => return Err(BaseUrlError::Scheme(raw.into())),
        }
        if url.host().is_none() {
            return Err(BaseUrlError::Invalid(raw.into()));
        }
        url.set_query(None);
        url.set_fragment(None);
        let path = url.path().trim_end_matches('/').to_string();
        let path = path
            .strip_suffix("/api/v2")
            .or_else(|| path.strip_suffix("/open_api_v1"))
            .unwrap_or(&path)
            .to_string();
        url.set_path(&path);
        Ok(BaseUrl(url))
    }

    /// The origin plus `path` (which starts with `/`).
    pub fn join(&self, path: &str) -> String {
        let base = self.0.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn base_url_rules() {
        assert_eq!(
            BaseUrl::parse("https://acme.omnidesk.com")
                .unwrap()
                .join("/api/v2/customer"),
            "https://acme.omnidesk.com/api/v2/customer"
        );
        assert_eq!(
            BaseUrl::parse("https://acme.udesk.cn/open_api_v1/")
                .unwrap()
                .join("/open_api_v1/customers"),
            "https://acme.udesk.cn/open_api_v1/customers"
        );
        assert!(BaseUrl::parse("http://127.0.0.1:8080").is_ok());
        assert!(BaseUrl::parse("http://localhost:8080").is_ok());
        assert!(BaseUrl::parse("http://[::1]:8080").is_ok());
        assert!(matches!(
            BaseUrl::parse("http://acme.omnidesk.com"),
            Err(BaseUrlError::PlainHttp(_))
        ));
        assert!(matches!(
            BaseUrl::parse("ftp://acme.omnidesk.com"),
            Err(BaseUrlError::Scheme(_))
        ));
        assert!(BaseUrl::parse("not a url").is_err());
    }
}
