//! The bounded channel between stages: capacity counted in messages, memory governed by the budget.

use tokio::sync::mpsc;

/// Messages a stage may hold queued for the next one. Two keeps the next stage busy while this
/// one works, without hoarding memory (the budget bounds bytes; this bounds latency).
pub const STAGE_CHANNEL_CAPACITY: usize = 2;

/// Sending half of a stage link.
#[derive(Debug)]
pub struct StageSender<T>(mpsc::Sender<T>);

/// Receiving half of a stage link.
#[derive(Debug)]
pub struct StageReceiver<T>(mpsc::Receiver<T>);

/// A new link between two stages.
pub fn stage_channel<T>() -> (StageSender<T>, StageReceiver<T>) {
    let (tx, rx) = mpsc::channel(STAGE_CHANNEL_CAPACITY);
    (StageSender(tx), StageReceiver(rx))
}

impl<T> StageSender<T> {
    /// Waits for room, then sends. `false` when the receiver is gone (the run is ending).
    pub async fn send(&self, item: T) -> bool {
        self.0.send(item).await.is_ok()
    }
}

impl<T> StageReceiver<T> {
    /// The next message, or `None` once the sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        self.0.recv().await
    }

    /// Messages waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.0.len()
    }
}
