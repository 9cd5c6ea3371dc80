//! `llm.prompt` against a real model server: llama.cpp's OpenAI-compatible server
//! (llama-cpp-python) running SmolLM2-135M-Instruct. Opt-in, because building llama.cpp takes
//! minutes: the tests are `#[ignore]`d; install with `eval "$(bash scripts/llama-server.sh)"`
//! (which sets `WEIR_LLAMA_PYTHON` and `WEIR_LLAMA_MODEL`), then
//! `cargo test -p weir-llm --test llama -- --ignored`. Each test starts its own server.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use weir_core::{ComputePool, Step, StepContext, StepOutput, UnitAttempt};
use weir_crds::LlmPrompt;
use weir_io::StoreRegistry;

const NEEDS_LLAMA: &str = "needs llama.cpp's server: run `eval \"$(bash scripts/llama-server.sh)\"`";

/// llama-cpp-python's server on a free loopback port, killed on drop.
struct LlamaServer {
    child: Child,
    base_url: String,
}

impl LlamaServer {
    fn start() -> Self {
        let python = std::env::var("WEIR_LLAMA_PYTHON").expect(NEEDS_LLAMA);
        let model = std::env::var("WEIR_LLAMA_MODEL").expect(NEEDS_LLAMA);
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(&python)
            .args(["-m", "llama_cpp.server", "--model", &model, "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_ctx", "2048", "--n_threads", "2", "--model_alias", "smollm2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("llama_cpp.server starts");
        let server = Self { child, base_url: format!("http://127.0.0.1:{port}/v1") };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "llama.cpp's server did not listen within 120 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The step from `yaml`, asking the server (which takes a schema only as `{type: json_object,
/// schema}`).
fn step(server: &LlamaServer, checkpoint: &std::path::Path, yaml: &str) -> Arc<dyn Step> {
    let yaml =
        format!("endpoint: {{baseUrl: \"{}\", model: smollm2, schemaFormat: json_object}}\n{yaml}", server.base_url);
    let config: LlmPrompt = serde_yaml::from_str(&yaml).expect("config");
    weir_llm::build(&config, &StoreRegistry::default(), &format!("file://{}/", checkpoint.display())).expect("builds")
}

async fn run(step: &Arc<dyn Step>, questions: &[&str]) -> StepOutput {
    let text: ArrayRef = Arc::new(StringArray::from(questions.to_vec()));
    let input = RecordBatch::try_from_iter([("question", text)]).expect("batch");
    let ctx = StepContext::new(ComputePool::new(1).expect("pool")).for_attempt(UnitAttempt { unit: 0, attempt: 1 });
    step.clone().process(input, ctx).await.expect("the morsel runs")
}

#[tokio::test]
#[ignore = "needs llama.cpp's server: scripts/llama-server.sh"]
async fn a_real_model_answers_every_row_and_counts_its_tokens() {
    let server = LlamaServer::start();
    let checkpoint = tempfile::tempdir().expect("tmp");
    let yaml = "messages:\n  - {role: system, content: You answer in one short sentence.}\n  - {role: user, content: \"{question}\"}\ngeneration: {temperature: 0, maxTokens: 32, seed: 1}\nmaxConnections: 2\noutput: answer\n";
    let step = step(&server, checkpoint.path(), yaml);
    let questions = [
        "What colour is the sky on a clear day?",
        "What is 2 + 2?",
        "Name a fruit that is yellow.",
        "What do cats say?",
    ];
    let out = run(&step, &questions).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let answers = out.batch.column_by_name("answer").expect("answer").as_string::<i32>();
    let usage = out.batch.column_by_name("answer_usage").expect("usage").as_struct();
    let prompt = usage.column_by_name("prompt").expect("prompt").as_primitive::<UInt32Type>();
    let completion = usage.column_by_name("completion").expect("completion").as_primitive::<UInt32Type>();
    for (row, question) in questions.iter().enumerate() {
        println!("{question} -> {:?} ({} + {} tokens)", answers.value(row), prompt.value(row), completion.value(row));
        assert!(!answers.value(row).trim().is_empty(), "row {row} has an answer");
        assert!(prompt.value(row) > 10 && (1..=32).contains(&completion.value(row)), "row {row}'s tokens");
    }
    // Greedy decoding of a pinned model: the same answer each run.
    assert!(answers.value(0).contains("blue"), "the sky: {:?}", answers.value(0));
}

#[tokio::test]
#[ignore = "needs llama.cpp's server: scripts/llama-server.sh"]
async fn a_real_model_answers_in_the_json_schema_asked_for() {
    let server = LlamaServer::start();
    let checkpoint = tempfile::tempdir().expect("tmp");
    let yaml = "messages:\n  - {role: user, content: \"{question} Answer in JSON.\"}\ngeneration: {temperature: 0, maxTokens: 64}\njsonSchema:\n  type: object\n  required: [colour, certain]\n  properties:\n    colour: {type: string}\n    certain: {type: boolean}\noutput: answer\n";
    let step = step(&server, checkpoint.path(), yaml);
    let out = run(&step, &["What colour is grass?", "What colour is snow?"]).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let answers = out.batch.column_by_name("answer").expect("answer").as_struct();
    let colours = answers.column_by_name("colour").expect("colour").as_string::<i32>();
    let certain = answers.column_by_name("certain").expect("certain").as_boolean();
    for row in 0..2 {
        println!("colour {:?}, certain {:?}", colours.value(row), certain.value(row));
        assert!(colours.is_valid(row) && certain.is_valid(row), "row {row} follows the schema");
    }
}
