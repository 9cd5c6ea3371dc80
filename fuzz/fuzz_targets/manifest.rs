//! Manifest reading and validation (`weir validate`, the operator's admission of a job): any text
//! gives a report, never a panic, a hang or an allocation past the reader's bounds; a manifest
//! that validates parses, and so does the JSON the job serializes back to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_crds::validate::{parse_manifest, validate_manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let report = validate_manifest(text);
    let parsed = parse_manifest(text, "fuzz");
    assert_eq!(report.is_valid(), parsed.is_ok(), "validate_manifest and parse_manifest disagree");
    if let Ok(job) = parsed {
        let json = serde_json::to_string(&job).expect("a parsed job serializes");
        let again = validate_manifest(&json);
        assert!(again.is_valid(), "the job's own JSON does not validate: {:?}\n{json}", again.problems);
    }
});
