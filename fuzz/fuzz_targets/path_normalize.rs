//! The path normaliser on arbitrary paths: no panic; a path it accepts comes out normal
//! (no `.`/`..` segment, no `//`, still absolute) and stays the same when normalised again;
//! an encoded slash is never turned into a separator; it refuses only a `%` that starts no
//! escape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_core::normalize_path;

fuzz_target!(|raw: &str| {
    let path = format!("/{raw}");
    let Ok(normal) = normalize_path(&path) else {
        let escapes_ok = path.split('%').skip(1).all(|rest| {
            rest.len() >= 2 && rest.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit)
        });
        assert!(!escapes_ok, "{path:?} refused");
        return;
    };
    assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
    assert!(!normal.split('/').any(|s| s == "." || s == ".."), "{path:?} -> {normal:?}");
    assert!(!normal.contains("//"), "{path:?} -> {normal:?}");
    assert_eq!(normalize_path(&normal).as_deref(), Ok(&*normal), "{path:?}");
    let slashes = |p: &str| p.matches("%2f").count() + p.matches("%2F").count();
    assert!(slashes(&normal) <= slashes(&path), "{path:?} -> {normal:?}");
});
