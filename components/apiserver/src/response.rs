//! HTTP plumbing shared by every handler: the body type, JSON and Status responses, request
//! bodies with upstream's 3 MiB limit, and query strings.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use hakube_apimachinery::status::ApiError;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use serde_json::Value;

pub type Body = BoxBody<Bytes, Infallible>;

/// Upstream's limit on request bodies.
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn json(code: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn text(
    code: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A body sent chunk by chunk, each made only when the connection is ready for it.
pub fn stream(
    code: StatusCode,
    chunks: impl Iterator<Item = Bytes> + Send + Sync + 'static,
    content_type: &'static str,
) -> Response<Body> {
    let frames = futures::stream::iter(chunks.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn error(err: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(code, &err.to_status());
    let retry = err
        .retry_after_seconds
        .or_else(|| err.details.as_ref().and_then(|d| d.retry_after_seconds));
    if let Some(seconds) = retry {
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// Reads a request body, answering 413 beyond the limit.
pub async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(hakube_apimachinery::status::request_entity_too_large(
                    MAX_REQUEST_BODY as u64,
                ))
            } else {
                Err(hakube_apimachinery::status::bad_request(format!(
                    "reading the request body: {e}"
                )))
            }
        }
    }
}

/// Query parameters, decoded as Go's url.ParseQuery does (`+` is a space); the first value wins.
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode_component(k);
        let v = decode_component(v);
        out.entry(k).or_insert(v);
    }
    out
}

fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// A boolean query parameter as Go's strconv.ParseBool reads it.
pub fn query_bool(query: &HashMap<String, String>, key: &str) -> bool {
    matches!(
        query.get(key).map(String::as_str),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decodes_plus_and_percent_and_tolerates_empty_pairs() {
        let q = parse_query(Some(
            "&limit=500&labelSelector=app+in+%28a%2Cb%29&watch=true",
        ));
        assert_eq!(q["limit"], "500");
        assert_eq!(q["labelSelector"], "app in (a,b)");
        assert!(query_bool(&q, "watch"));
        assert!(!query_bool(&q, "missing"));
    }

    #[tokio::test]
    async fn oversize_bodies_are_413() {
        let big = Full::new(Bytes::from(vec![b'x'; MAX_REQUEST_BODY + 1]));
        let err = read_body(big).await.unwrap_err();
        assert_eq!(err.code, 413);
        let small = Full::new(Bytes::from_static(b"{}"));
        assert_eq!(read_body(small).await.unwrap(), Bytes::from_static(b"{}"));
    }
}
