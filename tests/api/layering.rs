//! The module order `src/lib.rs` documents is the real one: no module uses one listed above it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::server::MANIFEST;

/// The modules of `lib.rs`'s "Modules, top to bottom" list, top first.
fn documented_order() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(MANIFEST).join("src/lib.rs")).unwrap();
    let section = lib
        .split("# Modules, top to bottom")
        .nth(1)
        .expect("lib.rs has a `Modules, top to bottom` section");
    let mut order = Vec::new();
    for line in section.lines().skip(1).take_while(|l| l.starts_with("//!")) {
        // `//! - [`name`]…` or `//! - [`a`], [`b`]: …`
        let Some(items) = line.strip_prefix("//! - ") else {
            continue;
        };
        let names = items.split(':').next().unwrap_or_default();
        for name in names.split(", ") {
            if let Some(name) = name.strip_prefix("[`").and_then(|n| n.strip_suffix("`]")) {
                order.push(name.to_owned());
            }
        }
    }
    order
}

/// Every `crate::<module>` a module's files mention.
fn uses(module: &str) -> Vec<(String, String)> {
    let src = Path::new(MANIFEST).join("src");
    let mut files = vec![src.join(format!("{module}.rs"))];
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut found = Vec::new();
    for file in files.iter().filter(|f| f.exists()) {
        let text = std::fs::read_to_string(file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let used: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !used.is_empty() && used != module {
                found.push((used, file.display().to_string()));
            }
        }
    }
    found
}

#[test]
fn no_module_uses_one_above_it() {
    let order = documented_order();
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let lib = std::fs::read_to_string(Path::new(MANIFEST).join("src/lib.rs")).unwrap();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        .collect();
    let mut undocumented: Vec<&str> = declared
        .iter()
        .copied()
        .filter(|m| !rank.contains_key(m))
        .collect();
    undocumented.sort_unstable();
    assert!(
        undocumented.is_empty(),
        "not in lib.rs's module list: {undocumented:?}"
    );
    assert_eq!(
        order.len(),
        declared.len(),
        "lib.rs lists a module twice or one that is not declared"
    );
    let mut upward = Vec::new();
    for module in &order {
        for (used, file) in uses(module) {
            match rank.get(used.as_str()) {
                Some(&r) if r > rank[module.as_str()] => {}
                _ => upward.push(format!("{file}: `{module}` uses `{used}`")),
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(
        upward.is_empty(),
        "uses against the documented order:\n{}",
        upward.join("\n")
    );
}
