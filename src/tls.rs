//! rustls configuration (INTERFACE STUB: the TLS helper replaces this).
