//! Fuzzes the whole front of the pipeline: bytes → decode → CSV or JSONL reader → mapping →
//! validation with every rule set, with and without an account's custom fields. Any panic is a bug; every row must come out with a line.
//!
//! ```text
//! cargo install cargo-fuzz && cargo +nightly fuzz run read_validate
//! ```
#![no_main]

use deskport::input::{self, Format, InputOptions, InputPath};
use deskport::mapping::Mapping;
use deskport::validate::{check_row, phone, Platform, Rules};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let mut options = InputOptions::new(InputPath::Stdin);
    options.format = Some(if selector & 1 == 0 { Format::Csv } else { Format::Jsonl });
    options.max_field_bytes = 256;
    let Ok(mut opened) = input::open_stream(Box::new(Cursor::new(bytes.to_vec())), &options) else { return };
    let platform = [None, Some(Platform::Omnidesk), Some(Platform::Udesk)][(selector as usize >> 1) % 3];
    let rules = Rules { platform, default_region: phone::region_from_code("NL"), ..Rules::default() };
    // Half the runs know an account's custom fields: columns map by title, values by type.
    let mapping = if selector & 8 == 0 {
        Mapping::builtin()
    } else {
        let reply = serde_json::json!({"custom_fields": [
            {"custom_field_name": "TextField_1", "title": "Date", "content_type": "date", "agent_permission": 1},
            {"custom_field_name": "TextField_2", "title": "Link", "content_type": "link"},
            {"custom_field_name": "TextField_3", "title": "Amount", "content_type": "numeric"},
            {"custom_field_name": "SelectField_1", "title": "Tier", "content_type": "checkbox", "options": [{"0": "gold"}, {"1": "a; b"}]},
        ]});
        Mapping::builtin().with_fields(std::sync::Arc::new(deskport::fields::FieldDefs::from_udesk_reply(&reply, "fuzz")))
    };
    while let Ok(Some(batch)) = opened.reader.next_batch(64) {
        let resolved = mapping.resolve(&batch.columns);
        for raw in batch.rows {
            assert!(raw.line >= 1);
            let checked = check_row(raw, &resolved, &rules);
            assert!(checked.is_clean() || !checked.issues.is_empty());
        }
    }
});
