//! XDP program loading and map management (placeholder).
#![forbid(unsafe_code)]
