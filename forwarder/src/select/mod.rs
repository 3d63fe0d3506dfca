//! Policy and uplink selection (placeholder).
#![forbid(unsafe_code)]
