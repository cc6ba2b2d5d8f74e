//! Threshold BLS (INTERFACE STUB: the threshold helper replaces this).
