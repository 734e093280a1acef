//! Any bytes read as key components never panic; any components written read back the same
//! and keep their order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar::store::keys::{Key, KeyReader};

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes as a key: reading must fail cleanly or succeed, never panic.
    let mut reader = KeyReader::new(data);
    while !reader.is_empty() {
        if reader.text().is_err() {
            break;
        }
    }
    // The same bytes split into components: they round-trip and sort like their tuples.
    let parts: Vec<&[u8]> = data.split(|b| *b == b'|').collect();
    let key = parts.iter().fold(Key::new(), |k, p| k.text(p));
    let mut reader = KeyReader::new(key.as_bytes());
    for part in &parts {
        assert_eq!(reader.text().unwrap().as_ref(), *part);
    }
    assert!(reader.is_empty());
    if parts.len() >= 2 {
        let (a, b) = (Key::new().text(parts[0]), Key::new().text(parts[1]));
        assert_eq!(a.as_bytes().cmp(b.as_bytes()), parts[0].cmp(parts[1]));
    }
});
