//! Requests to the kernel's routing netlink (rtnetlink): one `NETLINK_ROUTE` socket, a request out, its
//! replies in.
//!
//! Invariants:
//! - replies are matched to their request by sequence number; anything else on the socket is ignored;
//! - a dump is complete only at `NLMSG_DONE`; a dump the kernel marks `NLM_F_DUMP_INTR` (the table
//!   changed while it was walked, so entries may be missing or doubled) is read again, up to
//!   [`DUMP_ATTEMPTS`] times;
//! - an error reply (`NLMSG_ERROR`, or `NLMSG_DONE` carrying one) becomes an error that names the
//!   request and the errno;
//! - a change (a new or deleted route or rule) asks for the kernel's acknowledgement (`NLM_F_ACK`) and
//!   is done only when it arrives.

use anyhow::{Context, Result, bail};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

/// How often a dump interrupted by concurrent table changes is read again before giving up.
const DUMP_ATTEMPTS: usize = 3;

/// Receive buffer: larger than any datagram the kernel builds for a dump (it caps them at 32 KiB) or
/// for one link without VF details (which we never ask for).
const RECEIVE_BUFFER: usize = 64 * 1024;

/// An rtnetlink socket for requests (it joins no multicast group).
pub(crate) struct RouteSocket {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for RouteSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSocket")
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// What one received datagram meant for the request being answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More datagrams follow.
    More,
    /// The answer is complete.
    Done,
}

/// The answer to one request, gathered datagram by datagram.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// The replies, in the kernel's order.
    pub messages: Vec<RouteNetlinkMessage>,
    /// The kernel flagged the dump as inconsistent (`NLM_F_DUMP_INTR`).
    pub interrupted: bool,
}

impl RouteSocket {
    /// Opens an rtnetlink socket in the current network namespace.
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
        socket.bind_auto().context("binding an rtnetlink socket")?;
        Ok(RouteSocket {
            socket,
            sequence: 0,
            buffer: vec![0; RECEIVE_BUFFER],
        })
    }

    /// Sends `request` (a single get, e.g. one link by name) and returns its one reply. `what` names
    /// the request in errors.
    pub fn get(&mut self, what: &str, request: RouteNetlinkMessage) -> Result<RouteNetlinkMessage> {
        let answer = self.exchange(what, request, NLM_F_REQUEST, false)?;
        answer
            .messages
            .into_iter()
            .next()
            .with_context(|| format!("rtnetlink {what}: the kernel sent no reply"))
    }

    /// Sends the dump `request` and returns every entry, read again if the kernel reports the dump as
    /// interrupted. `what` names the request in errors.
    pub fn dump(
        &mut self,
        what: &str,
        request: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_ATTEMPTS {
            let answer = self.exchange(what, request.clone(), NLM_F_REQUEST | NLM_F_DUMP, true)?;
            if !answer.interrupted {
                return Ok(answer.messages);
            }
        }
        bail!(
            "rtnetlink {what}: the table kept changing during the dump ({DUMP_ATTEMPTS} attempts interrupted)"
        )
    }

    /// Sends the change `request` (`RTM_NEWROUTE`, `RTM_DELROUTE`, `RTM_NEWRULE`, `RTM_DELRULE`) with
    /// `flags` (e.g. `NLM_F_CREATE | NLM_F_REPLACE`) and waits for the kernel's acknowledgement. `what`
    /// names the request in errors.
    pub fn change(&mut self, what: &str, request: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.exchange(what, request, change_flags(flags), false)
            .map(drop)
    }

    /// Sends `request` with `flags` and gathers its answer: a dump's entries up to `NLMSG_DONE` when
    /// `dumping` (a change's `NLM_F_REPLACE` and `NLM_F_EXCL` reuse `NLM_F_DUMP`'s bits: flags cannot tell).
    fn exchange(
        &mut self,
        what: &str,
        request: RouteNetlinkMessage,
        flags: u16,
        dumping: bool,
    ) -> Result<Answer> {
        self.sequence = self.sequence.wrapping_add(1);
        let bytes = encode_request(request, flags, self.sequence);
        self.socket
            .send(&bytes, 0)
            .with_context(|| format!("rtnetlink {what}: sending the request"))?;
        let mut answer = Answer::default();
        loop {
            let received = match self.socket.recv(&mut &mut self.buffer[..], libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("rtnetlink {what}: receiving the reply"));
                }
            };
            if received > self.buffer.len() {
                bail!(
                    "rtnetlink {what}: a {received}-byte reply does not fit the {}-byte buffer",
                    self.buffer.len()
                );
            }
            let progress = absorb(
                &self.buffer[..received],
                self.sequence,
                dumping,
                &mut answer,
            )
            .with_context(|| format!("rtnetlink {what}"))?;
            if progress == Progress::Done {
                return Ok(answer);
            }
        }
    }
}

