//! The job's NetworkPolicy: who may open connections to its pods, and on which ports.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{COORDINATOR_PORT, EXCHANGE_PORT, JOB_LABEL, METRICS_PORT, Owner, network_policy_name};

/// The label the API server gives every namespace, its own name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Where the monitoring stack (Prometheus) runs unless the operator is told otherwise.
pub const DEFAULT_METRICS_NAMESPACE: &str = "monitoring";

/// Who, besides a job's own pods, may connect to them: what the operator was told at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers {
    /// The operator's own pods, which dial the coordinator (progress, drains). `None` when the
    /// operator does not know its namespace (it runs outside the cluster): no rule admits it.
    pub operator: Option<OperatorPods>,
    /// The namespace whose pods may scrape every pod's `/metrics` (Prometheus: the autoscaler
    /// reads what it scraped); `None`: no one.
    pub metrics_namespace: Option<String>,
}

impl Default for Peers {
    fn default() -> Self {
        Self { operator: None, metrics_namespace: Some(DEFAULT_METRICS_NAMESPACE.to_string()) }
    }
}

/// The operator's pods: their namespace and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorPods {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl Owner<'_> {
    /// `<job>-weir-ingress`: the job's pods accept connections only (a) on the coordinator's and
    /// the exchange's ports from the job's own pods, (b) on the coordinator's port from the
    /// operator's pods, and (c) on the metrics port from the pods of the metrics namespace.
    /// Egress stays open (object storage, model downloads, DNS). Only a network plugin that
    /// enforces NetworkPolicy makes this hold.
    pub fn network_policy(&self, peers: &Peers) -> NetworkPolicy {
        let job_pods = LabelSelector {
            match_labels: Some(BTreeMap::from([(JOB_LABEL.to_string(), self.name.clone())])),
            ..LabelSelector::default()
        };
        let mut ingress = vec![rule(
            NetworkPolicyPeer { pod_selector: Some(job_pods.clone()), ..NetworkPolicyPeer::default() },
            &[COORDINATOR_PORT, EXCHANGE_PORT],
        )];
        if let Some(operator) = &peers.operator {
            let peer = NetworkPolicyPeer {
                namespace_selector: Some(namespace(&operator.namespace)),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(operator.labels.clone()),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            };
            ingress.push(rule(peer, &[COORDINATOR_PORT]));
        }
        if let Some(metrics) = &peers.metrics_namespace {
            let peer =
                NetworkPolicyPeer { namespace_selector: Some(namespace(metrics)), ..NetworkPolicyPeer::default() };
            ingress.push(rule(peer, &[METRICS_PORT]));
        }
        NetworkPolicy {
            metadata: self.meta(network_policy_name(&self.name), "job", None),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(job_pods),
                policy_types: Some(vec!["Ingress".to_string()]),
                ingress: Some(ingress),
                egress: None,
            }),
        }
    }
}

/// Every pod of the namespace named `name`.
fn namespace(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())])),
        ..LabelSelector::default()
    }
}

fn rule(peer: NetworkPolicyPeer, ports: &[i32]) -> NetworkPolicyIngressRule {
    let ports = ports
        .iter()
        .map(|port| NetworkPolicyPort {
            port: Some(IntOrString::Int(*port)),
            protocol: Some("TCP".to_string()),
            end_port: None,
        })
        .collect();
    NetworkPolicyIngressRule { from: Some(vec![peer]), ports: Some(ports) }
}
