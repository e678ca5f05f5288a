//! The `pushpull` binary: parses the command line, loads the configuration, starts the server and
//! stops it on SIGTERM or SIGINT.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use pushpull::config::{Cli, Command, Config};
use pushpull::server::Server;

/// The process exits at the latest this long after the stop signal, whatever is left open.
const EXIT_DEADLINE: Duration = Duration::from_millis(4_800);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pushpull: configuration error: {e}");
            std::process::exit(2);
        }
    };
    if let Command::CheckConfig = cli.command() {
        print!("{}", config.to_toml());
        std::io::stdout().flush()?;
        return Ok(());
    }
    env_logger::Builder::new()
        .parse_filters(&config.log_level)
        .parse_env("PUSHPULL_LOG")
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .init();

    for warning in &config.warnings {
        log::warn!("configuration: {warning}");
    }
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?;
    let server = Server::start(config).context("starting the server")?;
    if let Some(signal) = signals.forever().next() {
        log::info!("signal {signal}: shutting down");
    }
    let started = Instant::now();
    // A second signal, or the deadline, ends the process whatever is still open.
    std::thread::spawn(move || {
        let _ = signals.forever().next();
        std::process::exit(1);
    });
    std::thread::spawn(move || {
        std::thread::sleep(EXIT_DEADLINE.saturating_sub(started.elapsed()));
        log::warn!("shutdown deadline passed: exiting");
        std::process::exit(0);
    });
    server.shutdown();
    log::info!("stopped in {} ms", started.elapsed().as_millis());
    Ok(())
}
