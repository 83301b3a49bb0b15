//! Every example is part of the test suite: each asserts its own output and must exit 0.
//! `cargo test` builds the examples before running tests; this runs the built binaries.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn examples_dir() -> PathBuf {
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

fn example_names() -> Vec<String> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(src)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_runs_and_passes_its_assertions() {
    let names = example_names();
    assert!(names.len() >= 6, "examples: {names:?}");
    for name in names {
        let bin = examples_dir().join(&name);
        // MPI examples are built with the `mpi` feature only, and run under mpirun.
        let mpi = name.starts_with("mpi_");
        if mpi && !cfg!(feature = "mpi") {
            println!("example {name}: skipped (needs --features mpi)");
            continue;
        }
        assert!(
            bin.exists(),
            "{} is not built: run the whole suite with `cargo test` (it builds examples)",
            bin.display()
        );
        let mut cmd = if mpi {
            let mut c = Command::new("mpirun");
            c.args(["-n", "3", "--oversubscribe"])
                .args(["--mca", "btl_vader_single_copy_mechanism", "none"])
                .args(["--bind-to", "none"])
                .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
                .arg(&bin)
                .arg("2");
            c
        } else {
            Command::new(&bin)
        };
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        // A bounded wait: an example that hangs fails the test instead of hanging it.
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let out = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                // SAFETY: signalling our own unreaped child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("example {name} did not finish within 300 s");
            }
        };
        assert!(
            out.status.success(),
            "example {name} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("example {name}: ok");
    }
}
