//! What the platforms' own documents state, in one place, with the file and line in
//! `shared/seeds/` (`000`–`002` Omnidesk API v2, `003` Udesk open API v1). The clients obey
//! these numbers and the sandbox enforces the same constants, so a change here changes both
//! sides at once.
//!
//! What only one side *assumes* (because the documents are silent) stays beside that side:
//! the sandbox lists its decisions in `deskport sandbox --help`
//! ([`DECISIONS`](crate::sandbox::DECISIONS)); the README's "What deskport assumes about each
//! platform" lists the clients'. The Udesk signature and error codes, also stated by 003,
//! are in [`udesk_sign`](super::udesk_sign), shared the same way.

use std::time::Duration;

/// Omnidesk: largest `itemLimit` of the customer list (000:100).
pub const OMNIDESK_MAX_ITEM_LIMIT: u64 = 99;
/// Omnidesk: `itemLimit` when none is given (000:100).
pub const OMNIDESK_DEFAULT_ITEM_LIMIT: u64 = 15;

/// Udesk: most customers in one `batch_import_async` call (003:1131).
pub const UDESK_BULK_MAX_ROWS: usize = 100;
/// Udesk: `batch_import_async` may be called once a minute (003:1125).
pub const UDESK_BULK_INTERVAL: Duration = Duration::from_secs(60);
/// Udesk: most customers one scroll export call returns (003:1249).
pub const UDESK_EXPORT_BATCH: u64 = 1000;
/// Udesk: a scroll id expires a minute after it was issued (003:1231).
pub const UDESK_SCROLL_TTL: Duration = Duration::from_secs(60);
/// Udesk: largest `page_size` of the customer list (003:17).
pub const UDESK_LIST_MAX_PAGE_SIZE: u64 = 100;
/// Udesk: the customer list reaches at most this many customers (003:5).
pub const UDESK_LIST_MAX_ROWS: u64 = 10_000;
/// Udesk: longest email, external id, nick name, description and web token (003:274-288).
pub const UDESK_MAX_CHARS: usize = 255;
