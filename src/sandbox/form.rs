//! Omnidesk request bodies: multipart/form-data or x-www-form-urlencoded, read into ordered
//! `(name, value)` pairs. Anything else (JSON included) is refused with 415, as the platform
//! documents only these two.

use axum::extract::{Form, FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The fields of a form body.
#[derive(Debug, Default, Clone)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"type": "error", "message": message.into()})),
    )
        .into_response()
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(request, state)
                .await
                .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad multipart body: {e}")))?;
            let mut fields = Vec::new();
            while let Some(field) = multipart
                .next_field()
                .await
                .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad multipart body: {e}")))?
            {
                let name = field.name().unwrap_or("").to_string();
                let value = field.text().await.map_err(|e| {
                    refuse(
                        StatusCode::BAD_REQUEST,
                        format!("bad multipart field {name}: {e}"),
                    )
                })?;
                fields.push((name, value));
            }
            Ok(Fields(fields))
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let Form(pairs) = Form::<Vec<(String, String)>>::from_request(request, state)
                .await
                .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad form body: {e}")))?;
            Ok(Fields(pairs))
        } else if content_type.is_empty() && request.method() == axum::http::Method::GET {
            Ok(Fields::default())
        } else {
            Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("body must be multipart/form-data or application/x-www-form-urlencoded, not {content_type:?}"),
            ))
        }
    }
}
