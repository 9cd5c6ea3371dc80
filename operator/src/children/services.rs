//! The coordinator's Service and the workers' headless Service (per-pod DNS for Arrow Flight).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    COMPONENT_LABEL, COORDINATOR_PORT, EXCHANGE_PORT, JOB_LABEL, METRICS_PORT, Owner, coordinator_name,
    exchange_service_name,
};

impl Owner<'_> {
    /// `<job>-coordinator`: what workers dial and what the operator reads progress from.
    pub fn coordinator_service(&self) -> Service {
        self.service(coordinator_name(&self.name), "coordinator", None, &[("grpc", COORDINATOR_PORT)])
    }

    /// `<job>-workers`, headless: each worker is `<pod>.<job>-workers`, ready or not, so a cpu
    /// worker can reach the gpu worker the coordinator routes it to.
    pub fn exchange_service(&self) -> Service {
        self.service(exchange_service_name(&self.name), "worker", Some("None"), &[("flight", EXCHANGE_PORT)])
    }

    fn service(&self, name: String, component: &str, cluster_ip: Option<&str>, ports: &[(&str, i32)]) -> Service {
        let selector = [(JOB_LABEL, self.name.as_str()), (COMPONENT_LABEL, component)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ports = ports
            .iter()
            .chain(&[("metrics", METRICS_PORT)])
            .map(|(name, port)| ServicePort {
                name: Some(name.to_string()),
                port: *port,
                target_port: Some(IntOrString::Int(*port)),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            })
            .collect();
        Service {
            metadata: self.meta(name, component, None),
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ports: Some(ports),
                cluster_ip: cluster_ip.map(str::to_string),
                publish_not_ready_addresses: cluster_ip.map(|_| true),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}
