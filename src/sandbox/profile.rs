//! How the sandbox answers where the documents are silent (`shared/platform-docs/README.md`,
//! "What the documents do not say"). A client must be right under every plausible answer, so
//! the sandbox can give each: `convenient` (ids in replies, errors that name the row) and
//! `documented` (only what the documents print; the rest the least helpful plausible way).
//! Changeable at run time through `PUT /__sandbox/profile`.

use serde::{Deserialize, Serialize};

/// Where Omnidesk's GET item and searches put the customer record (the documents show
/// "200 Success — No content", 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RecordAt {
    /// `{"type":"result","message":{…}}`, like the other replies' `message`.
    #[default]
    Message,
    /// The record is the reply.
    Top,
    /// `{"item":{…}}`.
    Item,
    /// `{"items":[{…}]}`, like the list.
    Items,
    /// `{"customer":{…}}`.
    Customer,
    /// `{"data":{…}}`.
    Data,
}

impl RecordAt {
    /// Every shape, for tests that try each.
    pub const ALL: [RecordAt; 6] = [
        RecordAt::Message,
        RecordAt::Top,
        RecordAt::Item,
        RecordAt::Items,
        RecordAt::Customer,
        RecordAt::Data,
    ];
}

/// What a Udesk scroll id does when it is sent again (the documents' id is an
/// Elasticsearch scroll id, 003:1262-1267).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScrollReplay {
    /// Code 2062: an id works once.
    #[default]
    Refused,
    /// The next batch, as an Elasticsearch scroll does: a lost reply loses a batch.
    NextBatch,
}

/// How an Omnidesk endpoint reads custom field keys in a form: the documents disagree
/// (`custom_<name>`, 000:264 and 000:342; the bare name, 001:119).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CustomKeyRule {
    /// `custom_<name>` is field `<name>`, and also any other key the endpoint does not know
    /// is a field of that name.
    #[default]
    Either,
    /// Only `custom_<name>`; another unknown key is refused.
    Prefixed,
    /// Every key the endpoint does not know is a field of exactly that name (`custom_x` is a
    /// field called `custom_x`).
    Bare,
}

/// The sandbox's answers where the documents are silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// The profile's name (`convenient`, `documented`, or `custom` once changed).
    pub name: String,
    /// Omnidesk: where item and search replies put the record.
    pub omnidesk_record_at: RecordAt,
    /// Omnidesk: create replies carry `customer_id` (the documents' do not, 002:27) and
    /// update and add-channel replies say "Customer updated." / "Channel added." as the
    /// sandbox always did; false: exactly 002's bodies.
    pub omnidesk_reply_ids: bool,
    /// Omnidesk: HTTP status of "no such customer" (200 with an empty result, 400 or 404).
    pub omnidesk_not_found_status: u16,
    /// Omnidesk: HTTP status of a taken primary id (200 with `type: error`, 400 or 409; only
    /// 409 names the holder).
    pub omnidesk_duplicate_status: u16,
    /// Udesk: bulk import checks every row at once and refuses the call naming the row;
    /// false: always code 1000 (003:1131), bad and colliding rows dropped silently when the
    /// import is applied (listed only in `/__sandbox/state`).
    pub udesk_bulk_validates: bool,
    /// Udesk: what a scroll id sent again does.
    pub udesk_scroll_replay: ScrollReplay,
    /// Udesk: refused credentials come as HTTP 401 with the documented codes; false: HTTP
    /// 200 with code 2099, which the documents do not list.
    pub udesk_auth_documented: bool,
    /// Udesk: `GET /customers/custom_fields` answers (the document marks it deprecated,
    /// 003:945); false: HTTP 404, as an account that retired it might.
    pub udesk_fields_endpoint: bool,
    /// Omnidesk: custom field keys on create and the other 000 endpoints.
    pub omnidesk_create_custom_keys: CustomKeyRule,
    /// Omnidesk: custom field keys on updateCustomer.
    pub omnidesk_update_custom_keys: CustomKeyRule,
    /// Omnidesk: `PUT /api/v2/customer` with `customerID` and `primaryID` gives a customer
    /// that has no primary id this one (000:346-378 do not say); false: `customerID` names
    /// the customer and `primaryID` is ignored.
    pub omnidesk_put_sets_primary: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::convenient()
    }
}

impl Profile {
    /// Ids in replies and errors that name the row: what the sandbox always did.
    pub fn convenient() -> Self {
        Profile {
            name: "convenient".into(),
            omnidesk_record_at: RecordAt::Message,
            omnidesk_reply_ids: true,
            omnidesk_not_found_status: 404,
            omnidesk_duplicate_status: 409,
            udesk_bulk_validates: true,
            udesk_scroll_replay: ScrollReplay::Refused,
            udesk_auth_documented: true,
            udesk_fields_endpoint: true,
            omnidesk_create_custom_keys: CustomKeyRule::Prefixed,
            omnidesk_update_custom_keys: CustomKeyRule::Either,
            omnidesk_put_sets_primary: true,
        }
    }

    /// Only what the documents print; where they are silent, the least helpful plausible
    /// answer.
    pub fn documented() -> Self {
        Profile {
            name: "documented".into(),
            omnidesk_record_at: RecordAt::Top,
            omnidesk_reply_ids: false,
            omnidesk_not_found_status: 200,
            omnidesk_duplicate_status: 400,
            udesk_bulk_validates: false,
            udesk_scroll_replay: ScrollReplay::NextBatch,
            udesk_auth_documented: false,
            udesk_fields_endpoint: true,
            omnidesk_create_custom_keys: CustomKeyRule::Prefixed,
            omnidesk_update_custom_keys: CustomKeyRule::Bare,
            omnidesk_put_sets_primary: false,
        }
    }

    /// A profile by name.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "convenient" => Some(Profile::convenient()),
            "documented" => Some(Profile::documented()),
            _ => None,
        }
    }
}

/// The profiles by name, for `--profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProfileName {
    /// See [`Profile::convenient`].
    #[default]
    Convenient,
    /// See [`Profile::documented`].
    Documented,
}

impl ProfileName {
    /// The profile.
    pub fn profile(self) -> Profile {
        match self {
            ProfileName::Convenient => Profile::convenient(),
            ProfileName::Documented => Profile::documented(),
        }
    }
}
