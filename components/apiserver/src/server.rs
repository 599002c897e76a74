//! The HTTPS front: TLS connections (HTTP/2 or HTTP/1.1), authentication, routing of every
//! path to discovery, health, metrics, OIDC or a resource verb, request metrics, and graceful
//! shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hakube_apimachinery::status::{self, ApiError};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::authn::{user_from_certificate, UserInfo};
use crate::metrics::LatencyLabels;
use crate::registry::{self, Storage};
use crate::response::{self, parse_query, query_bool, read_body, Body};
use crate::rest::{self, Target};
use crate::{discovery, fieldvalidation, openapi, table, watch, State};

/// Paths anyone may read without credentials (upstream's system:public-info-viewer and
/// service-account-issuer-discovery roles).
fn public_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/livez"
            | "/readyz"
            | "/version"
            | "/.well-known/openid-configuration"
            | "/openid/v1/jwks"
    )
}

pub async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    http2_max_streams: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let state = state.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let cert_user = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|c| user_from_certificate(c.as_ref()));
                    let service = service_fn(move |req| {
                        // Boxed: hyper keeps each HTTP/2 stream's task sized for its service
                        // future for as long as the stream lives, and a watch stream lives on
                        // long after the handler's large state machine has finished.
                        let handling = Box::pin(handle(state.clone(), cert_user.clone(), req));
                        async move { Ok::<_, Infallible>(handling.await) }
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder.http2().max_concurrent_streams(http2_max_streams);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = crate::stopping(&mut stop) => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for open requests");
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after 10s; closing them");
    }
}

async fn authenticate(
    state: &State,
    cert_user: Option<UserInfo>,
    req: &Request<Incoming>,
) -> Result<UserInfo, ApiError> {
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    // Upstream's order: a verified client certificate first, then bearer tokens.
    if let Some(user) = cert_user {
        return Ok(user);
    }
    if let Some(token) = bearer {
        return state
            .authn
            .token(token, &state.store)
            .await
            .ok_or_else(status::unauthorized);
    }
    if state.anonymous_auth && public_path(req.uri().path()) {
        return Ok(UserInfo::anonymous());
    }
    Err(status::unauthorized())
}

async fn handle(
    state: Arc<State>,
    cert_user: Option<UserInfo>,
    req: Request<Incoming>,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut labels = LatencyLabels {
        verb: method.as_str().to_string(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        scope: String::new(),
        component: "apiserver".to_string(),
    };
    let user = match authenticate(&state, cert_user, &req).await {
        Ok(u) => u,
        Err(e) => {
            state
                .metrics
                .observe_request(&labels, e.code, start.elapsed());
            return response::error(&e);
        }
    };
    // The slot is held until the response is built.
    let _inflight = match state.inflight.admit(&method, req.uri()) {
        Ok(permit) => permit,
        Err(e) => {
            state
                .metrics
                .observe_request(&labels, e.code, start.elapsed());
            return response::error(&e);
        }
    };
    let result = route(&state, &user, req, &mut labels).await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => response::error(&e),
    };
    // Watches are counted when they start; their duration is the stream's, not the request's.
    state
        .metrics
        .observe_request(&labels, resp.status().as_u16(), start.elapsed());
    tracing::debug!(method = %method, path = %path, user = %user.name, code = resp.status().as_u16(), "request");
    resp
}

fn ok_text(body: &'static str) -> Response<Body> {
    response::text(StatusCode::OK, body, "text/plain; charset=utf-8")
}

/// An OpenAPI document; addressed by its hash, it never changes and may be cached for good.
fn openapi_document(document: &openapi::Document, immutable: bool) -> Response<Body> {
    let mut resp = response::text(StatusCode::OK, document.body.clone(), "application/json");
    let headers = resp.headers_mut();
    let cache = if immutable {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static(cache),
    );
    if let Ok(etag) = http::HeaderValue::from_str(&format!("\"{}\"", document.hash)) {
        headers.insert(http::header::ETAG, etag);
    }
    resp
}

