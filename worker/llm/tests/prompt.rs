//! `llm.prompt` against a real HTTP server speaking the OpenAI API (weir-testkit's), which each
//! row steers through directives in its text: rate limits with Retry-After, server errors,
//! malformed answers, answers that break the schema, slow answers. Requests are counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
use weir_core::{ComputePool, Step, StepContext, StepOutput, UnitAttempt};
use weir_crds::LlmPrompt;
use weir_io::StoreRegistry;
use weir_testkit::openai::OpenAiServer;

struct Setup {
    server: OpenAiServer,
    checkpoint: tempfile::TempDir,
}

async fn setup() -> Setup {
    Setup { server: OpenAiServer::start().await.expect("server"), checkpoint: tempfile::tempdir().expect("tmp") }
}

impl Setup {
    /// The step from `yaml` (the step's fields besides `op`), pointed at the test server.
    fn step(&self, yaml: &str) -> Arc<dyn Step> {
        self.step_at("", yaml)
    }

    /// The same, with `endpoint` fields besides `baseUrl` and `model` (`, api: responses`).
    fn step_at(&self, endpoint: &str, yaml: &str) -> Arc<dyn Step> {
        let yaml = format!("endpoint: {{baseUrl: \"{}\", model: tiny{endpoint}}}\n{yaml}", self.server.base_url());
        let config: LlmPrompt = serde_yaml::from_str(&yaml).expect("config");
        let checkpoint = format!("file://{}/", self.checkpoint.path().display());
        weir_llm::build(&config, &StoreRegistry::default(), &checkpoint).expect("builds")
    }
}

const ECHO: &str =
    "messages: [{role: system, content: Be brief.}, {role: user, content: \"{text}\"}]\noutput: answer\n";

fn batch(texts: &[Option<&str>]) -> RecordBatch {
    let refs: Vec<String> = (0..texts.len()).map(|i| format!("rows.parquet#{i}")).collect();
    let text: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
    let refs: ArrayRef = Arc::new(StringArray::from(refs));
    RecordBatch::try_from_iter([("text", text), ("_weir_ref", refs)]).expect("batch")
}

async fn run(step: &Arc<dyn Step>, input: RecordBatch, unit: u64, attempt: u32) -> StepOutput {
    let ctx = StepContext::new(ComputePool::new(1).expect("pool")).for_attempt(UnitAttempt { unit, attempt });
    step.clone().process(input, ctx).await.expect("the morsel runs")
}

/// The adaptive limit on requests in flight of the step writing `output`, from its gauge.
fn in_flight_limit(output: &str) -> f64 {
    let gauge = format!("weir_llm_in_flight_limit{{output=\"{output}\"}} ");
    weir_llm::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(gauge.as_str()))
        .and_then(|v| v.parse().ok())
        .expect("the limit gauge")
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    batch.column_by_name(name).expect(name).as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
}

#[tokio::test]
async fn every_row_is_answered_in_order_with_its_tokens_and_a_null_row_sends_nothing() {
    let setup = setup().await;
    let step = setup.step(ECHO);
    let out = run(&step, batch(&[Some("one"), None, Some("two words"), Some("three")]), 0, 1).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(
        strings(&out.batch, "answer"),
        [Some("echo: one".into()), None, Some("echo: two words".into()), Some("echo: three".into())]
    );
    let usage = out.batch.column_by_name("answer_usage").expect("usage").as_struct();
    let prompt = usage.column_by_name("prompt").expect("prompt").as_primitive::<UInt32Type>();
    let completion = usage.column_by_name("completion").expect("completion").as_primitive::<UInt32Type>();
    // "Be brief." + "two words": four words in; "echo: two words": three out.
    assert_eq!((prompt.value(2), completion.value(2)), (4, 3));
    assert!(usage.is_null(1));
    assert_eq!(setup.server.requests(), 3, "the null row asked nothing");
    let body = &setup.server.bodies()[0];
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["messages"][0]["content"], "Be brief.");
}

