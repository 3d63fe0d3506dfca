//! Why a parsed frame could not be translated by a [`Rewrite`](crate::Rewrite).
//!
//! Invariant: [`TranslateError::ALL`] lists every variant once, in declaration order, and
//! [`TranslateError::name`] gives each a distinct stable snake_case counter name.

/// A translation refused; the frame is left untouched and the datapath counts a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TranslateError {
    /// The frame's tuple is not the one the rewrite was built for.
    #[error("frame tuple does not match the rewrite")]
    KeyMismatch,
    /// The ICMP error quotes a packet that does not belong to the rewrite's flow.
    #[error("ICMP error quotes a packet of another flow")]
    EmbeddedKeyMismatch,
    /// TTL is 0 or 1: forwarding would need TTL 0 (RFC 1812 §5.3.1); the kernel answers Time Exceeded.
    #[error("TTL would reach zero")]
    TtlExceeded,
    /// The frame is shorter than the parse result says (a different buffer was passed).
    #[error("frame does not match its parse result")]
    FrameMismatch,
    /// `Rewrite::apply` was given an ICMP error: use `translate_icmp_error`.
    #[error("ICMP errors need translate_icmp_error")]
    IcmpErrorNeedsEmbeddedTranslation,
    /// `translate_icmp_error` was given something other than an ICMP error.
    #[error("not an ICMP error")]
    NotAnIcmpError,
}

impl TranslateError {
    /// Every variant, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::KeyMismatch,
        Self::EmbeddedKeyMismatch,
        Self::TtlExceeded,
        Self::FrameMismatch,
        Self::IcmpErrorNeedsEmbeddedTranslation,
        Self::NotAnIcmpError,
    ];

    /// A stable snake_case name for counters.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::KeyMismatch => "translate_key_mismatch",
            Self::EmbeddedKeyMismatch => "translate_embedded_key_mismatch",
            Self::TtlExceeded => "ttl_exceeded",
            Self::FrameMismatch => "translate_frame_mismatch",
            Self::IcmpErrorNeedsEmbeddedTranslation => "icmp_error_needs_embedded_translation",
            Self::NotAnIcmpError => "not_an_icmp_error",
        }
    }

    /// The position in [`TranslateError::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_indexes_match() {
        for (i, e) in TranslateError::ALL.into_iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(
                TranslateError::ALL
                    .iter()
                    .filter(|o| o.name() == e.name())
                    .count(),
                1
            );
        }
    }
}
