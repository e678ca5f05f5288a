//! The `pushpull` binary: parses the command line, loads the configuration, starts the server and
//! stops it on SIGTERM or SIGINT.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use pushpull::config::{Cli, Command, Config};
use pushpull::server::Server;

/// jemalloc instead of the C library's allocator. Each publish allocates and frees a few blocks
/// of many sizes (request body, message encodings, history entries): with glibc, free-list
/// coalescing and growing the core thread's heap a few pages at a time (one `mprotect` every
/// few publishes) took about a third of the server's CPU for pipelined publishes; jemalloc
/// makes a publish about 35 % cheaper (benches/README.md, "Profiles").
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The process exits at the latest this long after the stop signal, whatever is left open.
const EXIT_DEADLINE: Duration = Duration::from_millis(4_800);

/// Exit status of a configuration that cannot be loaded or breaks a rule (spec/README.md §6).
const EXIT_CONFIG: i32 = 2;
/// Exit status when another process serves a listener address (spec/README.md §6).
const EXIT_ADDR_IN_USE: i32 = 3;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pushpull: configuration error: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if let Command::CheckConfig = cli.command() {
        print!("{}", config.to_toml());
        std::io::stdout().flush()?;
        return Ok(());
    }
    // Every record reaches the logger and `log`'s global level does the filtering, so that a
    // reload can change it; PUSHPULL_LOG (env_logger directives) overrides both.
    let directives = std::env::var("PUSHPULL_LOG")
        .ok()
        .filter(|d| !d.trim().is_empty());
    let mut logger = env_logger::Builder::new();
    logger
        .filter_level(log::LevelFilter::Trace)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr);
    if let Some(directives) = &directives {
        logger.parse_filters(directives);
    }
    logger.init();
    let set_level = |level: &str| {
        if directives.is_none() {
            log::set_max_level(level.parse().unwrap_or(log::LevelFilter::Info));
        }
    };
    set_level(&config.log_level);

    for warning in &config.warnings {
        log::warn!("configuration: {warning}");
    }
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    let mut server = match Server::start(config) {
        Ok(server) => server,
        Err(e) if e.is_addr_in_use() => {
            eprintln!("pushpull: {e}");
            std::process::exit(EXIT_ADDR_IN_USE);
        }
        Err(e) => return Err(e).context("starting the server"),
    };
    for signal in signals.forever() {
        if signal != SIGHUP {
            log::info!("signal {signal}: shutting down");
            break;
        }
        // SIGHUP: read the configuration again; connections stay open.
        match Config::load(&cli) {
            Ok(new) => {
                for warning in &new.warnings {
                    log::warn!("configuration: {warning}");
                }
                let level = new.log_level.clone();
                for warning in server.reload(new) {
                    log::warn!("reload: {warning}");
                }
                set_level(&level);
                log::info!("signal {signal}: configuration reloaded");
            }
            Err(e) => log::error!(
                "signal {signal}: configuration error, the running configuration stays: {e}"
            ),
        }
    }
    let started = Instant::now();
    // A second SIGTERM or SIGINT, or the deadline, ends the process whatever is still open.
    std::thread::spawn(move || {
        if signals.forever().any(|s| s != SIGHUP) {
            std::process::exit(1);
        }
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
