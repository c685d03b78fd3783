//! Custom fields as the account defines them: `deskport fields`, mapping by title, typed
//! values written as the platform stores them, required fields, the one configuration error
//! before any row is sent, and exports that re-import to the same values.

use crate::common::{assert_exit, describe, read_csv, Workdir};
use deskport::sandbox::{self, AccountFields, FieldsAccount, Profile, Sandbox, SandboxConfig};
use serde_json::{json, Value};
use std::process::{Command, Output};

struct Rig {
    server: Sandbox,
    http: reqwest::Client,
    work: Workdir,
    config: SandboxConfig,
}

impl Rig {
    async fn start(fields: FieldsAccount, profile: Profile) -> Rig {
        let config = SandboxConfig {
            time_scale: 60.0,
            bulk_import_delay: std::time::Duration::ZERO,
            udesk_fields: AccountFields::of(fields),
            profile,
            ..SandboxConfig::default()
        };
        let server = sandbox::spawn(config.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Rig {
            server,
            http: reqwest::Client::new(),
            work: Workdir::new(),
            config,
        }
    }

    fn base(&self) -> String {
        self.server.base_url()
    }

    /// `deskport ARGS` in the work directory with the sandbox's credentials.
    fn deskport(&self, args: &[&str]) -> Command {
        let mut cmd = self.work.command();
        cmd.env("DESKPORT_OMNIDESK_API_KEY", &self.config.omnidesk_api_key)
            .env("DESKPORT_UDESK_EMAIL", &self.config.udesk_email)
            .env("DESKPORT_UDESK_TOKEN", &self.config.udesk_token)
            .args(args);
        cmd
    }

    /// `deskport import FILE --target udesk` against the sandbox.
    async fn import(&self, file: &str, args: &[&str]) -> Output {
        let base = self.base();
        let mut all = vec![
            "import",
            file,
            "--target",
            "udesk",
            "--base-url",
            &base,
            "--udesk-minute",
            "1",
        ];
        all.extend_from_slice(args);
        run(self.deskport(&all)).await
    }

    async fn udesk_customers(&self) -> Vec<Value> {
        let state = crate::common::sandbox_state(&self.http, &self.base()).await;
        state["udesk"]["customers"].as_array().unwrap().clone()
    }

    /// External id → custom fields, as the sandbox holds them.
    async fn custom_by_token(&self) -> std::collections::BTreeMap<String, Value> {
        self.udesk_customers()
            .await
            .into_iter()
            .map(|c| {
                (
                    c["open_api_token"].as_str().unwrap_or_default().to_string(),
                    c["custom_fields"].clone(),
                )
            })
            .collect()
    }
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_lists_the_account_and_saves_what_validate_reads_offline() {
    let rig = Rig::start(FieldsAccount::Documented, Profile::convenient()).await;
    let base = rig.base();
    let out = run(rig.deskport(&[
        "fields",
        "--target",
        "udesk",
        "--base-url",
        &base,
        "--out",
        "fields.json",
    ]))
    .await;
    assert_exit(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("SelectField_1  Drop List Field         droplist   yes       0=option 1, 1=option 2, 2=option 3"),
        "{table}"
    );
    let saved: Value = serde_json::from_str(&rig.work.read("fields.json")).unwrap();
    assert_eq!(saved["fields"].as_array().unwrap().len(), 11);
    assert_eq!(saved["fields"][2]["title"], "Date Field");
    assert_eq!(saved["fields"][2]["required"], true);
    // Offline, the saved file checks a file as the account would.
    rig.work.write(
        "c.csv",
        "external_id,name,Date Field,Drop List Field\nA1,Anna,2016-8-11,option 2\n",
    );
    let out = rig.work.run(&[
        "validate",
        "c.csv",
        "--target",
        "udesk",
        "--fields",
        "fields.json",
        "--rejects",
        "r.csv",
    ]);
    // Nine required fields have no column: one configuration error, no rejects file.
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("requires custom fields"), "{err}");
    assert!(
        err.contains("TextField_1 (\"Single-line text field\")"),
        "{err}"
    );
    assert!(!rig.work.file("r.csv").exists());
    // Read from the account instead of the file, the same error.
    let out = run(rig.deskport(&[
        "validate",
        "c.csv",
        "--target",
        "udesk",
        "--base-url",
        &base,
    ]))
    .await;
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("requires custom fields"),
        "{}",
        describe(&out)
    );
    // The dry run checks with the same definitions, offline.
    let out = rig.work.run(&[
        "import",
        "c.csv",
        "--target",
        "udesk",
        "--dry-run",
        "--fields",
        "fields.json",
    ]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("requires custom fields"),
        "{}",
        describe(&out)
    );
    // A JSONL file's columns are known from its first row: checked there, before any output.
    rig.work.write(
        "c.jsonl",
        "{\"external_id\": \"J1\", \"custom_fields\": {\"shoe_size\": \"42\"}}\n",
    );
    let out = rig.work.run(&[
        "validate",
        "c.jsonl",
        "--fields",
        "fields.json",
        "--rejects",
        "r.jsonl",
        "--out",
        "o.jsonl",
    ]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("\"shoe_size\", which the account does not have"),
        "{}",
        describe(&out)
    );
    assert!(!rig.work.file("r.jsonl").exists() && !rig.work.file("o.jsonl").exists());
    // Omnidesk says what it can and cannot know.
    let out = run(rig.deskport(&[
        "fields",
        "--target",
        "omnidesk",
        "--base-url",
        &base,
        "--json",
    ]))
    .await;
    assert_exit(&out, 0);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        listed["source"]
            .as_str()
            .unwrap()
            .contains("publishes no field definitions"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_custom_column_stops_the_import_before_any_row() {
    let rig = Rig::start(FieldsAccount::Optional, Profile::convenient()).await;
    rig.work.write(
        "c.csv",
        "external_id,name,custom_loyalty_tier,custom_signup_date\n1,Anna,gold,2024-01-01\n2,Bram,silver,2024-02-01\n",
    );
    let out = rig.import("c.csv", &["--journal", "j"]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("\"custom_loyalty_tier\""), "{err}");
    assert!(err.contains("\"custom_signup_date\""), "{err}");
    assert!(err.contains("closest are"), "{err}");
    assert!(err.contains("TextField_3 (\"Date Field\")"), "{err}");
    assert!(rig.udesk_customers().await.is_empty());
    assert!(!rig.work.file("j").join("rejects.csv").exists());
    assert!(!rig.work.file("j").join("journal.jsonl").exists());
    // Named by title in a mapping file, the same columns import.
    rig.work.write(
        "m.toml",
        "[columns]\n\"custom_loyalty_tier\" = \"custom.Single-line text field\"\n\"custom_signup_date\" = \"custom.date field\"\n",
    );
    let out = rig
        .import("c.csv", &["--journal", "j", "--map", "m.toml"])
        .await;
    assert_exit(&out, 0);
    let held = rig.custom_by_token().await;
    assert_eq!(
        held["1"],
        json!({"TextField_1": "gold", "TextField_3": "2024-01-01"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_as_headers_import_typed_values_into_an_account_with_required_fields() {
    let rig = Rig::start(FieldsAccount::Documented, Profile::documented()).await;
    let header = "Customer Id,Name,Single-line text field,Multiline text field,Date Field,Time Field,Date Time Field,Link Field,Positive integer field,Numeric field,Drop List Field,Radio Field,Checkbox field";
    let rows = [
        // Every value in the documented form.
        "T1,Anna,Plain,\"a\nb\",2016-08-11,14:44:36,2017-05-03 14:44,https://www.sample.com,13,13.33,0,0,0;3",
        // Options by title, other spellings that have one reading.
        "T2,Bram,x,y,2016-8-11,9:05,2017-05-03T14:44:00,www.sample.com,+7,\"3,5\",OPTION 2,option 1,option 1; option 4",
        // Bad values: each named with its field.
        "T3,Cees,x,y,not a date,25:00,2017-05-03 14:44:15,sample,-1,1.2.3,option 9,0;1,option 1",
        // A required field left empty.
        "T4,Dirk,,y,2016-08-11,14:44:36,2017-05-03 14:44,https://www.sample.com,13,13.33,0,0,0",
        // An ambiguous date is refused unless --date-order says how to read it.
        "T5,Eva,x,y,02/04/2016,14:44:36,2017-05-03 14:44,https://www.sample.com,13,13.33,0,0,0",
    ];
    rig.work
        .write("c.csv", format!("{header}\n{}\n", rows.join("\n")));
    let out = rig.import("c.csv", &["--journal", "j"]).await;
    assert_exit(&out, 1);
    let held = rig.custom_by_token().await;
    assert_eq!(held.len(), 2, "{held:?}\n{}", describe(&out));
    assert_eq!(
        held["T1"],
        json!({"TextField_1": "Plain", "TextField_2": "a\nb", "TextField_3": "2016-08-11", "TextField_4": "14:44:36",
               "TextField_5": "2017-05-03 14:44", "TextField_6": "https://www.sample.com", "TextField_7": "13",
               "TextField_8": "13.33", "SelectField_1": ["0"], "SelectField_2": ["0"], "SelectField_3": ["0", "3"]})
    );
    assert_eq!(
        held["T2"],
        json!({"TextField_1": "x", "TextField_2": "y", "TextField_3": "2016-08-11", "TextField_4": "09:05:00",
               "TextField_5": "2017-05-03 14:44", "TextField_6": "https://www.sample.com", "TextField_7": "7",
               "TextField_8": "3.5", "SelectField_1": ["1"], "SelectField_2": ["0"], "SelectField_3": ["0", "3"]})
    );
    let (head, rejects) = read_csv(&rig.work.file("j").join("rejects.csv"));
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    let by_id = |id: &str| {
        rejects
            .iter()
            .find(|r| r[col("Customer Id")] == id)
            .unwrap_or_else(|| panic!("{id} not rejected: {rejects:?}"))
            .clone()
    };
    let t3 = by_id("T3");
    assert_eq!(
        t3[col("deskport_reason")].matches("custom.value").count(),
        8,
        "{t3:?}"
    );
    for expected in [
        "Date Field: TextField_3: expected a date YYYY-MM-DD",
        "Date Time Field: TextField_5: expected a date and time",
        "\"option 9\" is not an option",
        "Radio Field: SelectField_2: takes exactly one option",
    ] {
        assert!(
            t3[col("deskport_message")].contains(expected),
            "{expected}: {t3:?}"
        );
    }
    assert_eq!(by_id("T4")[col("deskport_reason")], "custom.required");
    assert!(by_id("T5")[col("deskport_message")].contains("--date-order dmy or mdy"));
    // With the order given, the ambiguous date is read; the rest are still refused.
    let out = rig
        .import("c.csv", &["--journal", "j2", "--date-order", "dmy"])
        .await;
    assert_exit(&out, 1);
    assert_eq!(
        rig.custom_by_token().await["T5"]["TextField_3"],
        "2016-04-02"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_field_no_column_feeds_is_one_error_except_when_only_updating() {
    let rig = Rig::start(FieldsAccount::Documented, Profile::convenient()).await;
    rig.work
        .write("c.csv", "external_id,name,Date Field\nR1,Anna,2016-08-11\n");
    let out = rig.import("c.csv", &["--journal", "j"]).await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("the account requires custom fields"));
    assert!(rig.udesk_customers().await.is_empty());
    // Updating customers that exist cannot fail on it: a warning per row, and the update
    // goes (here there is no such customer, so the row fails as not found).
    let out = rig
        .import("c.csv", &["--journal", "j", "--mode", "update"])
        .await;
    assert_exit(&out, 1);
    let (_, failures) = read_csv(&rig.work.file("j").join("failures.csv"));
    assert_eq!(failures.len(), 1, "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_with_and_without_labels_reimport_to_the_same_values() {
    let source = Rig::start(FieldsAccount::Optional, Profile::convenient()).await;
    source.work.write(
        "c.csv",
        "external_id,name,Date Field,Drop List Field,Checkbox field,Numeric field\nE1,Anna,2016-08-11,option 2,option 1;option 3,1.5\nE2,Bram,,0,,\nE3,Cees,2020-02-29,,option 4,\n",
    );
    let out = source.import("c.csv", &["--journal", "j"]).await;
    assert_exit(&out, 0);
    let original = source.custom_by_token().await;
    assert_eq!(original["E1"]["SelectField_3"], json!(["0", "2"]));
    let base = source.base();
    for (name, extra) in [
        ("ids.csv", vec![]),
        ("labels.csv", vec!["--labels", "--headers", "titles"]),
    ] {
        let mut args = vec![
            "export",
            "--target",
            "udesk",
            "--base-url",
            &base,
            "--out",
            name,
            "--udesk-minute",
            "1",
        ];
        args.extend(extra.iter().copied());
        let out = run(source.deskport(&args)).await;
        assert_exit(&out, 0);
        let text = source.work.read(name);
        if name == "labels.csv" {
            let head = text.lines().next().unwrap();
            assert!(head.contains(",Drop List Field,"), "{head}");
            assert!(text.contains("option 1;option 3"), "{text}");
        } else {
            assert!(text
                .lines()
                .next()
                .unwrap()
                .contains(",custom_SelectField_1,"));
        }
        // Into a fresh account: the same values come out.
        let target = Rig::start(FieldsAccount::Optional, Profile::convenient()).await;
        std::fs::copy(source.work.file(name), target.work.file(name)).unwrap();
        let out = target.import(name, &["--journal", "j"]).await;
        assert_exit(&out, 0);
        assert_eq!(target.custom_by_token().await, original, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omnidesk_custom_keys_follow_each_endpoints_form() {
    // The documented profile reads custom_<name> on create (000:264) and bare names on
    // updateCustomer (001:119): with the defaults, both land on the same field.
    let rig = Rig::start(FieldsAccount::Optional, Profile::documented()).await;
    let base = rig.base();
    let omnidesk = |file: &'static str, journal: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "import",
            file,
            "--target",
            "omnidesk",
            "--base-url",
            &base,
            "--brand-id",
            "1",
            "--journal",
            journal,
            "--mode",
            "upsert",
        ];
        args.extend_from_slice(extra);
        rig.deskport(&args)
    };
    rig.work
        .write("a.csv", "external_id,firstname,custom_tier\nK1,Anna,gold\n");
    rig.work.write(
        "b.csv",
        "external_id,firstname,custom_tier\nK1,Anna,silver\n",
    );
    assert_exit(&run(omnidesk("a.csv", "ja", &[])).await, 0);
    assert_exit(&run(omnidesk("b.csv", "jb", &[])).await, 0);
    let state = crate::common::sandbox_state(&rig.http, &base).await;
    let held = &state["omnidesk"]["customers"][0]["custom_fields"];
    assert_eq!(held, &json!({"tier": "silver"}), "{state:#}");
    // Told the other form, updateCustomer writes a field this endpoint calls custom_tier:
    // the setting is what decides.
    rig.work.write(
        "c.csv",
        "external_id,firstname,custom_tier\nK1,Anna,bronze\n",
    );
    let out = run(omnidesk(
        "c.csv",
        "jc",
        &["--omnidesk-update-keys", "prefixed"],
    ))
    .await;
    assert_exit(&out, 0);
    let state = crate::common::sandbox_state(&rig.http, &base).await;
    let held = &state["omnidesk"]["customers"][0]["custom_fields"];
    assert_eq!(held, &json!({"tier": "silver", "custom_tier": "bronze"}));
    // check says which forms a run uses.
    let out = run(rig.deskport(&[
        "check",
        "--target",
        "omnidesk",
        "--base-url",
        &base,
        "--brand-id",
        "1",
    ]))
    .await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "create sends custom_<name> (000:264), updateCustomer sends <name> (001:119)"
        ),
        "{}",
        describe(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_account_answers_its_fields_as_printed() {
    let rig = Rig::start(FieldsAccount::Documented, Profile::convenient()).await;
    let examples: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::fixture("platform-docs/examples.json")).unwrap(),
    )
    .unwrap();
    let printed = examples
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "udesk.custom_fields.reply")
        .unwrap()["json"]
        .clone();
    let base = rig.base();
    let out =
        run(rig.deskport(&["fields", "--target", "udesk", "--base-url", &base, "--json"])).await;
    assert_exit(&out, 0);
    // What the sandbox serves is the printed reply, field for field.
    let served = rig
        .http
        .get(format!("{base}/__sandbox/udesk_fields"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(served["custom_fields"], printed["custom_fields"]);
    // And the client reads it to the same definitions as the printed text.
    let from_print = deskport::fields::FieldDefs::from_udesk_reply(&printed, "x");
    let listed: deskport::fields::FieldDefs = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.fields, from_print.fields);
}
