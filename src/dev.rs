//! `dvsigner dev` (later).
