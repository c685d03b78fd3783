//! `validate`'s reports: the column profile in the JSON report, and `--report-html` as a
//! page a real browser renders (Chromium, headless) and a strict HTML parser accepts.
//!
//! The browser and parser checks need `chromium` and Python's `html5lib`; without them they
//! say so and pass, unless `DESKPORT_BROWSER_TESTS=require` (what CI sets) makes them fail.

use crate::common::{assert_exit, describe, Workdir};
use serde_json::Value;
use std::process::Command;

/// 100 rows: unique ids, three countries (50/30/20), 90 valid emails, 5 invalid, 5 empty,
/// phones, and an unmapped date column.
fn profiled_file() -> String {
    let mut text = String::from("Customer Id,Country,Email,Phone,Joined\n");
    for i in 0..100 {
        let country = match i % 10 {
            0..=4 => "NL",
            5..=7 => "DE",
            _ => "FR",
        };
        let email = match i {
            0..=4 => format!("broken{i}@"),
            5..=9 => String::new(),
            _ => format!("user{i}@example.com"),
        };
        let phone = format!("+31612345{i:03}");
        text.push_str(&format!(
            "C{i:04},{country},{email},{phone},2024-01-{:02}\n",
            i % 28 + 1
        ));
    }
    text
}

fn column<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["column_profile"]
        .as_array()
        .expect("column_profile")
        .iter()
        .find(|c| c["column"] == name)
        .unwrap_or_else(|| panic!("no profile for {name}: {report:#}"))
}

#[test]
fn the_report_profiles_every_source_column() {
    let wd = Workdir::new();
    wd.write("p.csv", profiled_file());
    let out = wd.run(&["validate", "p.csv", "--report", "report.json", "--quiet"]);
    assert_exit(&out, 1);
    let report: Value = serde_json::from_str(&wd.read("report.json")).unwrap();
    let names: Vec<&str> = report["column_profile"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Customer Id", "Country", "Email", "Phone", "Joined"]
    );

    let id = column(&report, "Customer Id");
    assert_eq!(id["target"], "external_id");
    assert_eq!(id["fill_rate"], 1.0);
    assert_eq!(id["distinct_estimate"], 100, "{id}");
    assert_eq!(id["top_values"], serde_json::json!([]), "no id repeats");

    let country = column(&report, "Country");
    assert_eq!(country["distinct_estimate"], 3);
    assert_eq!(country["top_values_exact"], true);
    assert_eq!(
        country["top_values"],
        serde_json::json!([
            {"value": "NL", "count": 50},
            {"value": "DE", "count": 30},
            {"value": "FR", "count": 20},
        ])
    );
    assert_eq!(country["share_valid"], 1.0);

    let email = column(&report, "Email");
    assert_eq!(email["filled"], 95);
    assert_eq!(email["fill_rate"], 0.95);
    assert_eq!(email["valid"], 90);
    assert_eq!(email["formats"][0]["format"], "email");
    assert_eq!(email["formats"][0]["count"], 90);

    let phone = column(&report, "Phone");
    assert_eq!(phone["formats"][0]["format"], "phone");
    assert_eq!(phone["formats"][0]["share"], 1.0);

    let joined = column(&report, "Joined");
    assert_eq!(joined["target"], "(unmapped)");
    assert_eq!(joined["formats"][0]["format"], "date");
    assert!(joined["valid"].is_null() && joined["share_valid"].is_null());
    assert_eq!(joined["distinct_estimate"], 28);

    // Per issue code, the first occurrences with their line, column and value.
    let samples = &report["issues_by_code"]["email.invalid"]["samples"];
    assert_eq!(samples.as_array().unwrap().len(), 5, "{samples}");
    assert_eq!(samples[0]["line"], 2);
    assert_eq!(samples[0]["column"], "Email");
    assert_eq!(samples[0]["value"], "broken0@");
    assert!(samples[0]["message"].as_str().unwrap().contains("email"));
}

#[test]
fn the_profile_is_the_same_whatever_the_batch_size_and_threads() {
    let wd = Workdir::new();
    // 5,000 rows: five batches, twenty chunks, merged whichever thread profiled them.
    let mut text = String::from("Customer Id,Country,Email,Phone,Joined\n");
    for copy in 0..50 {
        for line in profiled_file().lines().skip(1) {
            text.push_str(&format!("{copy}{line}\n"));
        }
    }
    wd.write("p.csv", text);
    let mut profiles = Vec::new();
    for threads in ["1", "2", "2", "1"] {
        let out = wd.run(&[
            "validate",
            "p.csv",
            "--report",
            "report.json",
            "--quiet",
            "--threads",
            threads,
        ]);
        assert_exit(&out, 1);
        let report: Value = serde_json::from_str(&wd.read("report.json")).unwrap();
        profiles.push(report["column_profile"].clone());
    }
    for p in &profiles[1..] {
        assert_eq!(&profiles[0], p);
    }
    let id = profiles[0]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "Customer Id")
        .unwrap();
    let distinct = id["distinct_estimate"].as_u64().unwrap();
    assert!((4900..=5100).contains(&distinct), "{distinct}");
    assert_eq!(id["top_values_exact"], false);
}

