//! What an acquire or a release can answer besides a port.

/// Why no port was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AllocError {
    /// Every candidate port of the endpoint is owned or quarantined.
    #[error("no external port left for this endpoint")]
    Exhausted,
    /// The internal host already holds its quota of mappings (RFC 6888 REQ-4).
    #[error("internal host reached its port quota")]
    QuotaExceeded,
    /// The quota table has no room for another internal address.
    #[error("too many internal hosts for the quota table")]
    HostTableFull,
    /// The endpoint's mapping already carries [`MAX_REFERENCES`](super::MAX_REFERENCES) flows.
    #[error("mapping reference count at its maximum")]
    ReferencesExhausted,
    /// The pool is under pressure and the host already holds its fair share of it.
    #[error("internal host holds its fair share of a pool under pressure")]
    FairShareExceeded,
}

impl AllocError {
    /// Every variant, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Exhausted,
        Self::QuotaExceeded,
        Self::HostTableFull,
        Self::ReferencesExhausted,
        Self::FairShareExceeded,
    ];

    /// A stable snake_case counter name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Exhausted => "nat_ports_exhausted",
            Self::QuotaExceeded => "nat_host_quota_exceeded",
            Self::HostTableFull => "nat_host_table_full",
            Self::ReferencesExhausted => "nat_mapping_references_exhausted",
            Self::FairShareExceeded => "nat_host_over_fair_share",
        }
    }
}

impl AllocError {
    /// Whether the refusal is about the host's share (fair share under pressure, or the hard quota)
    /// rather than the pool: another pool may still serve the host.
    #[must_use]
    pub const fn is_share_refusal(self) -> bool {
        matches!(self, Self::QuotaExceeded | Self::FairShareExceeded)
    }
}

/// Why a release was refused (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The port is not owned by that internal endpoint.
    #[error("port not owned by that endpoint")]
    NotOwner,
}

/// What a successful release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Other flows still use the mapping; this many references remain.
    StillMapped(u32),
    /// That was the last reference: the port is quarantined.
    Quarantined,
    /// That was the last reference and no quarantine applies: the port is free at once.
    Freed,
}
