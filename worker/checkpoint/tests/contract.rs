//! The checkpoint store's contract, one suite run against every backend Weir uses: the local
//! filesystem, memory, and S3 on a real moto server (`WEIR_MOTO_SERVER` must name `moto_server`;
//! `scripts/test.sh` sets it).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::task::JoinSet;
use weir_checkpoint::{
    CheckpointError, CheckpointStore, CommitOutcome, CommittedFile, JobManifest, UnitCommit, sweep_orphans,
};
use weir_testkit::moto::Moto;

/// How many callers race in the concurrency cases.
const RACERS: u32 = 8;

/// An object store for one test, and whatever must live as long as it.
struct Backend {
    store: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
    _moto: Option<Moto>,
}

impl Backend {
    fn local_filesystem() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
        Self { store: Arc::new(store), _dir: Some(dir), _moto: None }
    }

    fn in_memory() -> Self {
        Self { store: Arc::new(InMemory::new()), _dir: None, _moto: None }
    }

    fn s3() -> Self {
        let moto = Moto::start();
        moto.create_bucket("weir");
        let store = AmazonS3Builder::new()
            .with_endpoint(moto.endpoint())
            .with_allow_http(true)
            .with_bucket_name("weir")
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("s3 store");
        Self { store: Arc::new(store), _dir: None, _moto: Some(moto) }
    }
}

/// Runs every contract case against `$backend` (a [`Backend`] constructor), one test per case.
macro_rules! backend_tests {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::Backend::$backend();
                    super::$case(backend.store.clone(), object_store::path::Path::from("jobs/contract")).await;
                }
            )+
        }
    };
}

macro_rules! contract_suite {
    ($($backend:ident),+) => {
        $(
            backend_tests!($backend:
                concurrent_commits_of_one_unit_have_exactly_one_winner,
                recommitting_the_winning_attempt_is_committed_again,
                concurrent_epochs_are_distinct_and_without_gaps,
                committed_returns_every_unit_with_its_winning_record,
                the_first_plan_is_kept,
                the_manifest_round_trips,
                sweeping_deletes_only_unreferenced_part_files_and_is_idempotent,
                notes_round_trip_and_a_missing_note_is_none,
            );
        )+
    };
}

contract_suite!(local_filesystem, in_memory, s3);

/// The checkpoint of the job whose output is under `output`.
fn checkpoint(store: Arc<dyn ObjectStore>, output: &Path) -> CheckpointStore {
    CheckpointStore::new(store, output.clone().join("_weir"))
}

fn unit_commit(unit: u64, attempt: u32) -> UnitCommit {
    UnitCommit {
        unit,
        attempt,
        rows_in: 10 + u64::from(attempt),
        rows_out: 9,
        errors: 1,
        files: vec![
            CommittedFile {
                uri: format!("s3://weir/jobs/contract/part-{unit:06}-{attempt}.parquet"),
                size: 100,
                e_tag: Some("\"abc\"".into()),
                rows: 9,
            },
            CommittedFile {
                uri: format!("s3://weir/jobs/contract/_errors/part-{unit:06}-{attempt}.parquet"),
                size: 50,
                e_tag: None,
                rows: 1,
            },
        ],
    }
}

async fn commit(checkpoint: &CheckpointStore, unit: u64, attempt: u32) -> CommitOutcome {
    checkpoint.commit(&unit_commit(unit, attempt)).await.expect("commit")
}

async fn concurrent_commits_of_one_unit_have_exactly_one_winner(store: Arc<dyn ObjectStore>, output: Path) {
    let checkpoint = checkpoint(store, &output);
    let mut racers = JoinSet::new();
    for attempt in 0..RACERS {
        let checkpoint = checkpoint.clone();
        racers.spawn(async move { (attempt, commit(&checkpoint, 7, attempt).await) });
    }
    let outcomes = racers.join_all().await;
    let winners: Vec<u32> =
        outcomes.iter().filter(|(_, outcome)| *outcome == CommitOutcome::Committed).map(|(a, _)| *a).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = unit_commit(7, winners[0]);
    for (attempt, outcome) in &outcomes {
        if *attempt != winner.attempt {
            assert_eq!(*outcome, CommitOutcome::AlreadyCommitted(winner.clone()), "attempt {attempt}");
        }
    }
    assert_eq!(checkpoint.committed().await.expect("committed"), BTreeMap::from([(7, winner)]));
}

async fn recommitting_the_winning_attempt_is_committed_again(store: Arc<dyn ObjectStore>, output: Path) {
    let checkpoint = checkpoint(store, &output);
    assert_eq!(commit(&checkpoint, 3, 2).await, CommitOutcome::Committed);
    assert_eq!(commit(&checkpoint, 3, 2).await, CommitOutcome::Committed, "a retried commit is idempotent");
    assert_eq!(commit(&checkpoint, 3, 5).await, CommitOutcome::AlreadyCommitted(unit_commit(3, 2)));
}