/// Whether the browser checks must run (CI) rather than be skipped when a tool is missing.
fn required() -> bool {
    std::env::var("DESKPORT_BROWSER_TESTS").as_deref() == Ok("require")
}

fn have(program: &str, probe: &[&str]) -> bool {
    Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// 30 clean rows and 10 rejected, with values that would be markup if not escaped.
fn hostile_file() -> String {
    let mut text = String::from("Customer Id,First Name,Email,Notes\n");
    for i in 0..40 {
        let email = if i % 4 == 3 {
            format!("<script>alert({i})</script>@")
        } else {
            format!("user{i}@example.com")
        };
        text.push_str(&format!(
            "C{i},\"<img src=x onerror=alert({})>\",{email},\"</td></tr></table><b>&amp;\"\n",
            i % 2
        ));
    }
    text
}

#[test]
fn the_html_report_is_one_page_that_escapes_every_value_and_renders() {
    let wd = Workdir::new();
    wd.write("h.csv", hostile_file());
    let out = wd.run(&[
        "validate",
        "h.csv",
        "--report-html",
        "report.html",
        "--keep-unmapped",
        "--quiet",
    ]);
    assert_exit(&out, 1);
    let html = wd.read("report.html");
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    // Nothing from the file became markup, and nothing is fetched from elsewhere.
    let lower = html.to_lowercase();
    for markup in [
        "<script",
        "<img",
        "</table><b>",
        "<link",
        "href=\"http",
        "@import",
        "url(",
    ] {
        assert!(!lower.contains(markup), "{markup} in the page");
    }
    assert!(
        html.contains("&lt;script&gt;alert(3)&lt;/script&gt;@"),
        "the value is shown escaped"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(0)&gt;"),
        "in the top values"
    );
    assert!(html.contains("&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;b&gt;&amp;amp;"));
    // The figures and sample rows are there.
    assert!(html.contains("email.invalid"));
    assert!(html.contains(r#"id="email.invalid""#));
    for figure in [">40<", ">30<", ">10<", "75.0%", "25.0%"] {
        assert!(html.contains(figure), "{figure}");
    }

    if have("python3", &["-c", "import html5lib"]) {
        let parsed = Command::new("python3")
            .args([
                "-c",
                "import html5lib, sys\np = html5lib.HTMLParser(strict=True)\np.parse(open(sys.argv[1], 'rb'))",
            ])
            .arg(wd.file("report.html"))
            .output()
            .unwrap();
        assert!(parsed.status.success(), "html5lib: {}", describe(&parsed));
    } else {
        assert!(!required(), "python3 with html5lib is required");
        eprintln!("skipped: python3 html5lib not found (pip install html5lib)");
    }

    if have("chromium", &["--version"]) {
        let png = wd.file("shot.png");
        let shot = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", wd.file("chromium").display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", wd.file("report.html").display()))
            .output()
            .unwrap();
        assert!(shot.status.success() && png.exists(), "{}", describe(&shot));
        let (clean, warned, rejected) = outcome_pixels(&std::fs::read(&png).unwrap());
        // The outcome bar is drawn, three parts clean to one part rejected.
        assert!(clean > 5_000 && rejected > 1_500, "{clean} {rejected}");
        let ratio = clean as f64 / rejected as f64;
        assert!((2.6..3.4).contains(&ratio), "clean/rejected pixels {ratio}");
        // Only the legend's swatch is in the warnings colour: no row had a warning.
        assert!(warned < 400, "{warned}");
    } else {
        assert!(!required(), "chromium is required");
        eprintln!("skipped: chromium not found");
    }
}

/// Pixels of exactly the outcome bar's three colours in a screenshot.
fn outcome_pixels(png_bytes: &[u8]) -> (u64, u64, u64) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let rgb = |hex: &str| {
        let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
        [(v >> 16) as u8, (v >> 8) as u8, v as u8]
    };
    let [clean, warned, rejected] = [
        deskport::validate::html::CLEAN_COLOUR,
        deskport::validate::html::WARNED_COLOUR,
        deskport::validate::html::REJECTED_COLOUR,
    ]
    .map(rgb);
    let mut counts = (0, 0, 0);
    for px in buf[..info.buffer_size()].chunks(channels) {
        let px = &px[..3];
        if px == clean {
            counts.0 += 1;
        } else if px == warned {
            counts.1 += 1;
        } else if px == rejected {
            counts.2 += 1;
        }
    }
    counts
}
