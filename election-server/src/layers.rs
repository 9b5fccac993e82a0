//! The server's modules in layers (issue 13): each module uses only modules
//! of lower layers, so no two import each other. A new module must be given
//! its layer here.

/// Lowest first: wire types and adapters, then the shell that runs the
/// engine, then the client paths, then the HTTP routes, then `main`.
const LAYERS: &[&[&str]] = &[
    &[
        "cli", "clock", "guard", "http", "metrics", "reqid", "storage", "zk",
    ],
    &["config", "directory", "rpc"],
    &["service"],
    &["access", "client", "dashboard"],
    &["oioproxy"],
    &["api"],
    &["main"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The modules `source` names as `crate::<module>`, comments left out.
fn uses(source: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn every_module_uses_only_lower_layers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("src/") {
        let path = entry.expect("entry").path();
        let Some(module) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().and_then(|e| e.to_str()) != Some("rs") || module == "layers" {
            continue;
        }
        let own =
            layer(module).unwrap_or_else(|| panic!("src/{module}.rs has no layer in layers.rs"));
        let source = std::fs::read_to_string(&path).expect("read");
        for used in uses(&source) {
            let Some(theirs) = layer(&used) else {
                continue; // an item of main.rs (crate::VERSION), not a module
            };
            assert!(
                theirs < own,
                "src/{module}.rs (layer {own}) uses crate::{used} (layer {theirs}): \
                 a module may use only lower layers"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 15,
        "only {checked} modules found in {}",
        dir.display()
    );
}

#[test]
fn the_check_sees_a_use_and_skips_comments() {
    let found = uses(
        "use crate::service::Service;\n// crate::api is not used\nlet x = crate::zk::classify(e);",
    );
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["service", "zk"]);
}
