//! The runtime's layering, checked: every module of `runtime/src` belongs to one layer, and
//! may name (through `crate::...` paths) only modules of lower layers, or its own module.
//! ARCHITECTURE.md draws the same picture. A new module must be given a layer here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom first. Modules on one line are one layer: they do not use each other.
const LAYERS: &[&[&str]] = &[
    // The errors everything reports, and the OS.
    &["error"],
    &["sys"],
    // Shared-memory segments and the handles that travel as descriptors.
    &["shm"],
    // The wire protocol: frames, codec, channels, handshake.
    &["wire"],
    // The task table, and running a task in whatever process it lands in.
    &["registry"],
    &["task"],
    // Which role this process plays (program, worker, fork server, ...), and who it is.
    &["role"],
    // Starting child processes.
    &["spawn"],
    // Cross-process objects, and the backend-neutral execution core.
    &["synchronize", "queue", "pipe", "exec"],
    &["sharedctypes", "shared_memory", "process", "manager"],
    // The backends.
    &["pool", "dummy", "mpi", "connection"],
    // The child side: names every child role's main function.
    &["child"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The modules a file names through `crate::` paths, `use crate::{a, b::c}` included.
fn crate_paths(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let code: String = src
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("//")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" {
            continue; // the crate root re-exports every layer
        }
        let Some(mine) = layer_of(&module) else {
            problems.push(format!("{}: module `{module}` has no layer", rel.display()));
            continue;
        };
        *seen.entry(module.clone()).or_default() += 1;
        let text = std::fs::read_to_string(&file).unwrap();
        for used in crate_paths(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(theirs) if theirs < mine => {}
                Some(_) => problems.push(format!(
                    "{}: `{module}` (layer {mine}) uses `crate::{used}` (layer {})",
                    rel.display(),
                    layer_of(&used).unwrap()
                )),
                // Items of the crate root (`crate::cpu_count`, re-exports) are not modules.
                None => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering violations:\n{}",
        problems.join("\n")
    );
    // Every listed module exists, so the table stays honest.
    for module in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(
            seen.contains_key(*module),
            "no module `{module}` in runtime/src"
        );
    }
}
