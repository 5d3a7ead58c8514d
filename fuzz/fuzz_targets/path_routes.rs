//! Path normalisation and route matching: never a panic, no segment is a dot segment, empty,
//! or holds `/`, `;` or `%`, and neither does a captured parameter.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tollgate::config::{ConfigSource, load};
use tollgate::mapping::path::normalize;
use tollgate::snapshot::Snapshot;

static DEMO: LazyLock<Snapshot> = LazyLock::new(|| {
    load(&ConfigSource::Embedded, 1)
        .expect("embedded config loads")
        .1
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (method, target) = text.split_once(' ').unwrap_or(("GET", text));
    let Ok(path) = normalize(target) else {
        return;
    };
    for segment in &path.segments {
        assert!(!segment.is_empty() && segment != "." && segment != "..");
        assert!(!segment.contains(['/', ';', '%']), "{segment:?}");
    }
    if let Some((_, resource)) = DEMO.routes.resolve("shop.test", method, &path) {
        assert!(!resource.id.is_empty());
        assert!(!resource.id.contains(['/', ';', '%']), "{:?}", resource.id);
    }
});
