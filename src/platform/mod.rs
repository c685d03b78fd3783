//! The platform clients: Omnidesk ([`omnidesk`]) and Udesk ([`udesk`], signed by
//! [`udesk_sign`]) behind one [`Target`] trait, over one [`transport`]. What the documents
//! state about both platforms is in [`documented`], shared with the sandbox that emulates
//! them (`crate::sandbox`).
//!
//! A client splits *encoding* (a [`Customer`] → form fields or JSON, pure and testable
//! without a network) from *transport* ([`transport::Transport`]: retries, the shared pause, the
//! rate limit, adaptive concurrency). Replies are decoded into [`CallError`] kinds so the
//! import driver can tell a refusal from a retryable failure.

pub mod concurrency;
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
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Read from a config file as a string, or as a number or boolean written without quotes:
/// a type error would otherwise echo the value in its message.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a credential (a quoted string)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(
                    "a credential written as a decimal number loses digits; put it in quotes",
                ))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
        }
        d.deserialize_any(Visit)
    }
}

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
    /// The platform cannot be worked with now, whatever the row: a redirect (API calls are
    /// never redirected), a page that is not an API reply, a `Retry-After` or a silence
    /// longer than the run may wait. The run stops, safe to resume.
    #[error("platform unusable: {message}")]
    Unusable {
        /// What was seen, without URLs' queries or credentials.
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

impl CallError {
    /// Whether this failure ends the whole run rather than one row (refused credentials, an
    /// unusable platform): no other row can do better.
    pub fn stops_run(&self) -> bool {
        matches!(self, CallError::Auth { .. } | CallError::Unusable { .. })
    }
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

/// Whether a platform record holds the values a create sent (`field`, `value` pairs), for
/// telling our own lost create from a customer that was there before. Only the fields the
/// record carries as text are compared (case and surrounding space aside): a reply that
/// leaves a field out or names it otherwise does not make our own customer someone else's.
pub fn holds_what_was_sent(record: &serde_json::Value, sent: &[(&str, &str)]) -> bool {
    sent.iter().all(
        |(field, value)| match record.get(*field).and_then(serde_json::Value::as_str) {
            Some(held) => held.trim().eq_ignore_ascii_case(value.trim()),
            None => true,
        },
    )
}

/// A delete call's result, given whether an earlier attempt may have been applied (sent, and
/// answered with no usable reply: cut, timed out or a 5xx): then "not found" is that attempt's
/// success, the customer having been there when it was sent.
/// A customer someone else deleted in the same instant would be reported as ours; deskport
/// cannot tell the two apart, and calling it "not found" would be wrong far more often.
pub fn deleted_unless_gone_before(
    result: Result<(), CallError>,
    maybe_applied_before: bool,
) -> Result<(), CallError> {
    match result {
        Err(CallError::NotFound) if maybe_applied_before => Ok(()),
        other => other,
    }
}

/// Besides the external id, what finds a row's existing customer (`import --match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKey {
    /// The row's emails (the first, then the others).
    Email,
    /// The row's phone numbers.
    Phone,
}

impl MatchKey {
    /// `email` or `phone`.
    pub fn name(self) -> &'static str {
        match self {
            MatchKey::Email => "email",
            MatchKey::Phone => "phone",
        }
    }

    /// The row's values for this key.
    pub fn values(self, c: &Customer) -> Vec<&str> {
        match self {
            MatchKey::Email => c
                .email
                .iter()
                .chain(&c.other_emails)
                .map(String::as_str)
                .collect(),
            MatchKey::Phone => c.phones.iter().map(String::as_str).collect(),
        }
    }
}

/// A customer a search by email or phone found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its platform id.
    pub platform_id: String,
    /// Its external id; `None` when it has none (created by chat, phone or by hand).
    pub external_id: Option<String>,
}

/// The key a survey files an email or phone under (lower-cased email; a phone's last eight
/// digits, so `+8613000000001` and `13000000001` meet): for routing rows whose address a
/// customer may hold to the searching path. A false meeting only costs searches.
pub fn channel_key(key: MatchKey, value: &str) -> String {
    match key {
        MatchKey::Email => format!("e:{}", value.trim().to_lowercase()),
        MatchKey::Phone => {
            let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
            let tail: String = digits[digits.len().saturating_sub(8)..].iter().collect();
            format!("p:{tail}")
        }
    }
}