#[tokio::test]
async fn the_rows_of_a_morsel_are_asked_at_once() {
    let setup = setup().await;
    let step = setup.step(ECHO);
    let rows: Vec<String> = (0..6).map(|i| format!("[slow=300] row {i}")).collect();
    let rows: Vec<Option<&str>> = rows.iter().map(|r| Some(r.as_str())).collect();
    let out = run(&step, batch(&rows), 0, 1).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(setup.server.max_in_flight(), 6, "six slow rows in flight together, not one after another");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_and_a_bad_request_fails_only_its_row() {
    let setup = setup().await;
    let step = setup.step(ECHO);
    let rows = [Some("[429 x2 after=1] a"), Some("[400] b"), Some("[500 x1] c"), Some("[malformed x1] d"), Some("e")];
    let started = Instant::now();
    let out = run(&step, batch(&rows), 0, 1).await;
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 1 was honoured twice: {:?}", started.elapsed());
    assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
    assert_eq!(out.failures[0].row, 1);
    let message = &out.failures[0].message;
    assert!(message.contains("answered 400 Bad Request") && message.contains("/v1/chat/completions"), "{message}");
    assert_eq!(
        strings(&out.batch, "answer"),
        [
            Some("echo: [429 x2 after=1] a".into()),
            Some("echo: [500 x1] c".into()),
            Some("echo: [malformed x1] d".into()),
            Some("echo: e".into())
        ]
    );
    assert_eq!(setup.server.requests_containing("[429 x2"), 3, "two refusals, then the answer");
    assert_eq!(setup.server.requests_containing("[400]"), 1, "a 400 is not retried");
    assert_eq!(setup.server.requests_containing("[500 x1]"), 2);
    assert_eq!(setup.server.requests_containing("[malformed x1]"), 2);
    let metrics = weir_llm::metrics::render();
    assert!(metrics.contains("weir_llm_requests_total{code=\"429\",output=\"answer\"}"), "{metrics}");
}

#[tokio::test]
async fn retries_give_up_after_the_configured_number_of_tries() {
    let setup = setup().await;
    let step = setup.step(&format!("{ECHO}retries: 1\n"));
    let out = run(&step, batch(&[Some("[500 x9] a")]), 0, 1).await;
    assert_eq!(out.failures.len(), 1);
    assert!(out.failures[0].message.ends_with("(gave up after 2 tries)"), "{}", out.failures[0].message);
    assert_eq!(setup.server.requests(), 2);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_a_row_error_once_retries_are_spent() {
    let setup = setup().await;
    let step = setup.step(&format!("{ECHO}retries: 0\ntimeoutSeconds: 1\n"));
    let out = run(&step, batch(&[Some("[slow=3000] a"), Some("b")]), 0, 1).await;
    assert_eq!(out.failures.len(), 1);
    assert!(out.failures[0].message.starts_with("no answer within 1s"), "{}", out.failures[0].message);
    assert_eq!(strings(&out.batch, "answer"), [Some("echo: b".into())]);
}

const SCHEMA: &str = "jsonSchema:\n  type: object\n  required: [breed]\n  properties:\n    breed: {type: string}\n    confidence: {type: number}\n";

#[tokio::test]
async fn answers_follow_the_json_schema_and_a_broken_one_is_sent_back_once() {
    let setup = setup().await;
    let step = setup.step(&format!("{ECHO}{SCHEMA}"));
    let rows = [
        Some(r#"[answer={"breed": "pug", "confidence": 0.9}]"#),
        Some(r#"[answer=It is a husky.][repair={"breed": "husky"}]"#),
        Some("[answer=no idea][repair=still no idea]"),
    ];
    let out = run(&step, batch(&rows), 0, 1).await;
    assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
    assert_eq!(out.failures[0].row, 2);
    assert!(out.failures[0].message.contains("the repaired answer too"), "{}", out.failures[0].message);
    let answers = out.batch.column_by_name("answer").expect("answer").as_struct();
    let breeds = answers.column_by_name("breed").expect("breed").as_string::<i32>();
    assert_eq!((breeds.value(0), breeds.value(1)), ("pug", "husky"));
    let confidence = answers.column_by_name("confidence").expect("confidence").as_primitive::<Float64Type>();
    assert_eq!(confidence.value(0), 0.9);
    // A repaired answer's usage counts both requests: "It is a husky." (4 words) then the repair.
    let usage = out.batch.column_by_name("answer_usage").expect("usage").as_struct();
    let completion = usage.column_by_name("completion").expect("completion").as_primitive::<UInt32Type>();
    assert_eq!((completion.value(0), completion.value(1)), (4, 4 + 2));
    assert!(confidence.is_null(1));
    assert_eq!(setup.server.requests_containing("[repair="), 4, "one repair each for the two broken answers");
    let first = &setup.server.bodies()[0];
    assert_eq!(first["response_format"]["type"], "json_schema");
    assert_eq!(first["response_format"]["json_schema"]["schema"]["required"][0], "breed");
}

#[tokio::test]
async fn a_unit_run_again_takes_its_kept_answers_instead_of_asking_again() {
    let setup = setup().await;
    let rows = [Some("one"), Some("two"), Some("[400] three")];
    let step = setup.step(ECHO);
    let first = run(&step, batch(&rows), 7, 1).await;
    assert_eq!(setup.server.requests(), 3);
    // The same worker runs the unit again (its lease was lost): it remembers what it asked.
    let again = run(&step, batch(&rows), 7, 2).await;
    assert_eq!(setup.server.requests(), 4, "only the failed row is asked again");
    assert_eq!(strings(&again.batch, "answer"), strings(&first.batch, "answer"));
    // Another worker (a new step, as after a crash) reads the answers kept beside the checkpoint.
    let elsewhere = run(&setup.step(ECHO), batch(&rows), 7, 3).await;
    assert_eq!(setup.server.requests(), 5, "again only the failed row");
    assert_eq!(strings(&elsewhere.batch, "answer"), strings(&first.batch, "answer"));
    // A changed prompt is a new question.
    let changed = setup.step("messages: [{role: user, content: \"Say: {text}\"}]\noutput: answer\n");
    run(&changed, batch(&rows[..1]), 7, 4).await;
    assert_eq!(setup.server.requests(), 6);
}

#[tokio::test]
async fn requests_per_minute_spread_the_requests_after_a_burst() {
    let setup = setup().await;
    // 600 a minute: one second's worth (10) at once, then ten a second.
    let step = setup.step(&format!("{ECHO}requestsPerMinute: 600\n"));
    let rows: Vec<String> = (0..30).map(|i| format!("row {i}")).collect();
    let rows: Vec<Option<&str>> = rows.iter().map(|r| Some(r.as_str())).collect();
    let out = run(&step, batch(&rows), 0, 1).await;
    assert!(out.failures.is_empty());
    let arrivals = setup.server.arrivals();
    assert_eq!(arrivals.len(), 30);
    let burst = arrivals[9] - arrivals[0];
    assert!(burst < Duration::from_millis(500), "the first ten at once: {burst:?}");
    let spread = arrivals[29] - arrivals[0];
    assert!(spread >= Duration::from_millis(1900), "the other twenty over two seconds: {spread:?}");
}

#[tokio::test]
async fn the_api_key_goes_in_the_header_and_nowhere_else() {
    let setup = setup().await;
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("WEIR_SECRET_LLM_TEST__TOKEN", "sk-test-1234") };
    let keyed = setup.step_at(", apiKeySecret: {name: llm-test, key: token}", ECHO);
    let out = run(&keyed, batch(&[Some("a"), Some("[400] b")]), 0, 1).await;
    assert_eq!(
        setup.server.authorizations(),
        [Some("Bearer sk-test-1234".to_string()), Some("Bearer sk-test-1234".to_string())]
    );
    assert!(!out.failures[0].message.contains("sk-test"), "{}", out.failures[0].message);
}

#[tokio::test]
async fn the_responses_api_and_images_are_spoken() {
    let setup = setup().await;
    let png = {
        let pixels = weir_ops::image::Image { width: 8, height: 4, channels: 3, data: vec![100; 8 * 4 * 3] };
        weir_ops::image::encode::encode(pixels.view(), weir_crds::ImageFormat::Png, 90).expect("png")
    };
    let images: ArrayRef = Arc::new(BinaryArray::from_iter([Some(png.as_slice())]));
    let text: ArrayRef = Arc::new(StringArray::from(vec!["What is this?"]));
    let input = RecordBatch::try_from_iter([("text", text), ("photo", images)]).expect("batch");
    let step = setup.step_at(", api: responses", &format!("{ECHO}images: [photo]\n"));
    let out = run(&step, input, 0, 1).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let answer = strings(&out.batch, "answer")[0].clone().expect("an answer");
    assert_eq!(answer, format!("echo: What is this? images=1 [image/png {} bytes]", png.len()));
    assert_eq!(setup.server.bodies()[0]["input"][1]["content"][1]["type"], "input_image");
}

#[tokio::test]
async fn a_burst_of_429s_halves_the_requests_in_flight() {
    let setup = setup().await;
    let yaml = "messages: [{role: user, content: \"{text}\"}]\noutput: limited\nmaxConnections: 8\n";
    let step = setup.step(yaml);
    let rows: Vec<String> = (0..8).map(|i| format!("[429 x1 after=0][slow=100] row {i}")).collect();
    let rows: Vec<Option<&str>> = rows.iter().map(|r| Some(r.as_str())).collect();
    let out = run(&step, batch(&rows), 0, 1).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(setup.server.requests(), 16, "each row refused once, then answered");
    let limit = in_flight_limit("limited");
    // The server counts words: "[429 x1 after=0][slow=100] row n" is 5 in, its echo 6 out; only
    // answers count tokens, every try counts a request's seconds.
    let metrics = weir_llm::metrics::render();
    for line in [
        "weir_llm_tokens_total{kind=\"prompt\",output=\"limited\"} 40",
        "weir_llm_tokens_total{kind=\"completion\",output=\"limited\"} 48",
        "weir_llm_request_seconds_count{output=\"limited\"} 16",
        "weir_llm_requests_total{code=\"429\",output=\"limited\"} 8",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
    // Eight refusals at once cut 8 to 4 (one cut per burst); eight answers grow it by about two.
    assert!((4.0..=6.0).contains(&limit), "the limit backed off from 8: {limit}");
}

#[tokio::test]
async fn timeouts_conflicts_and_503s_are_retried_a_503_cuts_the_limit_and_a_redirect_is_not_followed() {
    let setup = setup().await;
    let step = setup.step("messages: [{role: user, content: \"{text}\"}]\noutput: statuses\nmaxConnections: 8\n");
    let rows = [Some("[408 x1] a"), Some("[409 x1] b"), Some("[503 x1 after=0] c"), Some("[redirect] d")];
    let out = run(&step, batch(&rows), 0, 1).await;
    assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
    assert_eq!(out.failures[0].row, 3);
    let message = &out.failures[0].message;
    assert!(
        message.contains("answered 307 Temporary Redirect") && message.contains("redirects are not followed"),
        "{message}"
    );
    for (row, directive) in [(0, "[408 x1]"), (1, "[409 x1]"), (2, "[503 x1")] {
        assert_eq!(setup.server.requests_containing(directive), 2, "row {row}: refused once, then answered");
    }
    assert_eq!(setup.server.requests(), 7, "nothing was sent to where the redirect pointed");
    let limit = in_flight_limit("statuses");
    assert!(limit <= 5.0, "the 503 cut 8 to 4: {limit}");
}

#[tokio::test]
async fn tokens_per_minute_charges_each_estimate_first_and_gives_back_what_the_answer_did_not_use() {
    let setup = setup().await;
    // 600 tokens a minute: 10 a second, 10 at the start. Each request is estimated at 21 tokens
    // ("row n" at four bytes a token, plus maxTokens 20) and uses 5 ("row n" in, "echo: row n" out).
    let step = setup.step(&format!("{ECHO}tokensPerMinute: 600\ngeneration: {{maxTokens: 20}}\n"));
    let started = Instant::now();
    let out = run(&step, batch(&[Some("row 0"), Some("row 1"), Some("row 2")]), 0, 1).await;
    let took = started.elapsed();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    assert_eq!(setup.server.requests(), 3);
    // The first waits 1.1 s for its 21 tokens; each answer gives back 16, so the next waits about
    // half a second: ~2.1 s. Without the correction the three would take 1.1, 3.2 and 5.3 s.
    assert!(took >= Duration::from_secs(1), "the estimate was charged before sending: {took:?}");
    assert!(took <= Duration::from_millis(3500), "the unused tokens were given back: {took:?}");
}
