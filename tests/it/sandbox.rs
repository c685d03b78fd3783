//! Sandbox conformance: the documented requests are accepted, the documented errors come
//! from their documented causes, and limits and faults behave as configured.

use deskport::platform::udesk_sign::sign;
use deskport::sandbox::{self, Faults, OverCapacity, Sandbox, SandboxConfig, UdeskRateLimitStyle};
use reqwest::multipart::Form;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: &str = sandbox::DEMO_OMNIDESK_API_KEY;

async fn start(config: SandboxConfig) -> (Sandbox, Api) {
    let server = sandbox::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base_url(),
    };
    (server, api)
}

struct Api {
    http: reqwest::Client,
    base: String,
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn signed_query(timestamp_offset: i64, nonce: Option<&str>) -> Vec<(String, String)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + timestamp_offset;
    let nonce = nonce.map(str::to_string).unwrap_or_else(|| {
        format!(
            "n-{}-{}",
            now,
            NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    });
    let email = sandbox::DEMO_UDESK_EMAIL;
    vec![
        ("email".into(), email.into()),
        ("timestamp".into(), now.to_string()),
        ("nonce".into(), nonce.clone()),
        (
            "sign".into(),
            sign(email, sandbox::DEMO_UDESK_TOKEN, now as u64, &nonce),
        ),
        ("sign_version".into(), "v2".into()),
    ]
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A signed Udesk call; returns (HTTP status, body).
    async fn udesk(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut query = signed_query(0, None);
        query.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut request = self
            .http
            .request(method, self.url(&format!("/open_api_v1{path}")))
            .query(&query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn omni_form(
        &self,
        method: reqwest::Method,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut form = Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        let response = self
            .http
            .request(method, self.url(&format!("/api/v2{path}")))
            .header("apiKey", KEY)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn omni_urlencoded(
        &self,
        method: reqwest::Method,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, self.url(&format!("/api/v2{path}")))
            .header("apiKey", KEY)
            .form(fields)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn omni_get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(&format!("/api/v2{path}")))
            .header("apiKey", KEY)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn state(&self) -> Value {
        self.http
            .get(self.url("/__sandbox/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn fast() -> SandboxConfig {
    SandboxConfig {
        udesk_calls_per_minute: 100_000,
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn omnidesk_customer_lifecycle() {
    let (server, api) = start(fast()).await;
    use reqwest::Method;
    // Create, as the document's example (with values that satisfy its own patterns).
    let (status, body) = api
        .omni_form(
            Method::POST,
            "/customer",
            &[
                ("channel_id", "email"),
                ("customer_link_channel", "zoe@example.nl"),
                ("brand_id", "1"),
                ("primary_id", "P-1"),
                ("noSync", "true"),
                ("firstname", "Zoë"),
                ("lastname", "O'Brien"),
                ("extra_email", "name@gmail.com"),
                ("extra_telephone", "+31612345678"),
                ("custom_testfield", "text"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["customer_id"].as_u64().unwrap();
    // The same primary id again: 409 naming the holder.
    let (status, body) = api
        .omni_form(
            Method::POST,
            "/customer",
            &[("brand_id", "1"), ("primary_id", "P-1")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["customer_id"], id);
    // x-www-form-urlencoded is accepted too; JSON is not.
    let (status, _) = api
        .omni_urlencoded(
            Method::POST,
            "/customer",
            &[("brand_id", "1"), ("primary_id", "P-2")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let status = api
        .http
        .post(api.url("/api/v2/customer"))
        .header("apiKey", KEY)
        .json(&json!({"brand_id": 1, "primary_id": "P-3"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Search by primary id, with the documents' letter case and with another.
    for path in [
        "/customer/SearchByPrimaryExternalID",
        "/customer/searchbyprimaryexternalid",
    ] {
        let (status, body) = api
            .omni_form(
                Method::POST,
                path,
                &[("primary_id", "P-1"), ("brand_id", "1")],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["message"]["firstname"], "Zoë");
        assert_eq!(body["message"]["custom_fields"]["testfield"], "text");
        let channels: Vec<&str> = body["message"]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_str().unwrap())
            .collect();
        assert_eq!(
            channels,
            ["zoe@example.nl", "name@gmail.com", "+31612345678"]
        );
    }
    let (status, _) = api
        .omni_form(
            Method::POST,
            "/customer/SearchByPrimaryExternalID",
            &[("primary_id", "nope"), ("brand_id", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .omni_form(
            Method::POST,
            "/customer/SearchByCustomerChannelValue",
            &[("customerChannelValue", "+31612345678"), ("brand_id", "1")],
        )
        .await;
    assert_eq!(
        (status, body["message"]["id"].as_u64()),
        (StatusCode::OK, Some(id))
    );
    // Update by external id, adding a channel.
    let (status, body) = api
        .omni_urlencoded(
            Method::PUT,
            "/customer/updateCustomer",
            &[
                ("externalPrimaryID", "P-1"),
                ("brandID", "1"),
                ("lastname", "Jansen"),
                ("custom_testfield", "changed"),
                ("customerChannelType_0", "telephone"),
                ("customerChannelValue_0", "+31201234567"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = api.omni_get(&format!("/customer/{id}")).await;
    assert_eq!(body["message"]["lastname"], "Jansen");
    assert_eq!(body["message"]["custom_fields"]["testfield"], "changed");
    assert_eq!(body["message"]["channels"].as_array().unwrap().len(), 4);
    // PUT item, addChannelOnly, createCustomerCRUD.
    let (status, _) = api
        .omni_urlencoded(
            Method::PUT,
            &format!("/customer/{id}"),
            &[("brandID", "1"), ("firstname", "Zoe")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .omni_form(
            Method::POST,
            "/customer/addChannelOnly",
            &[
                ("primary_id", "P-1"),
                ("brand_id", "1"),
                ("extra_twitter", "zoe_b"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .omni_form(
            Method::POST,
            "/customer/createCustomerCRUD",
            &[("primaryID", "P-9"), ("brandID", "1"), ("firstname", "Ann")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Delete.
    let status = api
        .http
        .delete(api.url(&format!("/api/v2/customer/{id}")))
        .header("apiKey", KEY)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.omni_get(&format!("/customer/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn omnidesk_documented_errors() {
    let (server, api) = start(fast()).await;
    use reqwest::Method;
    for (fields, status) in [
        (
            vec![
                ("brand_id", "1"),
                ("primary_id", "X"),
                ("firstname", "R2D2"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("brand_id", "1"),
                ("primary_id", "X"),
                ("extra_telephone", "0612345678"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("brand_id", "1"),
                ("primary_id", "X"),
                ("extra_telephone", "+3161234"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("brand_id", "1"),
                ("primary_id", "X"),
                ("extra_email", "not-an-email"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("brand_id", "1"),
                ("primary_id", "X"),
                ("channel_id", "fax"),
                ("customer_link_channel", "1"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("brand_id", "1"),
                ("primary_id", "X"),
                ("channel_id", "email"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![
                ("brand_id", "1"),
                ("primary_id", "X"),
                ("favourite_colour", "blue"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("brand_id", "7"), ("primary_id", "X")],
            StatusCode::NOT_FOUND,
        ),
        (vec![("primary_id", "X")], StatusCode::BAD_REQUEST),
        (vec![("brand_id", "1")], StatusCode::BAD_REQUEST),
    ] {
        let (got, body) = api.omni_form(Method::POST, "/customer", &fields).await;
        assert_eq!(got, status, "{fields:?}: {body}");
        assert_eq!(body["type"], "error");
    }
    let (status, _) = api.omni_get("/customer?itemLimit=100").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.omni_get("/customer?query=a%40b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for key in [None, Some("wrong")] {
        let mut request = api.http.get(api.url("/api/v2/customer"));
        if let Some(k) = key {
            request = request.header("apiKey", k);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn omnidesk_paging() {
    let (server, api) = start(SandboxConfig {
        seed_customers: 250,
        ..fast()
    })
    .await;
    let (_, first) = api.omni_get("/customer").await;
    assert_eq!(first["itemLimit"], 15);
    assert_eq!(first["itemTotal"], 250);
    let mut seen = Vec::new();
    let mut start = 0;
    loop {
        let (status, page) = api
            .omni_get(&format!("/customer?itemStart={start}&itemLimit=99"))
            .await;
        assert_eq!(status, StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        seen.extend(items.iter().map(|i| i["id"].as_u64().unwrap()));
        start += 99;
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (250, 250));
    server.shutdown().await;
}

#[tokio::test]
async fn udesk_signature_timestamp_and_nonce_are_checked() {
    let (server, api) = start(fast()).await;
    let url = api.url("/open_api_v1/customers");
    let get = |query: Vec<(String, String)>| {
        let request = api.http.get(&url).query(&query);
        async move {
            let r = request.send().await.unwrap();
            (
                r.status(),
                r.json::<Value>().await.unwrap()["code"].as_i64().unwrap(),
            )
        }
    };
    assert_eq!(get(signed_query(0, None)).await, (StatusCode::OK, 1000));
    let mut bad_sign = signed_query(0, None);
    bad_sign[3].1 = "0".repeat(64);
    assert_eq!(get(bad_sign).await, (StatusCode::UNAUTHORIZED, 2059));
    assert_eq!(
        get(signed_query(-301, None)).await,
        (StatusCode::UNAUTHORIZED, 20622)
    );
    assert_eq!(
        get(signed_query(0, Some("once"))).await,
        (StatusCode::OK, 1000)
    );
    assert_eq!(
        get(signed_query(0, Some("once"))).await,
        (StatusCode::UNAUTHORIZED, 20623)
    );
    let mut missing = signed_query(0, None);
    missing.remove(3);
    assert_eq!(get(missing).await, (StatusCode::UNAUTHORIZED, 20621));
    let mut version = signed_query(0, None);
    version[4].1 = "v1".into();
    assert_eq!(get(version).await, (StatusCode::UNAUTHORIZED, 20624));
    // log_in gives the token for the right password only.
    let r = api
        .http
        .post(api.url("/open_api_v1/log_in"))
        .json(
            &json!({"email": sandbox::DEMO_UDESK_EMAIL, "password": sandbox::DEMO_UDESK_PASSWORD}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["open_api_auth_token"],
        sandbox::DEMO_UDESK_TOKEN
    );
    let r = api
        .http
        .post(api.url("/open_api_v1/log_in"))
        .json(&json!({"email": sandbox::DEMO_UDESK_EMAIL, "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    server.shutdown().await;
}

#[tokio::test]
async fn udesk_customer_lifecycle_and_errors() {
    let (server, api) = start(fast()).await;
    use reqwest::Method;
    // Shaped like the create example (003:390-446); the example itself, unedited, is sent
    // by tests/it/platform_docs.rs.
    let create = json!({
        "customer": {
            "email": "customer2@sample.com",
            "nick_name": "demo customer 2",
            "level": "vip",
            "is_blocked": false,
            "open_api_token": "EXT-1",
            "cellphones": [[null, "13100000002"], [null, "13200000002"]],
            "custom_fields": {"TextField_1": "Plain text content", "TextField_2": "Multiline 1\r\nMultiline 2", "SelectField_1": ["0"], "SelectField_3": ["0", "3"]}
        },
        "other_emails": [[null, "customer2@qq.com"]],
        "tags": "tag1,tag2"
    });
    let (_, body) = api
        .udesk(Method::POST, "/customers", &[], Some(create))
        .await;
    assert_eq!(body["code"], 1000, "{body}");
    let id = body["customer"]["id"].as_u64().unwrap();
    assert_eq!(body["customer"]["tags"][1]["name"], "tag2");
    for (kind, content) in [
        ("token", "EXT-1"),
        ("email", "customer2@sample.com"),
        ("cellphone", "13200000002"),
        ("id", &id.to_string()),
    ] {
        let (_, body) = api
            .udesk(
                Method::GET,
                "/customers/get_customer",
                &[("type", kind), ("content", content)],
                None,
            )
            .await;
        assert_eq!(body["customer"]["id"], id, "{kind}");
    }
    let (_, body) = api
        .udesk(
            Method::GET,
            "/customers/get_customer",
            &[("content", "x")],
            None,
        )
        .await;
    assert_eq!(body["code"], 2060);
    let (_, body) = api
        .udesk(
            Method::GET,
            "/customers/get_customer",
            &[("type", "token"), ("content", "nope")],
            None,
        )
        .await;
    assert_eq!(body["code"], 2005);
    // The documented 2000 causes.
    for (customer, expected) in [
        (
            json!({"nick_name": "x", "email": "customer2@sample.com"}),
            "Email duplicate: customer id =",
        ),
        (
            json!({"nick_name": "x", "cellphones": [[null, "13100000002"]]}),
            "Phone 13100000002 has been used",
        ),
        (
            json!({"nick_name": "x", "open_api_token": "EXT-1"}),
            "open_api_token duplicate",
        ),
        (
            json!({"nick_name": "x", "email": "nope"}),
            "Email is invalid",
        ),
        (
            json!({"nick_name": "x", "level": "gold"}),
            "'gold' is not a valid level",
        ),
        (
            json!({"nick_name": "x", "custom_fields": "qweasd"}),
            "undefined method `each'",
        ),
        (
            json!({"nick_name": "x", "custom_fields": {"TextField_99": "x"}}),
            "unknown custom field",
        ),
        (
            json!({"nick_name": "x", "owner_id": 5}),
            "Cannot find customer service",
        ),
        (
            json!({"email": "new@example.com"}),
            "Nick name can't be blank",
        ),
    ] {
        let (_, body) = api
            .udesk(
                Method::POST,
                "/customers",
                &[],
                Some(json!({"customer": customer})),
            )
            .await;
        assert_eq!(body["code"], 2000, "{body}");
        assert!(
            body["exception"]["message"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{body}"
        );
    }
    let (_, body) = api
        .udesk(Method::POST, "/customers", &[], Some(json!({})))
        .await;
    assert_eq!(
        body["exception"]["message"],
        "param is missing or the value is empty: customer"
    );
    // Update by token.
    let (_, body) = api
        .udesk(
            Method::PUT,
            "/customers/update_customer",
            &[("type", "token"), ("content", "EXT-1")],
            Some(json!({"customer": {"nick_name": "renamed", "level": "normal"}})),
        )
        .await;
    assert_eq!(body["customer"]["nick_name"], "renamed", "{body}");
    // Merge.
    let (_, other) = api
        .udesk(
            Method::POST,
            "/customers",
            &[],
            Some(json!({"customer": {"nick_name": "other", "email": "o@example.com"}})),
        )
        .await;
    let other_id = other["customer"]["id"].as_u64().unwrap();
    let (_, body) = api
        .udesk(Method::POST, "/customers/merge", &[], Some(json!({"from_type": "email", "from_content": "o@example.com", "to_type": "customer_token", "to_content": "EXT-1"})))
        .await;
    assert_eq!(body["id"], id, "{body}");
    let (_, body) = api
        .udesk(
            Method::GET,
            "/customers/get_customer",
            &[("type", "id"), ("content", &other_id.to_string())],
            None,
        )
        .await;
    assert_eq!(body["code"], 2005);
    let (_, body) = api
        .udesk(Method::POST, "/customers/merge", &[], Some(json!({"from_type": "customer_token", "from_content": "EXT-1", "to_type": "customer_token", "to_content": "EXT-1"})))
        .await;
    assert!(body["exception"]["message"]
        .as_str()
        .unwrap()
        .contains("Cannot merge to self"));
    // Delete.
    let (_, body) = api
        .udesk(
            Method::DELETE,
            "/customers/destroy_customer",
            &[("type", "token"), ("content", "EXT-1")],
            None,
        )
        .await;
    assert_eq!(body["customer_id"], id);
    // Filters and custom field definitions.
    let (_, body) = api
        .udesk(Method::GET, "/customers/filters", &[], None)
        .await;
    assert_eq!(body["customer_filters"].as_array().unwrap().len(), 2);
    let (_, body) = api
        .udesk(Method::GET, "/customers/custom_fields", &[], None)
        .await;
    assert_eq!(body["custom_fields"][0]["custom_field_name"], "TextField_1");
    server.shutdown().await;
}

#[tokio::test]
async fn udesk_page_limits() {
    let (server, api) = start(SandboxConfig {
        seed_customers: 30,
        ..fast()
    })
    .await;
    use reqwest::Method;
    let (_, body) = api.udesk(Method::GET, "/customers", &[], None).await;
    assert_eq!(body["meta"]["total_count"], 30);
    assert_eq!(
        body["customers"].as_array().unwrap().len(),
        20,
        "default page_size is 20"
    );
    for (params, code) in [
        (vec![("page_size", "101")], 206211),
        (vec![("page_size", "0")], 206211),
        (vec![("page", "0")], 206201),
        (vec![("page", "101"), ("page_size", "100")], 206201),
        (vec![("filter_id", "99")], 2062),
        (vec![("page", "2"), ("page_size", "25")], 1000),
    ] {
        let (_, body) = api.udesk(Method::GET, "/customers", &params, None).await;
        assert_eq!(body["code"], code, "{params:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn udesk_bulk_import_is_limited_validated_and_asynchronous() {
    let config = SandboxConfig {
        bulk_import_delay: Duration::from_millis(300),
        bulk_import_interval: Duration::from_secs(60),
        ..fast()
    };
    let (server, api) = start(config).await;
    use reqwest::Method;
    let rows = |n: usize, prefix: &str| -> Vec<Value> {
        (0..n).map(|i| json!({"nick_name": format!("{prefix}{i}"), "open_api_token": format!("{prefix}{i}"), "emails": [format!("{prefix}{i}@example.com")], "cellphones": [format!("1310000{i:04}")]})).collect()
    };
    let (_, body) = api
        .udesk(
            Method::POST,
            "/customers/batch_import_async",
            &[],
            Some(json!({"customers": rows(101, "A")})),
        )
        .await;
    assert_eq!(
        body["exception"]["message"],
        "Import quantity (101) cannot exceed 100"
    );
    let (_, body) = api
        .udesk(
            Method::POST,
            "/customers/batch_import_async",
            &[],
            Some(json!({"customers": []})),
        )
        .await;
    assert_eq!(body["exception"]["message"], "Import data is empty");
    // A poison row refuses the whole call, naming the row; the slot is not used.
    let mut poisoned = rows(5, "P");
    poisoned[3]["emails"] = json!(["broken"]);
    let (_, body) = api
        .udesk(
            Method::POST,
            "/customers/batch_import_async",
            &[],
            Some(json!({"customers": poisoned})),
        )
        .await;
    assert!(
        body["exception"]["message"]
            .as_str()
            .unwrap()
            .starts_with("customers[3]:"),
        "{body}"
    );
    // A good call is received, not yet applied.
    let (_, body) = api
        .udesk(
            Method::POST,
            "/customers/batch_import_async",
            &[],
            Some(json!({"customers": rows(100, "B")})),
        )
        .await;
    assert_eq!(body["code"], 1000, "{body}");
    let (_, body) = api
        .udesk(
            Method::GET,
            "/customers/get_customer",
            &[("type", "token"), ("content", "B7")],
            None,
        )
        .await;
    assert_eq!(body["code"], 2005, "not applied yet");
    // A second call within the minute is refused.
    let (status, body) = api
        .udesk(
            Method::POST,
            "/customers/batch_import_async",
            &[],
            Some(json!({"customers": rows(1, "C")})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (StatusCode::TOO_MANY_REQUESTS, Some(429))
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, body) = api
        .udesk(
            Method::GET,
            "/customers/get_customer",
            &[("type", "token"), ("content", "B7")],
            None,
        )
        .await;
    assert_eq!(body["customer"]["source_channel"], "import");
    assert_eq!(api.state().await["udesk"]["count"], 100);
    server.shutdown().await;
}

#[tokio::test]
async fn udesk_export_scroll_chain_and_expiry() {
    let config = SandboxConfig {
        seed_customers: 2500,
        scroll_ttl: Duration::from_millis(500),
        ..fast()
    };
    let (server, api) = start(config).await;
    use reqwest::Method;
    let (_, first) = api.udesk(Method::GET, "/customers/export", &[], None).await;
    assert_eq!(first["total"], 2500);
    assert_eq!(first["customers"].as_array().unwrap().len(), 1000);
    let mut ids: Vec<u64> = first["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    let mut scroll = first["scroll_id"].as_str().unwrap().to_string();
    let first_scroll = scroll.clone();
    loop {
        let (_, page) = api
            .udesk(
                Method::GET,
                "/customers/export",
                &[("scroll_id", &scroll)],
                None,
            )
            .await;
        assert_eq!(page["code"], 1000, "{page}");
        let batch = page["customers"].as_array().unwrap();
        if batch.is_empty() {
            break;
        }
        ids.extend(batch.iter().map(|c| c["id"].as_u64().unwrap()));
        scroll = page["scroll_id"].as_str().unwrap().to_string();
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (2500, 2500));
    // A used scroll id no longer works; an unused one expires.
    let (_, body) = api
        .udesk(
            Method::GET,
            "/customers/export",
            &[("scroll_id", &first_scroll)],
            None,
        )
        .await;
    assert_eq!(body["code"], 2062);
    let (_, fresh) = api
        .udesk(
            Method::GET,
            "/customers/export",
            &[("query", "seed1")],
            None,
        )
        .await;
    let fresh_id = fresh["scroll_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, body) = api
        .udesk(
            Method::GET,
            "/customers/export",
            &[("scroll_id", &fresh_id)],
            None,
        )
        .await;
    assert_eq!(body["code"], 2062);
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let (server, api) = start(SandboxConfig {
        udesk_calls_per_minute: 5,
        omnidesk_rate_per_second: Some(3.0),
        ..SandboxConfig::default()
    })
    .await;
    use reqwest::Method;
    let mut codes = Vec::new();
    for _ in 0..7 {
        let (status, body) = api
            .udesk(Method::GET, "/customers/filters", &[], None)
            .await;
        codes.push((status.as_u16(), body["code"].as_i64().unwrap()));
    }
    assert_eq!(&codes[..5], &[(200, 1000); 5]);
    assert_eq!(codes[5], (429, 429));
    let response = api
        .http
        .get(api.url("/api/v2/customer"))
        .header("apiKey", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut limited = None;
    for _ in 0..5 {
        let r = api
            .http
            .get(api.url("/api/v2/customer"))
            .header("apiKey", KEY)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("omnidesk rate limit reached");
    assert!(limited.headers().contains_key("retry-after"));
    server.shutdown().await;

    // The variant: HTTP 200 carrying code 429.
    let (server, api) = start(SandboxConfig {
        udesk_calls_per_minute: 1,
        udesk_rate_limit_style: UdeskRateLimitStyle::Code429,
        ..SandboxConfig::default()
    })
    .await;
    api.udesk(Method::GET, "/customers/filters", &[], None)
        .await;
    let (status, body) = api
        .udesk(Method::GET, "/customers/filters", &[], None)
        .await;
    assert_eq!((status, body["code"].as_i64()), (StatusCode::OK, Some(429)));
    server.shutdown().await;
}

/// The statuses a sequential client sees for `n` creates under some faults.
async fn fault_sequence(seed: u64, n: usize) -> Vec<String> {
    let faults = Faults {
        error_rate: 0.2,
        apply_then_error_rate: 0.2,
        drop_rate: 0.1,
        ..Faults::default()
    };
    let (server, api) = start(SandboxConfig {
        seed,
        faults,
        ..fast()
    })
    .await;
    let mut seen = Vec::new();
    for i in 0..n {
        let form = Form::new()
            .text("brand_id", "1")
            .text("primary_id", format!("F{i}"));
        let result = api
            .http
            .post(api.url("/api/v2/customer"))
            .header("apiKey", KEY)
            .multipart(form)
            .send()
            .await;
        // The status, or "dropped" when the connection was cut before a whole reply.
        let outcome = match result {
            Ok(r) => {
                let status = r.status().as_u16().to_string();
                match r.bytes().await {
                    Ok(_) => status,
                    Err(_) => "dropped".to_string(),
                }
            }
            Err(_) => "dropped".to_string(),
        };
        seen.push(outcome);
    }
    let state = api.state().await;
    seen.push(format!("stored={}", state["omnidesk"]["count"]));
    server.shutdown().await;
    seen
}

#[tokio::test]
async fn faults_are_reproducible_from_the_seed() {
    let a = fault_sequence(7, 60).await;
    let b = fault_sequence(7, 60).await;
    assert_eq!(a, b);
    for kind in ["200", "500", "dropped"] {
        assert!(a.iter().any(|s| s == kind), "{kind} among {a:?}");
    }
    // 500s and drops are not all applied: fewer stored than requests, more than the 200s.
    let ok = a.iter().filter(|s| *s == "200").count();
    let stored: usize = a
        .last()
        .unwrap()
        .trim_start_matches("stored=")
        .parse()
        .unwrap();
    assert!(ok < stored && stored < 60, "200s {ok}, stored {stored}");
    assert_ne!(
        a,
        fault_sequence(8, 60).await,
        "another seed gives other faults"
    );
}

#[tokio::test]
async fn apply_then_error_really_applies_and_plain_errors_do_not() {
    use reqwest::Method;
    let (server, api) = start(SandboxConfig {
        faults: Faults {
            apply_then_error_rate: 1.0,
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let (status, _) = api
        .omni_form(
            Method::POST,
            "/customer",
            &[("brand_id", "1"), ("primary_id", "A1")],
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let state = api.state().await;
    assert_eq!(
        state["omnidesk"]["count"], 1,
        "the write was applied despite the 500"
    );
    assert_eq!(state["stats"]["injected_apply_then_errors"], 1);
    server.shutdown().await;

    let (server, api) = start(SandboxConfig {
        faults: Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
        ..fast()
    })
    .await;
    let (status, _) = api
        .omni_form(
            Method::POST,
            "/customer",
            &[("brand_id", "1"), ("primary_id", "A1")],
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(api.state().await["omnidesk"]["count"], 0);
    // Faults change at run time.
    api.http
        .put(api.url("/__sandbox/faults"))
        .json(&json!({"error_rate": 0.0}))
        .send()
        .await
        .unwrap();
    let (status, _) = api
        .omni_form(
            Method::POST,
            "/customer",
            &[("brand_id", "1"), ("primary_id", "A1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn capacity_limit_rejects_or_queues() {
    let faults = Faults {
        latency_ms: 200,
        capacity: Some(2),
        over_capacity: OverCapacity::Reject,
        ..Faults::default()
    };
    let (server, api) = start(SandboxConfig { faults, ..fast() }).await;
    let api = std::sync::Arc::new(api);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let api = api.clone();
        tasks.push(tokio::spawn(
            async move { api.omni_get("/customer").await.0 },
        ));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let rejected = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(rejected >= 3, "{statuses:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_10000_requests_from_32_clients() {
    let (server, api) = start(fast()).await;
    let api = std::sync::Arc::new(api);
    let mut tasks = Vec::new();
    for client in 0..32 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            for i in 0..(10_000 / 32 + usize::from(client < 10_000 % 32)) {
                let id = format!("L{client}-{i}");
                let (status, _) = api
                    .omni_urlencoded(
                        reqwest::Method::POST,
                        "/customer",
                        &[("brand_id", "1"), ("primary_id", &id)],
                    )
                    .await;
                failures += usize::from(status != StatusCode::OK);
            }
            failures
        }));
    }
    let mut failures = 0;
    for t in tasks {
        failures += t.await.unwrap();
    }
    assert_eq!(failures, 0);
    assert_eq!(api.state().await["omnidesk"]["count"], 10_000);
    server.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_restart_through_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sandbox.json");
    let config = SandboxConfig {
        state_file: Some(file.clone()),
        ..fast()
    };
    let (server, api) = start(config.clone()).await;
    api.omni_form(
        reqwest::Method::POST,
        "/customer",
        &[("brand_id", "1"), ("primary_id", "KEEP")],
    )
    .await;
    api.http
        .post(api.url("/__sandbox/save"))
        .send()
        .await
        .unwrap();
    server.shutdown().await;
    let (server, api) = start(config).await;
    let (status, _) = api
        .omni_form(
            reqwest::Method::POST,
            "/customer/SearchByPrimaryExternalID",
            &[("primary_id", "KEEP"), ("brand_id", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await;
}

#[test]
fn the_sandbox_command_serves_and_prints_its_urls_and_demo_credentials() {
    use std::io::{BufRead, BufReader};
    let wd = crate::common::Workdir::new();
    let mut child = wd
        .command()
        .args(["sandbox", "--port", "0", "--seed-customers", "5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first.rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    let rest: Vec<String> = lines.by_ref().take(7).map(Result::unwrap).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("DESKPORT_OMNIDESK_API_KEY=sandbox-omnidesk-key")),
        "{rest:?}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let state: Value = runtime.block_on(async {
        reqwest::get(format!("{base}/__sandbox/state?summary=true"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(state["omnidesk"]["count"], 5);
    assert_eq!(state["udesk"]["count"], 5);
}

#[test]
fn sandbox_config_debug_redacts_credentials() {
    let config = SandboxConfig {
        omnidesk_api_key: "omni-secret-1".into(),
        udesk_token: "udesk-secret-2".into(),
        udesk_password: "udesk-secret-3".into(),
        ..SandboxConfig::default()
    };
    let shown = format!("{config:?}");
    for secret in ["omni-secret-1", "udesk-secret-2", "udesk-secret-3"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("<redacted>"));
}

#[tokio::test]
async fn a_broken_state_file_is_refused_and_a_loaded_store_is_not_seeded_again() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, b"{ not json").unwrap();
    let err = sandbox::spawn(
        SandboxConfig {
            state_file: Some(broken),
            ..fast()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .err()
    .expect("a broken state file must not start an empty sandbox");
    assert!(err.to_string().contains("not a saved state"), "{err}");

    let file = dir.path().join("state.json");
    let config = SandboxConfig {
        state_file: Some(file),
        seed_customers: 3,
        ..fast()
    };
    let (server, api) = start(config.clone()).await;
    api.http
        .post(api.url("/__sandbox/save"))
        .send()
        .await
        .unwrap();
    server.shutdown().await;
    let (server, api) = start(config).await;
    assert_eq!(
        api.state().await["omnidesk"]["count"],
        3,
        "seeded once, then loaded"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_queue_makes_latency_grow_with_the_queue() {
    let faults = Faults {
        latency_ms: 200,
        capacity: Some(2),
        over_capacity: OverCapacity::Queue,
        ..Faults::default()
    };
    let (server, api) = start(SandboxConfig { faults, ..fast() }).await;
    let api = std::sync::Arc::new(api);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let api = api.clone();
        tasks.push(tokio::spawn(
            async move { api.omni_get("/customer").await.0 },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK, "queued, not refused");
    }
    // Two at a time, 200 ms each: three waves, so at least 600 ms (a bound, not a speed target).
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_documented_profile_moves_a_replayed_scroll_on_and_drops_bad_bulk_rows_silently() {
    let config = SandboxConfig {
        seed_customers: 2500,
        bulk_import_delay: Duration::ZERO,
        profile: sandbox::Profile::documented(),
        ..fast()
    };
    let (server, api) = start(config).await;
    use reqwest::Method;
    let ids = |page: &Value| -> Vec<u64> {
        page["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect()
    };
    let (_, first) = api.udesk(Method::GET, "/customers/export", &[], None).await;
    let scroll = first["scroll_id"].as_str().unwrap().to_string();
    let (_, second) = api
        .udesk(
            Method::GET,
            "/customers/export",
            &[("scroll_id", &scroll)],
            None,
        )
        .await;
    // The same id again: not an error, not the same batch — the next one.
    let (_, replayed) = api
        .udesk(
            Method::GET,
            "/customers/export",
            &[("scroll_id", &scroll)],
            None,
        )
        .await;
    assert_eq!(replayed["code"], 1000, "{replayed}");
    let (a, b, c) = (ids(&first), ids(&second), ids(&replayed));
    assert_eq!((a.len(), b.len(), c.len()), (1000, 1000, 500));
    assert!(b.iter().all(|id| !c.contains(id)) && a.iter().all(|id| !b.contains(id)));
    // Bulk import: code 1000 for a batch with a bad row and a collision; both dropped when
    // applied, the good row lands, and only the sandbox's state tells.
    let (_, reply) = api
        .udesk(
            Method::POST,
            "/customers/batch_import_async",
            &[],
            Some(json!({"customers": [
                {"nick_name": "good", "emails": ["good@example.com"]},
                {"nick_name": "bad", "emails": ["not an email"]},
                {"nick_name": "taken", "emails": ["seed1@example.com"]},
            ]})),
        )
        .await;
    assert_eq!(reply["code"], 1000, "{reply}");
    api.udesk(Method::GET, "/customers/filters", &[], None)
        .await; // applies due imports
    let (_, good) = api
        .udesk(
            Method::GET,
            "/customers/get_customer",
            &[("type", "email"), ("content", "good@example.com")],
            None,
        )
        .await;
    assert_eq!(good["code"], 1000, "{good}");
    let skips = api.state().await["udesk"]["import_skips"].clone();
    assert_eq!(skips.as_array().map(Vec::len), Some(2), "{skips}");
    // Refused credentials: HTTP 200 with a code the documents do not list.
    let r = api
        .http
        .get(api.url("/open_api_v1/customers"))
        .query(&[
            ("email", "x"),
            ("timestamp", "1"),
            ("nonce", "n"),
            ("sign", "s"),
            ("sign_version", "v2"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 2099);
    server.shutdown().await;
}
