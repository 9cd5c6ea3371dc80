//! The coordinator pod and the worker pods of each pool.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, Pod, PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretEnvSource, SecretKeySelector, SecretVolumeSource, SecurityContext, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_crds::placement::{leasing_pool, step_pools};
use weir_crds::{PoolName, PoolSpec, StepSpec};

use super::{
    COORDINATOR_PORT, EXCHANGE_PORT, MANIFEST_PATH, METRICS_PORT, Owner, SECRET_MOUNT_PATH, coordinator_name,
    exchange_service_name, plan_name, secret_name, service_account_name, worker_name,
};

/// The non-root user the image runs as.
const RUN_AS_USER: i64 = 65532;
/// How long a worker may take to drain after SIGTERM (`weir worker --grace`), and the pod's
/// termination grace on top of it (handing units back and exiting).
const WORKER_GRACE_SECONDS: i64 = 30;
const TERMINATION_MARGIN_SECONDS: i64 = 15;
/// The `weir` binary's log format (`json` or `text`).
const LOG_FORMAT_ENV: &str = "WEIR_LOG_FORMAT";
/// Model weights from object storage are cached here (an emptyDir: the root filesystem is read-only).
const CACHE_DIR: &str = "/var/cache/weir";
/// The pod's IP (the downward API's `status.podIP`), which every server binds: `$(POD_IP)` in
/// the arguments, which Kubernetes expands.
const POD_IP_ENV: &str = "POD_IP";
/// The job secret's files: readable by the owner (root, the kubelet writes them) and, through
/// `fsGroup`, by the pod's group, which the non-root user is in; by no one else.
const SECRET_MODE: i32 = 0o400;

