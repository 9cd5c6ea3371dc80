//! Arrow Flight exchange between pools: a worker runs a step that belongs to another pool by a
//! `DoExchange` with a worker of that pool, one morsel per exchange.
//!
//! The request carries the step's index in its descriptor and the morsel as Arrow IPC; the reply
//! carries the step's output, one record batch per part (a step may answer in parts), each with
//! its row failures in `app_metadata`. HTTP/2 flow control on the stream carries backpressure: a
//! busy gpu worker reads its requests slowly, and the cpu worker's remote step waits.
//!
//! # Guarantees
//! A failed exchange (the peer died, or refused) is a step error of the morsel's unit: the unit's
//! attempt fails and is leased again; nothing of it was committed.

mod remote;
mod server;

pub use remote::{RemoteStep, Router};
pub use server::{StepServer, bind as server_bind, serve_steps};

use bytes::Bytes;
use weir_core::RowFailure;

/// Largest gRPC message accepted or sent by the exchange: a morsel is sized by the memory budget
/// (at most 16 MiB by default), far below this.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// The descriptor command naming the step to run.
fn step_command(step: usize) -> Bytes {
    Bytes::from(serde_json::json!({ "step": step }).to_string())
}

fn parse_step_command(cmd: &[u8]) -> Option<usize> {
    let value: serde_json::Value = serde_json::from_slice(cmd).ok()?;
    value.get("step")?.as_u64().map(|s| s as usize)
}

/// A part's metadata: its row failures and the busy time the step reported.
fn part_metadata(failures: &[RowFailure], busy: Option<std::time::Duration>) -> Bytes {
    let failures: Vec<serde_json::Value> = failures.iter().map(|f| serde_json::json!([f.row, f.message])).collect();
    let busy_us = busy.map(|b| b.as_micros() as u64);
    Bytes::from(serde_json::json!({ "failures": failures, "busyUs": busy_us }).to_string())
}

fn parse_part_metadata(bytes: &[u8]) -> Result<(Vec<RowFailure>, Option<std::time::Duration>), String> {
    if bytes.is_empty() {
        return Ok((Vec::new(), None));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("part metadata: {e}"))?;
    let failures = value
        .get("failures")
        .and_then(|f| f.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|f| Some(RowFailure::new(f.get(0)?.as_u64()? as usize, f.get(1)?.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let busy = value.get("busyUs").and_then(|b| b.as_u64()).map(std::time::Duration::from_micros);
    Ok((failures, busy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_metadata_round_trip() {
        assert_eq!(parse_step_command(&step_command(7)), Some(7));
        assert_eq!(parse_step_command(b"{}"), None);
        let failures = vec![RowFailure::new(3, "corrupt \"image\"")];
        let busy = Some(std::time::Duration::from_micros(1500));
        assert_eq!(parse_part_metadata(&part_metadata(&failures, busy)), Ok((failures, busy)));
        assert_eq!(parse_part_metadata(b""), Ok((Vec::new(), None)));
    }
}