/// What one pass over the platform's customers learned before an import.
#[derive(Debug, Default, Clone)]
pub struct Survey {
    /// External id → platform id of every customer that has an external id.
    pub existing: HashMap<String, String>,
    /// Customers the platform holds.
    pub platform_total: u64,
    /// Calls the pass cost.
    pub calls: u64,
    /// [`channel_key`]s of the emails and phones customers hold, when the survey was asked
    /// for them (`import --match`).
    pub channels: std::collections::HashSet<String>,
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

    /// After a create that went unanswered: the id of the customer with this external id,
    /// and whether its record holds what the create sent (else it was there before; see
    /// [`holds_what_was_sent`]). The default trusts any record found.
    fn resolve(
        &self,
        customer: &Customer,
    ) -> impl Future<Output = Result<Option<(String, bool)>, CallError>> + Send {
        async move { Ok(self.lookup(customer).await?.map(|id| (id, true))) }
    }

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

    /// Deletes the customer with this platform id; `CallError::NotFound` when there is none
    /// (already deleted). Idempotent. A retry answered "not found" after an attempt that may
    /// have been applied is this call's success (see [`deleted_unless_gone_before`]).
    fn delete(&self, _platform_id: &str) -> impl Future<Output = Result<(), CallError>> + Send {
        async {
            Err(CallError::Rejected {
                message: "this platform client cannot delete".into(),
            })
        }
    }

    /// Deletes the customer with this platform id and everything linked to it (tickets,
    /// items: Omnidesk `purgeData`); `CallError::NotFound` when there is none. Idempotent.
    fn purge(&self, _platform_id: &str) -> impl Future<Output = Result<(), CallError>> + Send {
        async {
            Err(CallError::Rejected {
                message: "this platform has no purge".into(),
            })
        }
    }

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

    /// One read-only call that needs valid credentials, made before the first row is sent;
    /// the number of customers the account holds when the reply says.
    fn probe(&self) -> impl Future<Output = Result<Option<u64>, CallError>> + Send {
        async { Ok(None) }
    }

    /// The account's custom field definitions, when the platform publishes them (Udesk);
    /// `None` when it does not (Omnidesk).
    fn field_definitions(
        &self,
    ) -> impl Future<Output = Result<Option<crate::fields::FieldDefs>, CallError>> + Send {
        async { Ok(None) }
    }

    /// Before writing about `rows` rows: learns in one pass which external ids exist, when that
    /// costs fewer calls than a lookup or write per row; `None` when it does not (the
    /// default: the platform has no cheap pass). `total` is the account's size when a probe
    /// just read it.
    fn survey(
        &self,
        _rows: u64,
        _total: Option<u64>,
        _channels: bool,
    ) -> impl Future<Output = Result<Option<Survey>, CallError>> + Send {
        async { Ok(None) }
    }

    /// The customers holding this email or phone (`value` as the row has it; `customer`
    /// for its brand). Empty when none does.
    fn find_by(
        &self,
        _key: MatchKey,
        _value: &str,
        _customer: &Customer,
    ) -> impl Future<Output = Result<Vec<Holder>, CallError>> + Send {
        async {
            Err(CallError::Rejected {
                message: "this platform client cannot search by email or phone".into(),
            })
        }
    }

    /// Gives the existing customer `platform_id`, which has no external id, this row's
    /// external id, changing nothing else. The caller checks by a lookup that it took.
    fn link(
        &self,
        _customer: &Customer,
        _platform_id: &str,
    ) -> impl Future<Output = Result<(), CallError>> + Send {
        async {
            Err(CallError::Rejected {
                message: "this platform client cannot set an external id".into(),
            })
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

/// `text` with the values of credential-like parameters cut out, wherever a platform's
/// message may echo a request: `sign=…`, `nonce=…`, `token=…`, `password=…`, `apiKey: …`,
/// `"open_api_auth_token": "…"` and the like (query strings, headers and JSON alike).
pub fn redact(text: &str) -> String {
    static PATTERN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?i)\b((?:sign|nonce|[a-z_]*token|password|passwd|api_?key|secret|authorization)["']?\s*[=:]\s*["']?)(?:bearer\s+)?[^&\s"',;}]+"#,
        )
        .expect("a valid pattern")
    });
    PATTERN.replace_all(text, "${1}<redacted>").into_owned()
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
    /// `user:password@` in the URL: credentials come from the environment or `--config`.
    #[error("--base-url {0:?} carries a user name or password; give only the origin (credentials come from the environment or --config)")]
    Userinfo(String),
}

