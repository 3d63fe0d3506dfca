//! The compiled XDP object, embedded with the alignment an ELF parser expects.

/// Wrapper that raises the alignment of the embedded bytes: ELF headers hold 8-byte fields, and
/// aya's parser reads them in place.
#[repr(C, align(8))]
struct Aligned<Bytes: ?Sized> {
    bytes: Bytes,
}

static OBJECT: &Aligned<[u8]> = &Aligned {
    bytes: *include_bytes!(concat!(env!("OUT_DIR"), "/flowpin_xdp.o")),
};

/// The BPF ELF object holding [`crate::PROGRAM_NAME`] and its maps; 8-byte aligned.
pub fn program_object() -> &'static [u8] {
    &OBJECT.bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_is_an_aligned_bpf_elf() {
        let object = program_object();
        assert_eq!(object.as_ptr() as usize % 8, 0, "object not 8-byte aligned");
        assert_eq!(&object[..4], b"\x7fELF", "not an ELF file");
        assert_eq!(object[4], 2, "not ELF64");
        // e_machine at offset 18, little endian on the targets we build for: EM_BPF = 247.
        assert_eq!(
            u16::from_le_bytes([object[18], object[19]]),
            247,
            "not a BPF object"
        );
    }

    #[test]
    fn object_names_the_program_and_its_maps() {
        let object = program_object();
        for name in [
            crate::PROGRAM_NAME,
            crate::MAP_IFACES,
            crate::MAP_LOCAL_ADDRS,
            crate::MAP_XSKS,
            crate::MAP_COUNTERS,
            crate::MAP_ADMISSION,
            crate::MAP_BUCKETS,
            crate::MAP_HOST_BUCKETS,
            crate::MAP_LAN_PREFIXES,
        ] {
            assert!(
                object
                    .windows(name.len())
                    .any(|window| window == name.as_bytes()),
                "{name} missing from the object"
            );
        }
    }
}
