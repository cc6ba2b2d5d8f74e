//! cluster (later).
