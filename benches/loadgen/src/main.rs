//! `pushpull-loadgen` command: parse, run, write the JSON result, print the summary line.
//!
//! Exit codes: 0 = every subscriber connected and got every message once; 1 = the run measured a
//! failure (loss, duplicates, connect or publish errors); 2 = the run could not be carried out.

use std::process::ExitCode;

use clap::Parser;
use pushpull_loadgen::config::{Args, Plan};
use pushpull_loadgen::net::unix_micros;
use pushpull_loadgen::plot::render_report;
use pushpull_loadgen::run::run;

fn main() -> ExitCode {
    let args = Args::parse();
    // A scrambled clock reading: concurrent processes get channel ranges far apart.
    let default_seed =
        unix_micros().wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id());
    let plan = match Plan::from_args(args, default_seed) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pushpull-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let out = plan.out.clone();
    let plot = plan.plot.clone();
    let report = match run(plan) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pushpull-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = out {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&path, json));
        if let Err(e) = written {
            eprintln!("pushpull-loadgen: writing {}: {e}", path.display());
            println!("{}", report.summary_line());
            return ExitCode::from(2);
        }
    }
    if let Some(path) = &plot {
        if let Err(e) = std::fs::write(path, render_report(&report)) {
            eprintln!("pushpull-loadgen: writing {}: {e}", path.display());
            println!("{}", report.summary_line());
            return ExitCode::from(2);
        }
    }
    println!("{}", report.summary_line());
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
