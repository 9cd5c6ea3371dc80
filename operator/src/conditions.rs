//! kstatus-style conditions and the small formatting rules that keep a status bounded.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The longest message the status carries; longer ones are cut (logs and events have the rest).
pub const MAX_MESSAGE: usize = 1024;

/// Sets condition `type_`, keeping its `lastTransitionTime` unless its status flips.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if on { "True" } else { "False" }.to_string();
    let transitioned = match conditions.iter().find(|c| c.type_ == type_) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: bounded(message),
        observed_generation: generation,
        last_transition_time: transitioned,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(slot) => *slot = condition,
        None => conditions.push(condition),
    }
}

/// `message`, cut to [`MAX_MESSAGE`] bytes on a character boundary.
pub fn bounded(message: &str) -> String {
    bounded_to(message, MAX_MESSAGE)
}

/// `message`, cut to `max` bytes (at least 3) on a character boundary, ending in `...` when cut.
pub fn bounded_to(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// A duration for people: `45s`, `3m20s`, `2h05m`.
pub fn human_duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    match (total / 3600, (total % 3600) / 60, total % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::at;

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_flips() {
        let mut conditions = Vec::new();
        set(&mut conditions, "Ready", false, "Pending", "", Some(1), &at(10));
        set(&mut conditions, "Ready", false, "Pending", "still", Some(2), &at(20));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].observed_generation, Some(2));
        set(&mut conditions, "Ready", true, "PodsReady", "", Some(2), &at(30));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(30));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let message = "é".repeat(2000);
        let cut = bounded(&message);
        assert!(cut.len() <= MAX_MESSAGE && cut.ends_with("..."));
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(44.6), "45s");
        assert_eq!(human_duration(200.0), "3m20s");
        assert_eq!(human_duration(7500.0), "2h05m");
        assert_eq!(human_duration(-3.0), "0s");
    }
}
