//! The path of IPv4 fragments: a first fragment's route recorded, a later fragment following it or
//! held, held fragments released or expired.
//!
//! Invariants (beyond the pipeline's):
//! - a later fragment leaves only by the route a translated first fragment of its datagram
//!   recorded, which came in on the same port; it never creates a flow;
//! - before it is held, a later fragment from the LAN must come from a LAN prefix and one from an
//!   uplink must be addressed to that uplink's address: nothing else takes a hold slot;
//! - a later fragment is translated with its addresses, TTL and IPv4 header checksum only; its
//!   payload (the rest of the transport data, whose checksum the first fragment carries) is not
//!   touched.

use flowpin_nat::{
    Classified, DatagramId, FragmentRewrite, HoldRefused, LaterFragment, MacPair, ParsedFrame,
    classify_frame,
};

use super::Pipeline;
use crate::datapath::counters::DropReason;
use crate::datapath::fragments::FragmentRoute;
use crate::datapath::verdict::{PortId, Verdict};

impl Pipeline<'_> {
    /// After the first fragment `parsed` of a datagram was translated in `frame` to leave by
    /// `egress`: the route its later fragments follow.
    pub(super) fn record_fragment_route(
        &self,
        frame: &[u8],
        parsed: &ParsedFrame,
        ingress: PortId,
        egress: PortId,
    ) {
        let Some(ident) = parsed.first_fragment_ident else {
            return;
        };
        let l3 = usize::from(parsed.l3_offset);
        let address = |at: usize| {
            let o = &frame[l3 + at..l3 + at + 4];
            std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3])
        };
        let mac = |at: usize| {
            let mut m = [0; 6];
            m.copy_from_slice(&frame[at..at + 6]);
            m
        };
        let route = FragmentRoute {
            ingress,
            egress,
            rewrite: FragmentRewrite::new(
                (parsed.key.source, parsed.key.destination),
                (address(12), address(16)),
            ),
            macs: MacPair {
                destination: mac(0),
                source: mac(6),
            },
        };
        let id = DatagramId {
            source: parsed.key.source,
            destination: parsed.key.destination,
            protocol: parsed.key.protocol as u8,
            id: ident,
        };
        self.fragments.borrow_mut().record(id, route, self.now_ms);
    }

    /// A later fragment that came in on `ingress`: translated by its datagram's route, or held.
    pub(super) fn later_fragment(
        &self,
        ingress: PortId,
        frame: &mut [u8],
        view: &LaterFragment,
    ) -> Result<Verdict, DropReason> {
        let id = view.datagram;
        // Several uplinks may share an interface, whose frames are named by the first of them: the
        // uplink a fragment came in by is the one whose address it is addressed to.
        let ingress = match ingress.uplink_slot() {
            None if !self.snapshot.lan.owns(id.source) => return Err(DropReason::SpoofedSource),
            None => ingress,
            Some(_) => {
                let (slot, _) = self
                    .snapshot
                    .uplink_addressed(id.destination)
                    .ok_or(DropReason::UnsolicitedInbound)?;
                PortId::uplink(slot)
            }
        };
        let route = self.fragments.borrow_mut().route(&id, ingress, self.now_ms);
        if let Some(route) = route {
            return self.follow(route, frame, view);
        }
        self.fragments
            .borrow_mut()
            .hold(id, &frame[..view.ip_end()], self.now_ms)
            .map_err(|refused| match refused {
                HoldRefused::Full => DropReason::FragmentHoldFull,
                HoldRefused::TooLong => DropReason::FragmentTooLongToHold,
            })?;
        self.counters.fragments_held.add(1);
        Ok(Verdict::Held)
    }

    /// Translates a later fragment by `route`.
    fn follow(
        &self,
        route: FragmentRoute,
        frame: &mut [u8],
        view: &LaterFragment,
    ) -> Result<Verdict, DropReason> {
        let mtu = match route.egress.uplink_slot() {
            None => self.snapshot.lan.mtu,
            Some(slot) => {
                self.snapshot
                    .uplink(slot)
                    .ok_or(DropReason::UplinkGone)?
                    .mtu
            }
        };
        if view.ip_total_len > mtu {
            return Err(DropReason::WouldFragment);
        }
        route
            .rewrite
            .apply(frame, view, route.macs)
            .map_err(DropReason::Translate)?;
        self.counters.fragments_followed.add(1);
        let bytes = u64::from(view.ip_total_len);
        if let Some(slot) = route.egress.uplink_slot() {
            let c = &self.counters.uplinks[usize::from(slot)];
            c.tx_packets.add(1);
            c.tx_bytes.add(bytes);
        } else if let Some(slot) = route.ingress.uplink_slot() {
            let c = &self.counters.uplinks[usize::from(slot)];
            c.rx_packets.add(1);
            c.rx_bytes.add(bytes);
        }
        Ok(Verdict::Transmit {
            port: route.egress,
            len: view.ip_end(),
        })
    }

    /// Frees the held fragments that timed out, counted as `fragment_expired`. Once per batch.
    pub fn expire_fragments(&self) {
        let expired = self.fragments.borrow_mut().expire(self.now_ms);
        if expired > 0 {
            self.counters.drops[DropReason::FragmentExpired.index()].add(expired as u64);
        }
    }

    /// Sends the fragments held for the datagram whose first fragment was just translated (call it
    /// after every frame; it does nothing when none is due). For each, `emit` gets its bytes and a
    /// `translate` to call on a copy of them in a frame of its own, which returns that frame's
    /// (counted) verdict; an `emit` that has no frame to copy into counts
    /// [`DropReason::FragmentReleaseNoFrame`] instead.
    pub fn release_held_fragments(
        &self,
        mut emit: impl FnMut(&[u8], &mut dyn FnMut(&mut [u8]) -> Verdict),
    ) {
        let Ok(mut fragments) = self.fragments.try_borrow_mut() else {
            return;
        };
        fragments.release(self.now_ms, |held, route| {
            emit(held, &mut |copy: &mut [u8]| {
                let verdict = match classify_frame(copy) {
                    Ok(Classified::LaterFragment(view)) => self
                        .follow(route, copy, &view)
                        .unwrap_or_else(Verdict::Drop),
                    Ok(Classified::Packet(_)) | Err(_) => Verdict::Drop(DropReason::Translate(
                        flowpin_nat::TranslateError::FrameMismatch,
                    )),
                };
                self.count_verdict(verdict);
                verdict
            });
        });
    }
}
