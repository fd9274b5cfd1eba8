//! villagehub: a real-time community-governance server. Every village or
//! neighbourhood committee is one group chat; every change is an event in
//! exactly one log; events fan out over WebSocket.
//!
//! The path of a message: `session` (one task per connection: framing,
//! auth, rate limit) → `hub` (who may do what, validation) → `log` (the
//! writer thread: seq, SQLite commit, then `fanout`) → every subscriber's
//! outbox → back in `session`, written to the socket.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod broadcast;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod directory;
pub mod external;
pub mod fanout;
pub mod gov_api;
pub mod governance;
pub mod http;
pub mod hub;
pub mod images;
pub mod limiter;
pub mod live;
pub mod lock;
pub mod log;
pub mod membership;
pub mod moderation;
pub mod presence;
pub mod seed;
pub mod server;
pub mod session;
pub mod stats;
pub mod store;
pub mod warnings;
pub mod wire;
