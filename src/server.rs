//! Starting and stopping the server: claims every listener address (no other process may serve
//! it, net::listen), binds it once per core with `SO_REUSEPORT`, starts the engine thread and one
//! reactor thread per core, and stops them in order.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::info;
use mio::{Poll, Waker};

use crate::config::{Config, ListenerKind, Storage};
use crate::conn::Shared;
use crate::engine::local::{LocalEngine, LocalSettings, unix_ms};
use crate::engine::memory::StoreLimits;
use crate::engine::redis::{RedisEngine, RedisSettings};
use crate::engine::{DEFAULT_ENGINE_QUEUE, EngineCmd, EngineHandle};
use crate::metrics::{CoreStats, EngineStats};
use crate::net::listen::{self, AddrLock, ListenError};
use crate::net::tls::{TlsAcceptor, TlsError};
use crate::proto::channel::Signer;
use crate::reactor::mailbox::{CorePeer, mailbox};
use crate::reactor::{Core, CoreSetup, Listener, WAKER_TOKEN};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound, or another process serves its address.
    #[error("cannot listen on {addr} ({kind}): {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The listener's kind.
        kind: ListenerKind,
        /// The cause.
        source: ListenError,
    },
    /// A listener's TLS certificate or key could not be loaded.
    #[error("listener {addr}: {source}")]
    Tls {
        /// The listener's address.
        addr: SocketAddr,
        /// The cause.
        source: Box<TlsError>,
    },
    /// Creating a poll, waker or thread failed.
    #[error("cannot start core {core}: {source}")]
    Core {
        /// The core index.
        core: usize,
        /// The cause.
        source: io::Error,
    },
}

impl ServerError {
    /// Whether another process serves one of the listener addresses (`pushpull` exits with
    /// status 3 then, spec/README.md §6).
    pub fn is_addr_in_use(&self) -> bool {
        matches!(
            self,
            ServerError::Listen {
                source: ListenError::InUse(_),
                ..
            }
        )
    }
}

/// A running server.
pub struct Server {
    cores: Vec<JoinHandle<io::Result<()>>>,
    engine: Option<JoinHandle<()>>,
    peers: Vec<CorePeer>,
    engine_tx: crossbeam_channel::Sender<EngineCmd>,
    addrs: Vec<(ListenerKind, SocketAddr)>,
    /// Each configured listener's TLS side (`None`: plain), in configuration order.
    tls: Vec<Option<Arc<TlsAcceptor>>>,
    shared: Arc<Shared>,
    /// The listener addresses' locks: other pushpull processes stay off them while this one runs.
    _locks: Vec<AddrLock>,
}

