//! `pushpull-loadgen`: a load generator for pushpull and other Bitrix-compatible push servers.
//!
//! It opens many WebSocket or long-poll subscribers over a set of channels, publishes numbered
//! messages over keep-alive HTTP connections, and checks that every subscriber received every
//! accepted message of its channel exactly once, measuring publish → receive latency on the way.
//!
//! Pure protocol code ([`nms`], [`pb`], [`ws`], [`http`], [`tally`], [`rate`], [`series`],
//! [`plot`], parts of [`procstat`] and [`config`]) is separate from the threads that do the IO
//! ([`subscriber`], [`publisher`], [`run`]).
#![warn(missing_docs)]

pub mod config;
pub mod deliver;
pub mod http;
pub mod net;
pub mod nms;
pub mod pb;
pub mod plot;
pub mod procstat;
pub mod publisher;
pub mod rate;
pub mod report;
pub mod run;
pub mod series;
pub mod shared;
pub mod subscriber;
pub mod tally;
pub mod ws;