async fn concurrent_epochs_are_distinct_and_without_gaps(store: Arc<dyn ObjectStore>, output: Path) {
    let checkpoint = checkpoint(store, &output);
    let mut racers = JoinSet::new();
    for _ in 0..RACERS {
        let checkpoint = checkpoint.clone();
        racers.spawn(async move { checkpoint.begin_epoch().await.expect("epoch") });
    }
    let mut epochs = racers.join_all().await;
    epochs.sort_unstable();
    assert_eq!(epochs, (0..RACERS).collect::<Vec<_>>());
    assert_eq!(checkpoint.begin_epoch().await.expect("epoch"), RACERS, "a later start takes the next number");
}

async fn committed_returns_every_unit_with_its_winning_record(store: Arc<dyn ObjectStore>, output: Path) {
    let checkpoint = checkpoint(store.clone(), &output);
    assert!(checkpoint.committed().await.expect("committed").is_empty(), "nothing is committed at first");
    let units = [0, 1, 5, 12_345_678_901];
    for unit in units {
        commit(&checkpoint, unit, 1).await;
    }
    commit(&checkpoint, 1, 4).await;
    let stray = output.clone().join("_weir").join("committed").join("README.txt");
    store.put(&stray, PutPayload::from("not a record")).await.expect("put");
    let expected: BTreeMap<u64, UnitCommit> = units.into_iter().map(|u| (u, unit_commit(u, 1))).collect();
    assert_eq!(checkpoint.committed().await.expect("committed"), expected);
}

async fn the_first_plan_is_kept(store: Arc<dyn ObjectStore>, output: Path) {
    let checkpoint = checkpoint(store, &output);
    let first = Bytes::from_static(br#"{"units": 3}"#);
    assert_eq!(checkpoint.create_plan(first.clone()).await.expect("plan"), first);
    assert_eq!(checkpoint.create_plan(Bytes::from_static(br#"{"units": 4}"#)).await.expect("plan"), first);
}

async fn the_manifest_round_trips(store: Arc<dyn ObjectStore>, output: Path) {
    let checkpoint = checkpoint(store, &output);
    assert_eq!(checkpoint.manifest().await.expect("manifest"), None);
    let manifest = JobManifest::from_units(2, [unit_commit(1, 0), unit_commit(0, 3)]);
    checkpoint.write_manifest(&manifest).await.expect("write");
    checkpoint.write_manifest(&manifest).await.expect("rewrite");
    assert_eq!(checkpoint.manifest().await.expect("manifest"), Some(manifest));
}

async fn sweeping_deletes_only_unreferenced_part_files_and_is_idempotent(store: Arc<dyn ObjectStore>, output: Path) {
    let checkpoint = checkpoint(store.clone(), &output);
    commit(&checkpoint, 1, 0).await;
    let at = |name: &str| Path::from(format!("{output}/{name}"));
    let untouchable = ["part-000001-0.parquet", "_SUCCESS", "other.txt", "nested/part-000002-0.parquet"];
    let orphans = ["part-000001-1.parquet", "_errors/part-000001-1.parquet"];
    for name in untouchable.iter().chain(&orphans) {
        store.put(&at(name), PutPayload::from("x")).await.expect("put");
    }
    let keep = HashSet::from([at("part-000001-0.parquet")]);

    let deleted = sweep_orphans(&store, &output, &keep).await.expect("sweep");
    assert_eq!(deleted, vec![at("_errors/part-000001-1.parquet"), at("part-000001-1.parquet")]);
    assert_eq!(sweep_orphans(&store, &output, &keep).await.expect("sweep again"), Vec::<Path>::new());

    let mut left: Vec<String> =
        store.list(Some(&output)).map_ok(|meta| meta.location.to_string()).try_collect().await.expect("list");
    left.sort();
    let mut expected: Vec<String> = untouchable.iter().map(|name| at(name).to_string()).collect();
    expected.push(format!("{output}/_weir/committed/unit-0000000001.json"));
    expected.sort();
    assert_eq!(left, expected);
}

async fn notes_round_trip_and_a_missing_note_is_none(store: Arc<dyn ObjectStore>, output: Path) {
    let checkpoint = checkpoint(store, &output);
    assert_eq!(checkpoint.note("coordinator.json").await.expect("note"), None);
    checkpoint.put_note("coordinator.json", Bytes::from_static(b"{\"address\":\"a:1\"}")).await.expect("put");
    checkpoint.put_note("coordinator.json", Bytes::from_static(b"{\"address\":\"b:2\"}")).await.expect("overwrite");
    let note = checkpoint.note("coordinator.json").await.expect("note");
    assert_eq!(note.as_deref(), Some(&b"{\"address\":\"b:2\"}"[..]));
    let refused = checkpoint.put_note("../plan.json", Bytes::new()).await;
    assert!(matches!(refused, Err(CheckpointError::BadNoteName { .. })), "{refused:?}");
}
