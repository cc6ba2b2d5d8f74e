//! combiner (later).
