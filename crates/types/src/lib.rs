//! Values that cross a boundary of the jam (typed by a person, read from a
//! settings file, sent over the wire), each parsed in exactly one place so
//! that everything behind the boundary holds a value that is already valid:
//!
//! - [`Code`]: the 4-character pairing code, and the joinerId rule.
//! - [`RendezvousUrl`]: an `http(s)://` rendezvous base URL, with the
//!   protocol's endpoint paths joined onto it.
//! - [`IceServer`]: one STUN/TURN server in MidiEditor's one-per-line
//!   syntax (`scheme:[user[:pass]@]host[:port][?transport=...]`), in and out.
//! - [`Millis`] and [`wall_ms`]: engine time and the wall clock.
//! - [`InProcessRendezvous`]: the host's side of a rendezvous running in the
//!   same process, so the jam engine can use a bundled rendezvous without
//!   depending on the HTTP server crate.
//!
//! Error messages are sentences a person can act on: they are shown as
//! they are, next to the field or in the terminal.
//!
//! This crate depends on no other crate of the workspace.

mod code;
mod ice;
mod in_process;
mod rendezvous_url;
mod time;

pub use code::{is_valid_joiner_id, Code, CodeError, ALPHABET, LAN_ALPHABET};
pub use ice::{redact_entry, IceListError, IceScheme, IceServer, IceTransport, IceUriError};
pub use in_process::{HostError, HostOpened, InProcessRendezvous, PendingOffer};
pub use rendezvous_url::{RendezvousUrl, UrlError};
pub use time::{wall_ms, Millis};
