//! pushpull: a real-time push server, wire-compatible with the Bitrix24 "Push & Pull" queue
//! server. See README.md for the architecture and spec/ for the wire protocol.
#![warn(missing_docs)]

pub mod config;
pub mod conn;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod message;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod reactor;
pub mod server;
