//! The children's shape: names, labels, ownership, placement and the locked-down pod security.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;
use weir_auth::{JobSecret, SECRET_DIR_ENV, TOKEN_KEY};
use weir_crds::PoolName;

use super::*;
use crate::fixtures::{JOB, NAMESPACE, job};

const GPU_POOL: &str = "  pools:\n    gpu:\n      gpusPerPod: 2\n      nodeSelector: {pool: gpu}\n      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]\n      priorityClassName: batch-high\n      image: registry.example/weir:cuda\n      env: [{name: RUST_LOG, value: debug}]\n      resources: {requests: {cpu: \"4\", memory: 16Gi}}\n  storage: {secretRef: {name: s3-credentials}}\n";

fn container(pod: &Pod) -> &k8s_openapi::api::core::v1::Container {
    &pod.spec.as_ref().expect("spec").containers[0]
}

fn env(pod: &Pod, name: &str) -> Option<String> {
    container(pod).env.as_ref()?.iter().find(|e| e.name == name)?.value.clone()
}

#[test]
fn a_gpu_worker_lands_on_its_pool_with_its_gpus_image_env_and_the_storage_secret() {
    let job = job(GPU_POOL);
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let pod = owner.worker_pod(&PoolName::gpu(), 1);
    assert_eq!(pod.metadata.name.as_deref(), Some("thumbs-gpu-1"));
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels[JOB_LABEL], JOB);
    assert_eq!(labels[POOL_LABEL], "gpu");
    assert_eq!(labels[COMPONENT_LABEL], "worker");
    assert_eq!(labels["app.kubernetes.io/managed-by"], FIELD_MANAGER);
    let owner_ref = &pod.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner_ref.kind.as_str(), owner_ref.controller), ("MultimodalJob", Some(true)));
    assert_eq!(owner_ref.block_owner_deletion, Some(true), "foreground deletion waits for the pods");

    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.node_selector.as_ref().expect("selector")["pool"], "gpu");
    assert_eq!(spec.tolerations.as_ref().expect("tolerations")[0].key.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(spec.priority_class_name.as_deref(), Some("batch-high"));
    assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
    assert_eq!(spec.subdomain.as_deref(), Some("thumbs-workers"));
    let c = container(&pod);
    assert_eq!(c.image.as_deref(), Some("registry.example/weir:cuda"));
    let resources = c.resources.as_ref().expect("resources");
    assert_eq!(resources.limits.as_ref().expect("limits")["nvidia.com/gpu"].0, "2");
    assert_eq!(resources.requests.as_ref().expect("requests")["memory"].0, "16Gi");
    assert_eq!(env(&pod, "RUST_LOG").as_deref(), Some("debug"));
    assert_eq!(env(&pod, "WEIR_COORDINATOR").as_deref(), Some("https://thumbs-coordinator.media.svc:7070"));
    assert_eq!(
        env(&pod, "WEIR_EXCHANGE_ADVERTISE").as_deref(),
        Some("https://thumbs-gpu-1.thumbs-workers.media.svc:7071")
    );
    let args = c.args.as_ref().expect("args");
    assert_eq!(&args[..4], ["worker", MANIFEST_PATH, "--pool", "gpu"]);
    let secret = c.env_from.as_ref().expect("envFrom")[0].secret_ref.as_ref().expect("secret");
    assert_eq!(secret.name, "s3-credentials");
}

