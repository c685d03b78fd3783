//! Udesk open API v1 authentication: the v2 query signature, and the codes it fails with.
//!
//! Every call carries `email`, `timestamp` (Unix seconds), `nonce`, `sign` and
//! `sign_version=v2` in its query string, where
//! `sign = hex(sha256("EMAIL&TOKEN&TIMESTAMP&NONCE&v2"))`. The timestamp must be within
//! five minutes of the server's clock and a nonce may be used once within 15 minutes, so a
//! request is signed just before it is sent — retries included.

use sha2::{Digest, Sha256};
use std::time::Duration;

/// The only signature version we speak.
pub const SIGN_VERSION: &str = "v2";
/// How far a timestamp may be from the server's clock.
pub const TIMESTAMP_WINDOW: Duration = Duration::from_secs(300);
/// How long a nonce stays used.
pub const NONCE_TTL: Duration = Duration::from_secs(15 * 60);

/// Success.
pub const CODE_OK: i64 = 1000;
/// Rate limit exceeded (HTTP 429, or HTTP 200 with this code).
pub const CODE_RATE_LIMITED: i64 = 429;
/// Generic error, with the detail in `exception.message`.
pub const CODE_ERROR: i64 = 2000;
/// No customer matches.
pub const CODE_NOT_FOUND: i64 = 2005;
/// Wrong signature (or wrong email/password at log-in).
pub const CODE_BAD_SIGNATURE: i64 = 2059;
/// Missing or unknown `type`.
pub const CODE_BAD_TYPE: i64 = 2060;
/// Bad `filter_id` or `scroll_id`.
pub const CODE_BAD_SCROLL: i64 = 2062;
/// Missing signature parameters.
pub const CODE_MISSING_AUTH: i64 = 20621;
/// Timestamp outside the window.
pub const CODE_STALE_TIMESTAMP: i64 = 20622;
/// Nonce already used.
pub const CODE_NONCE_REUSED: i64 = 20623;
/// Unsupported `sign_version`.
pub const CODE_BAD_SIGN_VERSION: i64 = 20624;
/// `page` out of range.
pub const CODE_BAD_PAGE: i64 = 206201;
/// `page_size` out of range.
pub const CODE_BAD_PAGE_SIZE: i64 = 206211;

/// Whether a code means the credentials or signature were refused.
pub fn is_auth_failure(code: i64) -> bool {
    matches!(code, CODE_BAD_SIGNATURE | 20621..=20624)
}

/// The signature for one request.
pub fn sign(email: &str, token: &str, timestamp: u64, nonce: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{email}&{token}&{timestamp}&{nonce}&{SIGN_VERSION}").as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_lowercase_hex_sha256_of_the_joined_fields() {
        let s = sign(
            "admin@udesk.cn",
            "token",
            1494474404,
            "2d931510-d99f-494a-8c67-87feb05e1594",
        );
        assert_eq!(s.len(), 64);
        assert!(s
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        // sha256("a&b&1&n&v2")
        assert_eq!(
            sign("a", "b", 1, "n"),
            hex::encode(Sha256::digest(b"a&b&1&n&v2"))
        );
    }

    #[test]
    fn auth_failure_codes() {
        for code in [
            CODE_BAD_SIGNATURE,
            CODE_MISSING_AUTH,
            CODE_STALE_TIMESTAMP,
            CODE_NONCE_REUSED,
            CODE_BAD_SIGN_VERSION,
        ] {
            assert!(is_auth_failure(code));
        }
        for code in [
            CODE_OK,
            CODE_RATE_LIMITED,
            CODE_ERROR,
            CODE_NOT_FOUND,
            CODE_BAD_PAGE,
        ] {
            assert!(!is_auth_failure(code));
        }
    }
}
