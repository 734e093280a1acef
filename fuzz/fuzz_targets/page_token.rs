//! A page token of any text is refused or opens to a position; it never panics, and a token
//! sealed for one scope never opens in another.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar::store::page::{PageScope, PageTokens};

fuzz_target!(|data: &[u8]| {
    let tokens = PageTokens::new([42; 32]);
    let scope = PageScope::lookup("acme", "student", &["s1"], false);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tokens.open(&scope, text);
        let sealed = tokens.seal(&scope, text);
        // Positions are ids (at most 128 bytes); anything that fits a token opens to itself.
        if text.len() <= 300 {
            assert_eq!(tokens.open(&scope, &sealed).unwrap(), text);
        }
        let other = PageScope::lookup("other", "student", &["s1"], false);
        assert!(tokens.open(&other, &sealed).is_err());
    }
});