#[test]
fn every_pod_runs_non_root_read_only_without_capabilities_under_runtime_default_seccomp() {
    let job = job(GPU_POOL);
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    for pod in [owner.coordinator_pod(), owner.worker_pod(&PoolName::cpu(), 0), owner.worker_pod(&PoolName::gpu(), 0)] {
        let spec = pod.spec.as_ref().expect("spec");
        let pod_security = spec.security_context.as_ref().expect("pod security");
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(pod_security.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        let security = container(&pod).security_context.as_ref().expect("container security");
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let dropped = security.capabilities.as_ref().and_then(|c| c.drop.clone()).unwrap_or_default();
        assert_eq!(dropped, vec!["ALL".to_string()]);
    }
}

#[test]
fn the_coordinator_is_never_restarted_in_place_and_serves_grpc_and_metrics() {
    let job = job("");
    let settings = Settings { image: "weir:test".into(), gpu_image: None, image_pull_policy: Some("Never".into()) };
    let owner = Owner::new(&job, &settings).expect("owner");
    let pod = owner.coordinator_pod();
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(container(&pod).image.as_deref(), Some("weir:test"));
    assert_eq!(container(&pod).image_pull_policy.as_deref(), Some("Never"));
    let ports: Vec<i32> = container(&pod).ports.iter().flatten().map(|p| p.container_port).collect();
    assert_eq!(ports, vec![COORDINATOR_PORT, METRICS_PORT]);
    assert_eq!(
        container(&pod).args.as_ref().expect("args")[..2],
        ["coordinator".to_string(), MANIFEST_PATH.to_string()]
    );
}

#[test]
fn coordinator_and_worker_pods_carry_the_prometheus_scrape_annotations() {
    let job = job(GPU_POOL);
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    for pod in [owner.coordinator_pod(), owner.worker_pod(&PoolName::gpu(), 0)] {
        let annotations = pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{:?}", pod.metadata.name);
        assert_eq!(annotations["prometheus.io/port"], METRICS_PORT.to_string());
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
    }
}

#[test]
fn coordinator_and_worker_pods_log_json_lines() {
    let settings = Settings::default();
    let plain = job(GPU_POOL);
    let owner = Owner::new(&plain, &settings).expect("owner");
    for pod in [owner.coordinator_pod(), owner.worker_pod(&PoolName::gpu(), 0)] {
        assert_eq!(env(&pod, "WEIR_LOG_FORMAT").as_deref(), Some("json"), "{:?}", pod.metadata.name);
    }
    let chosen = job(&GPU_POOL.replace("value: debug}", "value: debug}, {name: WEIR_LOG_FORMAT, value: text}"));
    let owner = Owner::new(&chosen, &settings).expect("owner");
    let pod = owner.worker_pod(&PoolName::gpu(), 0);
    let formats: Vec<_> = container(&pod).env.iter().flatten().filter(|e| e.name == "WEIR_LOG_FORMAT").collect();
    assert_eq!(formats.len(), 1, "a name listed twice is refused by server-side apply");
    assert_eq!(env(&pod, "WEIR_LOG_FORMAT").as_deref(), Some("text"));
}

#[test]
fn the_services_select_their_pods_and_the_exchange_one_is_headless() {
    let job = job("");
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let coordinator = owner.coordinator_service();
    let spec = coordinator.spec.as_ref().expect("spec");
    assert_eq!(spec.selector.as_ref().expect("selector")[COMPONENT_LABEL], "coordinator");
    assert_eq!(spec.cluster_ip, None);
    let exchange = owner.exchange_service();
    let spec = exchange.spec.as_ref().expect("spec");
    assert_eq!(exchange.metadata.name.as_deref(), Some("thumbs-workers"));
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(spec.selector.as_ref().expect("selector")[JOB_LABEL], JOB);
}

#[test]
fn the_plan_config_map_holds_a_manifest_weir_accepts() {
    let job = job(GPU_POOL);
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let map = owner.plan_config_map().expect("config map");
    let text = &map.data.as_ref().expect("data")["job.yaml"];
    let parsed = weir_crds::parse_manifest(text, "plan").expect("the plan is a valid manifest");
    assert_eq!(parsed.spec, job.spec);
    // Words YAML 1.1 would take for booleans or numbers arrive as the strings they were.
    let mut wordy = job.clone();
    let steps =
        serde_json::to_string(&wordy.spec.steps).expect("steps").replace("\"output\":\"e\"", "\"output\":\"y\"");
    wordy.spec.steps = serde_json::from_str(&steps).expect("steps");
    wordy.spec.sink.parquet.columns = Some(vec!["no".into(), "y".into(), "1_000".into()]);
    let owner = Owner::new(&wordy, &settings).expect("owner");
    let map = owner.plan_config_map().expect("config map");
    let read = weir_crds::yaml11::from_str(&map.data.as_ref().expect("data")["job.yaml"]).expect("YAML 1.1");
    assert_eq!(read["spec"]["sink"]["parquet"]["columns"], serde_json::json!(["no", "y", "1_000"]));
    assert_eq!(read["spec"]["steps"][2]["output"], serde_json::json!("y"));
    assert_eq!(parsed.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert!(parsed.status.is_none() && parsed.metadata.uid.is_none());
}

#[test]
fn a_service_account_is_created_only_when_asked_and_pods_use_the_named_one() {
    let settings = Settings::default();
    let created = job("  serviceAccount: {create: true, annotations: {eks.amazonaws.com/role-arn: arn}}\n");
    let owner = Owner::new(&created, &settings).expect("owner");
    let account = owner.service_account().expect("account");
    assert_eq!(account.metadata.name.as_deref(), Some("thumbs-weir"));
    assert_eq!(account.metadata.annotations.as_ref().expect("annotations")["eks.amazonaws.com/role-arn"], "arn");
    let pod = owner.worker_pod(&PoolName::cpu(), 0);
    assert_eq!(pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()), Some("thumbs-weir"));

    let existing = job("  serviceAccount: {name: reader}\n");
    let owner = Owner::new(&existing, &settings).expect("owner");
    assert!(owner.service_account().is_none());
    let pod = owner.coordinator_pod();
    assert_eq!(pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()), Some("reader"));
}

