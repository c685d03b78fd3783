//! Where pages come from: one task per export that reads the platform and sends pages, in
//! order, each with the cursor that continues after it.
//!
//! - Omnidesk: offset pages (`itemStart`/`itemLimit` 99) fetched concurrently, a window of
//!   them in flight, delivered in offset order. More pages are asked for while the offset is
//!   below the largest `itemTotal` seen, so a list that grows is followed to its end.
//!   With details, each customer's full record is fetched too.
//! - Udesk scroll: one call after another, each with the scroll id the previous returned. An
//!   expired id starts a new scroll (the writer skips the ids it has written).
//! - Udesk list: pages of 100 (the list reaches 10,000 customers at most).

use super::checkpoint::{now_ms, Cursor};
use crate::platform::omnidesk::{Omnidesk, MAX_ITEM_LIMIT};
use crate::platform::udesk::{ListFilter, Udesk, LIST_MAX_ROWS, LIST_PAGE_SIZE};
use crate::platform::CallError;
use futures_util::stream::{FuturesOrdered, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

/// One page, in order, with what continues after it.
#[derive(Debug)]
pub struct Page {
    /// The customers (the platform's objects).
    pub records: Vec<Value>,
    /// The cursor for the next page.
    pub cursor: Cursor,
    /// How many customers the platform says the listing holds.
    pub total: Option<u64>,
    /// Customers listed but gone when their full record was fetched.
    pub vanished: u64,
    /// Customers left out by the brand filter.
    pub filtered: u64,
    /// This page starts a new scroll after an expired one.
    pub restarted: bool,
}

/// What went to the channel: a page, or the error that ended the listing.
pub type Item = Result<Page, CallError>;

/// Omnidesk paging options.
#[derive(Debug, Clone)]
pub struct OmnideskPaging {
    /// The `itemStart` to begin at.
    pub start: u64,
    /// List search keyword.
    pub query: Option<String>,
    /// Fetch each customer's full record.
    pub details: bool,
    /// Keep only this brand's customers (implies details).
    pub brand_id: Option<u64>,
    /// Pages in flight at most.
    pub window: usize,
}

async fn omnidesk_page(
    client: Arc<Omnidesk>,
    offset: u64,
    paging: Arc<OmnideskPaging>,
) -> Result<Page, CallError> {
    let list = client
        .list_page(offset, MAX_ITEM_LIMIT, paging.query.as_deref())
        .await?;
    let mut page = Page {
        records: Vec::with_capacity(list.items.len()),
        cursor: Cursor::Offset {
            next: offset + MAX_ITEM_LIMIT,
        },
        total: Some(list.total),
        vanished: 0,
        filtered: 0,
        restarted: false,
    };
    if !(paging.details || paging.brand_id.is_some()) {
        page.records = list.items;
        return Ok(page);
    }
    let fetches = list.items.iter().map(|item| {
        let client = &client;
        let brand = paging.brand_id;
        let id = super::record::id_of(item);
        async move {
            match id {
                Some(id) => client.customer(&id, brand).await,
                // No id to fetch the record by: keep what the list gave.
                None => Ok(item.clone()),
            }
        }
    });
    for result in futures_util::future::join_all(fetches).await {
        match result {
            Ok(record) => {
                let brand = record.get("brand_id").and_then(Value::as_u64);
                if paging.brand_id.is_some_and(|b| brand != Some(b)) {
                    page.filtered += 1;
                } else {
                    page.records.push(record);
                }
            }
            Err(CallError::NotFound) => page.vanished += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(page)
}

/// Sends Omnidesk pages in offset order until the end of the list (or an error).
pub async fn omnidesk(client: Arc<Omnidesk>, paging: OmnideskPaging, tx: Sender<Item>) {
    let paging = Arc::new(paging);
    let mut next = paging.start;
    let mut total: Option<u64> = None;
    let mut in_flight = FuturesOrdered::new();
    loop {
        while in_flight.len() < paging.window.max(1)
            && total.map_or(in_flight.is_empty(), |t| next < t)
        {
            in_flight.push_back(omnidesk_page(client.clone(), next, paging.clone()));
            next += MAX_ITEM_LIMIT;
        }
        let Some(result) = in_flight.next().await else {
            return;
        };
        let result = result.inspect(|page| {
            total = total.max(page.total);
        });
        let failed = result.is_err();
        if tx.send(result).await.is_err() || failed {
            return;
        }
    }
}

/// Failed scroll calls (each starting a new scroll) after which a scroll export gives up.
pub const MAX_FAILED_SCROLL_CALLS: u32 = 20;

/// Sends the batches of a Udesk scroll export until it ends (or an error), from a new
/// scroll. A scroll id is never sent twice: a scroll call that fails or goes unanswered may
/// have moved the scroll on (an Elasticsearch scroll id returns the next batch each time),
/// so a new scroll starts and the writer skips the customers it has written.
pub async fn udesk_scroll(client: Arc<Udesk>, filter: ListFilter, tx: Sender<Item>) {
    let mut scroll: Option<String> = None;
    let mut restarted = false;
    // Customers received in this chain (so the total ends it early).
    let mut counted = true;
    let mut received = 0u64;
    let mut pages_in_chain = 0u32;
    let mut quick_restarts = 0u32;
    let mut restarts = 0u32;
    loop {
        match client.export_page(scroll.as_deref(), &filter).await {
            Ok(page) => {
                pages_in_chain += 1;
                received += page.customers.len() as u64;
                let end = page.customers.is_empty()
                    || page.scroll_id.is_none()
                    || (counted && page.total.is_some_and(|t| received >= t));
                let cursor = Cursor::Scroll {
                    scroll_id: page.scroll_id.clone(),
                    issued_at_ms: now_ms(),
                };
                if !page.customers.is_empty() {
                    let item = Page {
                        records: page.customers,
                        cursor,
                        total: page.total,
                        vanished: 0,
                        filtered: 0,
                        restarted: std::mem::take(&mut restarted),
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
                if end {
                    return;
                }
                scroll = page.scroll_id;
            }
            Err(e) if scroll.is_some() && !e.stops_run() => {
                let expired = matches!(e, CallError::Expired { .. });
                let message = e.to_string();
                restarts += u32::from(!expired);
                quick_restarts = if expired && pages_in_chain <= 1 {
                    quick_restarts + 1
                } else {
                    0
                };
                if !expired && restarts > MAX_FAILED_SCROLL_CALLS {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                if quick_restarts >= 4 {
                    let _ = tx
                        .send(Err(CallError::Unavailable {
                            message: format!("the scroll id expires before the next call can use it ({message}); is the machine or the network very slow?"),
                            maybe_applied: false,
                        }))
                        .await;
                    return;
                }
                scroll = None;
                restarted = true;
                counted = true;
                received = 0;
                pages_in_chain = 0;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Sends the pages of the Udesk customer list from page `start` (or an error).
pub async fn udesk_list(client: Arc<Udesk>, filter: ListFilter, start: u64, tx: Sender<Item>) {
    let mut page_no = start.max(1);
    loop {
        let result = client.list_page(page_no, &filter).await.and_then(|page| {
            match page.total {
                Some(t) if t > LIST_MAX_ROWS => Err(CallError::Rejected {
                    message: format!("the customer list reaches only {LIST_MAX_ROWS} customers and this export has {t}; use --udesk-source scroll"),
                }),
                _ => Ok(page),
            }
        });
        let page = match result {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let end = page.customers.len() < LIST_PAGE_SIZE as usize
            || page.total.is_some_and(|t| page_no * LIST_PAGE_SIZE >= t);
        page_no += 1;
        if !page.customers.is_empty() {
            let item = Page {
                records: page.customers,
                cursor: Cursor::Page { next: page_no },
                total: page.total,
                vanished: 0,
                filtered: 0,
                restarted: false,
            };
            if tx.send(Ok(item)).await.is_err() {
                return;
            }
        }
        if end {
            return;
        }
    }
}
