//! `weir-operator`: reconciles `MultimodalJob` resources, in a cluster or from a kubeconfig.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use kube::{Api, Client};
use tracing_subscriber::EnvFilter;
use weir_operator::children::{DEFAULT_METRICS_NAMESPACE, OperatorPods, Peers, Settings};
use weir_operator::controller::{self, Context};
use weir_operator::leader::{self, LeaseSettings};
use weir_operator::metrics::{self, Metrics};
use weir_operator::progress::GrpcProgress;
use weir_operator::scaling::{PrometheusSignals, Scaling};

#[derive(Parser)]
#[command(
    name = "weir-operator",
    version,
    about = "Reconciles MultimodalJob resources into Weir coordinators and worker pools"
)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WEIR_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Serve `/metrics` and `/healthz` here.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// The coordinator's image, and the workers' when a pool names none.
    #[arg(long, env = "WEIR_WORKER_IMAGE")]
    worker_image: Option<String>,
    /// The gpu workers' image when the gpu pool names none (the CUDA build; default --worker-image).
    #[arg(long, env = "WEIR_GPU_WORKER_IMAGE")]
    gpu_worker_image: Option<String>,
    /// imagePullPolicy of the pods (default: the cluster's).
    #[arg(long)]
    image_pull_policy: Option<String>,
    /// Take a Lease before reconciling, so several replicas can run (one acts).
    #[arg(long)]
    leader_elect: bool,
    /// The Lease's namespace (default: the pod's, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    #[arg(long, default_value = "weir-operator")]
    lease_name: String,
    /// The Prometheus the autoscaler reads when a job names none (`spec.autoscaling.prometheus`);
    /// plain http, e.g. `http://prometheus.monitoring:9090`.
    #[arg(long, env = "WEIR_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// The operator's own namespace (the chart: the downward API's). Each job's NetworkPolicy
    /// admits the operator's pods there to the coordinator; unset (outside a cluster), none.
    #[arg(long, env = "POD_NAMESPACE")]
    operator_namespace: Option<String>,
    /// The labels of the operator's pods, `key=value,...`, as the jobs' NetworkPolicies select them.
    #[arg(long, value_parser = parse_labels, default_value = "app.kubernetes.io/name=weir,app.kubernetes.io/component=operator")]
    operator_pod_labels: BTreeMap<String, String>,
    /// The namespace whose pods (Prometheus) may scrape the job pods' `/metrics`; empty: none.
    #[arg(long, env = "WEIR_METRICS_NAMESPACE", default_value = DEFAULT_METRICS_NAMESPACE)]
    metrics_namespace: String,
}

/// `key=value,...` into labels; keys and values are not empty.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let labels: BTreeMap<String, String> = text
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.trim().split_once('=') {
            Some((key, value)) if !key.is_empty() && !value.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(format!("`{pair}` is not key=value")),
        })
        .collect::<Result<_, _>>()?;
    if labels.is_empty() {
        return Err("no labels: the operator's pods would not be told apart".to_string());
    }
    Ok(labels)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    weir_operator::install_crypto_provider();
    let client = Client::try_default().await.context("cannot reach the Kubernetes API (in-cluster or kubeconfig)")?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    let server = tokio::spawn(metrics::serve(listener, metrics.clone()));

    let mut settings = Settings::default();
    if let Some(image) = args.worker_image {
        settings.image = image;
    }
    settings.gpu_image = args.gpu_worker_image;
    settings.image_pull_policy = args.image_pull_policy;
    let prometheus_url = args.prometheus_url.filter(|url| !url.trim().is_empty());
    let scaling = Scaling::new(Arc::new(PrometheusSignals), prometheus_url);
    let peers = Peers {
        operator: args
            .operator_namespace
            .filter(|ns| !ns.trim().is_empty())
            .map(|namespace| OperatorPods { namespace, labels: args.operator_pod_labels }),
        metrics_namespace: Some(args.metrics_namespace).filter(|ns| !ns.trim().is_empty()),
    };
    let ctx = Context::new(client.clone(), settings, metrics, Arc::new(GrpcProgress), scaling).with_peers(peers);
    let ctx = Arc::new(ctx);

    let result = if args.leader_elect {
        let namespace = args.lease_namespace.unwrap_or_else(|| "default".to_string());
        // Unique per replica: the pod's name in a cluster; outside, the host's name and process id.
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("{host}-{}", std::process::id()));
        let lease = LeaseSettings {
            name: args.lease_name,
            namespace: namespace.clone(),
            identity,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let mut leadership = leader::acquire(Api::namespaced(client, &namespace), lease).await;
        tokio::select! {
            () = controller::run(ctx, args.namespace.as_deref()) => Ok(()),
            why = leadership.lost() => Err(anyhow::anyhow!("lost leadership: {why}")),
        }
    } else {
        controller::run(ctx, args.namespace.as_deref()).await;
        Ok(())
    };
    server.abort();
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_flags_are_consistent_and_labels_parse_as_key_value_pairs() {
        Args::command().debug_assert();
        let labels = parse_labels("app.kubernetes.io/name=weir, app.kubernetes.io/instance=prod").expect("labels");
        assert_eq!(labels["app.kubernetes.io/instance"], "prod");
        assert!(parse_labels("name").is_err());
        assert!(parse_labels("=weir").is_err());
        assert!(parse_labels("").is_err());
    }
}