#[test]
fn a_job_never_stored_has_no_owner() {
    let mut unsaved = job("");
    unsaved.metadata.uid = None;
    assert!(matches!(Owner::new(&unsaved, &Settings::default()), Err(Error::MissingObjectKey("uid"))));
}

#[test]
fn a_gpu_pool_without_details_still_asks_for_a_gpu_and_runs_the_gpu_image() {
    let job = job("  pools:\n    gpu: {replicas: {min: 1, max: 2}}\n");
    let settings = Settings { gpu_image: Some("weir:cuda".into()), ..Settings::default() };
    let owner = Owner::new(&job, &settings).expect("owner");
    let gpu = owner.worker_pod(&PoolName::gpu(), 0);
    let limits = container(&gpu).resources.as_ref().and_then(|r| r.limits.clone()).expect("limits");
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert_eq!(container(&gpu).image.as_deref(), Some("weir:cuda"));
    let cpu = owner.worker_pod(&PoolName::cpu(), 0);
    assert_eq!(container(&cpu).image, Some(settings.image.clone()));
    assert!(container(&cpu).resources.as_ref().and_then(|r| r.limits.as_ref()).is_none());
    assert_eq!(container(&owner.coordinator_pod()).image, Some(settings.image.clone()));
}

#[test]
fn named_pools_get_their_own_pods_placement_and_gpu_defaults() {
    let job = job(concat!(
        "  leasingPool: io\n",
        "  pools:\n",
        "    io: {nodeSelector: {pool: io}}\n",
        "    gpu-l4: {nodeSelector: {gpu: l4}}\n",
        "    gpu-h100: {gpusPerPod: 8, image: weir:h100}\n",
        "    tiny: {}\n",
    ));
    let settings = Settings { gpu_image: Some("weir:cuda".into()), ..Settings::default() };
    let owner = Owner::new(&job, &settings).expect("owner");
    let l4 = owner.worker_pod(&PoolName::new("gpu-l4").expect("name"), 2);
    assert_eq!(l4.metadata.name.as_deref(), Some("thumbs-gpu-l4-2"));
    assert_eq!(l4.metadata.labels.as_ref().expect("labels")["weir.dev/pool"], "gpu-l4");
    assert_eq!(l4.spec.as_ref().and_then(|s| s.node_selector.clone()).expect("selector")["gpu"], "l4");
    assert_eq!(container(&l4).image.as_deref(), Some("weir:cuda"));
    assert!(container(&l4).args.as_ref().expect("args").windows(2).any(|w| w == ["--pool", "gpu-l4"]));
    let limits = |pod: &Pod| container(pod).resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
    assert_eq!(limits(&l4)["nvidia.com/gpu"].0, "1");
    let h100 = owner.worker_pod(&PoolName::new("gpu-h100").expect("name"), 0);
    assert_eq!(
        (limits(&h100)["nvidia.com/gpu"].0.as_str(), container(&h100).image.as_deref()),
        ("8", Some("weir:h100"))
    );
    let tiny = owner.worker_pod(&PoolName::new("tiny").expect("name"), 0);
    assert!(!limits(&tiny).contains_key("nvidia.com/gpu"), "only gpu-named pools default to a GPU");
    // The coordinator runs where the leasing pool runs.
    let coordinator = owner.coordinator_pod();
    assert_eq!(coordinator.spec.as_ref().and_then(|s| s.node_selector.clone()).expect("selector")["pool"], "io");
}

