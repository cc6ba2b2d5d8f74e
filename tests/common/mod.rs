//! Shared test harnesses.

pub mod pg;
