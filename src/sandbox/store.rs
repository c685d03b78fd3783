//! The sandbox's data: each platform's customers with the indexes its API looks them up by.
//!
//! Customers are kept in id order (`order`) so offset pages are O(page), also at a million.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One Omnidesk channel endpoint of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OmniChannel {
    /// Channel endpoint id.
    pub id: u64,
    /// `email`, `telephone`, `facebook`, `twitter` or a numeric channel id.
    #[serde(rename = "type")]
    pub kind: String,
    /// The address.
    pub value: String,
}

/// An Omnidesk customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OmniCustomer {
    /// Platform id.
    pub id: u64,
    /// Brand.
    pub brand_id: u64,
    /// External primary id (unique per brand).
    pub external_primary_id: String,
    /// Given name.
    pub firstname: String,
    /// Family name.
    pub lastname: String,
    /// Channel endpoints.
    pub channels: Vec<OmniChannel>,
    /// Custom fields by name (without the `custom_` prefix).
    pub custom_fields: BTreeMap<String, String>,
}

/// A Udesk customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdeskCustomer {
    /// Platform id.
    pub id: u64,
    /// Name (required).
    pub nick_name: String,
    /// `normal` or `vip`.
    pub level: String,
    /// Description.
    pub description: Option<String>,
    /// Primary email (unique).
    pub email: Option<String>,
    /// Further emails as `(email id, address)`, as the documents show them (003:502-505).
    #[serde(deserialize_with = "pairs_or_strings")]
    pub other_emails: Vec<(u64, String)>,
    /// Phones as `(phone id, number)`; numbers are unique.
    pub cellphones: Vec<(u64, String)>,
    /// External id (unique).
    pub open_api_token: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom fields: strings for TextField_N, arrays of option ids for SelectField_N.
    pub custom_fields: BTreeMap<String, serde_json::Value>,
    /// How it was created: `api` or `import`.
    pub source_channel: String,
    /// Responsible agent (`owner_id`).
    #[serde(default)]
    pub owner_id: Option<u64>,
    /// The agent's group (`owner_group_id`).
    #[serde(default)]
    pub owner_group_id: Option<u64>,
    /// Customer company (`organization_id`).
    #[serde(default)]
    pub organization_id: Option<u64>,
    /// Blacklisted (`is_blocked`).
    #[serde(default)]
    pub is_blocked: bool,
    /// Web identifier (`web_token`, unique).
    #[serde(default)]
    pub web_token: Option<String>,
    /// SDK identifier (`sdk_token`).
    #[serde(default)]
    pub sdk_token: Option<String>,
    /// WeChat, Mini Program and Enterprise WeChat bindings, as the documents print them.
    #[serde(default)]
    pub weixins: Vec<serde_json::Value>,
    /// See [`UdeskCustomer::weixins`].
    #[serde(default)]
    pub weixin_minis: Vec<serde_json::Value>,
    /// See [`UdeskCustomer::weixins`].
    #[serde(default)]
    pub weixin_works: Vec<serde_json::Value>,
}

impl UdeskCustomer {
    /// A customer with nothing but the defaults; `source` is `api` or `import`.
    pub fn empty(source: &str) -> Self {
        UdeskCustomer {
            id: 0,
            nick_name: String::new(),
            level: "normal".into(),
            description: None,
            email: None,
            other_emails: Vec::new(),
            cellphones: Vec::new(),
            open_api_token: None,
            tags: Vec::new(),
            custom_fields: BTreeMap::new(),
            source_channel: source.into(),
            owner_id: None,
            owner_group_id: None,
            organization_id: None,
            is_blocked: false,
            web_token: None,
            sdk_token: None,
            weixins: Vec::new(),
            weixin_minis: Vec::new(),
            weixin_works: Vec::new(),
        }
    }

    /// Every email address: the primary one, then the others.
    pub fn emails(&self) -> impl Iterator<Item = &String> {
        self.email
            .iter()
            .chain(self.other_emails.iter().map(|(_, e)| e))
    }
}

/// State files written before emails carried ids hold plain strings: read both.
fn pairs_or_strings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(u64, String)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Item {
        Pair(u64, String),
        Plain(String),
    }
    let items = Vec::<Item>::deserialize(d)?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Item::Pair(id, e) => (id, e),
            Item::Plain(e) => (u64::MAX - i as u64, e),
        })
        .collect())
}

