//! Answers kept with the checkpoint, so that a unit run again (after a crash, a lost lease or a
//! drain) does not pay for its requests twice.
//!
//! Each morsel's new answers are written as one JSON-lines object,
//! `<checkpoint>/llm/<output>/unit-<unit>/<attempt>-<nonce>.jsonl`, once the morsel's requests are
//! done. The first morsel of a unit an attempt works on reads every such object of the unit (one
//! listing), and rows whose request is among them are not sent again. An answer is keyed by the
//! row's source reference and the request body, so a changed prompt, model or image asks again.
//! What can still be asked twice: the answers of a morsel in flight when its worker died, and a
//! request whose answer was lost on the way back (the server may have done it).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use weir_core::step::UnitAttempt;

use crate::request::Answer;

/// Units whose answers are held in memory at once (a worker works on a few units at a time).
const UNITS_HELD: usize = 16;

/// The key of one row's request: its source reference and its body, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnswerKey(u64, u64);

impl AnswerKey {
    pub fn new(row_ref: &str, body: &[u8]) -> Self {
        Self(weir_io::upload::fnv1a(row_ref.as_bytes()), weir_io::upload::fnv1a(body))
    }

    fn text(self) -> String {
        format!("{:016x}{:016x}", self.0, self.1)
    }

    fn parse(text: &str) -> Option<Self> {
        let (a, b) = (text.get(..16)?, text.get(16..)?);
        Some(Self(u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
    }
}

/// A unit's answers, by key: those read when the unit was first asked for here, and those its
/// morsels kept since.
pub type UnitAnswers = Mutex<HashMap<AnswerKey, Answer>>;

/// A unit and its answers, read on first use.
type UnitSlot = (u64, Arc<OnceCell<Arc<UnitAnswers>>>);

/// Where one step keeps its answers.
pub struct AnswerStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    units: Mutex<VecDeque<UnitSlot>>,
}

impl std::fmt::Debug for AnswerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerStore").field("prefix", &self.prefix).finish()
    }
}

impl AnswerStore {
    /// Answers under `prefix` (`<checkpoint path>/llm/<output>`) of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix, units: Mutex::new(VecDeque::new()) }
    }

    fn unit_prefix(&self, unit: u64) -> Path {
        self.prefix.clone().join(format!("unit-{unit}"))
    }

    /// The answers kept for `unit` by earlier morsels and attempts: read once per unit while it
    /// is among the last [`UNITS_HELD`] asked for, then grown by [`Self::keep`], so a unit this
    /// worker runs again sees what its earlier attempt here asked.
    ///
    /// # Errors
    /// The listing or a read failed (after the store's own retries); a line that does not parse
    /// is skipped, not an error.
    pub async fn for_unit(&self, unit: u64) -> Result<Arc<UnitAnswers>, object_store::Error> {
        let cell = self.cell(unit);
        cell.get_or_try_init(|| self.read_unit(unit)).await.cloned()
    }

    /// The slot of `unit`, made (and the oldest dropped) if it has none.
    fn cell(&self, unit: u64) -> Arc<OnceCell<Arc<UnitAnswers>>> {
        {
            let mut units = self.units.lock().unwrap_or_else(|p| p.into_inner());
            match units.iter().find(|(u, _)| *u == unit) {
                Some((_, cell)) => cell.clone(),
                None => {
                    let cell = Arc::new(OnceCell::new());
                    units.push_back((unit, cell.clone()));
                    if units.len() > UNITS_HELD {
                        units.pop_front();
                    }
                    cell
                }
            }
        }
    }

    async fn read_unit(&self, unit: u64) -> Result<Arc<UnitAnswers>, object_store::Error> {
        let objects: Vec<_> = self.store.list(Some(&self.unit_prefix(unit))).try_collect().await?;
        let mut answers = HashMap::new();
        for object in objects {
            let bytes = self.store.get(&object.location).await?.bytes().await?;
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if let Some((key, answer)) = parse_line(line) {
                    answers.insert(key, answer);
                }
            }
        }
        Ok(Arc::new(Mutex::new(answers)))
    }

    /// Writes `answers` of a morsel of `attempt` as one new object.
    ///
    /// # Errors
    /// The write failed (after the store's own retries).
    pub async fn keep(
        &self,
        attempt: UnitAttempt,
        answers: &[(AnswerKey, &Answer)],
    ) -> Result<(), object_store::Error> {
        if answers.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for (key, answer) in answers {
            let line = json!({"key": key.text(), "text": answer.text, "prompt": answer.prompt_tokens, "completion": answer.completion_tokens});
            lines.extend_from_slice(line.to_string().as_bytes());
            lines.push(b'\n');
        }
        let name = format!("{}-{:016x}.jsonl", attempt.attempt, fastrand::u64(..));
        let written = self.store.put(&self.unit_prefix(attempt.unit).join(name), PutPayload::from(lines)).await;
        if let Some(held) = self.cell(attempt.unit).get() {
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            held.extend(answers.iter().map(|(key, answer)| (*key, (*answer).clone())));
        }
        written.map(|_| ())
    }
}

fn parse_line(line: &[u8]) -> Option<(AnswerKey, Answer)> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let key = AnswerKey::parse(value.get("key")?.as_str()?)?;
    let count = |field: &str| value.get(field).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
    let answer = Answer {
        text: value.get("text")?.as_str()?.to_string(),
        prompt_tokens: count("prompt")?,
        completion_tokens: count("completion")?,
    };
    Some((key, answer))
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;

    use super::*;

    #[tokio::test]
    async fn answers_kept_by_one_attempt_are_read_by_the_next() {
        let dir = tempfile::tempdir().expect("tmp");
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("fs"));
        let first = AnswerStore::new(store.clone(), Path::from("ckpt/llm/answer"));
        let pug = Answer { text: "a pug".into(), prompt_tokens: 9, completion_tokens: 2 };
        let key = AnswerKey::new("photos/1.jpg", b"{\"model\":\"m\"}");
        let held = first.for_unit(3).await.expect("empty");
        assert!(held.lock().expect("lock").is_empty());
        first.keep(UnitAttempt { unit: 3, attempt: 1 }, &[(key, &pug)]).await.expect("kept");
        assert_eq!(held.lock().expect("lock").get(&key), Some(&pug), "this worker's copy grows too");
        std::fs::write(dir.path().join("ckpt/llm/answer/unit-3/junk.jsonl"), b"not json\n").expect("junk");

        let second = AnswerStore::new(store, Path::from("ckpt/llm/answer"));
        let answers = second.for_unit(3).await.expect("read");
        let read = answers.lock().expect("lock").clone();
        assert_eq!(read.get(&key), Some(&pug));
        assert_eq!(read.len(), 1, "the junk line is skipped");
        assert!(second.for_unit(4).await.expect("other unit").lock().expect("lock").is_empty());
        assert_ne!(AnswerKey::new("photos/2.jpg", b"{\"model\":\"m\"}"), key, "another row asks anew");
    }
}