/// Swagger 2.0 is served as JSON only; a client asking for protobuf alone is told so (406) and
/// falls back to OpenAPI v3.
fn openapi_v2(req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json_ok = accept.is_empty()
        || accept
            .split(',')
            .map(|t| t.split(';').next().unwrap_or("").trim())
            .any(|t| matches!(t, "application/json" | "application/*" | "*/*"));
    if !json_ok {
        return Err(ApiError {
            code: 406,
            reason: "NotAcceptable".into(),
            message: format!("only the following media types are accepted: application/json (asked for {accept})"),
            details: None,
            retry_after_seconds: None,
        });
    }
    Ok(openapi_document(openapi::spec().v2(), false))
}

async fn route(
    state: &Arc<State>,
    user: &UserInfo,
    req: Request<Incoming>,
    labels: &mut LatencyLabels,
) -> Result<Response<Body>, ApiError> {
    // Clients escape names in paths (the Python client quotes `:` as %3A).
    let decoded: Vec<String> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let get = req.method() == Method::GET;
    match segments.as_slice() {
        ["healthz"] | ["livez"] if get => return Ok(ok_text("ok")),
        ["readyz"] if get => {
            let stopping = *state.shutdown.borrow();
            let defaults_created = state
                .defaults_created
                .load(std::sync::atomic::Ordering::Acquire);
            return match state.store.ping().await {
                Ok(()) if stopping => Ok(response::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[-]shutdown failed: server is shutting down\nreadyz check failed",
                    "text/plain; charset=utf-8",
                )),
                Ok(()) if !defaults_created => Ok(response::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[-]poststarthook/bootstrap-controller failed: the default objects are not created yet\nreadyz check failed",
                    "text/plain; charset=utf-8",
                )),
                Ok(()) => Ok(ok_text("ok")),
                Err(e) => Ok(response::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("[-]etcd failed: {e}\nreadyz check failed"),
                    "text/plain; charset=utf-8",
                )),
            };
        }
        ["version"] if get => return Ok(response::json(StatusCode::OK, &discovery::version())),
        ["metrics"] if get => {
            return Ok(response::text(
                StatusCode::OK,
                state.metrics.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            ))
        }
        [".well-known", "openid-configuration"] if get => {
            let issuer = state.authn.issuer().ok_or_else(not_found)?;
            return Ok(response::json(StatusCode::OK, &issuer.discovery()));
        }
        ["openid", "v1", "jwks"] if get => {
            let issuer = state.authn.issuer().ok_or_else(not_found)?;
            let mut resp = response::json(StatusCode::OK, &issuer.jwks());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/jwk-set+json"),
            );
            return Ok(resp);
        }
        ["openapi", "v2"] if get => return openapi_v2(&req),
        ["openapi", "v3"] if get => return Ok(openapi_document(&openapi::v3_index(), false)),
        ["openapi", "v3", rest @ ..] if get => {
            let key = rest.join("/");
            let custom = openapi::custom_v3(&key);
            let document = match &custom {
                Some(doc) => doc.as_ref(),
                None => openapi::spec().v3(&key).ok_or_else(not_found)?,
            };
            let query = parse_query(req.uri().query());
            return Ok(match query.get("hash") {
                // Upstream redirects an outdated hash to the current one.
                Some(h) if *h != document.hash => {
                    let mut resp = response::text(StatusCode::MOVED_PERMANENTLY, "", "text/plain");
                    if let Ok(location) = http::HeaderValue::from_str(&format!(
                        "/openapi/v3/{key}?hash={}",
                        document.hash
                    )) {
                        resp.headers_mut().insert(http::header::LOCATION, location);
                    }
                    resp
                }
                Some(_) => openapi_document(document, true),
                None => openapi_document(document, false),
            });
        }
        ["api"] if get => {
            return Ok(response::json(
                StatusCode::OK,
                &discovery::core_versions(&state.server_address),
            ))
        }
        ["apis"] if get => return Ok(response::json(StatusCode::OK, &discovery::group_list())),
        ["api", "v1"] if get => {
            return discovery::resource_list("", "v1")
                .map(|v| response::json(StatusCode::OK, &v))
                .ok_or_else(not_found)
        }
        ["apis", group] if get => {
            return discovery::group(group)
                .map(|v| response::json(StatusCode::OK, &v))
                .ok_or_else(not_found)
        }
        ["apis", group, version] if get => {
            return discovery::resource_list(group, version)
                .map(|v| response::json(StatusCode::OK, &v))
                .ok_or_else(not_found)
        }
        ["api", "v1", rest @ ..] if !rest.is_empty() => {
            let target = resolve("", "v1", rest)?;
            return resource(state, user, req, target, labels).await;
        }
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            let target = resolve(group, version, rest)?;
            return resource(state, user, req, target, labels).await;
        }
        _ => {}
    }
    Err(not_found())
}

