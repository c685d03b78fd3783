//! `deskport validate` end to end: the real binary on fixtures for every broken-input class.

use crate::common::{assert_exit, describe, fixture, read_csv, Workdir};
use serde_json::Value;

/// Runs validate with clean/rejects/report outputs and returns (exit, report).
fn validate(wd: &Workdir, input: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "validate",
        input,
        "--out",
        "clean.csv",
        "--rejects",
        "rejects.csv",
        "--report",
        "report.json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = wd.run(&args);
    let code = out.status.code().expect("exit code");
    assert!(code == 0 || code == 1, "{}", describe(&out));
    let report: Value = serde_json::from_str(&wd.read("report.json")).expect("report is JSON");
    (code, report)
}

/// Writes `rows` generated messy rows (deterministic for `seed`) and returns the path.
fn generated(wd: &Workdir, rows: u64, seed: u64) -> String {
    let input = wd.file("many.csv");
    let mut file = std::fs::File::create(&input).unwrap();
    deskport::synth::write(rows, seed, false, &mut file).unwrap();
    input.to_str().unwrap().to_string()
}

/// The rejected rows as (line, issue codes).
fn rejects(wd: &Workdir) -> Vec<(u64, String)> {
    let (header, rows) = read_csv(&wd.file("rejects.csv"));
    assert_eq!(
        &header[..3],
        ["deskport_line", "deskport_issues", "deskport_messages"]
    );
    rows.iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone()))
        .collect()
}

/// Every row read is in exactly one output, and the report's counts say so.
fn assert_accounting(wd: &Workdir, report: &Value) {
    let read = report["rows_read"].as_u64().unwrap();
    let clean = report["clean"].as_u64().unwrap();
    let rejected = report["rejected"].as_u64().unwrap();
    assert_eq!(clean + rejected, read, "counts add up");
    let (_, clean_rows) = read_csv(&wd.file("clean.csv"));
    assert_eq!(clean_rows.len() as u64, clean, "clean file rows");
    assert_eq!(rejects(wd).len() as u64, rejected, "rejects file rows");
}