#[test]
fn every_pod_mounts_the_job_secret_read_only_and_is_told_where_it_is() {
    let job = job(GPU_POOL);
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    for pod in [owner.coordinator_pod(), owner.worker_pod(&PoolName::cpu(), 0), owner.worker_pod(&PoolName::gpu(), 1)] {
        let spec = pod.spec.as_ref().expect("spec");
        let volume = spec.volumes.iter().flatten().find(|v| v.name == "secret").expect("secret volume");
        let source = volume.secret.as_ref().expect("a Secret volume");
        assert_eq!(source.secret_name.as_deref(), Some("thumbs-weir-secret"));
        assert_eq!((source.default_mode, source.optional), (Some(0o400), Some(false)));
        // 0400 files stay readable by the non-root user through the pod's fsGroup.
        assert!(spec.security_context.as_ref().and_then(|s| s.fs_group).is_some());
        let mount = container(&pod).volume_mounts.iter().flatten().find(|m| m.name == "secret").expect("mount");
        assert_eq!((mount.mount_path.as_str(), mount.read_only), (SECRET_MOUNT_PATH, Some(true)));
        assert_eq!(env(&pod, SECRET_DIR_ENV).as_deref(), Some(SECRET_MOUNT_PATH));
        let pod_ip = container(&pod).env.iter().flatten().find(|e| e.name == "POD_IP").expect("POD_IP");
        let field = pod_ip.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).expect("downward API");
        assert_eq!(field.field_path, "status.podIP");
    }
}

#[test]
fn no_server_binds_every_interface_only_the_pods_own_address() {
    let job = job("");
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let flag = |pod: &Pod, name: &str| {
        let args = container(pod).args.clone().unwrap_or_default();
        args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
    };
    let coordinator = owner.coordinator_pod();
    assert_eq!(flag(&coordinator, "--listen").as_deref(), Some("$(POD_IP):7070"));
    assert_eq!(flag(&coordinator, "--metrics-listen").as_deref(), Some("$(POD_IP):9090"));
    let worker = owner.worker_pod(&PoolName::cpu(), 0);
    assert_eq!(flag(&worker, "--exchange-listen").as_deref(), Some("$(POD_IP):7071"));
    assert_eq!(flag(&worker, "--metrics-listen").as_deref(), Some("$(POD_IP):9090"));
    for pod in [coordinator, worker] {
        let args = container(&pod).args.clone().unwrap_or_default();
        assert!(!args.iter().any(|a| a.contains("0.0.0.0")), "{args:?}");
    }
}

#[test]
fn a_pools_env_cannot_move_the_binds_or_the_secret() {
    let job = job(&GPU_POOL.replace(
        "value: debug}",
        "value: debug}, {name: POD_IP, value: 0.0.0.0}, {name: WEIR_JOB_SECRET_DIR, value: /tmp}",
    ));
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let pod = owner.worker_pod(&PoolName::gpu(), 0);
    for name in ["POD_IP", SECRET_DIR_ENV] {
        let listed = container(&pod).env.iter().flatten().filter(|e| e.name == name).count();
        assert_eq!(listed, 1, "{name}: a name listed twice is refused by server-side apply");
    }
    assert_eq!(env(&pod, SECRET_DIR_ENV).as_deref(), Some(SECRET_MOUNT_PATH));
    assert_eq!(env(&pod, "POD_IP"), None, "the downward API's, not a value");
}

#[test]
fn the_job_secret_is_an_immutable_opaque_secret_owned_by_the_job_that_reads_back() {
    let job = job("");
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let secret = JobSecret::generate(JOB).expect("secret");
    let stored = owner.job_secret(&secret);
    assert_eq!(stored.metadata.name.as_deref(), Some("thumbs-weir-secret"));
    assert_eq!((stored.type_.as_deref(), stored.immutable), (Some("Opaque"), Some(true)));
    let owner_ref = &stored.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner_ref.kind.as_str(), owner_ref.controller), ("MultimodalJob", Some(true)));
    assert_eq!(read_job_secret(&stored).expect("reads back"), secret);

    let mut broken = stored.clone();
    broken.data.as_mut().expect("data").remove(TOKEN_KEY);
    let error = read_job_secret(&broken).expect_err("no token").to_string();
    assert!(error.contains("`token` is missing"), "{error}");
    let empty = k8s_openapi::api::core::v1::Secret::default();
    assert!(read_job_secret(&empty).is_err(), "a Secret without data is refused, not a panic");
}

/// Labels, as pairs.
type Labels = Vec<(String, String)>;
/// The ports a rule opens, and its one peer's namespace (by name) and pod labels.
type Opened = (Vec<i32>, Option<String>, Option<Labels>);

