//! `weir run --workers`: a coordinator and worker processes on localhost. The output must hold
//! every input row exactly once whatever is killed, and the errors only the deliberately bad rows.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use weir_testkit::images::{BAD_FILES, JpegSet, Rng, write_bad_files, write_jpeg_set};

/// A job that decodes, resizes and re-encodes every file of `images`, `files_per_unit` per unit.
fn image_job(dir: &Path, images: &Path, files_per_unit: usize) -> std::path::PathBuf {
    write_manifest(
        dir,
        "dist",
        &format!(
            r#"  source:
    files: {{uri: "{}", filesPerUnit: {files_per_unit}}}
{IMAGE_STEPS}  sink:
    parquet: {{uri: "{}"}}
  errorPolicy: {{onRowError: skip, maxErrorRatio: 0.5}}
"#,
            file_uri(images),
            file_uri(&dir.join("out"))
        ),
    )
}

fn input_uris(images: &Path) -> BTreeSet<String> {
    std::fs::read_dir(images).expect("list images").map(|e| file_uri(&e.expect("entry").path())).collect()
}

/// Output `uri`s, failing on any duplicate.
fn output_uris(out: &Path) -> BTreeSet<String> {
    let uris = strings(&read_parquet_dir(out), "uri");
    let unique: BTreeSet<String> = uris.iter().cloned().collect();
    assert_eq!(unique.len(), uris.len(), "a row was written twice");
    unique
}

fn error_refs(out: &Path) -> BTreeSet<String> {
    strings(&read_parquet_dir(&out.join("_errors")), "row_ref").into_iter().collect()
}

/// Checks the exactly-once contract on a finished run's output.
fn assert_exactly_once(images: &Path, out: &Path) {
    let inputs = input_uris(images);
    let bad: BTreeSet<String> = BAD_FILES.iter().map(|b| file_uri(&images.join(b))).collect();
    let good: BTreeSet<String> = inputs.difference(&bad).cloned().collect();
    assert_eq!(output_uris(out), good, "every good input exactly once");
    assert_eq!(error_refs(out), bad, "the errors hold exactly the bad files");
    let parts = std::fs::read_dir(out).expect("out").filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()));
    assert!(parts.count() > 1, "part files and the marker");
    assert!(out.join("_SUCCESS").exists());
}

#[test]
fn worker_processes_write_every_row_once_and_a_rerun_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    write_jpeg_set(&images, JpegSet { count: 120, min_side: 64, max_side: 160, ..JpegSet::default() }).expect("jpegs");
    write_bad_files(&images).expect("bad files");
    let manifest = image_job(dir.path(), &images, 10);

    let run = weir().args(["run", "--no-progress", "--workers", "cpu=2"]).arg(&manifest).output().expect("weir run");
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("125 rows in, 120 out, 5 failed"), "{}", text(&run.stdout));
    assert_exactly_once(&images, &dir.path().join("out"));

    let status = weir().args(["status", "--json"]).arg(&manifest).output().expect("weir status");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(json["phase"], "Succeeded", "{json}");
    assert_eq!(json["unitsCommitted"], 13);
    assert_eq!(json["rowsOut"], 120);

    let again = weir().args(["run", "--no-progress", "--workers", "cpu=2"]).arg(&manifest).output().expect("rerun");
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("already complete"), "{}", text(&again.stderr));
    assert_exactly_once(&images, &dir.path().join("out"));
}