/// The Omnidesk tenant.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct OmniStore {
    /// Customers by id.
    pub customers: HashMap<u64, OmniCustomer>,
    /// Ids in creation order.
    pub order: Vec<u64>,
    /// (brand, primary id) → id; derived, rebuilt after loading.
    #[serde(skip)]
    pub by_primary: HashMap<(u64, String), u64>,
    /// Last id given out (customers and channels share the counter).
    pub last_id: u64,
    /// Ids of customers purged with their data (purgeData), oldest first.
    #[serde(default)]
    pub purged: Vec<u64>,
    /// Timeline entries made by `externalEvent`, oldest first.
    #[serde(default)]
    pub events: Vec<OmniEvent>,
}

/// An entry on a customer's timeline (`externalEvent`, 000:572-609).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OmniEvent {
    /// Entry id.
    pub id: u64,
    /// The customer's platform id.
    pub customer_id: u64,
    /// Who or what made it.
    pub initiated_by: String,
    /// Its text.
    pub message: String,
    /// Where it comes from.
    pub source_url: String,
}

impl OmniStore {
    /// Rebuilds the derived index after loading.
    pub fn rebuild_index(&mut self) {
        self.by_primary = self
            .customers
            .values()
            .filter(|c| !c.external_primary_id.is_empty())
            .map(|c| ((c.brand_id, c.external_primary_id.clone()), c.id))
            .collect();
    }

    /// Gives out the next id.
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Inserts a new customer (the caller checked uniqueness).
    /// A customer without a primary id (created by chat or e-mail) is not indexed by one.
    pub fn insert(&mut self, customer: OmniCustomer) {
        if !customer.external_primary_id.is_empty() {
            self.by_primary.insert(
                (customer.brand_id, customer.external_primary_id.clone()),
                customer.id,
            );
        }
        self.order.push(customer.id);
        self.customers.insert(customer.id, customer);
    }

    /// Removes a customer (its timeline goes with it); returns it.
    pub fn remove(&mut self, id: u64) -> Option<OmniCustomer> {
        let customer = self.customers.remove(&id)?;
        self.events.retain(|e| e.customer_id != id);
        let key = (customer.brand_id, customer.external_primary_id.clone());
        if self.by_primary.get(&key) == Some(&id) {
            self.by_primary.remove(&key);
        }
        if let Ok(pos) = self.order.binary_search(&id) {
            self.order.remove(pos);
        }
        Some(customer)
    }

    /// The customers with this channel value in this brand, oldest first.
    pub fn find_by_channel(&self, brand_id: u64, value: &str) -> Vec<&OmniCustomer> {
        self.order
            .iter()
            .filter_map(|id| self.customers.get(id))
            .filter(|c| {
                c.brand_id == brand_id
                    && c.channels
                        .iter()
                        .any(|ch| ch.value.eq_ignore_ascii_case(value))
            })
            .collect()
    }

    /// Gives customer `id`, which has no primary id, this one (`Err`: the brand's customer
    /// holding it already; `Ok(false)`: no such customer, or it has a primary id).
    pub fn set_primary(&mut self, id: u64, primary: &str) -> Result<bool, u64> {
        let Some(c) = self.customers.get(&id) else {
            return Ok(false);
        };
        if !c.external_primary_id.is_empty() {
            return Ok(false);
        }
        let key = (c.brand_id, primary.to_string());
        if let Some(&holder) = self.by_primary.get(&key) {
            return Err(holder);
        }
        self.by_primary.insert(key, id);
        if let Some(c) = self.customers.get_mut(&id) {
            c.external_primary_id = primary.to_string();
        }
        Ok(true)
    }
}

/// The Udesk tenant.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct UdeskStore {
    /// Customers by id.
    pub customers: HashMap<u64, UdeskCustomer>,
    /// Ids in creation order.
    pub order: Vec<u64>,
    /// Lower-cased email → id.
    pub by_email: HashMap<String, u64>,
    /// Phone number → id.
    pub by_phone: HashMap<String, u64>,
    /// open_api_token → id.
    pub by_token: HashMap<String, u64>,
    /// web_token → id.
    #[serde(default)]
    pub by_web_token: HashMap<String, u64>,
    /// Last customer id.
    pub last_id: u64,
    /// Last phone id.
    pub last_phone_id: u64,
    /// Last id of an other email.
    #[serde(default)]
    pub last_email_id: u64,
}

impl UdeskStore {
    /// Gives out the next customer id.
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Gives out the next phone id.
    pub fn next_phone_id(&mut self) -> u64 {
        self.last_phone_id += 1;
        self.last_phone_id
    }

    /// Gives out the next id of an other email.
    pub fn next_email_id(&mut self) -> u64 {
        self.last_email_id += 1;
        self.last_email_id
    }