#[test]
fn quickstart_fixture_counts_add_up() {
    let wd = Workdir::new();
    let (code, report) = validate(&wd, &fixture("customers.csv"), &["--default-region", "NL"]);
    assert_eq!(code, 1, "the fixture has bad rows on purpose");
    assert_eq!(report["rows_read"], 500);
    assert_accounting(&wd, &report);
    assert_eq!(report["source"]["encoding"]["name"], "UTF-8");
    assert_eq!(report["source"]["delimiter"]["delimiter"], ",");
    assert!(
        report["issues_by_code"]["phone.invalid"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        report["issues_by_code"]["email.invalid"]["count"]
            .as_u64()
            .unwrap()
            > 0
    );
    let (header, rows) = read_csv(&wd.file("clean.csv"));
    assert_eq!(header[0], "external_id");
    assert!(header.contains(&"custom_loyalty".to_string()));
    let phones = header.iter().position(|h| h == "phones").unwrap();
    assert!(rows
        .iter()
        .all(|r| r[phones].split(';').all(|p| p.starts_with('+'))));
}

#[test]
fn windows_1252_and_semicolons_are_detected() {
    let wd = Workdir::new();
    let (code, report) = validate(
        &wd,
        &fixture("broken/windows1252_semicolon.csv"),
        &["--default-region", "NL"],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["source"]["encoding"]["name"], "windows-1252");
    assert_eq!(report["source"]["encoding"]["source"], "detected");
    assert_eq!(report["source"]["delimiter"]["delimiter"], ";");
    let (_, rows) = read_csv(&wd.file("clean.csv"));
    assert_eq!(rows[0][1], "José");
    assert_eq!(rows[0][2], "Müller");
    assert_eq!(rows[0][6], "+31612345678");
    assert_eq!(
        rows[1][6], "+33123456789",
        "country column France sets the region"
    );
    assert_eq!(rows[2][2], "Ørsted");
}

#[test]
fn encoding_and_delimiter_flags_override_detection() {
    let wd = Workdir::new();
    let (_, report) = validate(
        &wd,
        &fixture("broken/windows1252_semicolon.csv"),
        &["--encoding", "iso-8859-1", "--delimiter", ";"],
    );
    // WHATWG maps ISO-8859-1 to windows-1252.
    assert_eq!(report["source"]["encoding"]["name"], "windows-1252");
    assert_eq!(report["source"]["encoding"]["source"], "flag");
    assert_eq!(report["source"]["delimiter"]["source"], "flag");
    let out = wd.run(&[
        "validate",
        &fixture("customers.csv"),
        "--encoding",
        "klingon",
    ]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown encoding"));
}

#[test]
fn utf16_with_bom_and_tabs() {
    let wd = Workdir::new();
    let (code, report) = validate(&wd, &fixture("broken/utf16le_bom.tsv"), &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["source"]["encoding"]["name"], "UTF-16LE");
    assert_eq!(report["source"]["delimiter"]["delimiter"], "\\t");
    let (_, rows) = read_csv(&wd.file("clean.csv"));
    assert_eq!(rows[0][1], "Zoë");
    assert_eq!(rows[1][1], "Renée");
}

#[test]
fn bom_and_spaced_headers_with_pipes() {
    let wd = Workdir::new();
    let (code, report) = validate(&wd, &fixture("broken/bom_spaced_headers.csv"), &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["source"]["encoding"]["bom"], true);
    let mapped: Vec<(String, String)> = report["mapping"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["column"].as_str().unwrap().into(),
                m["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        mapped,
        vec![
            ("Customer Id".into(), "external_id".into()),
            ("First Name".into(), "firstname".into()),
            ("Email".into(), "email".into())
        ]
    );
}

#[test]
fn ragged_rows_are_rejected_with_their_lines() {
    let wd = Workdir::new();
    let (code, report) = validate(&wd, &fixture("broken/ragged.csv"), &[]);
    assert_eq!(code, 1);
    assert_accounting(&wd, &report);
    assert_eq!(
        rejects(&wd),
        vec![(3, "csv.ragged".into()), (4, "csv.ragged".into())]
    );
    // The rejects file keeps every original field, the extra one included.
    let (_, rows) = read_csv(&wd.file("rejects.csv"));
    assert_eq!(rows[1][3..], ["3", "Cid", "cid@example.nl", "extra"]);
}

#[test]
fn unterminated_quote_is_reported_where_it_opens() {
    let wd = Workdir::new();
    let (_, report) = validate(&wd, &fixture("broken/unterminated_quote.csv"), &[]);
    assert_accounting(&wd, &report);
    // The lines after it read as rows of their own, so it is closed at the end of its line.
    assert_eq!(report["rows_read"], 4);
    assert_eq!(rejects(&wd), vec![(3, "csv.unterminated_quote".into())]);
}

/// The clean file's rows as (external id, column → value).
fn clean_rows(wd: &Workdir) -> Vec<std::collections::BTreeMap<String, String>> {
    let (header, rows) = read_csv(&wd.file("clean.csv"));
    rows.into_iter()
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

#[test]
fn broken_files_of_a_sample_csv_generator_read_as_their_rows() {
    /// Fixture, rows read, rejected (line, code).
    type Case = (&'static str, u64, Vec<(u64, &'static str)>);
    let cases: [Case; 5] = [
        // One unclosed quote costs its own row, not the rows after it.
        (
            "missing_closing_quote",
            3,
            vec![(2, "csv.unterminated_quote")],
        ),
        // Read as the parser reads it, with a warning: the row stays.
        ("unescaped_quotes", 2, vec![]),
        // The second half of the note is a ragged row of its own.
        ("newline_inside_unquoted_field", 3, vec![(3, "csv.ragged")]),
        ("mixed_delimiters", 3, vec![(3, "csv.ragged")]),
        ("ragged_rows", 3, vec![(2, "csv.ragged"), (3, "csv.ragged")]),
    ];
    for (name, read, rejected) in cases {
        let wd = Workdir::new();
        let (_, report) = validate(&wd, &fixture(&format!("broken/{name}.csv")), &[]);
        assert_accounting(&wd, &report);
        assert_eq!(report["rows_read"], read, "{name}");
        let expected: Vec<(u64, String)> =
            rejected.iter().map(|(l, c)| (*l, c.to_string())).collect();
        assert_eq!(rejects(&wd), expected, "{name}");
    }
    let wd = Workdir::new();
    let (_, report) = validate(&wd, &fixture("broken/missing_closing_quote.csv"), &[]);
    let ids: Vec<String> = clean_rows(&wd)
        .iter()
        .map(|r| r["external_id"].clone())
        .collect();
    assert_eq!(ids, ["2", "3"], "{report}");
    assert_eq!(
        clean_rows(&wd)[1]["description"],
        "Properly \"quoted\" note"
    );
    let (_, report) = validate(&wd, &fixture("broken/unescaped_quotes.csv"), &[]);
    let stray = &report["issues_by_code"]["csv.stray_quote"];
    assert_eq!(stray["count"], 1, "{report:#}");
    assert_eq!(stray["severity"], "warning", "{report:#}");
}

#[test]
fn phone_extensions_are_kept_apart_and_the_number_stays() {
    let wd = Workdir::new();
    wd.write(
        "x.csv",
        "id,Name,Phone 1,Company\nA1,Anna,+1-201-555-0123x0743,Acme\nA2,Bram,(201) 555-0124 ext. 12,Beta\nA3,Cees,+1 201 555 0123,Gamma\n",
    );
    let (code, report) = validate(&wd, "x.csv", &["--default-region", "US", "--keep-unmapped"]);
    assert_eq!(code, 0, "{report:#}");
    let rows = clean_rows(&wd);
    assert_eq!(rows.len(), 3);
    // `id` feeds the external id when no column is named like one.
    assert_eq!(rows[0]["external_id"], "A1");
    assert_eq!(rows[0]["phones"], "+12015550123");
    assert_eq!(rows[0]["phone_extensions"], "+12015550123 x0743");
    assert_eq!(rows[1]["phone_extensions"], "+12015550124 x12");
    assert_eq!(rows[2]["phone_extensions"], "");
    // The unmapped column is kept, under its name.
    assert_eq!(rows[1]["Company"], "Beta");
    assert_eq!(
        report["issues_by_code"]["phone.extension"]["severity"],
        "warning"
    );
    // A clean file read again keeps its extensions.
    std::fs::rename(wd.file("clean.csv"), wd.file("first.csv")).unwrap();
    let (code, _) = validate(&wd, "first.csv", &["--duplicates", "off"]);
    assert_eq!(code, 0);
    assert_eq!(clean_rows(&wd)[0]["phone_extensions"], "+12015550123 x0743");
    // Today's behaviour on request.
    let (code, _) = validate(
        &wd,
        "x.csv",
        &["--default-region", "US", "--phone-extensions", "reject"],
    );
    assert_eq!(code, 1);
    assert_eq!(
        rejects(&wd),
        vec![(2, "phone.extension".into()), (3, "phone.extension".into())]
    );
}

#[test]
fn the_summary_says_when_the_country_column_does_not_explain_the_phones() {
    let wd = Workdir::new();
    let mut text = String::from("Customer Id,Country,Phone 1\n");
    let formats = [
        "(201) 555-01{:02}",
        "201.555.01{:02}",
        "+1-201-555-01{:02}x743",
        "212-555-01{:02}",
    ];
    for i in 0..40 {
        let country = ["Latvia", "Ukraine"][i % 2];
        let phone = formats[i % 4].replace("{:02}", &format!("{:02}", i));
        text.push_str(&format!("C{i},{country},{phone}\n"));
    }
    wd.write("na.csv", &text);
    let out = wd.run(&["validate", "na.csv", "--report", "report.json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("try --default-region US --phones-ignore-country"),
        "{err}"
    );
    let report: Value = serde_json::from_str(&wd.read("report.json")).unwrap();
    let d = &report["phone_diagnosis"][0];
    assert_eq!(d["column"], "Phone 1");
    assert_eq!(d["sampled"], 40);
    assert_eq!(d["valid_in_region"][0][0], "US", "{d}");
    assert!(d["valid_in_region"][0][1].as_u64() >= Some(2 * d["valid_as_read"].as_u64().unwrap()));
    // Following the advice reads them all.
    let (code, report) = validate(
        &wd,
        "na.csv",
        &["--default-region", "US", "--phones-ignore-country"],
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["clean"], 40);
    assert!(report["phone_diagnosis"][0]["suggestion"].is_null());
    // A country column that is mostly not countries is pointed out too.
    wd.write(
        "c.csv",
        "Customer Id,Country,Phone 1\n1,Narnia,+31612345678\n2,Mordor,+31612345679\n3,NL,+31612345670\n",
    );
    let out = wd.run(&["validate", "c.csv", "--report", "report.json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "country: 67% of 3 values are not recognised countries (e.g. \"Narnia\", \"Mordor\")"
        ),
        "{err}"
    );
    let report: Value = serde_json::from_str(&wd.read("report.json")).unwrap();
    assert_eq!(report["country_diagnosis"]["unrecognised"], 2);
}

#[test]
fn max_invalid_decides_the_exit_code() {
    let wd = Workdir::new();
    wd.write(
        "m.csv",
        "external_id,email\n1,a@example.com\n2,not an email\n3,c@example.com\n",
    );
    for (limit, code) in [("1", 0), ("0", 1), ("34%", 0), ("33%", 1)] {
        let (got, _) = validate(&wd, "m.csv", &["--max-invalid", limit]);
        assert_eq!(got, code, "--max-invalid {limit}");
    }
    let out = wd.run(&["validate", "m.csv", "--max-invalid", "lots"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn mixed_line_endings_keep_line_numbers() {
    let wd = Workdir::new();
    // Map the text column to brand_id so every row fails and the rejects file shows its line.
    wd.write("m.toml", "[columns]\ndescription = \"brand_id\"\n");
    let (_, report) = validate(
        &wd,
        &fixture("broken/mixed_line_endings.csv"),
        &["--map", "m.toml"],
    );
    assert_eq!(report["rows_read"], 4);
    let lines: Vec<u64> = rejects(&wd).into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, vec![2, 3, 4, 6]);
}

#[test]
fn duplicate_headers_are_made_unique_and_both_used() {
    let wd = Workdir::new();
    let (code, report) = validate(&wd, &fixture("broken/duplicate_headers.csv"), &[]);
    assert_eq!(code, 0, "{report}");
    let columns: Vec<&str> = report["mapping"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["column"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["external_id", "Email", "Email 2", "Phone", "Phone 2"]
    );
    let (header, rows) = read_csv(&wd.file("clean.csv"));
    let cell = |name: &str| rows[0][header.iter().position(|h| h == name).unwrap()].clone();
    assert_eq!(cell("email"), "a@example.nl");
    assert_eq!(cell("other_emails"), "a2@example.nl");
    assert_eq!(cell("phones"), "+31612345678;+31201234567");
}

#[test]
fn broken_json_lines_are_rejected_with_their_lines() {
    let wd = Workdir::new();
    let (code, report) = validate(&wd, &fixture("broken/broken.jsonl"), &[]);
    assert_eq!(code, 1);
    assert_eq!(report["source"]["format"], "jsonl");
    assert_accounting(&wd, &report);
    assert_eq!(
        rejects(&wd),
        vec![
            (3, "json.invalid".into()),
            (4, "json.not_object".into()),
            (6, "json.invalid".into())
        ]
    );
}

#[test]
fn invalid_utf8_rejects_only_that_row() {
    let wd = Workdir::new();
    let (_, report) = validate(&wd, &fixture("broken/invalid_utf8.csv"), &[]);
    assert_eq!(report["source"]["encoding"]["name"], "UTF-8");
    assert_accounting(&wd, &report);
    assert_eq!(rejects(&wd), vec![(4, "encoding.invalid".into())]);
    let (_, rows) = read_csv(&wd.file("clean.csv"));
    assert_eq!(
        rows.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(),
        ["Zoë", "Renée", "José"]
    );
}

#[test]
fn a_one_megabyte_field_is_rejected_and_reading_goes_on() {
    let wd = Workdir::new();
    // Its lines do not read as rows of their own (one field; the header has two): a field
    // past the limit whose lines do is taken as an unclosed quote instead (see csv_reader).
    let mut text = String::from("external_id,description\n1,short\n2,\"");
    text.push_str(&"x.\n".repeat(350_000));
    text.push_str("\"\n3,after\n");
    let input = wd.write("huge.csv", &text);
    let (_, report) = validate(&wd, input.to_str().unwrap(), &[]);
    assert_accounting(&wd, &report);
    assert_eq!(rejects(&wd), vec![(3, "field.too_large".into())]);
    let (_, rows) = read_csv(&wd.file("clean.csv"));
    assert_eq!(
        rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["1", "3"]
    );
    // Raising the limit accepts it.
    let (_, report) = validate(
        &wd,
        input.to_str().unwrap(),
        &["--max-field-bytes", "2000000"],
    );
    assert_eq!(report["rejected"], 0);
}

#[test]
fn jsonl_in_jsonl_out() {
    let wd = Workdir::new();
    let out = wd.run(&[
        "validate",
        &fixture("customers.jsonl"),
        "--default-region",
        "NL",
        "--out",
        "clean.jsonl",
        "--quiet",
    ]);
    assert_exit(&out, 0);
    let lines: Vec<Value> = wd
        .read("clean.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0]["phones"],
        serde_json::json!(["+31612345678", "+49301234567"])
    );
    assert_eq!(lines[0]["email"], "zoe@example.nl");
    assert_eq!(lines[0]["custom_fields"]["TextField_1"], "gold");
    assert_eq!(lines[1]["phones"], serde_json::json!(["+12025550173"]));
    assert_eq!(lines[2]["phones"], serde_json::json!(["+8613800138000"]));
    assert_eq!(lines[2]["custom_fields"]["SelectField_1"], "0;3");
}

#[test]
fn stdin_and_gzip_inputs() {
    let wd = Workdir::new();
    let plain = std::fs::read(fixture("customers.csv")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    wd.write("customers.csv.gz", gz.finish().unwrap());
    let (_, from_gz) = validate(&wd, "customers.csv.gz", &["--default-region", "NL"]);
    let from_file_clean = wd.read("clean.csv");
    assert_eq!(from_gz["source"]["gzip"], true);

    let mut child = wd
        .command()
        .args([
            "validate",
            "-",
            "--default-region",
            "NL",
            "--out",
            "stdin.csv",
            "--quiet",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &plain).unwrap();
    drop(child.stdin.take());
    assert_eq!(child.wait().unwrap().code(), Some(1));
    assert_eq!(wd.read("stdin.csv"), from_file_clean);
    assert_eq!(from_gz["rows_read"], 500);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let wd = Workdir::new();
    let input = generated(&wd, 20_000, 7);
    validate(&wd, &input, &["--default-region", "NL", "--threads", "1"]);
    let one = (wd.read("clean.csv"), wd.read("rejects.csv"));
    validate(&wd, &input, &["--default-region", "NL", "--threads", "2"]);
    let two = (wd.read("clean.csv"), wd.read("rejects.csv"));
    assert!(one == two, "outputs differ between 1 and 2 threads");
}

#[test]
fn clean_output_validates_to_itself() {
    let wd = Workdir::new();
    validate(
        &wd,
        &fixture("customers.csv"),
        &["--default-region", "NL", "--duplicates", "off"],
    );
    let first = wd.read("clean.csv");
    std::fs::rename(wd.file("clean.csv"), wd.file("first.csv")).unwrap();
    let (code, report) = validate(&wd, "first.csv", &["--duplicates", "off"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        wd.read("clean.csv"),
        first,
        "normalizing a normalized file changes nothing"
    );
}

#[test]
fn fixed_rejects_can_be_fed_back() {
    let wd = Workdir::new();
    validate(&wd, &fixture("broken/ragged.csv"), &[]);
    std::fs::rename(wd.file("rejects.csv"), wd.file("fix.csv")).unwrap();
    // The deskport_* columns are ignored by the mapping, the original columns map as before.
    let out = wd.run(&["validate", "fix.csv", "--print-mapping"]);
    assert_exit(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("deskport_line") && table.contains("(ignored)"),
        "{table}"
    );
    assert!(table.contains("external_id"), "{table}");
}

#[test]
fn mapping_file_and_print_mapping() {
    let wd = Workdir::new();
    let out = wd.run(&[
        "validate",
        &fixture("custom_headers.csv"),
        "--print-mapping",
    ]);
    assert_exit(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("(unmapped)") && table.contains("no column feeds external_id"),
        "{table}"
    );

    let map = fixture("mapping.toml");
    let (code, report) = validate(
        &wd,
        &fixture("custom_headers.csv"),
        &["--map", &map, "--target", "udesk", "--default-region", "NL"],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["unmapped_columns"], serde_json::json!([]));
    let (header, rows) = read_csv(&wd.file("clean.csv"));
    assert!(
        header.contains(&"custom_TextField_1".to_string()),
        "{header:?}"
    );
    assert_eq!(rows[0][0], "R1");
    assert_eq!(rows[0][3], "Jan Jansen");
}

#[test]
fn unmapped_columns_are_reported() {
    let wd = Workdir::new();
    let (_, report) = validate(&wd, &fixture("custom_headers.csv"), &[]);
    let unmapped = report["unmapped_columns"].as_array().unwrap();
    assert!(unmapped.iter().any(|c| c == "Klant Ref"), "{report}");
}

#[test]
fn usage_errors_exit_2() {
    let wd = Workdir::new();
    for args in [
        vec!["validate", "does-not-exist.csv"],
        vec![
            "validate",
            &fixture("customers.csv"),
            "--default-region",
            "XX",
        ],
        vec!["validate", &fixture("customers.csv"), "--delimiter", "ab"],
        vec!["validate", &fixture("customers.csv"), "--bogus"],
    ] {
        let out = wd.run(&args);
        assert_exit(&out, 2);
        assert!(!out.stderr.is_empty());
    }
    wd.write("bad.toml", "[columns]\n\"x\" = \"emial\"\n");
    let out = wd.run(&["validate", &fixture("customers.csv"), "--map", "bad.toml"]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("emial"));
}

#[test]
fn summary_on_stderr_and_json_log_format() {
    let wd = Workdir::new();
    let out = wd.run(&[
        "validate",
        &fixture("customers.csv"),
        "--default-region",
        "NL",
    ]);
    assert_exit(&out, 1);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("500 rows read"), "{text}");
    assert!(out.stdout.is_empty());

    let out = wd.run(&[
        "validate",
        &fixture("customers.csv"),
        "--default-region",
        "NL",
        "--log-format",
        "json",
    ]);
    let line = String::from_utf8_lossy(&out.stderr);
    let summary: Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(summary["event"], "summary");
    assert_eq!(
        summary["clean"].as_u64().unwrap() + summary["rejected"].as_u64().unwrap(),
        summary["rows_read"].as_u64().unwrap()
    );

    let out = wd.run(&["validate", &fixture("customers.csv"), "--quiet"]);
    assert!(out.stderr.is_empty(), "{}", describe(&out));
}

#[test]
fn platform_rules_apply_with_target() {
    let wd = Workdir::new();
    let input = wd.write(
        "names.csv",
        "external_id,firstname,lastname,level,custom_loyalty\n1,R2D2,Smith,vip,x\n2,Zoë,O'Brien,gold,y\n",
    );
    let input = input.to_str().unwrap();
    let (code, report) = validate(&wd, input, &[]);
    assert_eq!(code, 0, "no platform rules without --target: {report}");
    validate(&wd, input, &["--target", "omnidesk"]);
    assert_eq!(rejects(&wd), vec![(2, "name.chars".into())]);
    validate(&wd, input, &["--target", "udesk"]);
    assert_eq!(
        rejects(&wd),
        vec![
            (2, "custom.key".into()),
            (3, "custom.key;level.invalid".into())
        ]
    );
}

/// The duplicate check spills to TMPDIR past `--duplicate-memory-keys` and finds exactly what the
/// in-memory check finds (first lines included), and leaves no temporary file behind.
#[test]
fn duplicate_check_spilling_to_disk_finds_the_same_duplicates() {
    let wd = Workdir::new();
    let input = generated(&wd, 20_000, 11);
    let spill_parent = wd.file("tmp");
    std::fs::create_dir(&spill_parent).unwrap();
    for policy in ["warn", "error"] {
        let flags = ["--default-region", "NL", "--duplicates", policy];
        let (_, in_memory) = validate(&wd, &input, &flags);
        let expected = (wd.read("clean.csv"), wd.read("rejects.csv"));
        assert_eq!(in_memory["duplicate_index"]["runs_written"], 0);

        let out = wd
            .command()
            .env("TMPDIR", &spill_parent)
            .args(["validate", &input, "--out", "clean.csv", "--rejects"])
            .args(["rejects.csv", "--report", "report.json", "--quiet"])
            .args(flags)
            .args(["--duplicate-memory-keys", "300"])
            .output()
            .unwrap();
        assert!(out.status.code() == Some(1), "{}", describe(&out));
        let spilled: Value = serde_json::from_str(&wd.read("report.json")).unwrap();
        let index = &spilled["duplicate_index"];
        assert!(index["runs_written"].as_u64().unwrap() > 50, "{index}");
        assert!(index["merges"].as_u64().unwrap() > 10, "{index}");
        assert!(index["block_reads"].as_u64().unwrap() > 100, "{index}");
        assert_eq!(index["keys"], in_memory["duplicate_index"]["keys"]);
        assert_eq!(spilled["issues_by_code"], in_memory["issues_by_code"]);
        let got = (wd.read("clean.csv"), wd.read("rejects.csv"));
        assert!(got == expected, "spilled results differ ({policy})");
        assert_accounting(&wd, &spilled);
        assert_eq!(
            std::fs::read_dir(&spill_parent).unwrap().count(),
            0,
            "temporary runs are removed"
        );
    }
}

/// A duplicate check that cannot write its temporary files stops with exit 3 and says where.
#[test]
fn duplicate_check_without_a_usable_tmpdir_aborts_clearly() {
    let wd = Workdir::new();
    let input = generated(&wd, 2_000, 3);
    let missing = wd.file("no-such-dir");
    let out = wd
        .command()
        .env("TMPDIR", &missing)
        .args(["validate", &input, "--default-region", "NL"])
        .args([
            "--duplicate-memory-keys",
            "100",
            "--quiet",
            "--out",
            "clean.csv",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("duplicate check") && stderr.contains("no-such-dir"),
        "{stderr}"
    );
}