/// Child processes of `pid` (the supervisor's coordinator and workers) with their command lines.
fn children(pid: u32) -> Vec<(u32, String)> {
    let list = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    list.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .map(|p| (p, std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default().replace('\0', " ")))
        .collect()
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) on a child of our child, read from /proc just now.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Kills a random worker every 0.8 s, and the coordinator at the third kill, until `run` exits;
/// returns what it killed.
fn kill_randomly(run: &mut Child, seed: u64, deadline: Duration) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut killed = Vec::new();
    let started = Instant::now();
    let mut next = Duration::from_millis(1500);
    loop {
        if run.try_wait().expect("try_wait").is_some() {
            return killed;
        }
        assert!(started.elapsed() < deadline, "the run did not finish in {deadline:?}; killed {killed:?}");
        if started.elapsed() >= next {
            next += Duration::from_millis(800);
            let kids = children(run.id());
            let coordinator = kids.iter().find(|(_, cmd)| cmd.contains(" coordinator "));
            let workers: Vec<&(u32, String)> = kids.iter().filter(|(_, cmd)| cmd.contains(" worker ")).collect();
            let victim = match (killed.len(), coordinator) {
                (2, Some(c)) => Some(c),
                // `range` is inclusive: the last index is len - 1.
                _ if !workers.is_empty() => Some(workers[rng.range(0, workers.len() as u32 - 1) as usize]),
                _ => None,
            };
            if let Some((pid, cmd)) = victim {
                let what = if cmd.contains(" coordinator ") {
                    "coordinator".to_string()
                } else {
                    cmd.split(" --id ").nth(1).and_then(|s| s.split(' ').next()).unwrap_or("worker").to_string()
                };
                eprintln!("chaos: SIGKILL {what} (pid {pid}) at {:.1}s", started.elapsed().as_secs_f64());
                sigkill(*pid);
                killed.push(what);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killing_workers_and_the_coordinator_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    write_jpeg_set(&images, JpegSet { count: 3000, min_side: 300, max_side: 500, seed: 7, ..JpegSet::default() })
        .expect("jpegs");
    write_bad_files(&images).expect("bad files");
    let manifest = image_job(dir.path(), &images, 20);

    let mut run = weir()
        .args(["run", "--no-progress", "--workers", "cpu=3", "--lease-ttl", "2s"])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .spawn()
        .expect("weir run");
    let killed = kill_randomly(&mut run, 0x5eed, Duration::from_secs(600));
    let output = run.wait_with_output().expect("wait");
    eprintln!("chaos: killed {killed:?}");
    assert!(output.status.success(), "the run failed after killing {killed:?}");
    assert!(killed.len() >= 3 && killed.contains(&"coordinator".to_string()), "the run ended too soon: {killed:?}");
    assert_exactly_once(&images, &dir.path().join("out"));
}

#[test]
fn a_worker_told_to_stop_hands_back_its_units_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    // Enough work that one single-threaded worker is still busy when SIGTERM comes 1.5 s in: 400
    // images took it under 1.5 s on an idle machine.
    write_jpeg_set(&images, JpegSet { count: 2400, min_side: 300, max_side: 500, ..JpegSet::default() })
        .expect("jpegs");
    let manifest = image_job(dir.path(), &images, 10);
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let endpoint = format!("127.0.0.1:{port}");
    let secret = job_secret(dir.path());
    let mut coordinator = weir()
        .args(["coordinator", "--listen", &format!("127.0.0.1:{port}"), "--lease-ttl", "2s"])
        .env("WEIR_JOB_SECRET_DIR", &secret)
        .arg(&manifest)
        .spawn()
        .expect("coordinator");
    let worker = |id: &str, grace: &str| -> Child {
        weir()
            .args(["worker", "--coordinator", &endpoint, "--id", id, "--threads", "1", "--grace", grace])
            .env("WEIR_JOB_SECRET_DIR", &secret)
            .arg(&manifest)
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker")
    };
    let stopping = worker("stopping", "0s");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(stopping.id() as libc::pid_t, libc::SIGTERM) };
    let stopped = stopping.wait_with_output().expect("wait");
    assert!(stopped.status.success(), "SIGTERM exits 0: {}", text(&stopped.stderr));
    assert!(text(&stopped.stderr).contains("drained"), "{}", text(&stopped.stderr));

    let mut finisher = worker("finisher", "30s");
    let ended = coordinator.wait().expect("coordinator");
    assert!(ended.success());
    let _ = finisher.wait();
    assert_eq!(output_uris(&dir.path().join("out")), input_uris(&images));
}

/// The part files directly in the output folder and its `_errors/`.
fn part_files(out: &Path) -> BTreeSet<String> {
    [out.to_path_buf(), out.join("_errors")]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.starts_with("part-") && name.ends_with(".parquet"))
        .collect()
}