impl Server {
    /// Claims and binds the listeners and starts the engine and the cores. Fails, before
    /// anything is bound, when another process serves a listener address
    /// ([`ServerError::is_addr_in_use`], net::listen).
    pub fn start(config: Config) -> Result<Self, ServerError> {
        let threads = config.threads.max(1);
        let core_stats: Vec<Arc<CoreStats>> = (0..threads).map(|_| Arc::default()).collect();
        let engine_stats = Arc::new(EngineStats::default());
        let signer = Signer::new(config.security_key.as_deref(), config.signature_algo);
        let mut addrs: Vec<(ListenerKind, SocketAddr)> =
            config.listeners.iter().map(|l| (l.kind, l.addr)).collect();
        let mut tls = Vec::with_capacity(addrs.len());
        for l in &config.listeners {
            tls.push(match (&l.tls_cert, &l.tls_key) {
                (Some(cert), Some(key)) => Some(Arc::new(TlsAcceptor::load(cert, key).map_err(
                    |source| ServerError::Tls {
                        addr: l.addr,
                        source: Box::new(source),
                    },
                )?)),
                _ => None,
            });
        }
        let listen_err = |(kind, addr): (ListenerKind, SocketAddr)| {
            move |source| ServerError::Listen { addr, kind, source }
        };
        // Every address is claimed before any is bound: a start that fails accepted nothing.
        let mut claims = Vec::with_capacity(addrs.len());
        for &listener in &addrs {
            claims.push(listen::claim(listener.1).map_err(listen_err(listener))?);
        }
        let mut per_core: Vec<Vec<Listener>> = (0..threads)
            .map(|_| Vec::with_capacity(addrs.len()))
            .collect();
        let mut locks = Vec::with_capacity(addrs.len());
        for ((listener, claim), tls) in addrs.iter_mut().zip(claims).zip(&tls) {
            let bound = claim.bind(threads).map_err(listen_err(*listener))?;
            listener.1 = bound.addr;
            for (core, socket) in per_core.iter_mut().zip(bound.sockets) {
                core.push(Listener {
                    socket,
                    kind: listener.0,
                    tls: tls.clone(),
                });
            }
            locks.push(bound.lock);
        }
        let shared = Arc::new(Shared {
            config,
            signer,
            core_stats: core_stats.clone(),
            engine_stats: engine_stats.clone(),
            started: unix_ms() / 1000,
        });

        let (engine_tx, engine_rx) = crossbeam_channel::bounded(DEFAULT_ENGINE_QUEUE);
        let mut setups = Vec::with_capacity(threads);
        let mut peers = Vec::with_capacity(threads);
        for (index, listeners) in per_core.into_iter().enumerate() {
            let core_err = |source| ServerError::Core {
                core: index,
                source,
            };
            let poll = Poll::new().map_err(core_err)?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN).map_err(core_err)?);
            let (peer, mailbox) = mailbox(waker);
            peers.push(peer);
            setups.push(CoreSetup {
                index: index as u16,
                poll,
                listeners,
                mailbox,
                engine: EngineHandle::new(engine_tx.clone()),
                inline: None,
                shared: shared.clone(),
                stats: core_stats[index].clone(),
            });
        }

        let engine = start_engine(&shared, engine_rx, peers.clone(), engine_stats, &core_stats)
            .map_err(|source| ServerError::Core {
                core: threads,
                source,
            })?;
        let engine = match engine {
            Engine::Thread(handle) => Some(handle),
            Engine::Inline(engine) => {
                setups[0].inline = Some(*engine);
                None
            }
        };

        let mut cores = Vec::with_capacity(threads);
        for setup in setups {
            let index = usize::from(setup.index);
            let handle = std::thread::Builder::new()
                .name(format!("pushpull-core-{index}"))
                .spawn(move || Core::new(setup, Instant::now())?.run())
                .map_err(|source| ServerError::Core {
                    core: index,
                    source,
                })?;
            cores.push(handle);
        }
        for ((kind, addr), tls) in addrs.iter().zip(&tls) {
            let tls = if tls.is_some() { ", TLS" } else { "" };
            info!("listening on {addr} ({kind}{tls}) with {threads} cores");
        }
        addrs.dedup();
        Ok(Self {
            cores,
            engine,
            peers,
            engine_tx,
            addrs,
            tls,
            shared,
            _locks: locks,
        })
    }

    /// The bound addresses (port 0 resolved), one per configured listener.
    pub fn addrs(&self) -> &[(ListenerKind, SocketAddr)] {
        &self.addrs
    }

    /// The first bound address of a kind.
    pub fn addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.addrs.iter().find(|(k, _)| *k == kind).map(|(_, a)| *a)
    }

    /// Process-wide state (statistics).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Applies a reloaded configuration (SIGHUP, spec/README.md §6): the listeners' TLS files are
    /// read again (a listener whose files fail keeps its certificate), and every core takes the
    /// new settings for what it does from now on; connections stay open. Settings that need a
    /// restart keep their running values. Returns one warning per thing not applied.
    pub fn reload(&mut self, new: Config) -> Vec<String> {
        let (config, kept) = self.shared.config.reloaded(new);
        let mut warnings: Vec<String> = kept
            .into_iter()
            .map(|name| format!("{name} changed: it takes effect after a restart"))
            .collect();
        for (listener, tls) in config.listeners.iter().zip(&self.tls) {
            let (Some(tls), Some(cert), Some(key)) = (tls, &listener.tls_cert, &listener.tls_key)
            else {
                continue;
            };
            match tls.reload(cert, key) {
                Ok(()) => info!("listener {}: TLS certificate reloaded", listener.addr),
                Err(e) => warnings.push(format!(
                    "listener {}: {e}; the previous certificate stays",
                    listener.addr
                )),
            }
        }
        let shared = Arc::new(Shared {
            signer: Signer::new(config.security_key.as_deref(), config.signature_algo),
            config,
            core_stats: self.shared.core_stats.clone(),
            engine_stats: self.shared.engine_stats.clone(),
            started: self.shared.started,
        });
        for peer in &self.peers {
            peer.send(crate::engine::CoreMsg::Reload(shared.clone()));
        }
        self.shared = shared;
        warnings
    }

    /// Stops accepting, closes connections as spec/README.md §5 says and waits for every
    /// thread, at most the configured grace time plus one second.
    pub fn shutdown(mut self) {
        for peer in &self.peers {
            peer.send(crate::engine::CoreMsg::Shutdown);
        }
        let deadline = Instant::now() + self.shared.config.shutdown_grace + Duration::from_secs(1);
        for core in self.cores.drain(..) {
            while !core.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if core.is_finished() {
                if let Ok(Err(e)) = core.join() {
                    log::warn!("core stopped with an error: {e}");
                }
            }
        }
        let _ = self.engine_tx.send(EngineCmd::Shutdown);
        if let Some(engine) = self.engine.take() {
            while !engine.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if engine.is_finished() {
                let _ = engine.join();
            }
        }
    }
}