fn not_found() -> ApiError {
    let mut e = status::not_found("", "", "");
    e.message = "the server could not find the requested resource".into();
    e.details = None;
    e
}

/// Resolves `[namespaces/NS/]RESOURCE[/NAME[/SUB]]` under a group version.
fn resolve(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let namespaced_collection = match rest {
        ["namespaces", ns, resource, tail @ ..] => registry::lookup(group, version, resource)
            .filter(|d| d.namespaced)
            .map(|d| (d, Some(ns.to_string()), tail)),
        _ => None,
    };
    let (def, namespace, tail) = match namespaced_collection {
        Some(found) => found,
        None => {
            let (resource, tail) = rest.split_first().ok_or_else(not_found)?;
            let def = registry::lookup(group, version, resource).ok_or_else(not_found)?;
            (def, None, tail)
        }
    };
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => {
            let sub = def.subresource(sub).ok_or_else(not_found)?;
            (Some(name.to_string()), Some(sub))
        }
        _ => return Err(not_found()),
    };
    // A namespaced object needs its namespace; only collections may span all of them.
    if def.namespaced && namespace.is_none() && name.is_some() {
        return Err(not_found());
    }
    Ok(Target {
        def,
        namespace,
        name,
        sub,
        field_manager: None,
    })
}

