//! Prometheus metrics (later).
