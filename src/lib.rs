//! pushpull: a real-time push server, wire-compatible with the Bitrix24 "Push & Pull" queue server.
#![warn(missing_docs)]

pub mod message;