async fn resource(
    state: &Arc<State>,
    user: &UserInfo,
    req: Request<Incoming>,
    t: Target,
    labels: &mut LatencyLabels,
) -> Result<Response<Body>, ApiError> {
    let query: HashMap<String, String> = parse_query(req.uri().query());
    let method = req.method().clone();
    let watching = query_bool(&query, "watch");
    labels.group = t.def.group.to_string();
    labels.version = t.def.version.to_string();
    labels.resource = t.def.plural.to_string();
    labels.subresource = t.sub.map(|s| s.name().to_string()).unwrap_or_default();
    labels.scope = match (&t.name, &t.namespace) {
        (Some(_), _) => "resource",
        (None, Some(_)) => "namespace",
        (None, None) => "cluster",
    }
    .to_string();
    labels.verb = match (&method, &t.name) {
        (&Method::GET, None) if watching => "WATCH",
        (&Method::GET, None) => "LIST",
        (&Method::GET, Some(_)) => "GET",
        (&Method::POST, _) => "POST",
        (&Method::PUT, _) => "PUT",
        (&Method::PATCH, _) => "PATCH",
        (&Method::DELETE, None) => "DELETECOLLECTION",
        (&Method::DELETE, Some(_)) => "DELETE",
        _ => "UNKNOWN",
    }
    .to_string();
    if t.def.storage == Storage::Review && method != Method::POST {
        return Err(method_not_allowed(&method));
    }
    // Each subresource serves only its own verbs (binding and eviction are create-only).
    if let Some(sub) = t.sub {
        let verb = match method {
            Method::GET => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        };
        if !sub.verbs().contains(&verb) {
            return Err(method_not_allowed(&method));
        }
    }
    // Across all namespaces a namespaced resource is only listed and watched.
    if t.def.namespaced && t.namespace.is_none() && method != Method::GET {
        return Err(method_not_allowed(&method));
    }
    if method == Method::DELETE && t.name.is_none() && !t.def.verbs().contains(&"deletecollection")
    {
        return Err(method_not_allowed(&method));
    }
    if method == Method::GET {
        let accept = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let table = match t.sub {
            None => table::requested(accept, query.get("includeObject").map(String::as_str))
                .map_err(status::bad_request)?,
            Some(_) => None,
        };
        if watching && t.name.is_none() {
            return watch::serve(state.clone(), &t, &query, table, labels.clone()).await;
        }
        if table.is_none() && t.name.is_none() {
            if let Some(chunks) = rest::list_raw(state, &t, &query).await? {
                return Ok(response::stream(StatusCode::OK, chunks, "application/json"));
            }
        }
        let (code, body) = match &t.name {
            None => rest::list(state, &t, &query).await?,
            Some(_) => rest::get(state, &t).await?,
        };
        let Some(include) = table else {
            return Ok(response::json(code, &body));
        };
        let now = chrono::Utc::now();
        let rendered = match &t.name {
            None => table::table_for(
                t.def,
                body["items"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                &body["metadata"],
                include,
                now,
            ),
            Some(_) => table::table_for(
                t.def,
                std::slice::from_ref(&body),
                &serde_json::json!({"resourceVersion": body.pointer("/metadata/resourceVersion")}),
                include,
                now,
            ),
        };
        let mut resp = response::json(code, &rendered);
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(table::CONTENT_TYPE),
        );
        return Ok(resp);
    }
    let (parts, body) = req.into_parts();
    let body = read_body(body).await?;
    let mut t = t;
    t.field_manager = Some(rest::field_manager(&query, &parts.headers)?);
    let handler = async {
        match (&method, &t.name) {
            (&Method::POST, None) => {
                rest::create(state, user, &t, &query, &parts.headers, &body).await
            }
            (&Method::POST, Some(_)) if t.sub.is_some() => {
                rest::create(state, user, &t, &query, &parts.headers, &body).await
            }
            (&Method::PUT, Some(_)) => rest::update(state, &t, &query, &parts.headers, &body).await,
            (&Method::PATCH, Some(_)) => {
                rest::patch(state, &t, &query, &parts.headers, &body).await
            }
            (&Method::DELETE, Some(_)) if t.sub.is_none() => {
                rest::delete(state, &t, &query, &body).await
            }
            (&Method::DELETE, None) => rest::delete_collection(state, &t, &query, &body).await,
            _ => Err(method_not_allowed(&method)),
        }
    };
    let (result, warnings) = fieldvalidation::collect_warnings(handler).await;
    let (code, value) = result?;
    let mut resp = response::json(code, &value);
    let mut sent = std::collections::HashSet::new();
    for warning in warnings {
        if !sent.insert(warning.clone()) {
            continue;
        }
        if let Ok(v) = http::HeaderValue::from_str(&fieldvalidation::warning_header(&warning)) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    Ok(resp)
}

fn method_not_allowed(method: &Method) -> ApiError {
    status::method_not_allowed(format!(
        "the server does not allow this method on the requested resource ({method})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Subresource;

    #[test]
    fn namespaced_paths_resolve() {
        let t = resolve("", "v1", &["namespaces", "default", "pods", "p1", "status"]).unwrap();
        assert_eq!(t.def.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("p1"));
        assert_eq!(t.sub, Some(Subresource::Status));
    }

    #[test]
    fn namespace_objects_and_their_subresources_resolve() {
        let t = resolve("", "v1", &["namespaces", "team-a"]).unwrap();
        assert_eq!(t.def.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("team-a"));
        let t = resolve("", "v1", &["namespaces", "team-a", "finalize"]).unwrap();
        assert_eq!(t.sub, Some(Subresource::Finalize));
    }

    #[test]
    fn unknown_and_malformed_paths_are_404() {
        assert_eq!(resolve("", "v1", &["nopes"]).err().unwrap().code, 404);
        assert_eq!(resolve("", "v1", &["pods", "p1"]).err().unwrap().code, 404);
        assert_eq!(
            resolve("", "v1", &["namespaces", "d", "pods", "p", "bogus"])
                .err()
                .unwrap()
                .code,
            404
        );
        let all = resolve("apps", "v1", &["deployments"]).unwrap();
        assert!(all.namespace.is_none() && all.name.is_none());
    }

    #[test]
    fn public_paths_are_the_info_endpoints_only() {
        assert!(public_path("/version"));
        assert!(public_path("/openid/v1/jwks"));
        assert!(!public_path("/api/v1/pods"));
    }
}