/// The header flags of a change request: `flags` plus `NLM_F_REQUEST | NLM_F_ACK`.
pub(crate) fn change_flags(flags: u16) -> u16 {
    NLM_F_REQUEST | NLM_F_ACK | flags
}

/// The bytes of `request` with `flags` and `sequence`.
pub(crate) fn encode_request(request: RouteNetlinkMessage, flags: u16, sequence: u32) -> Vec<u8> {
    encode(NetlinkPayload::InnerMessage(request), flags, sequence)
}

/// The bytes of one netlink message carrying `payload`, with `flags` and `sequence`.
pub(crate) fn encode(
    payload: NetlinkPayload<RouteNetlinkMessage>,
    flags: u16,
    sequence: u32,
) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(header, payload);
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// The netlink messages in one datagram, in order. A message that does not decode is an error naming
/// where it sits in the datagram.
pub(crate) fn messages(
    datagram: &[u8],
) -> impl Iterator<Item = Result<NetlinkMessage<RouteNetlinkMessage>>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset >= datagram.len() {
            return None;
        }
        let rest = &datagram[offset..];
        let length = match NetlinkBuffer::new_checked(rest) {
            Ok(buffer) => buffer.length() as usize,
            Err(e) => {
                let at = offset;
                offset = datagram.len();
                return Some(Err(anyhow::anyhow!(
                    "truncated netlink message at byte {at}: {e}"
                )));
            }
        };
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..length])
            .with_context(|| format!("undecodable netlink message at byte {offset}"));
        // Messages are aligned to 4 bytes (NLMSG_ALIGN).
        offset += length.next_multiple_of(4).max(4);
        Some(message)
    })
}

/// Adds what `datagram` holds for request `sequence` to `answer`; says whether the answer is complete.
/// A single get is complete with its first reply, a dump at `NLMSG_DONE`.
pub(crate) fn absorb(
    datagram: &[u8],
    sequence: u32,
    dumping: bool,
    answer: &mut Answer,
) -> Result<Progress> {
    for message in messages(datagram) {
        let message = message?;
        if message.header.sequence_number != sequence {
            continue;
        }
        if message.header.flags & NLM_F_DUMP_INTR != 0 {
            answer.interrupted = true;
        }
        match message.payload {
            NetlinkPayload::InnerMessage(inner) => {
                answer.messages.push(inner);
                if !dumping {
                    return Ok(Progress::Done);
                }
            }
            NetlinkPayload::Error(error) => match error.code {
                None => return Ok(Progress::Done),
                Some(_) => return Err(error.to_io()).context("the kernel refused the request"),
            },
            NetlinkPayload::Done(done) => {
                if done.code != 0 {
                    return Err(std::io::Error::from_raw_os_error(done.code.abs()))
                        .context("the kernel ended the dump with an error");
                }
                return Ok(Progress::Done);
            }
            NetlinkPayload::Overrun(_) => bail!("the kernel reported an overrun"),
            // NLMSG_NOOP, and whatever a later netlink-packet-core adds: nothing that answers us.
            _ => {}
        }
    }
    Ok(Progress::More)
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{ErrorMessage, NLM_F_CREATE, NLM_F_EXCL};

    use super::*;

    #[test]
    fn a_change_asks_for_the_kernels_acknowledgement() {
        assert_eq!(
            change_flags(NLM_F_CREATE | NLM_F_EXCL),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        );
    }

    #[test]
    fn a_change_is_done_at_its_acknowledgement_and_only_its_own() {
        let mut ack = ErrorMessage::default();
        // The kernel echoes the request's header; its content does not matter to us.
        ack.header = vec![0; 16];
        let other = encode(NetlinkPayload::Error(ack.clone()), 0, 8);
        let own = encode(NetlinkPayload::Error(ack), 0, 9);
        let mut answer = Answer::default();
        assert_eq!(
            absorb(&other, 9, false, &mut answer).unwrap(),
            Progress::More
        );
        assert_eq!(absorb(&own, 9, false, &mut answer).unwrap(), Progress::Done);
        assert!(answer.messages.is_empty());
    }
}