    /// Inserts or replaces a customer and its index entries.
    pub fn put(&mut self, customer: UdeskCustomer) {
        if let Some(old) = self.customers.get(&customer.id).cloned() {
            self.unindex(&old);
        } else {
            self.order.push(customer.id);
        }
        if let Some(e) = &customer.email {
            self.by_email.insert(e.to_lowercase(), customer.id);
        }
        for (_, e) in &customer.other_emails {
            self.by_email.insert(e.to_lowercase(), customer.id);
        }
        if let Some(t) = &customer.web_token {
            self.by_web_token.insert(t.clone(), customer.id);
        }
        for (_, p) in &customer.cellphones {
            self.by_phone.insert(p.clone(), customer.id);
        }
        if let Some(t) = &customer.open_api_token {
            self.by_token.insert(t.clone(), customer.id);
        }
        self.customers.insert(customer.id, customer);
    }

    fn unindex(&mut self, c: &UdeskCustomer) {
        for e in c.emails() {
            if self.by_email.get(&e.to_lowercase()) == Some(&c.id) {
                self.by_email.remove(&e.to_lowercase());
            }
        }
        if let Some(t) = &c.web_token {
            if self.by_web_token.get(t) == Some(&c.id) {
                self.by_web_token.remove(t);
            }
        }
        for (_, p) in &c.cellphones {
            if self.by_phone.get(p) == Some(&c.id) {
                self.by_phone.remove(p);
            }
        }
        if let Some(t) = &c.open_api_token {
            if self.by_token.get(t) == Some(&c.id) {
                self.by_token.remove(t);
            }
        }
    }

    /// Removes a customer; returns it.
    pub fn remove(&mut self, id: u64) -> Option<UdeskCustomer> {
        let customer = self.customers.remove(&id)?;
        self.unindex(&customer);
        if let Ok(pos) = self.order.binary_search(&id) {
            self.order.remove(pos);
        }
        Some(customer)
    }

    /// Looks a customer up the way `get_customer?type=…&content=…` does.
    pub fn find(&self, kind: &str, content: &str) -> Option<u64> {
        match kind {
            "id" => content
                .parse()
                .ok()
                .filter(|id| self.customers.contains_key(id)),
            "email" => self.by_email.get(&content.to_lowercase()).copied(),
            "cellphone" => self.by_phone.get(content).copied(),
            "token" | "customer_token" => self.by_token.get(content).copied(),
            "web_token" => self.by_web_token.get(content).copied(),
            "sdk_token" => self
                .order
                .iter()
                .copied()
                .find(|id| self.customers[id].sdk_token.as_deref() == Some(content)),
            _ => None,
        }
    }
}

/// Deterministic realistic customers for `--seed-customers`.
pub fn seed(omni: &mut OmniStore, udesk: &mut UdeskStore, count: u64, brand_id: u64) {
    use crate::synth::{Rng, FIRST, LAST};
    // The platform only holds names it accepts, so seed from the generator's lists minus
    // the ones Omnidesk's name pattern refuses.
    let allowed = |n: &&&str| n.chars().all(crate::validate::name::omnidesk_allows);
    let first_names: Vec<&str> = FIRST.iter().filter(allowed).copied().collect();
    let last_names: Vec<&str> = LAST.iter().filter(allowed).copied().collect();
    let mut rng = Rng(0x5eed);
    for i in 1..=count {
        let first = rng.pick(&first_names);
        let last = rng.pick(&last_names);
        let email = format!("seed{i}@example.com");
        // Valid Dutch mobile numbers (+31 61x xxx xxx), unique below ten million.
        let phone = format!("+3161{:07}", i % 10_000_000);
        let tier = ["bronze", "silver", "gold"][rng.below(3) as usize];
        let id = omni.next_id();
        let email_channel = OmniChannel {
            id: omni.next_id(),
            kind: "email".into(),
            value: email.clone(),
        };
        let phone_channel = OmniChannel {
            id: omni.next_id(),
            kind: "telephone".into(),
            value: phone.clone(),
        };
        omni.insert(OmniCustomer {
            id,
            brand_id,
            external_primary_id: format!("S{i:08}"),
            firstname: first.to_string(),
            lastname: last.to_string(),
            channels: vec![email_channel, phone_channel],
            custom_fields: BTreeMap::from([("tier".to_string(), tier.to_string())]),
        });
        let id = udesk.next_id();
        let phone_id = udesk.next_phone_id();
        udesk.put(UdeskCustomer {
            id,
            nick_name: format!("{first} {last}"),
            level: if rng.percent(10) { "vip" } else { "normal" }.to_string(),
            email: Some(email),
            cellphones: vec![(phone_id, phone)],
            open_api_token: Some(format!("S{i:08}")),
            tags: vec![tier.to_string()],
            custom_fields: BTreeMap::from([(
                "TextField_1".to_string(),
                serde_json::Value::String(tier.to_string()),
            )]),
            ..UdeskCustomer::empty("import")
        });
    }
}