/// Where the engine runs.
enum Engine {
    /// On its own thread.
    Thread(JoinHandle<()>),
    /// Inside the loop of the only core (embedded engine, one core).
    Inline(Box<LocalEngine>),
}

/// Starts the engine the configuration asks for: the embedded engine of a one-core server runs
/// inside that core's loop (no thread switch per publish or subscribe); any other engine on its
/// own thread.
fn start_engine(
    shared: &Arc<Shared>,
    rx: crossbeam_channel::Receiver<EngineCmd>,
    peers: Vec<CorePeer>,
    stats: Arc<EngineStats>,
    core_stats: &[Arc<CoreStats>],
) -> io::Result<Engine> {
    let config = &shared.config;
    let thread = std::thread::Builder::new().name("pushpull-engine".into());
    let online_window = config.online_ttl + config.online_delta;
    match &config.storage {
        Storage::Redis(redis) => {
            let settings = RedisSettings {
                redis: redis.clone(),
                message_ttl: config.message_ttl,
                channel_history: config.channel_history,
                replay_max: config.replay_max,
                max_conn_per_channel: config.max_conn_per_channel,
                online_window,
                stats_interval: config.stats_interval,
            };
            let engine =
                RedisEngine::new(rx, peers, settings, shared.clone()).map_err(io::Error::other)?;
            thread.spawn(move || engine.run()).map(Engine::Thread)
        }
        Storage::Memory => {
            let settings = LocalSettings {
                message_ttl: config.message_ttl,
                replay_max: config.replay_max,
                // Half the output queue: a page plus what is still unsent stays under the limit.
                replay_max_bytes: config.out_queue_bytes / 2,
                online_window,
                max_conn_per_channel: config.max_conn_per_channel,
                stats_interval: config.stats_interval,
                limits: StoreLimits {
                    channel_history: config.channel_history,
                    max_bytes: config.history_max_bytes,
                },
            };
            let state_file = config.state_file.clone();
            let core_stats = core_stats.to_vec();
            if peers.len() == 1 {
                let engine = LocalEngine::inline(rx, settings, stats, core_stats, state_file);
                return Ok(Engine::Inline(Box::new(engine)));
            }
            let engine = LocalEngine::new(rx, peers, settings, stats, core_stats, state_file);
            thread.spawn(move || engine.run()).map(Engine::Thread)
        }
    }
}
