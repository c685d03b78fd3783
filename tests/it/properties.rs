//! Property tests: the reader round-trips anything the csv crate writes; validation never
//! panics on arbitrary text; normalization is idempotent.

use deskport::input::{self, Format, InputOptions, InputPath};
use deskport::mapping::Mapping;
use deskport::model::RawRow;
use deskport::output::{push_canonical_cells, CANONICAL_COLUMNS};
use deskport::validate::{normalize, phone, Platform, Rules};
use proptest::prelude::*;
use std::io::Cursor;

/// Reads CSV bytes through the real input stack (decode, sniff skipped, CSV reader).
fn read_back(bytes: Vec<u8>) -> (Vec<String>, Vec<RawRow>) {
    try_read_back(bytes).unwrap()
}

/// [`read_back`], giving the reader's error instead of panicking on it.
fn try_read_back(bytes: Vec<u8>) -> Result<(Vec<String>, Vec<RawRow>), input::InputError> {
    let mut options = InputOptions::new(InputPath::Stdin);
    options.format = Some(Format::Csv);
    options.delimiter = Some(b',');
    options.max_field_bytes = usize::MAX;
    let mut opened = input::open_stream(Box::new(Cursor::new(bytes)), &options)?;
    let columns = opened.reader.columns().to_vec();
    let mut rows = Vec::new();
    while let Some(batch) = opened.reader.next_batch(7)? {
        rows.extend(batch.rows);
    }
    Ok((columns, rows))
}

/// Bytes that start with gzip's magic number are read as gzip, so arbitrary bytes that
/// happen to start so are a broken gzip stream: an error that says so, not a panic.
#[test]
fn bytes_that_look_like_gzip_but_are_not_are_a_read_error() {
    let err = try_read_back(vec![0x1f, 0x8b]).unwrap_err();
    assert!(err.to_string().contains("gzip"), "{err}");
}

fn rules_for(platform: Option<Platform>) -> Rules {
    Rules {
        platform,
        default_region: phone::region_from_code("NL"),
        ..Rules::default()
    }
}