/// A coordinator of the 400-image job (10 images a unit, 2 s leases) and a way to start its
/// workers, one thread each, their stderr where asked.
struct FrozenWorkerJob {
    dir: tempfile::TempDir,
    images: std::path::PathBuf,
    out: std::path::PathBuf,
    manifest: std::path::PathBuf,
    endpoint: String,
    secret: std::path::PathBuf,
    coordinator: Child,
}

impl FrozenWorkerJob {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = dir.path().join("images");
        write_jpeg_set(&images, JpegSet { count: 400, min_side: 300, max_side: 500, seed: 5, ..JpegSet::default() })
            .expect("jpegs");
        let manifest = image_job(dir.path(), &images, 10);
        let out = dir.path().join("out");
        let endpoint = format!("127.0.0.1:{}", free_port());
        let secret = job_secret(dir.path());
        let log = std::fs::File::create(dir.path().join("coordinator.log")).expect("log");
        let coordinator = weir()
            .args(["coordinator", "--listen", &endpoint, "--lease-ttl", "2s"])
            .env("WEIR_JOB_SECRET_DIR", &secret)
            .arg(&manifest)
            .stderr(log)
            .spawn()
            .expect("coordinator");
        Self { dir, images, out, manifest, endpoint, secret, coordinator }
    }

    /// What the coordinator logged so far.
    fn coordinator_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("coordinator.log")).unwrap_or_default()
    }

    fn worker(&self, id: &str, stderr: Stdio) -> Worker {
        let child = weir()
            .args(["worker", "--coordinator", &self.endpoint, "--id", id, "--threads", "1"])
            .env("WEIR_JOB_SECRET_DIR", &self.secret)
            .arg(&self.manifest)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("worker");
        Worker(child)
    }

    /// Starts the worker that will be frozen and waits until it holds units: once the first part
    /// file is staged.
    fn zombie(&self, stderr: Stdio) -> Worker {
        let zombie = self.worker("zombie", stderr);
        let staging = self.out.join("_weir/staging");
        let started = Instant::now();
        while std::fs::read_dir(&staging).map_or(true, |d| d.count() == 0) && !self.out.join("_weir/committed").exists()
        {
            assert!(started.elapsed() < Duration::from_secs(60), "the zombie never got to work");
            std::thread::sleep(Duration::from_millis(20));
        }
        zombie
    }

    /// The output holds every image once, and `weir verify` agrees.
    fn assert_exact(&self) {
        assert_eq!(output_uris(&self.out), input_uris(&self.images), "every row once");
        let verified = weir().arg("verify").arg(&self.out).output().expect("weir verify");
        assert!(verified.status.success(), "{}{}", text(&verified.stdout), text(&verified.stderr));
    }
}

/// A worker process, killed when dropped (a failed assertion leaves none behind).
struct Worker(Child);

