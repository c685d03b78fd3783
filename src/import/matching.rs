//! Finding a row's customer by its emails and phones when its external id finds no one
//! (`--match`), shared by import, its dry run and delete.

use crate::model::Customer;
use crate::platform::{CallError, Holder, MatchKey, Target};

/// Why [`find_holder`] found no single customer to link.
pub enum Unmatched {
    /// A search failed.
    Call(CallError),
    /// More than one customer holds the row's addresses (the message names them).
    Conflict(String),
}

/// What a search by email or phone found: the key, the row's value that found it, and
/// the customer.
pub type Found = (MatchKey, String, Holder);

/// The customer one of the row's emails or phones finds, trying `keys` in order: the first
/// key that finds anyone decides. Two customers found under it are a conflict, naming both.
pub async fn find_holder<T: Target>(
    t: &T,
    keys: &[MatchKey],
    c: &Customer,
) -> Result<Option<Found>, Unmatched> {
    for &key in keys {
        let mut found: Vec<(String, Holder)> = Vec::new();
        for value in key.values(c) {
            let holders = t.find_by(key, value, c).await.map_err(Unmatched::Call)?;
            for h in holders {
                if !found.iter().any(|(_, f)| f.platform_id == h.platform_id) {
                    found.push((value.to_string(), h));
                }
            }
        }
        match found.len() {
            0 => continue,
            1 => {
                let (value, holder) = found.remove(0);
                return Ok(Some((key, value, holder)));
            }
            _ => {
                let named: Vec<String> = found
                    .iter()
                    .map(|(v, h)| match &h.external_id {
                        Some(e) => format!("{v}: customer {} (external id {e})", h.platform_id),
                        None => format!("{v}: customer {}", h.platform_id),
                    })
                    .collect();
                return Err(Unmatched::Conflict(format!(
                    "the row's {} finds more than one customer ({}); none was linked",
                    key.name(),
                    named.join("; ")
                )));
            }
        }
    }
    Ok(None)
}

/// Why a found customer cannot be linked to the row: it has another external id.
pub fn foreign_holder(c: &Customer, (key, value, holder): &Found) -> Option<String> {
    match &holder.external_id {
        Some(other) if *other != c.external_id => Some(format!(
            "the {} {value} belongs to customer {}, which has external id {other}; it was left as it was",
            key.name(),
            holder.platform_id
        )),
        _ => None,
    }
}
