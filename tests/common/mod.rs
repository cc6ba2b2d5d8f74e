#![allow(dead_code, unreachable_pub, missing_docs)]
//! Shared test harnesses.

pub mod node;
pub mod oracle;
pub mod pg;
pub mod process;
