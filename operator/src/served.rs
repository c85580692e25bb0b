//! Whether the apiserver serves a kind the operator can do without: the Gateway API, and
//! within it BackendTLSPolicy, ListenerSet and lockstep's GatewayParameters.
//!
//! Listing one object's metadata asks. Only two failures answer the question:
//!
//! | answer                              | means                                  | served    |
//! |-------------------------------------|----------------------------------------|-----------|
//! | a list                              | the kind is served                     | yes       |
//! | 404                                 | no such resource: its CRD is not there | no        |
//! | 403                                 | the operator's RBAC has no rule for it | no        |
//! | anything else (429, 5xx, transport) | nothing about the kind                 | ask again |
//!
//! The last row is why this module exists. `kubectl apply -k deploy/` writes the CRDs (the
//! Gateway API's already applied, now labelled) and the operator's Deployment together, and
//! an apiserver answers 429 "storage is (re)initializing" for a moment for a CRD it has just
//! created or changed (the one-node install's operator logged it for ReferenceGrants): an
//! operator taking that for "not installed" would leave the feature off until its restart.

use std::time::Duration;

use kube::{Api, Resource, api::ListParams};

/// What one list of a kind said about it.
#[derive(Debug)]
pub enum Probe {
    /// The kind is served.
    Served,
    /// The apiserver said it is not (404), or that the operator may not list it (403).
    NotServed(kube::Error),
    /// An answer that says nothing about the kind: ask again.
    Unknown(kube::Error),
}

/// Classifies the result of listing a kind (the table in the module doc).
pub fn classify<T>(result: Result<T, kube::Error>) -> Probe {
    match result {
        Ok(_) => Probe::Served,
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 403 => {
            Probe::NotServed(kube::Error::Api(status))
        }
        Err(error) => Probe::Unknown(error),
    }
}

/// The first wait between two probes that said nothing; each wait doubles up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between two probes that said nothing.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// Asks until the apiserver answers: `Ok(())` when `api`'s kind is served, the 404 or 403
/// otherwise. `what` names the kind in the log line of each unanswered probe.
pub async fn answer<K>(api: &Api<K>, what: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut wait = FIRST_WAIT;
    loop {
        match classify(api.list_metadata(&ListParams::default().limit(1)).await) {
            Probe::Served => return Ok(()),
            Probe::NotServed(error) => return Err(error),
            Probe::Unknown(error) => {
                // At info the first time only: an apiserver that never answers would
                // otherwise fill the log.
                if wait == FIRST_WAIT {
                    tracing::info!(what, %error, "no answer yet whether the apiserver serves it; asking again");
                } else {
                    tracing::debug!(what, %error, "no answer yet whether the apiserver serves it; asking again");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use lockstep_apiclient::mock;
    use serde_json::json;

    use super::*;

    /// Against the fake apiserver: a 429 and a 503 are asked again (after the waits), the list
    /// that follows is the answer; a 404 is an answer at once.
    #[tokio::test(start_paused = true)]
    async fn a_429_or_a_5xx_is_asked_again_until_a_list_or_a_404_answers() {
        let (client, mut server) = mock::pair();
        let api = Api::<ConfigMap>::all(client);
        let asking = tokio::spawn(async move { answer(&api, "configmaps").await.map_err(|e| e.to_string()) });
        let sent = server.next().await;
        assert_eq!(sent.describe(), "GET /api/v1/configmaps");
        assert_eq!(sent.query("limit"), Some("1"));
        sent.fail(429, "TooManyRequests", "storage is (re)initializing");
        server.next().await.fail(503, "ServiceUnavailable", "unavailable");
        server.next().await.ok(&json!({
            "apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"}, "items": [],
        }));
        assert_eq!(asking.await.unwrap(), Ok(()));
        server.expect_no_more().await;

        let (client, mut server) = mock::pair();
        let api = Api::<ConfigMap>::all(client);
        let asking = tokio::spawn(async move { answer(&api, "configmaps").await.is_err() });
        server.next().await.fail(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        assert!(asking.await.unwrap(), "a 404 is an answer: not served");
        server.expect_no_more().await;
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("test", "Test").with_code(code),
        ))
    }

    #[test]
    fn only_a_list_a_404_or_a_403_answers() {
        assert!(matches!(classify(Ok::<(), _>(())), Probe::Served));
        for code in [404, 403] {
            assert!(
                matches!(classify::<()>(Err(api_error(code))), Probe::NotServed(_)),
                "{code}"
            );
        }
        for code in [429, 500, 503, 504, 401] {
            assert!(
                matches!(classify::<()>(Err(api_error(code))), Probe::Unknown(_)),
                "{code}"
            );
        }
        let transport = kube::Error::Service(Box::new(std::io::Error::other("connection reset")));
        assert!(matches!(classify::<()>(Err(transport)), Probe::Unknown(_)));
    }
}
