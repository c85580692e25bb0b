//! One watch per referenced TLS Secret (a field selector on its name), so the replica reads
//! only the Secrets its RouterConfigs name, never every Secret it could.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use lockstep_core::ObjectKey;
use tokio::{sync::Notify, task::JoinHandle};

use super::tls::SecretState;

/// The Secret watches and what they have seen.
pub(super) struct SecretWatches {
    client: Client,
    wake: Arc<Notify>,
    states: Arc<Mutex<HashMap<ObjectKey, SecretState>>>,
    tasks: Mutex<HashMap<ObjectKey, JoinHandle<()>>>,
}

impl SecretWatches {
    pub(super) fn new(client: Client, wake: Arc<Notify>) -> Self {
        Self {
            client,
            wake,
            states: Arc::default(),
            tasks: Mutex::default(),
        }
    }

    /// Watches exactly `wanted`: starts missing watches, stops unneeded ones.
    pub(super) fn ensure(&self, wanted: &BTreeSet<ObjectKey>) {
        let mut tasks = self.tasks.lock().expect("secret tasks lock");
        tasks.retain(|key, task| {
            let keep = wanted.contains(key);
            if !keep {
                task.abort();
                self.states.lock().expect("secret states lock").remove(key);
            }
            keep
        });
        for key in wanted {
            if tasks.contains_key(key) {
                continue;
            }
            self.states
                .lock()
                .expect("secret states lock")
                .insert(key.clone(), SecretState::Pending);
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
            let (states, wake, key2) = (self.states.clone(), self.wake.clone(), key.clone());
            let task = tokio::spawn(async move {
                let mut events =
                    std::pin::pin!(watcher(api, config).backoff(lockstep_apiclient::watch_backoff()));
                let mut seen = false;
                while let Some(event) = events.next().await {
                    let next = match event {
                        Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                            seen = true;
                            Some(SecretState::Present(Arc::new(s)))
                        }
                        Ok(watcher::Event::Delete(_)) => Some(SecretState::Missing),
                        Ok(watcher::Event::Init) => {
                            seen = false;
                            None
                        }
                        Ok(watcher::Event::InitDone) => (!seen).then_some(SecretState::Missing),
                        Err(error) => {
                            tracing::warn!(secret = %key2, %error, "secret watch error; retrying");
                            None
                        }
                    };
                    if let Some(state) = next {
                        states
                            .lock()
                            .expect("secret states lock")
                            .insert(key2.clone(), state);
                        wake.notify_one();
                    }
                }
            });
            tasks.insert(key.clone(), task);
        }
    }

    /// What the watches have seen.
    pub(super) fn states(&self) -> HashMap<ObjectKey, SecretState> {
        self.states.lock().expect("secret states lock").clone()
    }
}

impl Drop for SecretWatches {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("secret tasks lock").values() {
            task.abort();
        }
    }
}
