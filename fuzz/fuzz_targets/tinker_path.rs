//! `tinker://` path parsing: whatever parses prints back to a path that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinker_types::TinkerPath;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = TinkerPath::parse(text) {
        let again = TinkerPath::parse(&path.to_string()).expect("a printed path parses");
        assert_eq!(again, path);
    }
});
