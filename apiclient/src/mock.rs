//! A fake apiserver for unit tests of request shapes (feature `mock`, enabled by the
//! dev-dependencies of the operator and the proxy): a [`kube::Client`] whose requests come to
//! the test, which looks at each (method, path, query, JSON body) and answers it when it
//! wants. Built on `tower_test::mock`, the pattern of kube-rs's controller-rs fixtures.
//!
//! For what a write looks like on the wire and how the caller reacts to an answer; never the
//! proof that a feature works against a real apiserver (that is `e2e/` and `operator/tests/`).

use std::{collections::BTreeMap, time::Duration};

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tower_test::mock;

/// How long [`ApiServer::next`] waits for a request before the test fails: a test waiting on
/// a request that never comes fails with a message instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// A client whose requests go to the returned [`ApiServer`], in namespace `default`.
pub fn pair() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

/// The test's side: the requests the client sent, in order.
pub struct ApiServer {
    handle: mock::Handle<Request<Body>, Response<Body>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

impl ApiServer {
    /// The next request; panics when none comes within 10 s or every client is gone.
    pub async fn next(&mut self) -> Sent {
        match tokio::time::timeout(PATIENCE, self.handle.next_request()).await {
            Ok(Some((request, respond))) => Sent::read(request, respond).await,
            Ok(None) => panic!("expected a request, but every client is gone"),
            Err(_) => panic!("expected a request, none came within {PATIENCE:?}"),
        }
    }

    /// Panics when a request comes within `wait`.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(wait, self.handle.next_request()).await {
            panic!(
                "expected no request for {wait:?}, got {} {}",
                request.method(),
                request.uri()
            );
        }
    }

    /// Waits until every client (and every `Api` made from one) is dropped, and panics when
    /// one sent another request first: the code under test sent nothing more.
    pub async fn expect_no_more(mut self) {
        if let Some((request, _)) = self.next_request_or_panic().await {
            panic!(
                "expected no more requests, got {} {}",
                request.method(),
                request.uri()
            );
        }
    }

    async fn next_request_or_panic(&mut self) -> Option<(Request<Body>, mock::SendResponse<Response<Body>>)> {
        tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("a client is still alive after {PATIENCE:?}"))
    }
}

/// One request as the apiserver would see it, and the way to answer it.
#[derive(Debug)]
pub struct Sent {
    /// The HTTP method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query parameters (`fieldManager`, `force`, ...).
    pub query: BTreeMap<String, String>,
    /// The `Content-Type` header ("" without one).
    pub content_type: String,
    /// The body as JSON (`Value::Null` when empty).
    pub body: Value,
    respond: mock::SendResponse<Response<Body>>,
}

impl Sent {
    async fn read(request: Request<Body>, respond: mock::SendResponse<Response<Body>>) -> Self {
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await.expect("a request body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "the body of {} {} is not JSON ({e}): {}",
                    parts.method,
                    parts.uri,
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        Self {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query,
            content_type,
            body,
            respond,
        }
    }

    /// `"METHOD /path"`, for assertions and messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The query parameter `key`, if sent.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Answers with `code` and the JSON `body`.
    pub fn answer(self, code: u16, body: &Value) {
        let response = Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).expect("JSON")))
            .expect("a response");
        self.respond.send_response(response);
    }

    /// Answers 200 with the JSON `body`.
    pub fn ok(self, body: &Value) {
        self.answer(200, body);
    }

    /// Answers with a failure `Status` of `code` and `reason` (`Conflict`, `NotFound`), as the
    /// apiserver does; kube turns it into `kube::Error::Api`.
    pub fn fail(self, code: u16, reason: &str, message: &str) {
        let status = json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {},
            "status": "Failure", "reason": reason, "message": message, "code": code,
        });
        self.answer(code, &status);
    }
}

/// A query component with its percent escapes (and `+` for space) decoded.
fn decode(component: &str) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or_default();
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_decoded() {
        assert_eq!(
            decode("lockstep.dev%2Ffleet%3Ddefault"),
            "lockstep.dev/fleet=default"
        );
        assert_eq!(decode("a+b"), "a b");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }

    #[tokio::test]
    async fn a_request_and_its_answer_pass_through() {
        let (client, mut server) = pair();
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, "ns");
        let params = kube::api::PatchParams::apply("me").force();
        let patch = kube::api::Patch::Apply(json!({"data": {"k": "v"}}));
        let sent = tokio::spawn(async move { api.patch("cm", &params, &patch).await });
        let request = server.next().await;
        assert_eq!(request.describe(), "PATCH /api/v1/namespaces/ns/configmaps/cm");
        assert_eq!(request.query("fieldManager"), Some("me"));
        assert_eq!(request.query("force"), Some("true"));
        assert_eq!(request.content_type, "application/apply-patch+yaml");
        assert_eq!(request.body["data"]["k"], "v");
        request.fail(409, "Conflict", "changed");
        let error = sent.await.unwrap().unwrap_err();
        assert!(matches!(&error, kube::Error::Api(s) if s.code == 409), "{error}");
        server.expect_no_more().await;
    }
}