fn opened(rule: &NetworkPolicyIngressRule) -> Opened {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports = rule
        .ports
        .iter()
        .flatten()
        .map(|p| match p.port {
            Some(IntOrString::Int(port)) => port,
            _ => panic!("ports are numbers: {p:?}"),
        })
        .collect();
    let peers = rule.from.as_ref().expect("from");
    assert_eq!(peers.len(), 1, "one peer per rule");
    let namespace = peers[0]
        .namespace_selector
        .as_ref()
        .map(|s| s.match_labels.as_ref().expect("labels")["kubernetes.io/metadata.name"].clone());
    let pods = peers[0]
        .pod_selector
        .as_ref()
        .map(|s| s.match_labels.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect());
    (ports, namespace, pods)
}

#[test]
fn the_network_policy_admits_the_jobs_pods_the_operator_and_the_metrics_namespace_on_their_ports_only() {
    let job = job("");
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let peers = Peers {
        operator: Some(OperatorPods {
            namespace: "weir-system".into(),
            labels: [("app.kubernetes.io/name".to_string(), "weir".to_string())].into(),
        }),
        metrics_namespace: Some("observability".into()),
    };
    let policy = owner.network_policy(&peers);
    assert_eq!(policy.metadata.name.as_deref(), Some("thumbs-weir-ingress"));
    let owner_ref = &policy.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner_ref.kind.as_str(), owner_ref.controller), ("MultimodalJob", Some(true)));
    let spec = policy.spec.as_ref().expect("spec");
    let job_pods = vec![(JOB_LABEL.to_string(), JOB.to_string())];
    let selected: Vec<_> =
        spec.pod_selector.as_ref().and_then(|s| s.match_labels.clone()).into_iter().flatten().collect();
    assert_eq!(selected, job_pods, "the label the operator lists the job's pods by");
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    assert_eq!(spec.egress, None);
    let rules: Vec<_> = spec.ingress.iter().flatten().map(opened).collect();
    assert_eq!(
        rules,
        vec![
            (vec![COORDINATOR_PORT, EXCHANGE_PORT], None, Some(job_pods)),
            (
                vec![COORDINATOR_PORT],
                Some("weir-system".to_string()),
                Some(vec![("app.kubernetes.io/name".to_string(), "weir".to_string())])
            ),
            (vec![METRICS_PORT], Some("observability".to_string()), None),
        ]
    );
}

#[test]
fn a_network_policy_without_operator_or_metrics_namespace_admits_only_the_jobs_pods() {
    let job = job("");
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let policy = owner.network_policy(&Peers { operator: None, metrics_namespace: None });
    let rules = policy.spec.and_then(|s| s.ingress).expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(opened(&rules[0]).0, vec![COORDINATOR_PORT, EXCHANGE_PORT]);
    assert_eq!(Peers::default().metrics_namespace.as_deref(), Some(DEFAULT_METRICS_NAMESPACE));
    assert_eq!(DEFAULT_METRICS_NAMESPACE, "monitoring");
}

#[test]
fn an_llm_prompt_api_key_reaches_only_the_workers_that_run_the_step_from_its_secret() {
    let mut job = job(GPU_POOL);
    let prompt = |key: &str| -> weir_crds::StepSpec {
        serde_json::from_value(serde_json::json!({
            "op": "llm.prompt", "output": format!("a_{key}"),
            "endpoint": {"baseUrl": "https://api.example/v1", "model": "m", "apiKeySecret": {"name": "openai", "key": key}},
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .expect("an llm.prompt step")
    };
    // Two steps with the same key read it once (server-side apply refuses a name twice).
    job.spec.steps.extend([prompt("api-key"), prompt("api-key"), prompt("other")]);
    let settings = Settings::default();
    let owner = Owner::new(&job, &settings).expect("owner");
    let cpu = owner.worker_pod(&PoolName::cpu(), 0);
    let keys: Vec<_> = container(&cpu).env.iter().flatten().filter(|e| e.name.starts_with("WEIR_SECRET_")).collect();
    let names: Vec<&str> = keys.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["WEIR_SECRET_OPENAI__API_KEY", "WEIR_SECRET_OPENAI__OTHER"]);
    let from = keys[0].value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("a secret key ref");
    assert_eq!((from.name.as_str(), from.key.as_str(), from.optional), ("openai", "api-key", Some(false)));
    assert_eq!(keys[0].value, None, "the key itself is never in the pod spec");
    let gpu = owner.worker_pod(&PoolName::gpu(), 0);
    assert!(
        !container(&gpu).env.iter().flatten().any(|e| e.name.starts_with("WEIR_SECRET_")),
        "the gpu pool runs no prompt"
    );
    let coordinator = owner.coordinator_pod();
    assert!(!container(&coordinator).env.iter().flatten().any(|e| e.name.starts_with("WEIR_SECRET_")));
}
