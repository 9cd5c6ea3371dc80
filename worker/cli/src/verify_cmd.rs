//! `weir verify OUTPUT`: checks a finished job's output against its checkpoint, prints one line
//! per problem and a verdict, and exits 0 (OK), 1 (problems found) or 2 (could not verify).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use weir_cluster::verify::{Verification, verify_output};
use weir_io::StoreRegistry;

/// Exit status when the check itself could not be done (no manifest, storage unreachable), as
/// opposed to 1: the output has problems.
const CANNOT_VERIFY: u8 = 2;

/// `weir verify`: `checkpoint` defaults to `<output>/_weir/`, where a job keeps it unless its
/// spec sets `checkpoint.uri`.
pub fn verify(output: &str, checkpoint: Option<&str>) -> ExitCode {
    let checkpoint = checkpoint.map_or_else(|| format!("{}/_weir/", output.trim_end_matches('/')), str::to_string);
    match check(output, &checkpoint) {
        Ok(verification) => {
            for finding in &verification.findings {
                println!("{finding}");
            }
            println!("{}", verdict(&verification));
            if verification.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("error: {}", weir::error_text(e.as_ref()));
            ExitCode::from(CANNOT_VERIFY)
        }
    }
}

fn check(output: &str, checkpoint: &str) -> Result<Verification> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let stores = Arc::new(StoreRegistry::default());
    Ok(runtime.block_on(verify_output(&stores, output, checkpoint))?)
}

/// `verified: 12 files, 1200 rows out, 3 rows failed: OK` (or `: 2 problems`).
fn verdict(v: &Verification) -> String {
    let outcome = match v.findings.len() {
        0 => "OK".to_string(),
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    format!(
        "verified: {} files, {} rows out, {} rows failed: {outcome}",
        v.files, v.rows_out_verified, v.rows_failed_verified
    )
}

#[cfg(test)]
mod tests {
    use weir_cluster::verify::{Finding, Problem};

    use super::*;

    #[test]
    fn the_verdict_counts_files_rows_and_problems() {
        let mut v = Verification { files: 12, rows_out_verified: 1200, rows_failed_verified: 3, findings: Vec::new() };
        assert_eq!(verdict(&v), "verified: 12 files, 1200 rows out, 3 rows failed: OK");
        let finding =
            Finding { unit: None, uri: "s3://b/o/part-000001-2.parquet".into(), problem: Problem::Uncommitted };
        v.findings = vec![finding.clone()];
        assert!(verdict(&v).ends_with(": 1 problem"), "{}", verdict(&v));
        v.findings.push(finding);
        assert!(verdict(&v).ends_with(": 2 problems"), "{}", verdict(&v));
    }
}