impl Worker {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker frozen (SIGSTOP) while it holds units, resumed after the job's `_SUCCESS`: its leases
/// were revoked and the units run elsewhere; resumed, it adds nothing to the output, which stays
/// exact and passes `weir verify`.
#[test]
fn a_worker_frozen_past_the_jobs_end_adds_nothing_when_it_resumes() {
    let mut job = FrozenWorkerJob::start();
    let zombie = job.zombie(Stdio::null());
    zombie.signal(libc::SIGSTOP);
    let mut healthy = job.worker("healthy", Stdio::null());
    let succeeded = job.coordinator.wait().expect("coordinator").success();
    assert!(succeeded, "the job succeeds without the zombie:\n{}", job.coordinator_log());
    assert!(job.out.join("_SUCCESS").exists());
    let _ = healthy.0.wait();
    let published = part_files(&job.out);
    // Resumed after the end: it finishes what it held, and must add nothing.
    zombie.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(part_files(&job.out), published, "no part file appeared after _SUCCESS");
    job.assert_exact();
}

/// A worker frozen past its leases, resumed while the job still runs: told its leases were
/// revoked, it stops and discards what it held (reporting none of it), and the output is exact.
#[test]
fn a_worker_frozen_past_its_leases_discards_what_it_held_when_it_resumes() {
    let mut job = FrozenWorkerJob::start();
    let log = job.dir.path().join("zombie.log");
    let zombie = job.zombie(std::fs::File::create(&log).expect("log").into());
    zombie.signal(libc::SIGSTOP);
    let _healthy = job.worker("healthy", Stdio::null());
    // Past its 2 s leases: resumed as soon as the coordinator leases one of its units again.
    let started = Instant::now();
    while !job.coordinator_log().contains("on zombie expired; leasing it again") {
        assert!(job.coordinator.try_wait().expect("coordinator").is_none(), "{}", job.coordinator_log());
        assert!(started.elapsed() < Duration::from_secs(60), "no lease of the zombie expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    zombie.signal(libc::SIGCONT);
    assert!(job.coordinator.wait().expect("coordinator").success(), "{}", job.coordinator_log());
    job.assert_exact();
    // It may learn of the revocation just as the job ends: give its log a moment.
    let started = Instant::now();
    let mut text = String::new();
    while !text.contains("discarding") && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
        text = std::fs::read_to_string(&log).expect("zombie log");
    }
    assert!(text.contains("lost its lease") || text.contains("refused"), "the zombie discarded nothing:\n{text}");
    assert!(text.contains("discarding"), "{text}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port()
}

/// `GET /metrics` on `port`, or `None` while nothing listens.
fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[test]
fn coordinator_and_workers_serve_prometheus_metrics_while_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    write_jpeg_set(&images, JpegSet { count: 300, min_side: 300, max_side: 500, ..JpegSet::default() }).expect("jpegs");
    let manifest = image_job(dir.path(), &images, 10);
    let (port, coordinator_metrics, worker_metrics) = (free_port(), free_port(), free_port());
    let secret = job_secret(dir.path());
    let mut coordinator = weir()
        .args(["coordinator", "--listen", &format!("127.0.0.1:{port}")])
        .env("WEIR_JOB_SECRET_DIR", &secret)
        .args(["--metrics-listen", &format!("127.0.0.1:{coordinator_metrics}")])
        .arg(&manifest)
        .spawn()
        .expect("coordinator");
    let mut worker = weir()
        .args(["worker", "--coordinator", &format!("127.0.0.1:{port}"), "--id", "w0", "--threads", "1"])
        .env("WEIR_JOB_SECRET_DIR", &secret)
        .args(["--metrics-listen", &format!("127.0.0.1:{worker_metrics}")])
        .arg(&manifest)
        .spawn()
        .expect("worker");
    let started = Instant::now();
    let (mut job, mut steps) = (None, None);
    while job.is_none() || steps.is_none() {
        assert!(started.elapsed() < Duration::from_secs(120), "no metrics with progress: {job:?} {steps:?}");
        assert!(coordinator.try_wait().expect("wait").is_none(), "the job ended before metrics showed progress");
        let committed = scrape(coordinator_metrics)
            .filter(|t| sample(t, r#"weir_job_units{job="dist",state="committed"}"#).is_some_and(|v| v > 0.0));
        job = job.or(committed);
        let decoded = scrape(worker_metrics).filter(|t| {
            sample(t, r#"weir_step_rows_total{direction="out",job="dist",pool="cpu",step="image.decode",worker="w0"}"#)
                .is_some_and(|v| v > 0.0)
        });
        steps = steps.or(decoded);
        std::thread::sleep(Duration::from_millis(100));
    }
    let (job, steps) = (job.unwrap_or_default(), steps.unwrap_or_default());
    assert_eq!(sample(&job, r#"weir_job_units{job="dist",state="total"}"#), Some(30.0), "{job}");
    assert_eq!(sample(&job, r#"weir_job_workers{job="dist",pool="cpu"}"#), Some(1.0), "{job}");
    for name in ["weir_step_busy_seconds_total", "weir_step_blocked_seconds_total", "weir_memory_budget_bytes"] {
        assert!(steps.contains(name), "{name} missing:\n{steps}");
    }
    assert!(
        sample(&steps, r#"weir_worker_units_total{job="dist",outcome="leased""#).is_some_and(|v| v >= 1.0),
        "{steps}"
    );
    assert!(coordinator.wait().expect("coordinator").success());
    assert!(worker.wait().expect("worker").success());
}

#[test]
fn gpu_pool_steps_run_on_gpu_workers_over_flight_and_a_killed_gpu_worker_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    write_jpeg_set(&images, JpegSet { count: 2000, min_side: 300, max_side: 500, seed: 11, ..JpegSet::default() })
        .expect("jpegs");
    write_bad_files(&images).expect("bad files");
    let manifest = image_job(dir.path(), &images, 20);
    let body = std::fs::read_to_string(&manifest).expect("manifest");
    // Decode and resize cross to the gpu pool and back; the bad files' failures come back with them.
    let body = body.replace("width: 64, height: 64}", "width: 64, height: 64, pool: gpu}");
    std::fs::write(&manifest, body.replace("mode: RGB}", "mode: RGB, pool: gpu}")).expect("manifest");

    let mut run = weir()
        .args(["run", "--no-progress", "--workers", "cpu=2,gpu=1", "--lease-ttl", "2s"])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir run");
    let started = Instant::now();
    let mut kills = 0;
    // Each gpu worker is killed once it has served for a while (by the clock of its first sight
    // here), not at fixed times of the run, which a fast run outlasted.
    let (mut current, mut killed) = (None::<(u32, Instant)>, None::<u32>);
    while run.try_wait().expect("wait").is_none() && kills < 2 {
        assert!(started.elapsed() < Duration::from_secs(300), "the run did not finish");
        std::thread::sleep(Duration::from_millis(100));
        let Some((pid, _)) = children(run.id()).into_iter().find(|(_, cmd)| cmd.contains("--pool gpu")) else {
            continue;
        };
        if killed == Some(pid) {
            continue;
        }
        let since = match current {
            Some((seen, since)) if seen == pid => since,
            _ => current.insert((pid, Instant::now())).1,
        };
        if since.elapsed() >= Duration::from_millis(600) {
            eprintln!("chaos: SIGKILL the gpu worker (pid {pid}) at {:.1}s", started.elapsed().as_secs_f64());
            sigkill(pid);
            (killed, kills) = (Some(pid), kills + 1);
        }
    }
    let output = run.wait_with_output().expect("wait");
    let log = text(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert_eq!(kills, 2, "the run ended before the gpu worker was killed twice");
    assert!(log.contains("serving gpu steps"), "{log}");
    assert!(log.contains(" on http://127.0.0.1:"), "a unit failed over the dead gpu worker: {log}");
    assert_exactly_once(&images, &dir.path().join("out"));
}

#[test]
fn steps_of_two_named_pools_run_on_their_own_workers_and_the_rows_come_back_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    write_jpeg_set(&images, JpegSet { count: 200, min_side: 100, max_side: 200, seed: 5, ..JpegSet::default() })
        .expect("jpegs");
    write_bad_files(&images).expect("bad files");
    let manifest = image_job(dir.path(), &images, 20);
    let body = std::fs::read_to_string(&manifest).expect("manifest");
    // Decode runs on one named pool, resize on another: a morsel crosses to each and comes back.
    let body = body.replace("mode: RGB}", "mode: RGB, pool: gpu-l4}");
    let body = body.replace("width: 64, height: 64}", "width: 64, height: 64, pool: gpu-h100}");
    std::fs::write(&manifest, body).expect("manifest");

    let refused = weir().args(["run", "--no-progress", "--workers", "cpu=1,gpu-l4=1"]).arg(&manifest).output();
    let refused = refused.expect("weir run");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("pool gpu-h100, which --workers gives no worker"),
        "{}",
        text(&refused.stderr)
    );

    let run = weir()
        .args(["run", "--no-progress", "--workers", "cpu=1,gpu-l4=1,gpu-h100=1"])
        .arg(&manifest)
        .output()
        .expect("weir run");
    let log = text(&run.stderr);
    assert!(run.status.success(), "{log}");
    assert!(log.contains("serving gpu-l4 steps") && log.contains("serving gpu-h100 steps"), "{log}");
    assert_exactly_once(&images, &dir.path().join("out"));
}
