//! The platforms' documents' own examples (`fixtures/platform-docs/examples.json`, copied
//! byte for byte from `shared/platform-docs/`, never edited) read by the clients' decoders.
//! Where a document's text is not strict JSON the entry's `json` is `null`; those are named
//! here and left as printed.

use bytes::Bytes;
use deskport::platform::{omnidesk, udesk};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;

fn examples() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/platform-docs/examples.json");
    serde_json::from_slice(&std::fs::read(path).expect("examples fixture")).expect("examples JSON")
}

fn example(id: &str) -> Value {
    examples()
        .into_iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no example {id}"))
}

fn text(e: &Value) -> Bytes {
    Bytes::from(e["text"].as_str().expect("text").to_string())
}

#[test]
fn the_fixture_is_the_documents_copy_unedited() {
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/platform-docs/examples.json");
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/platform-docs/examples.json");
    if shared.exists() {
        assert_eq!(
            std::fs::read(&ours).unwrap(),
            std::fs::read(&shared).unwrap()
        );
    } else {
        eprintln!("shared/platform-docs is not beside this checkout: byte comparison skipped");
    }
    let mut not_strict = Vec::new();
    for e in examples() {
        let id = e["id"].as_str().unwrap().to_string();
        match &e["json"] {
            Value::Null => not_strict.push(id),
            parsed => {
                let again: Value = serde_json::from_slice(&text(&e)).expect(&id);
                assert_eq!(&again, parsed, "{id}: text and json disagree");
            }
        }
    }
    // Trailing commas (003:929-943) and a `[...]` placeholder (003:1262-1267), as printed.
    assert_eq!(not_strict, ["udesk.filters.reply", "udesk.export.reply"]);
}

#[test]
fn omnidesk_documented_replies_decode_as_they_are_printed() {
    let ok = |id: &str| {
        omnidesk::decode(StatusCode::OK, &HeaderMap::new(), &text(&example(id)))
            .unwrap_or_else(|e| panic!("{id}: {e}"))
    };
    let list = ok("omnidesk.list.reply");
    assert_eq!(list["itemTotal"], 1);
    let item = &list["items"][0];
    assert!(
        omnidesk::record_of(item).is_some(),
        "a list item is a customer record"
    );
    // The documented create reply carries no id (002:27): no record to read one from.
    let created = ok("omnidesk.create.reply");
    assert!(omnidesk::record_of(&created).is_none());
    ok("omnidesk.updateCustomer.reply");
    ok("omnidesk.addchannelonly.reply");
    ok("omnidesk.item_put.reply");
}

#[test]
fn udesk_documented_replies_decode_as_they_are_printed() {
    for id in [
        "udesk.list.reply",
        "udesk.get_customer.reply",
        "udesk.create.reply",
        "udesk.update_customer.reply",
        "udesk.destroy_customer.reply",
        "udesk.custom_fields.reply",
        "udesk.batch_import_async.reply",
        "udesk.merge.reply",
    ] {
        let reply = udesk::decode(StatusCode::OK, &HeaderMap::new(), &text(&example(id)))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(reply["code"], 1000, "{id}");
    }
}
