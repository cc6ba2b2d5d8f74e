//! Configuration (later).
