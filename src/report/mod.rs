//! Campaign reports (`tayori report`): what one campaign's messages did, counted
//! from the results stream — outcomes and reactions per channel, rates, time to
//! the first reaction, the links people followed and the hours they reacted in.
//!
//! `stream` pages through `{prefix}:results` with `XRANGE`, `summary` counts in one
//! pass, and `table` and `html` print what `--json` would.

pub mod html;
pub mod line_stats;
pub mod stream;
pub mod summary;
pub mod table;

pub use stream::{ReadError, Reader};
pub use summary::{Report, Summary};