/// `raw` as it may be shown in a message: anything between `://` and the last `@` of the
/// authority (a user name or password) is replaced by `…`.
fn shown(raw: &str) -> String {
    let raw = raw.trim();
    let Some(start) = raw.find("://").map(|i| i + 3) else {
        return match raw.rfind('@') {
            Some(at) => format!("…{}", &raw[at..]),
            None => raw.to_string(),
        };
    };
    let end = raw[start..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |i| start + i);
    match raw[start..end].rfind('@') {
        Some(at) => format!("{}…{}", &raw[..start], &raw[start + at..]),
        None => raw.to_string(),
    }
}

impl BaseUrl {
    /// Parses and checks an origin; a trailing `/api/v2` or `/open_api_v1` is tolerated.
    pub fn parse(raw: &str) -> Result<Self, BaseUrlError> {
        let mut url =
            reqwest::Url::parse(raw.trim()).map_err(|_| BaseUrlError::Invalid(shown(raw)))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BaseUrlError::Userinfo(shown(raw)));
        }
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
                    return Err(BaseUrlError::PlainHttp(shown(raw)));
                }
            }
            _ => return Err(BaseUrlError::Scheme(shown(raw))),
        }
        if url.host().is_none() {
            return Err(BaseUrlError::Invalid(shown(raw)));
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

    #[test]
    fn a_record_holds_what_was_sent_only_when_the_fields_it_carries_agree() {
        let record = serde_json::json!({"firstname": "Anna ", "lastname": "BERG", "id": 3});
        assert!(holds_what_was_sent(
            &record,
            &[("firstname", "Anna"), ("lastname", "Berg")]
        ));
        assert!(!holds_what_was_sent(&record, &[("firstname", "Was Anna")]));
        // A field the reply leaves out is no evidence either way.
        assert!(holds_what_was_sent(&record, &[("nick_name", "Anna Berg")]));
    }

    use super::*;

    #[test]
    fn a_credential_without_quotes_is_read_and_never_echoed() {
        #[derive(serde::Deserialize)]
        struct S {
            key: Secret,
        }
        let s: S = toml::from_str("key = 123456789").unwrap();
        assert_eq!(s.key.expose(), "123456789");
        let err = toml::from_str::<S>("key = 1234.5678").err().unwrap();
        assert!(!err.message().contains("1234"), "{}", err.message());
        let err = toml::from_str::<S>("key = [7654321]").err().unwrap();
        assert!(!err.message().contains("7654321"), "{}", err.message());
    }

    #[test]
    fn channel_keys_meet_across_phone_forms_and_email_case() {
        assert_eq!(
            channel_key(MatchKey::Phone, "+8613000000001"),
            channel_key(MatchKey::Phone, "13000000001")
        );
        assert_eq!(
            channel_key(MatchKey::Email, " Anna@Example.COM"),
            channel_key(MatchKey::Email, "anna@example.com")
        );
        assert_ne!(
            channel_key(MatchKey::Email, "1300000000@x"),
            channel_key(MatchKey::Phone, "1300000000")
        );
    }

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

    #[test]
    fn redact_cuts_credential_values_out_of_echoed_requests() {
        let echoed = "bad request GET /open_api_v1/customers?email=admin@acme.cn&timestamp=1494474404&sign=6892f1b7&nonce=2d93-15&sign_version=v2";
        let clean = redact(echoed);
        assert!(
            !clean.contains("6892f1b7") && !clean.contains("2d93-15"),
            "{clean}"
        );
        assert!(clean.contains("sign_version=v2"), "{clean}");
        for text in [
            r#"{"open_api_auth_token": "tok-123456"}"#,
            "apiKey: key-123456",
            "password=pw-123456&x=1",
            "Authorization: Bearer abc-123456",
        ] {
            let clean = redact(text);
            assert!(!clean.contains("123456"), "{text} → {clean}");
        }
        assert_eq!(redact("Email is invalid"), "Email is invalid");
    }

    #[test]
    fn base_url_with_credentials_is_refused_without_echoing_them() {
        for raw in [
            "https://admin:hunter2@acme.omnidesk.com",
            "https://hunter2@acme.omnidesk.com/api/v2",
            "http://admin:hunter2@127.0.0.1:8080",
        ] {
            let err = BaseUrl::parse(raw).unwrap_err();
            assert!(matches!(err, BaseUrlError::Userinfo(_)), "{raw}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let err = BaseUrl::parse("htp:/admin:hunter2@x y").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(
            shown("https://a:b@h.example/p@q"),
            "https://…@h.example/p@q"
        );
    }
}
