//! Configuration (placeholder).
#![forbid(unsafe_code)]
