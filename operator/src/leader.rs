//! Leader election with a `coordination.k8s.io` Lease (kube-runtime has none), so two operator
//! replicas can run and only one reconciles.
//!
//! # Guarantees
//! A replica reconciles only after it wrote itself into the Lease with the Lease's current
//! `resourceVersion` (a conflict means another replica won). It renews every `renew_every`; when it
//! cannot renew before `duration` has passed since its last renewal, [`Leadership::lost`] returns
//! and the process must exit, so at most one replica acts on a job at a time once leases expire.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use tokio::task::JoinHandle;

/// Who this replica is and which Lease it competes for.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// A holder silent this long loses the lease.
    pub duration: Duration,
    pub renew_every: Duration,
}

/// What a candidate does about the lease as it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds it, or the holder let it expire.
    Take,
    /// We hold it.
    Renew,
    /// Someone else holds a live lease.
    Wait,
}

/// Decides the claim from the Lease's spec (absent when the Lease does not exist).
pub fn claim(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Claim {
    let Some(spec) = spec else { return Claim::Take };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => Claim::Renew,
        None | Some("") => Claim::Take,
        Some(_) => {
            let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
            let ttl = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            match renewed {
                Some(at) if at + ttl > now => Claim::Wait,
                _ => Claim::Take,
            }
        }
    }
}

/// The spec to write for `claim` (not [`Claim::Wait`]).
pub fn next_spec(old: Option<&LeaseSpec>, claim: Claim, settings: &LeaseSettings, now: Timestamp) -> LeaseSpec {
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    let mut spec = old.cloned().unwrap_or_default();
    if claim == Claim::Take {
        spec.holder_identity = Some(settings.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(if old.is_some() { transitions + 1 } else { 0 });
    }
    spec.lease_duration_seconds = Some(settings.duration.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    spec
}

/// Holding the lease; renewal runs in an owned task, aborted when this is dropped.
pub struct Leadership {
    renewal: JoinHandle<String>,
}

impl Leadership {
    /// Returns why the lease was lost; until then it never returns.
    pub async fn lost(&mut self) -> String {
        match (&mut self.renewal).await {
            Ok(why) => why,
            Err(e) => format!("lease renewal stopped: {e}"),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// One Lease read-and-write may take this long; a slower API server counts as a failed attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until this replica holds the lease, then renews it in the background.
pub async fn acquire(api: Api<Lease>, settings: LeaseSettings) -> Leadership {
    loop {
        match attempt(&api, &settings).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, lease = %settings.name, "cannot read the leader lease"),
        }
        tokio::time::sleep(settings.renew_every).await;
    }
    tracing::info!(identity = %settings.identity, lease = %settings.name, "became the leader");
    // Leadership ends before the lease could expire for the others: the deadline is measured
    // from before the last successful write, and leaves a renewal period of margin.
    let deadline = settings.duration.saturating_sub(settings.renew_every);
    let renewal = tokio::spawn(async move {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(settings.renew_every).await;
            let started = tokio::time::Instant::now();
            match attempt(&api, &settings).await {
                Ok(true) => renewed = started,
                Ok(false) => return "another replica took the lease".to_string(),
                Err(e) if renewed.elapsed() >= deadline => return format!("cannot renew the lease: {e}"),
                Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
            }
        }
    });
    Leadership { renewal }
}

/// [`try_hold`] bounded by [`ATTEMPT_TIMEOUT`].
async fn attempt(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, String> {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, try_hold(api, settings)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer in {ATTEMPT_TIMEOUT:?}")),
    }
}

/// One attempt to take or renew the lease; `Ok(false)` when another replica holds it or won a race.
async fn try_hold(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&settings.name).await?;
    let old = current.as_ref().and_then(|l| l.spec.as_ref());
    let decision = claim(old, &settings.identity, now);
    if decision == Claim::Wait {
        return Ok(false);
    }
    let spec = next_spec(old, decision, settings, now);
    let result = match current {
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&settings.name, &PostParams::default(), &lease).await
        }
        None => {
            let metadata = ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            };
            api.create(&PostParams::default(), &Lease { metadata, spec: Some(spec) }).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(identity: &str) -> LeaseSettings {
        LeaseSettings {
            name: "weir-operator".into(),
            namespace: "weir-system".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    fn at(second: i64) -> Timestamp {
        crate::fixtures::at(second).0
    }

    #[test]
    fn a_missing_or_empty_lease_is_taken_and_our_own_is_renewed() {
        assert_eq!(claim(None, "a", at(100)), Claim::Take);
        assert_eq!(claim(Some(&LeaseSpec::default()), "a", at(100)), Claim::Take);
        let ours = next_spec(None, Claim::Take, &settings("a"), at(100));
        assert_eq!(ours.lease_transitions, Some(0));
        assert_eq!(claim(Some(&ours), "a", at(200)), Claim::Renew);
    }

    #[test]
    fn another_holder_is_respected_until_its_lease_expires() {
        let theirs = next_spec(None, Claim::Take, &settings("b"), at(100));
        assert_eq!(claim(Some(&theirs), "a", at(114)), Claim::Wait);
        assert_eq!(claim(Some(&theirs), "a", at(115)), Claim::Take);
        let taken = next_spec(Some(&theirs), Claim::Take, &settings("a"), at(115));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.renew_time, Some(MicroTime(at(115))));
    }

    #[tokio::test]
    async fn the_first_replica_creates_the_lease_and_a_conflict_means_another_won() {
        use http::{Request, Response};
        use kube::client::Body;

        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<Lease> = Api::namespaced(kube::Client::new(service, "weir-system"), "weir-system");
        let server = tokio::spawn(async move {
            let not_found = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
            let conflict = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409});
            for (method, answer, code) in [
                ("GET", not_found.clone(), 404),
                ("POST", serde_json::Value::Null, 201),
                ("GET", not_found, 404),
                ("POST", conflict, 409),
            ] {
                let (request, send) = handle.next_request().await.expect("a request");
                assert_eq!(request.method().as_str(), method);
                assert_eq!(
                    request.uri().path().trim_end_matches("/weir-operator"),
                    "/apis/coordination.k8s.io/v1/namespaces/weir-system/leases"
                );
                let body = request.into_body().collect_bytes().await.expect("body");
                let reply = if answer.is_null() { body.to_vec() } else { serde_json::to_vec(&answer).expect("json") };
                send.send_response(Response::builder().status(code).body(Body::from(reply)).expect("response"));
            }
        });
        assert!(try_hold(&api, &settings("a")).await.expect("created"));
        assert!(!try_hold(&api, &settings("b")).await.expect("lost the race"));
        server.await.expect("scenario");
    }

    #[test]
    fn renewing_keeps_the_holder_and_acquire_time() {
        let ours = next_spec(None, Claim::Take, &settings("a"), at(100));
        let renewed = next_spec(Some(&ours), Claim::Renew, &settings("a"), at(105));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(105))));
        assert_eq!(renewed.lease_transitions, Some(0));
    }
}
