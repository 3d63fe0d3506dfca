//! Typed views over packet bytes, in the style of smoltcp's `wire` module.
//!
//! Every view wraps a byte buffer `T: AsRef<[u8]>` (mutable setters need `T: AsMut<[u8]>`) and reads or
//! writes fields at fixed big-endian offsets — no struct is ever cast over the bytes, so alignment never
//! matters.
//!
//! The contract of the constructors:
//! - `new_unchecked(buffer)` wraps without looking; getters may then panic on a short buffer. Use it only on
//!   bytes that already went through `new_checked`.
//! - `new_checked(buffer)` validates everything the view's getters and setters rely on (length, version,
//!   header length fields, lengths declared inside the header against the buffer) and returns a typed
//!   [`ParseError`](crate::ParseError) naming the first malformation found. After `Ok`, no getter or setter
//!   of that view panics. Checksums are *not* verified by `new_checked` (that is a separate, explicit
//!   `verify_*` call), because a NAT must carry an invalid transport checksum through unchanged.

pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

/// Reads a big-endian `u16` at `offset`. Panics if out of range (views check lengths first).
#[must_use]
pub(crate) fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_be_bytes([bytes[offset], bytes[offset + 1]])
}

/// Reads a big-endian `u32` at `offset`. Panics if out of range (views check lengths first).
#[must_use]
pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes([
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ])
}

/// Writes a big-endian `u16` at `offset`.
pub(crate) fn write_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` at `offset`.
pub(crate) fn write_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
}
