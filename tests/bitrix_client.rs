//! The real Bitrix pull client against the pushpull binary: runs the Node harness in
//! `tests/bitrix-client` (`node --test`), which drives `@bitrix24/b24jssdk`'s PullClient in Node
//! and, bundled into a page, in headless Chromium (see tests/bitrix-client/README.md).
//!
//! Needs `node` and `npm` (and `/usr/bin/chromium` for the browser part). When one is missing the
//! test prints why and passes, except under `CI=true`, where it fails.
#![cfg(unix)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest `npm ci` may take (normally a few seconds from the registry).
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the whole Node suite may take (about 20 s today; every wait inside is bounded too).
const SUITE_TIMEOUT: Duration = Duration::from_secs(110);
/// Longest one `it(...)` may take before node cancels it (its `after` hooks still stop the
/// servers); the slowest test today takes about 6 s.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The harness files, in the order they run.
const TEST_FILES: [&str; 3] = ["client.test.mjs", "browser.test.mjs", "nginx.test.mjs"];

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Prints why the suite cannot run; fails under CI, passes (skips) otherwise.
fn missing(what: &str) {
    let msg = format!(
        "bitrix client suite: {what}; install Node.js >= 20 with npm and Debian's chromium \
         (apt-get install -y nodejs npm chromium)"
    );
    assert!(!under_ci(), "CI=true: {msg}");
    println!("SKIPPED: {msg}");
}

/// Runs `cmd` with captured output; after `limit` the child is killed (by its pid: the test
/// files stop their own servers and browser before their own deadline, see harness.mjs).
/// Returns the exit status (`None` on timeout) and stdout followed by stderr.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<ExitStatus>, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the command");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut text = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    (status, text)
}

#[test]
fn real_bitrix_pull_client() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bitrix-client");
    if !runs("node") {
        return missing("`node` is not installed");
    }
    if !runs("npm") {
        return missing("`npm` is not installed");
    }
    if !chromium().exists() {
        // browser.test.mjs skips itself with this reason (and fails under CI=true).
        missing(&format!(
            "{} is missing (the browser part needs it)",
            chromium().display()
        ));
    }

    if !dir.join("node_modules").exists() {
        let started = Instant::now();
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir);
        let (status, output) = run_bounded(npm, NPM_CI_TIMEOUT);
        println!("$ npm ci ({:.1?})\n{output}", started.elapsed());
        assert!(
            status.is_some_and(|s| s.success()),
            "npm ci in {} failed or took over {NPM_CI_TIMEOUT:?} ({status:?}):\n{output}",
            dir.display()
        );
    }

    let started = Instant::now();
    let mut node = Command::new("node");
    node.arg("--test")
        .arg("--test-reporter=spec")
        .arg(format!("--test-timeout={}", TEST_TIMEOUT.as_millis()))
        .args(TEST_FILES)
        .current_dir(&dir)
        .env("PUSHPULL_BIN", env!("CARGO_BIN_EXE_pushpull"));
    let (status, output) = run_bounded(node, SUITE_TIMEOUT);
    println!(
        "$ node --test {} ({:.1?})\n{output}",
        TEST_FILES.join(" "),
        started.elapsed()
    );
    assert!(
        status.is_some(),
        "the Node suite did not finish within {SUITE_TIMEOUT:?}:\n{output}"
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the Node suite failed ({status:?}):\n{output}"
    );
}
