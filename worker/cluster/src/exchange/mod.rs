//! Arrow Flight exchange between pools: a worker runs a segment of consecutive steps that belong
//! to another pool by a `DoExchange` with a worker of that pool, one morsel per exchange.
//!
//! The request carries the segment's first and last step indices and the lease it serves (worker,
//! unit, attempt) in its descriptor, and the morsel as Arrow IPC; the reply carries the segment's output, one record batch per part (a step may
//! answer in parts), each with its row failures in `app_metadata`. Failures of the segment's first
//! step name rows of the morsel sent; failures of later steps carry the step and the row reference
//! ([`FailureOrigin`]). HTTP/2 flow control on the stream carries backpressure: a busy gpu worker
//! reads its requests slowly, and the cpu worker's remote step waits.
//!
//! # Guarantees
//! - A serving worker runs a step only for a lease the coordinator confirms current (asked at the
//!   exchange's start, each answer trusted for at most [`LEASE_CHECK_TTL`]); an exchange for a
//!   revoked lease is refused with `FailedPrecondition`, which the caller's executor takes as its
//!   unit withdrawn (it stops the unit and fails nothing).
//! - A failed exchange (the peer died, or refused otherwise) is a step error of the morsel's unit:
//!   the unit's attempt fails and is leased again; nothing of it was committed.

mod lease_check;
mod remote;
mod server;

pub use lease_check::{AcceptAnyLease, CoordinatorLeases, LEASE_CHECK_TTL, LeaseCheck};
pub use remote::{RemoteStep, Router};
pub use server::{StepServer, bind as server_bind, serve_steps};

use std::ops::RangeInclusive;

use bytes::Bytes;
use weir_core::{FailureOrigin, RowFailure};

/// Largest gRPC message accepted or sent by the exchange: a morsel is sized by the memory budget
/// (at most 16 MiB by default), far below this.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// The unit attempt an exchange serves, and the worker that holds its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeLease {
    pub worker: String,
    pub unit: u64,
    pub attempt: u32,
}

/// What an exchange asks for: the steps to run, for the lease it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SegmentRequest {
    steps: RangeInclusive<usize>,
    lease: Option<ExchangeLease>,
}

/// The descriptor command naming the steps to run and the lease they serve.
fn segment_command(steps: &RangeInclusive<usize>, lease: Option<&ExchangeLease>) -> Bytes {
    let mut command = serde_json::json!({ "step": steps.start(), "last": steps.end() });
    if let Some(lease) = lease {
        command["worker"] = lease.worker.clone().into();
        command["unit"] = lease.unit.into();
        command["attempt"] = lease.attempt.into();
    }
    Bytes::from(command.to_string())
}

/// The request a command makes (`last` defaults to `step`; the lease is all three of `worker`,
/// `unit` and `attempt`, or absent); `None` when malformed.
fn parse_segment_command(cmd: &[u8]) -> Option<SegmentRequest> {
    let value: serde_json::Value = serde_json::from_slice(cmd).ok()?;
    let first = value.get("step")?.as_u64()? as usize;
    let last = value.get("last").map_or(Some(first as u64), |l| l.as_u64())? as usize;
    let lease = match (value.get("worker"), value.get("unit"), value.get("attempt")) {
        (None, None, None) => None,
        (Some(worker), Some(unit), Some(attempt)) => Some(ExchangeLease {
            worker: worker.as_str()?.to_string(),
            unit: unit.as_u64()?,
            attempt: u32::try_from(attempt.as_u64()?).ok()?,
        }),
        _ => return None,
    };
    (first <= last).then_some(SegmentRequest { steps: first..=last, lease })
}

/// A part's metadata: its row failures and the busy time the segment reported.
fn part_metadata(failures: &[RowFailure], busy: Option<std::time::Duration>) -> Bytes {
    let failures: Vec<serde_json::Value> = failures
        .iter()
        .map(|f| match &f.origin {
            None => serde_json::json!([f.row, f.message]),
            Some(o) => serde_json::json!([f.row, f.message, o.step_index, o.step, o.row_ref]),
        })
        .collect();
    let busy_us = busy.map(|b| b.as_micros() as u64);
    Bytes::from(serde_json::json!({ "failures": failures, "busyUs": busy_us }).to_string())
}

fn parse_part_metadata(bytes: &[u8]) -> Result<(Vec<RowFailure>, Option<std::time::Duration>), String> {
    if bytes.is_empty() {
        return Ok((Vec::new(), None));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("part metadata: {e}"))?;
    let failures = match value.get("failures").and_then(|f| f.as_array()) {
        Some(list) => list.iter().map(parse_failure).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let busy = value.get("busyUs").and_then(|b| b.as_u64()).map(std::time::Duration::from_micros);
    Ok((failures, busy))
}

fn parse_failure(value: &serde_json::Value) -> Result<RowFailure, String> {
    let malformed = || format!("part metadata: malformed failure {value}");
    let row = value.get(0).and_then(|r| r.as_u64()).ok_or_else(malformed)? as usize;
    let message = value.get(1).and_then(|m| m.as_str()).ok_or_else(malformed)?;
    if value.get(2).is_none() {
        return Ok(RowFailure::new(row, message));
    }
    let origin = FailureOrigin {
        step_index: value.get(2).and_then(|i| i.as_u64()).ok_or_else(malformed)? as usize,
        step: value.get(3).and_then(|s| s.as_str()).ok_or_else(malformed)?.to_string(),
        row_ref: value.get(4).and_then(|r| r.as_str()).ok_or_else(malformed)?.to_string(),
    };
    Ok(RowFailure::at(origin, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_metadata_round_trip() {
        let lease = ExchangeLease { worker: "cpu-0".into(), unit: 12, attempt: 3 };
        let request = parse_segment_command(&segment_command(&(7..=9), Some(&lease)));
        assert_eq!(request, Some(SegmentRequest { steps: 7..=9, lease: Some(lease) }));
        let bare = parse_segment_command(&segment_command(&(7..=9), None));
        assert_eq!(bare, Some(SegmentRequest { steps: 7..=9, lease: None }));
        assert_eq!(parse_segment_command(br#"{"step": 4}"#).map(|r| r.steps), Some(4..=4));
        assert_eq!(parse_segment_command(br#"{"step": 4, "last": 3}"#), None);
        assert_eq!(
            parse_segment_command(br#"{"step": 4, "unit": 1, "attempt": 0}"#),
            None,
            "a lease without its worker"
        );
        assert_eq!(parse_segment_command(br#"{"step": 4, "worker": "w", "unit": 1, "attempt": 5000000000}"#), None);
        assert_eq!(parse_segment_command(b"{}"), None);
        let origin = FailureOrigin { step_index: 5, step: "image.resize".into(), row_ref: "s3://b/x.jpg".into() };
        let failures = vec![RowFailure::new(3, "corrupt \"image\""), RowFailure::at(origin, "too large")];
        let busy = Some(std::time::Duration::from_micros(1500));
        assert_eq!(parse_part_metadata(&part_metadata(&failures, busy)), Ok((failures, busy)));
        assert_eq!(parse_part_metadata(b""), Ok((Vec::new(), None)));
    }
}