impl Owner<'_> {
    /// The coordinator: plans units, leases them, commits results. It is never restarted in place
    /// (`restartPolicy: Never`): the operator decides whether a failed coordinator is recreated
    /// (within `backoffLimit`) or the job has failed (exit code 3).
    /// It runs with the leasing pool's placement, image and environment.
    pub fn coordinator_pod(&self) -> Pod {
        let leasing = leasing_pool(&self.job.spec);
        let args = [
            "coordinator",
            MANIFEST_PATH,
            "--listen",
            &pod_ip_bind(COORDINATOR_PORT),
            "--metrics-listen",
            &pod_ip_bind(METRICS_PORT),
        ];
        let resources = ResourceRequirements {
            requests: Some(quantities(&[("cpu", "250m"), ("memory", "256Mi")])),
            limits: Some(quantities(&[("memory", "1Gi")])),
            ..ResourceRequirements::default()
        };
        let container = Container {
            args: Some(args.iter().map(|a| a.to_string()).collect()),
            ports: Some(vec![port("grpc", COORDINATOR_PORT), port("metrics", METRICS_PORT)]),
            readiness_probe: Some(tcp_probe(COORDINATOR_PORT)),
            resources: Some(resources),
            ..self.container("coordinator", &leasing)
        };
        let mut pod = self.pod(coordinator_name(&self.name), "coordinator", None, container, self.pool_spec(&leasing));
        if let Some(spec) = pod.spec.as_mut() {
            spec.restart_policy = Some("Never".to_string());
        }
        pod
    }

    /// Worker `index` of `pool`: leases units (or serves its pool's steps over Arrow Flight),
    /// drains on SIGTERM within its grace, and is restarted in place when it crashes.
    pub fn worker_pod(&self, pool: &PoolName, index: u32) -> Pod {
        let name = worker_name(&self.name, pool, index);
        let spec = self.pool_spec(pool);
        let args = [
            "worker",
            MANIFEST_PATH,
            "--pool",
            pool.as_str(),
            "--grace",
            &format!("{WORKER_GRACE_SECONDS}s"),
            "--metrics-listen",
            &pod_ip_bind(METRICS_PORT),
            "--exchange-listen",
            &pod_ip_bind(EXCHANGE_PORT),
        ];
        // TLS whatever the address: the peers check the job's server name, not the host dialled.
        let coordinator = format!("https://{}.{}.svc:{COORDINATOR_PORT}", coordinator_name(&self.name), self.namespace);
        let advertise =
            format!("https://{name}.{}.{}.svc:{EXCHANGE_PORT}", exchange_service_name(&self.name), self.namespace);
        let mut base = self.container("worker", pool);
        let mut env = vec![
            plain_env("WEIR_COORDINATOR", &coordinator),
            plain_env("WEIR_EXCHANGE_ADVERTISE", &advertise),
            field_env("WEIR_WORKER_ID", "metadata.name"),
        ];
        env.extend(self.llm_key_env(pool));
        env.extend(base.env.take().unwrap_or_default());
        let container = Container {
            args: Some(args.iter().map(|a| a.to_string()).collect()),
            env: Some(env),
            ports: Some(vec![port("flight", EXCHANGE_PORT), port("metrics", METRICS_PORT)]),
            readiness_probe: Some(tcp_probe(METRICS_PORT)),
            resources: Some(worker_resources(pool, spec)),
            ..base
        };
        let mut pod = self.pod(name.clone(), "worker", Some(pool), container, spec);
        if let Some(pod_spec) = pod.spec.as_mut() {
            pod_spec.restart_policy = Some("OnFailure".to_string());
            pod_spec.hostname = Some(name);
            pod_spec.subdomain = Some(exchange_service_name(&self.name));
            pod_spec.termination_grace_period_seconds = Some(WORKER_GRACE_SECONDS + TERMINATION_MARGIN_SECONDS);
        }
        pod
    }

    /// The API keys of the `llm.prompt` steps `pool` runs, each read from its Secret into the
    /// variable the worker reads ([`LlmSecretRef::env_name`]); other pools' pods never get them.
    fn llm_key_env(&self, pool: &PoolName) -> Vec<EnvVar> {
        let pools = step_pools(&self.job.spec);
        let mut env: Vec<EnvVar> = Vec::new();
        for (step, step_pool) in self.job.spec.steps.iter().zip(&pools) {
            let StepSpec::LlmPrompt(prompt) = step else { continue };
            let Some(secret) = prompt.endpoint.api_key_secret.as_ref().filter(|_| step_pool == pool) else { continue };
            let name = secret.env_name();
            if env.iter().any(|e| e.name == name) {
                continue;
            }
            env.push(EnvVar {
                name,
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: secret.key.clone(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
            });
        }
        env
    }

    pub(super) fn pool_spec(&self, pool: &PoolName) -> Option<&PoolSpec> {
        self.job.spec.pools.as_ref()?.get(pool)
    }

    /// The container every pod shares: image, environment, mounts (the job's secret among them)
    /// and a locked-down security context.
    fn container(&self, name: &str, pool_name: &PoolName) -> Container {
        let pool = self.pool_spec(pool_name);
        let mut pool_env = pool.and_then(|p| p.env.clone()).unwrap_or_default();
        // What the servers bind and where the secret is are the operator's to say; a pool's `env`
        // naming them is ignored (server-side apply refuses a name listed twice).
        pool_env.retain(|e| e.name != POD_IP_ENV && e.name != weir_auth::SECRET_DIR_ENV);
        let mut env = vec![
            plain_env("HOME", "/tmp"),
            plain_env("XDG_CACHE_HOME", CACHE_DIR),
            field_env(POD_IP_ENV, "status.podIP"),
            plain_env(weir_auth::SECRET_DIR_ENV, SECRET_MOUNT_PATH),
        ];
        // JSON lines for the cluster's log collector, unless the pool's `env` chooses (once: server-side
        // apply refuses a name listed twice).
        if !pool_env.iter().any(|e| e.name == LOG_FORMAT_ENV) {
            env.push(plain_env(LOG_FORMAT_ENV, "json"));
        }
        env.extend(pool_env);
        let secret = self.job.spec.storage.as_ref().and_then(|s| s.secret_ref.as_ref());
        let default_image = match &self.settings.gpu_image {
            Some(gpu) if name == "worker" && pool_name.is_gpu_by_name() => gpu.clone(),
            _ => self.settings.image.clone(),
        };
        Container {
            name: name.to_string(),
            image: Some(pool.and_then(|p| p.image.clone()).unwrap_or(default_image)),
            image_pull_policy: self.settings.image_pull_policy.clone(),
            env: Some(env),
            env_from: secret.map(|s| {
                vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource { name: s.name.clone(), optional: Some(false) }),
                    ..EnvFromSource::default()
                }]
            }),
            volume_mounts: Some(vec![
                mount("plan", "/etc/weir", true),
                mount("secret", SECRET_MOUNT_PATH, true),
                mount("cache", CACHE_DIR, false),
                mount("tmp", "/tmp", false),
            ]),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), add: None }),
                ..SecurityContext::default()
            }),
            termination_message_policy: Some("FallbackToLogsOnError".to_string()),
            ..Container::default()
        }
    }

    fn pod(
        &self,
        name: String,
        component: &str,
        pool: Option<&PoolName>,
        container: Container,
        spec: Option<&PoolSpec>,
    ) -> Pod {
        let volumes = vec![
            Volume {
                name: "plan".to_string(),
                config_map: Some(ConfigMapVolumeSource {
                    name: plan_name(&self.name),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "secret".to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret_name(&self.name)),
                    default_mode: Some(SECRET_MODE),
                    optional: Some(false),
                    items: None,
                }),
                ..Volume::default()
            },
            empty_dir("cache"),
            empty_dir("tmp"),
        ];
        let mut metadata = self.meta(name, component, pool);
        metadata.annotations = Some(scrape_annotations());
        Pod {
            metadata,
            spec: Some(PodSpec {
                containers: vec![container],
                volumes: Some(volumes),
                node_selector: spec.and_then(|s| s.node_selector.clone()),
                tolerations: spec.and_then(|s| s.tolerations.clone()),
                affinity: spec.and_then(|s| s.affinity.clone()),
                priority_class_name: spec.and_then(|s| s.priority_class_name.clone()),
                service_account_name: service_account_name(self.job),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(RUN_AS_USER),
                    run_as_group: Some(RUN_AS_USER),
                    fs_group: Some(RUN_AS_USER),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".to_string(),
                        localhost_profile: None,
                    }),
                    ..PodSecurityContext::default()
                }),
                ..PodSpec::default()
            }),
            status: None,
        }
    }
}

