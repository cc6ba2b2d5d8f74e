#![allow(dead_code, unreachable_pub, missing_docs)]
//! Shared test harnesses.

pub mod cluster;
pub mod http;
pub mod netns;
pub mod node;
pub mod oracle;
pub mod pg;
pub mod port;
pub mod process;
pub mod requests;
pub mod wan;
