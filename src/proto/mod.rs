//! Sans-IO wire codecs: bytes in, values or bytes out. No sockets, no clock (`now` is passed in).

pub mod channel;
pub mod chunked;
pub mod http;
pub mod pb;
pub mod request;
pub mod text;
pub mod ws;
