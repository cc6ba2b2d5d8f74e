#![allow(dead_code, unreachable_pub, missing_docs)]
//! Shared test harnesses.
// Each integration test is its own crate and uses `common` as a private module, so `pub`
// items here are "unreachable" to rustc's lint while being the harness's interface.
#![allow(unreachable_pub)]

pub mod node;
pub mod oracle;
pub mod pg;
pub mod process;