fn raw(values: Vec<String>) -> RawRow {
    RawRow {
        line: 2,
        record: csv::StringRecord::from(values),
        read_issue: None,
        raw_text: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn csv_written_by_the_csv_crate_reads_back_equal(
        width in 1usize..5,
        // Arbitrary text, and cells made of delimiters, quotes and line breaks: multi-line
        // fields whose inner lines read as rows must stay whole (quote recovery never fires
        // on valid CSV).
        cells in prop::collection::vec(
            prop::collection::vec(prop_oneof![any::<String>(), "[a,\"\n\r]{0,12}"], 5),
            0..20,
        ),
    ) {
        let header: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
        let rows: Vec<Vec<String>> = cells.into_iter().map(|mut r| { r.truncate(width); r }).collect();
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(&header).unwrap();
        for r in &rows {
            writer.write_record(r).unwrap();
        }
        let bytes = writer.into_inner().unwrap();
        let (columns, read) = read_back(bytes);
        prop_assert_eq!(columns, header);
        prop_assert_eq!(read.len(), rows.len());
        for (got, want) in read.iter().zip(&rows) {
            prop_assert!(got.read_issue.is_none(), "{:?}", got.read_issue);
            let got: Vec<&str> = got.record.iter().collect();
            prop_assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>());
        }
        // Line numbers only grow.
        prop_assert!(read.windows(2).all(|w| w[0].line < w[1].line));
    }

    #[test]
    fn one_unclosed_quote_costs_its_own_row_only(
        rows in prop::collection::vec(prop::collection::vec("[a-z ]{1,6}", 3), 2..40),
        broken in any::<prop::sample::Index>(),
        quoted_after in any::<bool>(),
    ) {
        let k = broken.index(rows.len());
        let mut text = String::from("a,b,c\n");
        for (i, r) in rows.iter().enumerate() {
            if i == k {
                text.push_str(&format!("{},{},\"{}\n", r[0], r[1], r[2]));
            } else if quoted_after && i > k {
                // Later rows with quoted fields of their own.
                text.push_str(&format!("{},\"{}\",{}\n", r[0], r[1], r[2]));
            } else {
                text.push_str(&format!("{},{},{}\n", r[0], r[1], r[2]));
            }
        }
        let (_, read) = read_back(text.into_bytes());
        prop_assert_eq!(read.len(), rows.len());
        for (i, (got, want)) in read.iter().zip(&rows).enumerate() {
            prop_assert_eq!(got.line, i as u64 + 2);
            if i == k {
                prop_assert_eq!(got.read_issue.as_ref().map(|x| x.code), Some(deskport::model::IssueCode::CsvUnterminatedQuote));
            } else {
                prop_assert!(got.read_issue.is_none(), "row {}: {:?}", i, got.read_issue);
                let got: Vec<&str> = got.record.iter().collect();
                prop_assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn reading_arbitrary_bytes_never_panics_and_loses_no_line(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        // Input that starts like gzip is read as gzip and may fail as a broken stream
        // (`bytes_that_look_like_gzip_but_are_not_are_a_read_error`); nothing else may fail.
        let gzip = bytes.starts_with(&[0x1f, 0x8b]);
        match try_read_back(bytes) {
            Ok((_, rows)) => prop_assert!(rows.windows(2).all(|w| w[0].line <= w[1].line)),
            Err(e) => prop_assert!(gzip, "{e}"),
        }
    }

    #[test]
    fn validation_never_panics(values in prop::collection::vec(any::<String>(), 12), platform in 0u8..3) {
        let columns: Vec<String> = ["external_id", "firstname", "lastname", "nick_name", "email", "other_emails",
            "phone", "country", "level", "tags", "description", "brand_id"].iter().map(|s| s.to_string()).collect();
        let mapping = Mapping::builtin().resolve(&columns);
        let platform = [None, Some(Platform::Omnidesk), Some(Platform::Udesk)][platform as usize];
        let _ = normalize(&raw(values), &mapping, &rules_for(platform));
    }

    #[test]
    fn normalization_is_idempotent(
        id in "[A-Za-z0-9-]{1,12}",
        first in "[ \\t]{0,2}[A-Za-zÀ-ÿ' -]{0,15}[ \\t]{0,2}",
        last in "\\PC{0,20}",
        email in "[a-zA-Z0-9._%+-]{1,10}@[a-zA-Z0-9-]{1,10}\\.[A-Za-z]{2,4}",
        phone_digits in "[1-9][0-9]{5,11}",
        phone_format in 0u8..4,
        country in prop::sample::select(vec!["", "NL", "Germany", "GB", "us", "France", "CN"]),
        tags in "[a-z ,;]{0,20}",
        platform in 0u8..3,
    ) {
        let phone = match phone_format {
            0 => format!("0{phone_digits}"),
            1 => format!("+31 {phone_digits}"),
            2 => format!("({}) {}", &phone_digits[..3], &phone_digits[3..]),
            _ => phone_digits.clone(),
        };
        let platform = [None, Some(Platform::Omnidesk), Some(Platform::Udesk)][platform as usize];
        let rules = rules_for(platform);
        let columns: Vec<String> = ["id", "first", "last", "email", "phone", "country", "tags"].iter().map(|s| s.to_string()).collect();
        let mapping = Mapping::builtin().resolve(&columns);
        let (once, _) = normalize(&raw(vec![id, first, last, email, phone, country.to_string(), tags]), &mapping, &rules);
        // Write the normalized customer in canonical columns and normalize again.
        let canonical: Vec<String> = CANONICAL_COLUMNS.iter().map(|s| s.to_string()).collect();
        let mapping2 = Mapping::builtin().resolve(&canonical);
        let (twice, issues) = normalize(&raw({ let mut cells = csv::ByteRecord::new(); push_canonical_cells(&once, &mut cells); cells.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect() }), &mapping2, &rules);
        prop_assert_eq!(&twice, &once, "issues the second time: {:?}", issues);
    }
}

/// A customer record wrapped the way a plausible server might answer a search or GET item
/// (the documents show only "No content"), with unrelated keys beside it.
fn wrapped(record: serde_json::Value, shape: usize, noise: &str) -> serde_json::Value {
    use serde_json::json;
    let mut body = match shape {
        0 => json!({"type": "result", "message": record}),
        1 => record,
        2 => json!({"item": record}),
        3 => json!({"items": [record]}),
        4 => json!({"customer": record}),
        _ => json!({"data": record}),
    };
    body[noise] = json!("x");
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn omnidesk_searches_find_the_record_in_every_plausible_shape(
        id in 1u64..1_000_000,
        external in "[A-Za-z0-9-]{1,20}",
        first in "[A-Za-z]{0,12}",
        shape in 0usize..6,
        noise in "(status|meta|trace|count)",
    ) {
        use deskport::platform::omnidesk;
        let record = serde_json::json!({"id": id, "external_primary_id": external, "firstname": first, "channels": []});
        let body = wrapped(record.clone(), shape, &noise);
        let bytes = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
        let decoded = omnidesk::decode(reqwest::StatusCode::OK, &reqwest::header::HeaderMap::new(), &bytes).unwrap();
        let found = omnidesk::searched(&decoded, &external).unwrap().expect("found");
        prop_assert_eq!(&found["id"], &record["id"]);
        // Another customer's record is not this one's.
        let other = format!("{}-other", external);
        prop_assert!(omnidesk::searched(&decoded, &other).unwrap().is_none());
    }

    #[test]
    fn omnidesk_not_found_is_read_whatever_the_status(status in prop::sample::select(vec![200u16, 400, 404]), shape in 0usize..4) {
        use deskport::platform::{omnidesk, CallError};
        let body = match (status, shape) {
            (200, 0) => serde_json::json!({"items": []}),
            (200, 1) => serde_json::json!({"item": null}),
            (200, _) => serde_json::json!({"type": "result", "message": "Customer not found"}),
            _ => serde_json::json!({"type": "error", "message": "Customer not found"}),
        };
        let bytes = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
        let status = reqwest::StatusCode::from_u16(status).unwrap();
        match omnidesk::decode(status, &reqwest::header::HeaderMap::new(), &bytes) {
            Err(CallError::NotFound) => {}
            Ok(reply) => prop_assert!(omnidesk::searched(&reply, "X").unwrap().is_none()),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn udesk_lists_read_pairs_objects_and_strings_alike(
        items in prop::collection::vec((prop::option::of(1u64..1000), "[a-z]{1,8}@[a-z]{1,6}\\.cn", 0usize..3), 0..6)
    ) {
        use deskport::platform::udesk::held_pairs;
        let list: Vec<serde_json::Value> = items
            .iter()
            .map(|(id, email, shape)| match shape {
                0 => serde_json::json!([id, email]),
                1 => serde_json::json!({"id": id, "content": email}),
                _ => serde_json::json!(email),
            })
            .collect();
        let record = serde_json::json!({"other_emails": list});
        let read = held_pairs(&record, "other_emails");
        let values: Vec<&String> = read.iter().map(|(_, v)| v).collect();
        let expected: Vec<&String> = items.iter().map(|(_, e, _)| e).collect();
        prop_assert_eq!(values, expected);
        let exported = deskport::export::record::Record::from_udesk(&record).other_emails;
        prop_assert_eq!(exported, items.iter().map(|(_, e, _)| e.clone()).collect::<Vec<_>>());
    }
}

/// Every content type of the documents' account (003:1000-1121).
fn field_defs() -> Vec<deskport::fields::FieldDef> {
    let reply: serde_json::Value = serde_json::json!({"custom_fields": [
        {"custom_field_name": "TextField_1", "content_type": "text"},
        {"custom_field_name": "TextField_3", "content_type": "date"},
        {"custom_field_name": "TextField_4", "content_type": "time"},
        {"custom_field_name": "TextField_5", "content_type": "datetime"},
        {"custom_field_name": "TextField_6", "content_type": "link"},
        {"custom_field_name": "TextField_7", "content_type": "number"},
        {"custom_field_name": "TextField_8", "content_type": "numeric"},
        {"custom_field_name": "SelectField_1", "content_type": "droplist", "options": [{"0": "option 1"}, {"1": "Gold, plus"}]},
        {"custom_field_name": "SelectField_3", "content_type": "checkbox", "options": [{"0": "a"}, {"1": "b"}, {"2": "c d"}]},
    ]});
    deskport::fields::FieldDefs::from_udesk_reply(&reply, "test").fields
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A custom value is either refused or written in a form that checks again to itself
    /// (so a clean file validates unchanged), under every date order; nothing panics.
    #[test]
    fn custom_values_normalize_to_a_fixed_point(
        value in prop_oneof![
            any::<String>(),
            "[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?",
            "[0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2})?",
            "[+-]?[0-9]{0,4}[.,]?[0-9]{0,4}",
            "(https?://|www\\.)?[a-z]{0,8}(\\.[a-z]{2,3})?",
            "(option 1|gold, plus|0|1|2|a|b|c d|x)([;,|] ?(a|b|c d|0|1|2|z))*",
        ],
        order in prop_oneof![
            Just(deskport::fields::DateOrder::Strict),
            Just(deskport::fields::DateOrder::Dmy),
            Just(deskport::fields::DateOrder::Mdy),
        ],
    ) {
        for def in field_defs() {
            if let Ok(written) = def.check(&value, order) {
                prop_assert_eq!(def.check(&written, order), Ok(written.clone()), "{} {:?}", def.key, value);
            }
        }
    }
}
