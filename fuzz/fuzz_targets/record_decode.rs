//! Stored bytes of any shape decode to a record or an error, never a panic or a huge
//! allocation; what decodes re-encodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registrar::domain::registration::CourseRegistration;
use registrar::domain::tenant::{ApiKey, Tenant};
use registrar::store::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = codec::decode::<CourseRegistration>(data) {
        // Compared as bytes: a stored float may be NaN, which is never equal to itself.
        let encoded = codec::encode(&record).unwrap();
        let again: CourseRegistration = codec::decode(&encoded).unwrap();
        assert_eq!(codec::encode(&again).unwrap(), encoded);
        let _ = record.to_json();
    }
    let _ = codec::decode::<Tenant>(data);
    let _ = codec::decode::<ApiKey>(data);
});
