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

/// A reading of a non-strict example that a person would make: trailing commas dropped and
/// an elided list (`[...]`) read as empty. The fixture itself is never changed.
fn read_leniently(text: &str) -> Bytes {
    let no_ellipsis = text.replace("[...]", "[]");
    let trailing = regex::Regex::new(r",(\s*[}\]])").unwrap();
    Bytes::from(trailing.replace_all(&no_ellipsis, "$1").into_owned())
}

#[test]
fn the_non_strict_examples_decode_once_read_the_way_a_person_reads_them() {
    let h = HeaderMap::new();
    let filters = example("udesk.filters.reply");
    let text = filters["text"].as_str().unwrap();
    assert!(
        serde_json::from_str::<Value>(text).is_err(),
        "not strict JSON as printed"
    );
    let reply = udesk::decode(StatusCode::OK, &h, &read_leniently(text)).unwrap();
    assert_eq!(reply["customer_filters"].as_array().unwrap().len(), 2);
    assert_eq!(reply["customer_filters"][1]["active"], false);
    // The export reply: the scroll id and total the client reads are there; its customers
    // are elided by the document.
    let export = example("udesk.export.reply");
    let reply = udesk::decode(
        StatusCode::OK,
        &h,
        &read_leniently(export["text"].as_str().unwrap()),
    )
    .unwrap();
    assert!(reply["scroll_id"].as_str().unwrap().starts_with("DnF1ZXJ5"));
    assert_eq!(reply["total"], 10000);
    assert_eq!(reply["customers"], serde_json::json!([]));
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

/// A sandbox and a signed Udesk caller that sends a document's body bytes as printed.
struct Docs {
    server: deskport::sandbox::Sandbox,
    http: reqwest::Client,
}

impl Docs {
    async fn start(profile: deskport::sandbox::Profile) -> Docs {
        let config = deskport::sandbox::SandboxConfig {
            profile,
            bulk_import_delay: std::time::Duration::ZERO,
            ..Default::default()
        };
        Docs {
            server: deskport::sandbox::spawn(config, "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends `body` (bytes, unedited) to `path` (which may carry a query, as the documents
    /// print it), signed.
    async fn send(&self, method: &str, path: &str, body: Option<Bytes>) -> Value {
        use deskport::sandbox::{DEMO_UDESK_EMAIL, DEMO_UDESK_TOKEN};
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let nonce = format!("{:032x}", fastrand::u128(..));
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut params: Vec<(String, String)> = deskport::platform::udesk::signed_query(
            DEMO_UDESK_EMAIL,
            DEMO_UDESK_TOKEN,
            timestamp,
            &nonce,
        )
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            params.push((k.to_string(), v.to_string()));
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.base_url()))
            .query(&params);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// Sends a documented request example as printed.
    async fn example(&self, id: &str) -> Value {
        let e = example(id);
        let reply = self
            .send(
                e["method"].as_str().unwrap(),
                e["path"].as_str().unwrap(),
                Some(text(&e)),
            )
            .await;
        assert_eq!(
            reply["code"], 1000,
            "{id} ({}) refused: {reply}",
            e["source"]
        );
        reply
    }

    /// Creates a customer the examples refer to, with a body of our own.
    async fn holds(&self, customer: Value) -> Value {
        let body = serde_json::to_vec(&serde_json::json!({ "customer": customer })).unwrap();
        let reply = self
            .send("POST", "/open_api_v1/customers", Some(Bytes::from(body)))
            .await;
        assert_eq!(reply["code"], 1000, "{reply}");
        reply["customer"].clone()
    }

    async fn customer(&self, kind: &str, content: &str) -> Value {
        let reply = self
            .send(
                "GET",
                &format!("/open_api_v1/customers/get_customer?type={kind}&content={content}"),
                None,
            )
            .await;
        assert_eq!(reply["code"], 1000, "{reply}");
        reply["customer"].clone()
    }
}

fn emails_of(customer: &Value) -> Vec<String> {
    deskport::export::record::Record::from_udesk(customer).other_emails
}

#[tokio::test]
async fn every_documented_udesk_request_is_accepted_as_printed_under_every_profile() {
    use deskport::sandbox::Profile;
    for profile in [Profile::convenient(), Profile::documented()] {
        // Create (003:390-446): owner 1 in group 1, WeChat bindings, eleven custom fields,
        // two other emails as [null, email] pairs.
        let docs = Docs::start(profile.clone()).await;
        let created = docs.example("udesk.create.request").await["customer"].clone();
        assert_eq!(created["owner_id"], 1);
        assert_eq!(created["owner_group_id"], 1);
        assert_eq!(created["is_blocked"], false);
        assert_eq!(
            emails_of(&created),
            ["customer2@sina.com", "customer2@qq.com"]
        );
        assert!(created["other_emails"][0][0].is_u64(), "{created}");
        assert_eq!(created["cellphones"].as_array().unwrap().len(), 2);
        assert_eq!(created["custom_fields"].as_object().unwrap().len(), 11);
        assert_eq!(
            created["custom_fields"]["SelectField_3"],
            serde_json::json!(["0", "3"])
        );
        assert_eq!(created["weixins"][0]["appid"], "wxf54489a1azz51885");
        assert_eq!(created["weixin_minis"].as_array().unwrap().len(), 1);
        assert_eq!(created["weixin_works"][0]["corpid"], "wxc727955fe6025ed4");
        assert_eq!(created["tags"].as_array().unwrap().len(), 2);
        // What it stored comes back.
        let id = created["id"].to_string();
        assert_eq!(docs.customer("id", &id).await, created);

        // Destroy (the reply's path, 003:766-769) of customer 1: the create above.
        let gone = docs
            .send(
                "DELETE",
                example("udesk.destroy_customer.reply")["path"]
                    .as_str()
                    .unwrap(),
                None,
            )
            .await;
        assert_eq!(gone["code"], 1000, "{gone}");
        docs.server.shutdown().await;

        // Update (003:572-636) of the customer it names, customer@sample.com, in an account
        // of its own: it binds the WeChat accounts the create bound to another customer.
        let docs = Docs::start(profile.clone()).await;
        let held = docs
            .holds(
                serde_json::json!({"nick_name": "Test User", "email": "customer@sample.com",
                "cellphones": [[null, "13000000001"]]}),
            )
            .await;
        let updated = docs.example("udesk.update_customer.request").await["customer"].clone();
        assert_eq!(updated["id"], held["id"]);
        assert_eq!(updated["level"], "normal");
        assert_eq!(updated["web_token"], "dcc79435-e9e2-436a-9cdf-c9f13f728923");
        assert_eq!(updated["sdk_token"], "b0bf5c37-ebdd-4539-a961-7941aca02e4c");
        assert_eq!(emails_of(&updated), ["customer2@sina1.com"]);
        let again = docs
            .customer("web_token", "dcc79435-e9e2-436a-9cdf-c9f13f728923")
            .await;
        assert_eq!(again, updated);

        // Merge (003:1422-1427) of the two customers it names.
        for email in ["from_customer@sample.com", "to_customer@sample.com"] {
            docs.holds(serde_json::json!({"nick_name": email, "email": email}))
                .await;
        }
        docs.example("udesk.merge.request").await;
        let kept = docs.customer("email", "to_customer@sample.com").await;
        assert_eq!(emails_of(&kept), ["from_customer@sample.com"]);
        docs.server.shutdown().await;

        // Bulk import (003:1167-1212), on its own: its emails and phones are the create's.
        let docs = Docs::start(profile).await;
        docs.example("udesk.batch_import_async.request").await;
        let imported = docs.customer("email", "customer2@sample.com").await;
        assert_eq!(imported["nick_name"], "test customer 2");
        assert_eq!(emails_of(&imported), ["customer2@qq.com"]);
        assert_eq!(imported["cellphones"].as_array().unwrap().len(), 2);
        assert_eq!(imported["owner_id"], 1);
        // The same WeChat account twice is one binding; two Mini Program accounts are two.
        assert_eq!(imported["weixins"].as_array().unwrap().len(), 1);
        assert_eq!(imported["weixin_minis"].as_array().unwrap().len(), 2);
        docs.server.shutdown().await;
    }
}

#[test]
fn documented_udesk_replies_yield_the_customer_they_describe() {
    use deskport::export::record::Record;
    // The create and update replies' customers: two other emails as [id, email] pairs, two
    // phones as {id, content}, eleven custom fields, tags.
    let created = &example("udesk.create.reply")["json"]["customer"];
    let r = Record::from_udesk(created);
    assert_eq!(r.email, "customer@sample.com");
    assert_eq!(r.other_emails, ["customer2@sina.com", "customer2@qq.com"]);
    assert_eq!(r.phones, ["13100000002", "13200000002"]);
    assert_eq!(r.tags, ["tag1", "tag2"]);
    assert_eq!(r.custom_fields.len(), 11);
    assert_eq!(r.custom_fields["SelectField_3"], "0;3");
    assert_eq!(
        r.custom_fields["TextField_2"],
        "Multiline text content 1\r\nMultiline text content 2"
    );
    // An update sends back the ids of the emails and phones the customer keeps.
    let pairs = udesk::held_pairs(created, "other_emails");
    assert_eq!(
        pairs[0],
        (serde_json::json!(3), "customer2@sina.com".to_string())
    );
    let phones = udesk::held_pairs(created, "cellphones");
    assert_eq!(phones[1], (serde_json::json!(4), "13200000002".to_string()));
    for id in ["udesk.list.reply", "udesk.get_customer.reply"] {
        let e = example(id);
        let customer = e["json"]
            .get("customers")
            .map_or(&e["json"]["customer"], |list| &list[0]);
        let r = Record::from_udesk(customer);
        assert_eq!(r.email, "customer@sample.com", "{id}");
        assert_eq!(r.phones, ["13000000001"], "{id}");
        assert_eq!(r.custom_fields["SelectField_1"], "0", "{id}");
    }
    let updated = Record::from_udesk(&example("udesk.update_customer.reply")["json"]["customer"]);
    assert!(!updated.other_emails.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_customer_round_trips_through_export_and_import() {
    use deskport::sandbox::{Profile, DEMO_UDESK_EMAIL, DEMO_UDESK_TOKEN};
    let from = Docs::start(Profile::documented()).await;
    let created = from.example("udesk.create.request").await["customer"].clone();
    let to = Docs::start(Profile::documented()).await;
    let work = crate::common::Workdir::new();
    let run = |args: Vec<String>| {
        let mut cmd = work.command();
        cmd.env("DESKPORT_UDESK_EMAIL", DEMO_UDESK_EMAIL)
            .env("DESKPORT_UDESK_TOKEN", DEMO_UDESK_TOKEN)
            .args(args);
        cmd
    };
    let mut export = run(vec![
        "export".into(),
        "--target".into(),
        "udesk".into(),
        "--base-url".into(),
        from.server.base_url(),
        "--out".into(),
        "docs.csv".into(),
    ]);
    let out = tokio::task::spawn_blocking(move || export.output().unwrap())
        .await
        .unwrap();
    crate::common::assert_exit(&out, 0);
    // The documents' numbers are national (131…): the import is told the region. The
    // example has no open_api_token; deskport needs an external id, so the old platform id
    // becomes one (a user's mapping file, as for any customers without external ids).
    let map = work.write(
        "map.toml",
        "[columns]\n\"external_id\" = \"ignore\"\n\"platform_id\" = \"external_id\"\n",
    );
    let mut import = run(vec![
        "import".into(),
        work.file("docs.csv").display().to_string(),
        "--map".into(),
        map.display().to_string(),
        "--target".into(),
        "udesk".into(),
        "--base-url".into(),
        to.server.base_url(),
        "--default-region".into(),
        "CN".into(),
        "--journal".into(),
        "j".into(),
    ]);
    let out = tokio::task::spawn_blocking(move || import.output().unwrap())
        .await
        .unwrap();
    crate::common::assert_exit(&out, 0);
    let copy = to.customer("email", "customer2@sample.com").await;
    assert_eq!(copy["nick_name"], created["nick_name"]);
    assert_eq!(emails_of(&copy), emails_of(&created));
    let phones = |c: &Value| deskport::export::record::Record::from_udesk(c).phones;
    assert_eq!(phones(&copy), ["+8613100000002", "+8613200000002"]);
    assert_eq!(phones(&created), ["13100000002", "13200000002"]);
    assert_eq!(copy["custom_fields"], created["custom_fields"]);
    assert_eq!(copy["level"], created["level"]);
    let tags = |c: &Value| deskport::export::record::Record::from_udesk(c).tags;
    assert_eq!(tags(&copy), tags(&created));
}