/// The annotations a plain Prometheus `kubernetes_sd_configs` scrape job selects pods by (the
/// Prometheus Operator's PodMonitor selects by label instead): the autoscaler reads what it scraped.
fn scrape_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), METRICS_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ])
}

/// The pool's resources, with `gpusPerPod` (default 1 in pools named `gpu` or `gpu-*`, 0
/// elsewhere) as an `nvidia.com/gpu` limit and request.
fn worker_resources(pool: &PoolName, spec: Option<&PoolSpec>) -> ResourceRequirements {
    let mut resources = spec.and_then(|s| s.resources.clone()).unwrap_or_default();
    let default_gpus = i32::from(pool.is_gpu_by_name());
    let gpus = spec.and_then(|s| s.gpus_per_pod).unwrap_or(default_gpus);
    if gpus > 0 {
        let gpus = Quantity(gpus.to_string());
        resources.limits.get_or_insert_with(BTreeMap::new).insert("nvidia.com/gpu".to_string(), gpus.clone());
        resources.requests.get_or_insert_with(BTreeMap::new).insert("nvidia.com/gpu".to_string(), gpus);
    }
    resources
}

/// `$(POD_IP):<port>`: a server bound to the pod's own address, not to every interface.
fn pod_ip_bind(port: i32) -> String {
    format!("$({POD_IP_ENV}):{port}")
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect()
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

fn tcp_probe(port: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port), host: None }),
        period_seconds: Some(5),
        ..Probe::default()
    }
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_string(), value: Some(value.to_string()), value_from: None }
}

fn field_env(name: &str, field: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field.to_string(), api_version: None }),
            ..EnvVarSource::default()
        }),
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume { name: name.to_string(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}
