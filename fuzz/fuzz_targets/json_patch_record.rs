//! Any JSON as a patch of a full record: parsed and applied, then validated like a PATCH body;
//! every step answers Ok or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar::domain::patch::{apply_patch, parse_patch};
use registrar::domain::registration::RegistrationInput;
use serde_json::Value;

const RECORD: &str = include_str!("../../tests/fixtures/registration_v1.json");

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(patch) = parse_patch(&body) else {
        return;
    };
    let record: Value = serde_json::from_str(RECORD).unwrap();
    let Value::Object(record) = record else {
        return;
    };
    if let Ok(patched) = apply_patch(record, &patch) {
        let _ = RegistrationInput::parse(&patched);
    }
});
