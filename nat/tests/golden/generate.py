#!/usr/bin/env python3
"""Generates the golden packet table nat/tests/golden/cases.tsv with scapy (an independent oracle).

Run from anywhere:  python3 nat/tests/golden/generate.py
The output is committed, so the Rust test (nat/tests/golden.rs) needs no scapy.

Columns (tab-separated; lines starting with '#' are comments):
  name      unique case name
  op        parse   -> expected is drop:<ParseError::name()>
            rewrite -> Rewrite::new(parsed.key, to).apply(frame, MACS)
            icmp    -> translate_icmp_error(frame, Rewrite::new(embedded.reversed(), to), MACS)
            mss     -> clamp_mss(frame, parsed, to): the MSS option lowered to the limit `to`
  to        the tuple packets must leave with: proto,src,dst,sport,dport ('-' for parse; the MSS limit
            for mss)
  input     the input frame, hex
  expected  the output frame, hex, or drop:<reason name>

Expected frames are built by scapy from the translated field values, with scapy computing every
checksum from scratch; nothing here applies an incremental update.
"""
import os
import struct

from scapy.all import (ARP, ICMP, IP, UDP, TCP, Dot1Q, Ether, IPOption_EOL, IPOption_NOP, IPv6, Raw,
                       checksum, fragment, raw)

OUT_SRC_MAC = "02:aa:aa:aa:aa:aa"   # MACS.source in the Rust test
OUT_DST_MAC = "02:bb:bb:bb:bb:bb"   # MACS.destination
IN_SRC_MAC = "02:00:00:00:00:01"
IN_DST_MAC = "02:00:00:00:00:02"

LAN = "192.168.1.10"
LAN2 = "192.168.1.20"
REMOTE = "198.51.100.7"
EXT = "203.0.113.2"
HOP = "203.0.113.254"

cases = []


def eth_in(vlan=None):
    e = Ether(src=IN_SRC_MAC, dst=IN_DST_MAC)
    return e / Dot1Q(vlan=vlan) if vlan is not None else e


def eth_out(vlan=None):
    e = Ether(src=OUT_SRC_MAC, dst=OUT_DST_MAC)
    return e / Dot1Q(vlan=vlan) if vlan is not None else e


def tup(proto, src, dst, sport, dport):
    return f"{proto},{src},{dst},{sport},{dport}"


def add(name, op, to, inp, expected):
    inp = raw(inp) if not isinstance(inp, bytes) else inp
    if isinstance(expected, str):
        exp = expected
    else:
        exp = (raw(expected) if not isinstance(expected, bytes) else expected).hex()
    cases.append((name, op, to, inp.hex(), exp))


def l4(proto, sport, dport, payload=b"flowpin", **kw):
    if proto == "udp":
        return UDP(sport=sport, dport=dport, **kw) / Raw(payload)
    if proto == "tcp":
        return TCP(sport=sport, dport=dport, seq=1000, ack=2000, flags="PA", window=512, **kw) / Raw(payload)
    return ICMP(type=8, id=sport, seq=7, **kw) / Raw(payload)


def ones_sub(a, b):
    """a - b in one's complement 16-bit arithmetic."""
    s = a + (~b & 0xFFFF)
    s = (s & 0xFFFF) + (s >> 16)
    return s & 0xFFFF


def with_checksum_error(frame, l4_csum_offset, error):
    """Adds `error` (one's complement) to a checksum field of a built frame."""
    b = bytearray(frame)
    old = struct.unpack("!H", b[l4_csum_offset:l4_csum_offset + 2])[0]
    new = (~(((~old & 0xFFFF) + error) % 0xFFFF) & 0xFFFF)
    b[l4_csum_offset:l4_csum_offset + 2] = struct.pack("!H", new)
    return bytes(b)


# --- Rewrites: SNAT (LAN -> uplink) -----------------------------------------------------------------
for proto in ("udp", "tcp", "icmp"):
    ext_port = 61001
    inp = eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=1) / l4(proto, 5000, 53 if proto != "icmp" else 5000)
    if proto == "icmp":
        exp = eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=1) / l4(proto, ext_port, ext_port)
        to = tup(proto, EXT, REMOTE, ext_port, ext_port)
    else:
        exp = eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=1) / l4(proto, ext_port, 53)
        to = tup(proto, EXT, REMOTE, ext_port, 53)
    add(f"snat_{proto}", "rewrite", to, inp, exp)

# TCP SYN with options.
inp = eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=2) / TCP(sport=40000, dport=443, flags="S", seq=7,
                                                            options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)])
exp = eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=2) / TCP(sport=40000, dport=443, flags="S", seq=7,
                                                             options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)])
add("snat_tcp_syn_port_preserved", "rewrite", tup("tcp", EXT, REMOTE, 40000, 443), inp, exp)

# IP options, a VLAN tag, an Ethernet trailer.
opts = [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()]
inp = eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=3, options=opts) / l4("udp", 5000, 53)
exp = eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=3, options=opts) / l4("udp", 61002, 53)
add("snat_udp_ip_options", "rewrite", tup("udp", EXT, REMOTE, 61002, 53), inp, exp)

inp = eth_in(vlan=42) / IP(src=LAN, dst=REMOTE, ttl=64, id=4) / l4("tcp", 5000, 80)
exp = eth_out(vlan=42) / IP(src=EXT, dst=REMOTE, ttl=63, id=4) / l4("tcp", 61003, 80)
add("snat_tcp_vlan", "rewrite", tup("tcp", EXT, REMOTE, 61003, 80), inp, exp)

trailer = b"\xee" * 12
inp = raw(eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=5) / l4("udp", 5000, 53, b"x")) + trailer
exp = raw(eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=5) / l4("udp", 61004, 53, b"x")) + trailer
add("snat_udp_trailer_untouched", "rewrite", tup("udp", EXT, REMOTE, 61004, 53), inp, exp)

# UDP checksum 0 stays 0.
inp = eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=6) / UDP(sport=5000, dport=53, chksum=0) / Raw(b"nochecksum")
exp = eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=6) / UDP(sport=61005, dport=53, chksum=0) / Raw(b"nochecksum")
add("snat_udp_zero_checksum_stays_zero", "rewrite", tup("udp", EXT, REMOTE, 61005, 53), inp, exp)

# A translated UDP checksum that computes to 0 goes out as 0xFFFF: search a 2-byte payload for it.
for filler in range(0x10000):
    payload = struct.pack("!H", filler)
    probe = IP(src=EXT, dst=REMOTE, ttl=63, id=7) / UDP(sport=61006, dport=53, chksum=0) / Raw(payload)
    pseudo = raw(probe)[12:20] + struct.pack("!BBH", 0, 17, 10)
    if checksum(pseudo + raw(probe)[20:]) == 0:
        break
inp = eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=7) / UDP(sport=5000, dport=53) / Raw(payload)
exp = eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=7) / UDP(sport=61006, dport=53) / Raw(payload)
assert raw(exp)[14 + 20 + 6:14 + 20 + 8] == b"\xff\xff", "scapy should send 0xFFFF"
add("snat_udp_computed_zero_goes_out_as_ffff", "rewrite", tup("udp", EXT, REMOTE, 61006, 53), inp, exp)

# The first fragment of a UDP datagram: its checksum covers the whole datagram; scapy computes it
# over the translated whole datagram before cutting it, so the incremental update must match it.
for n, (sport, ext_port) in enumerate([(5000, 61007), (5001, 61008)]):
    body = bytes(range(256)) * 6
    whole_in = IP(src=LAN, dst=REMOTE, ttl=64, id=300 + n) / UDP(sport=sport, dport=53) / Raw(body[:1400 + n * 600])
    whole_out = IP(src=EXT, dst=REMOTE, ttl=63, id=300 + n) / UDP(sport=ext_port, dport=53) / Raw(body[:1400 + n * 600])
    inp = eth_in() / fragment(whole_in, fragsize=480 + n * 8)[0]
    exp = eth_out() / fragment(whole_out, fragsize=480 + n * 8)[0]
    add(f"snat_udp_first_fragment_{n}", "rewrite", tup("udp", EXT, REMOTE, ext_port, 53), inp, exp)

# Invalid incoming L4 checksums stay invalid by exactly the same error.
for proto, off in (("udp", 14 + 20 + 6), ("tcp", 14 + 20 + 16), ("icmp", 14 + 20 + 2)):
    ports = (5000, 5000) if proto == "icmp" else (5000, 53)
    ext = (61007, 61007) if proto == "icmp" else (61007, 53)
    inp = with_checksum_error(raw(eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=8) / l4(proto, *ports)), off, 0x0101)
    exp = with_checksum_error(raw(eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=8) / l4(proto, *ext)), off, 0x0101)
    add(f"snat_{proto}_invalid_checksum_stays_invalid", "rewrite", tup(proto, EXT, REMOTE, *ext), inp, exp)

# TTL 1 is not forwarded.
inp = eth_in() / IP(src=LAN, dst=REMOTE, ttl=1, id=9) / l4("udp", 5000, 53)
add("snat_ttl_1_dropped", "rewrite", tup("udp", EXT, REMOTE, 61008, 53), inp, "drop:ttl_exceeded")

# --- Rewrites: reverse NAT (uplink -> LAN) -------------------------------------------------------------
for proto in ("udp", "tcp"):
    inp = eth_in() / IP(src=REMOTE, dst=EXT, ttl=50, id=10) / l4(proto, 53, 61001)
    exp = eth_out() / IP(src=REMOTE, dst=LAN, ttl=49, id=10) / l4(proto, 53, 5000)
    add(f"reverse_{proto}", "rewrite", tup(proto, REMOTE, LAN, 53, 5000), inp, exp)
inp = eth_in() / IP(src=REMOTE, dst=EXT, ttl=50, id=11) / ICMP(type=0, id=61001, seq=7) / Raw(b"pong")
exp = eth_out() / IP(src=REMOTE, dst=LAN, ttl=49, id=11) / ICMP(type=0, id=5000, seq=7) / Raw(b"pong")
add("reverse_icmp_echo_reply", "rewrite", tup("icmp", REMOTE, LAN, 5000, 5000), inp, exp)

# --- Hairpinning: LAN host -> another LAN host's external mapping --------------------------------------
for proto in ("udp", "tcp"):
    inp = eth_in() / IP(src=LAN, dst=EXT, ttl=64, id=12) / l4(proto, 5000, 62000)
    exp = eth_out() / IP(src=EXT, dst=LAN2, ttl=63, id=12) / l4(proto, 61001, 7000)
    add(f"hairpin_{proto}", "rewrite", tup(proto, EXT, LAN2, 61001, 7000), inp, exp)


# --- ICMP errors ------------------------------------------------------------------------------------
def quoted_l4(proto, sport, dport):
    return l4(proto, sport, dport, b"data-of-the-offending-packet")


for proto in ("udp", "tcp", "icmp"):
    lan_ports = (5000, 5000) if proto == "icmp" else (5000, 53)
    ext_ports = (61001, 61001) if proto == "icmp" else (61001, 53)
    # The packet as the NAT sent it on the uplink (TTL already 63), and as the host sent it.
    on_wire = IP(src=EXT, dst=REMOTE, ttl=63, id=13) / quoted_l4(proto, *ext_ports)
    original = IP(src=LAN, dst=REMOTE, ttl=63, id=13) / quoted_l4(proto, *lan_ports)
    for kind, (t, c, extra) in {"time_exceeded": (11, 0, {}), "frag_needed": (3, 4, {"nexthopmtu": 1400})}.items():
        inp = eth_in() / IP(src=HOP, dst=EXT, ttl=60, id=14) / ICMP(type=t, code=c, **extra) / Raw(raw(on_wire))
        exp = eth_out() / IP(src=HOP, dst=LAN, ttl=59, id=14) / ICMP(type=t, code=c, **extra) / Raw(raw(original))
        add(f"icmp_{kind}_inbound_{proto}", "icmp", tup(proto, REMOTE, LAN, lan_ports[1], lan_ports[0]) if proto != "icmp"
            else tup(proto, REMOTE, LAN, 5000, 5000), inp, exp)
    # Quote truncated to IP header + 8 bytes (RFC 792 minimum).
    inp = eth_in() / IP(src=HOP, dst=EXT, ttl=60, id=15) / ICMP(type=11, code=0) / Raw(raw(on_wire)[:28])
    exp = eth_out() / IP(src=HOP, dst=LAN, ttl=59, id=15) / ICMP(type=11, code=0) / Raw(raw(original)[:28])
    add(f"icmp_time_exceeded_inbound_{proto}_minimal_quote", "icmp",
        tup(proto, REMOTE, LAN, lan_ports[1], lan_ports[0]), inp, exp)

# Outbound: the LAN host answers an inbound UDP datagram with port unreachable.
inbound_seen = IP(src=REMOTE, dst=LAN, ttl=49, id=16) / quoted_l4("udp", 53, 5000)
inbound_wire = IP(src=REMOTE, dst=EXT, ttl=49, id=16) / quoted_l4("udp", 53, 61001)
inp = eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=17) / ICMP(type=3, code=3) / Raw(raw(inbound_seen))
exp = eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=17) / ICMP(type=3, code=3) / Raw(raw(inbound_wire))
add("icmp_port_unreachable_outbound_udp", "icmp", tup("udp", EXT, REMOTE, 61001, 53), inp, exp)

# Hairpin: LAN2 answers a hairpinned datagram (from EXT:61001) with port unreachable; LAN must see it
# from EXT quoting the packet as LAN sent it towards LAN2's mapping EXT:62000.
seen_by_lan2 = IP(src=EXT, dst=LAN2, ttl=63, id=18) / quoted_l4("udp", 61001, 7000)
as_lan_sent = IP(src=LAN, dst=EXT, ttl=63, id=18) / quoted_l4("udp", 5000, 62000)
inp = eth_in() / IP(src=LAN2, dst=EXT, ttl=64, id=19) / ICMP(type=3, code=3) / Raw(raw(seen_by_lan2))
exp = eth_out() / IP(src=EXT, dst=LAN, ttl=63, id=19) / ICMP(type=3, code=3) / Raw(raw(as_lan_sent))
add("icmp_port_unreachable_hairpin_udp", "icmp", tup("udp", EXT, LAN, 62000, 5000), inp, exp)

# Outbound errors about TCP and about an ICMP echo reply (RFC 5508 REQ-4: the embedded echo id too).
for proto, lan_ports, ext_ports, t, c in (("tcp", (53, 5000), (53, 61001), 3, 4), ("icmp", (5000, 5000), (61001, 61001), 3, 3)):
    if proto == "icmp":
        seen = IP(src=REMOTE, dst=LAN, ttl=49, id=20) / ICMP(type=0, id=5000, seq=7) / Raw(b"data-of-the-echo-reply")
        wire = IP(src=REMOTE, dst=EXT, ttl=49, id=20) / ICMP(type=0, id=61001, seq=7) / Raw(b"data-of-the-echo-reply")
        to = tup("icmp", EXT, REMOTE, 61001, 61001)
    else:
        seen = IP(src=REMOTE, dst=LAN, ttl=49, id=20) / quoted_l4(proto, *lan_ports)
        wire = IP(src=REMOTE, dst=EXT, ttl=49, id=20) / quoted_l4(proto, *ext_ports)
        to = tup(proto, EXT, REMOTE, 61001, 53)
    extra = {"nexthopmtu": 1400} if c == 4 else {}
    inp = eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=21) / ICMP(type=t, code=c, **extra) / Raw(raw(seen))
    exp = eth_out() / IP(src=EXT, dst=REMOTE, ttl=63, id=21) / ICMP(type=t, code=c, **extra) / Raw(raw(wire))
    add(f"icmp_error_outbound_{proto}", "icmp", to, inp, exp)

# Inbound error whose quoted header carries IP options, under a VLAN tag.
on_wire = IP(src=EXT, dst=REMOTE, ttl=63, id=22, options=opts) / quoted_l4("udp", 61001, 53)
original = IP(src=LAN, dst=REMOTE, ttl=63, id=22, options=opts) / quoted_l4("udp", 5000, 53)
inp = eth_in(vlan=7) / IP(src=HOP, dst=EXT, ttl=60, id=23) / ICMP(type=11, code=0) / Raw(raw(on_wire))
exp = eth_out(vlan=7) / IP(src=HOP, dst=LAN, ttl=59, id=23) / ICMP(type=11, code=0) / Raw(raw(original))
add("icmp_time_exceeded_inbound_udp_quote_with_options_vlan", "icmp", tup("udp", REMOTE, LAN, 53, 5000), inp, exp)

# Reverse NAT with IP options and a VLAN tag; reverse UDP checksum 0 stays 0; invalid stays invalid.
inp = eth_in(vlan=42) / IP(src=REMOTE, dst=EXT, ttl=50, id=24, options=opts) / l4("udp", 53, 61001)
exp = eth_out(vlan=42) / IP(src=REMOTE, dst=LAN, ttl=49, id=24, options=opts) / l4("udp", 53, 5000)
add("reverse_udp_ip_options_vlan", "rewrite", tup("udp", REMOTE, LAN, 53, 5000), inp, exp)
inp = eth_in() / IP(src=REMOTE, dst=EXT, ttl=50, id=25) / UDP(sport=53, dport=61001, chksum=0) / Raw(b"nochecksum")
exp = eth_out() / IP(src=REMOTE, dst=LAN, ttl=49, id=25) / UDP(sport=53, dport=5000, chksum=0) / Raw(b"nochecksum")
add("reverse_udp_zero_checksum_stays_zero", "rewrite", tup("udp", REMOTE, LAN, 53, 5000), inp, exp)
inp = with_checksum_error(raw(eth_in() / IP(src=REMOTE, dst=EXT, ttl=50, id=26) / l4("tcp", 443, 61001)), 14 + 20 + 16, 0x0202)
exp = with_checksum_error(raw(eth_out() / IP(src=REMOTE, dst=LAN, ttl=49, id=26) / l4("tcp", 443, 40000)), 14 + 20 + 16, 0x0202)
add("reverse_tcp_invalid_checksum_stays_invalid", "rewrite", tup("tcp", REMOTE, LAN, 443, 40000), inp, exp)

# Hairpinned ICMP echo is not a thing (an echo request to a NAT address is for the router), but a
# hairpinned TCP segment with a trailer keeps the trailer.
inp = raw(eth_in() / IP(src=LAN, dst=EXT, ttl=64, id=27) / l4("tcp", 5000, 62000, b"x")) + trailer
exp = raw(eth_out() / IP(src=EXT, dst=LAN2, ttl=63, id=27) / l4("tcp", 61001, 7000, b"x")) + trailer
add("hairpin_tcp_trailer_untouched", "rewrite", tup("tcp", EXT, LAN2, 61001, 7000), inp, exp)

# --- Malformations: one per ParseError -------------------------------------------------------------
good = raw(eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=20) / UDP(sport=5000, dport=53) / Raw(b"abcd"))


def edit_ip(frame, fix_checksum=True, **fields):
    """Re-encodes the IP header with fields overridden (raw offsets), optionally fixing the checksum."""
    b = bytearray(frame)
    for off, value, size in fields.values():
        b[14 + off:14 + off + size] = value.to_bytes(size, "big")
    if fix_checksum:
        ihl = (b[14] & 0x0F) * 4 if (b[14] & 0x0F) >= 5 else 20
        b[24:26] = b"\0\0"
        b[24:26] = struct.pack("!H", checksum(bytes(b[14:14 + ihl])))
    return bytes(b)


def drop(name, frame, reason):
    add(name, "parse", "-", frame, f"drop:{reason}")


drop("runt_frame", good[:13], "runt_frame")
drop("runt_vlan_frame", raw(eth_in(vlan=1))[:16], "runt_frame")
drop("arp", raw(Ether(src=IN_SRC_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=IN_SRC_MAC, psrc=LAN, pdst="192.168.1.1")), "unsupported_ethertype")
drop("ipv6", raw(Ether(src=IN_SRC_MAC, dst=IN_DST_MAC) / IPv6(src="fd00::1", dst="2001:db8::1") / UDP()), "ipv6")
drop("ipv4_truncated", good[:14 + 19], "ipv4_truncated")
drop("ipv4_bad_version", edit_ip(good, v=(0, 0x55, 1)), "ipv4_bad_version")
drop("ipv4_ihl_below_5", edit_ip(good, v=(0, 0x44, 1)), "ipv4_header_length_too_short")
drop("ipv4_total_length_beyond_frame", edit_ip(good, l=(2, len(good) - 14 + 1, 2)), "ipv4_total_length_beyond_frame")
drop("ipv4_total_length_below_header", edit_ip(good, l=(2, 19, 2)), "ipv4_total_length_below_header")
drop("ipv4_bad_header_checksum", edit_ip(good, False, c=(10, 0x1234, 2)), "ipv4_bad_header_checksum")
drop("ipv4_fragment_misaligned", edit_ip(good, f=(6, 0x2000, 2)), "ipv4_fragment_misaligned")
drop("ipv4_non_first_fragment", edit_ip(good, f=(6, 0x0010, 2)), "ipv4_non_first_fragment")
drop("ipv4_fragment_beyond_maximum", edit_ip(good, f=(6, 0x1FFF, 2)), "ipv4_fragment_beyond_maximum")
drop("ipv4_first_fragment_too_short", raw(eth_in() / IP(src=LAN, dst=REMOTE, proto=17, flags="MF", id=21)),
     "ipv4_first_fragment_too_short")
drop("ipv4_fragment_unsupported_tcp", raw(eth_in() / IP(src=LAN, dst=REMOTE, flags="MF", id=22) / TCP() / Raw(b"\0" * 4)),
     "ipv4_fragment_unsupported")
drop("ipv4_martian_source", raw(eth_in() / IP(src="127.0.0.1", dst=REMOTE) / UDP()), "ipv4_martian_address")
drop("ipv4_multicast_destination", raw(eth_in() / IP(src=LAN, dst="224.0.0.251") / UDP()), "ipv4_martian_address")
drop("ipv4_broadcast_destination", raw(eth_in() / IP(src=LAN, dst="255.255.255.255") / UDP()), "ipv4_martian_address")
drop("unsupported_ip_protocol_gre", raw(eth_in() / IP(src=LAN, dst=REMOTE, proto=47) / Raw(b"\0" * 8)),
     "unsupported_ip_protocol")
drop("tcp_truncated", raw(eth_in() / IP(src=LAN, dst=REMOTE, proto=6) / Raw(b"\0" * 19)), "tcp_truncated")
drop("tcp_data_offset_below_5", raw(eth_in() / IP(src=LAN, dst=REMOTE) / TCP(dataofs=4)), "tcp_data_offset_too_short")
drop("tcp_data_offset_beyond_payload", raw(eth_in() / IP(src=LAN, dst=REMOTE) / TCP(dataofs=6)),
     "tcp_data_offset_beyond_payload")
drop("udp_truncated", raw(eth_in() / IP(src=LAN, dst=REMOTE, proto=17) / Raw(b"\0" * 7)), "udp_truncated")
drop("udp_length_beyond_payload", raw(eth_in() / IP(src=LAN, dst=REMOTE) / UDP(len=13) / Raw(b"abcd")), "udp_length_invalid")
drop("udp_length_below_header", raw(eth_in() / IP(src=LAN, dst=REMOTE) / UDP(len=7) / Raw(b"abcd")), "udp_length_invalid")
drop("icmp_truncated", raw(eth_in() / IP(src=LAN, dst=REMOTE, proto=1) / Raw(b"\x08\0\0\0\0\0\0")), "icmp_truncated")
drop("icmp_timestamp_unsupported", raw(eth_in() / IP(src=LAN, dst=REMOTE) / ICMP(type=13, ts_ori=1, ts_rx=2, ts_tx=3)), "icmp_unsupported_type")
drop("icmp_redirect_unsupported", raw(eth_in() / IP(src=HOP, dst=EXT) / ICMP(type=5) / Raw(good[14:])),
     "icmp_unsupported_type")
drop("icmp_error_truncated_quote", raw(eth_in() / IP(src=HOP, dst=EXT) / ICMP(type=11) / Raw(good[14:14 + 27])),
     "icmp_error_truncated")
drop("icmp_error_truncated_quote_with_options",
     raw(eth_in() / IP(src=HOP, dst=EXT) / ICMP(type=11) /
         Raw(raw(IP(src=EXT, dst=REMOTE, options=opts) / UDP())[:24 + 7])), "icmp_error_truncated")
drop("icmp_error_embedded_bad_version", raw(eth_in() / IP(src=HOP, dst=EXT) / ICMP(type=11) /
                                            Raw(b"\x65" + good[15:14 + 28])), "icmp_error_embedded_malformed")
drop("icmp_error_embedded_ihl_below_5", raw(eth_in() / IP(src=HOP, dst=EXT) / ICMP(type=11) /
                                            Raw(b"\x44" + good[15:14 + 28])), "icmp_error_embedded_malformed")
short_quote = bytearray(good[14:14 + 28])
short_quote[2:4] = (19).to_bytes(2, "big")
drop("icmp_error_embedded_total_length_below_header", raw(eth_in() / IP(src=HOP, dst=EXT) / ICMP(type=11) /
                                                          Raw(bytes(short_quote))), "icmp_error_embedded_malformed")
about_error = raw(IP(src=EXT, dst=REMOTE) / ICMP(type=3, code=3) / Raw(good[14:14 + 28]))
drop("icmp_error_about_icmp_error", raw(eth_in() / IP(src=HOP, dst=EXT) / ICMP(type=3, code=1) / Raw(about_error)),
     "icmp_error_embedded_unsupported")
frag_quote = raw(IP(src=EXT, dst=REMOTE, frag=100) / UDP())
drop("icmp_error_about_non_first_fragment", raw(eth_in() / IP(src=HOP, dst=EXT) / ICMP(type=11) / Raw(frag_quote)),
     "icmp_error_embedded_unsupported")

# --- MSS clamping: SYN and SYN-ACK announce at most the limit; scapy rebuilds every checksum -------------
def syn(flags, mss_options, **kw):
    return eth_in() / IP(src=LAN, dst=REMOTE, ttl=64, id=30) / TCP(sport=40000, dport=443, flags=flags, seq=7,
                                                                  ack=9 if "A" in flags else 0,
                                                                  options=mss_options, **kw)


SYN_OPTIONS = lambda mss: [("MSS", mss), ("SAckOK", b""), ("WScale", 7)]
add("mss_syn_clamped", "mss", "1452", syn("S", SYN_OPTIONS(1460)), syn("S", SYN_OPTIONS(1452)))
add("mss_syn_ack_clamped", "mss", "1360", syn("SA", SYN_OPTIONS(1460)), syn("SA", SYN_OPTIONS(1360)))
add("mss_syn_below_limit_unchanged", "mss", "1452", syn("S", SYN_OPTIONS(1400)), syn("S", SYN_OPTIONS(1400)))
add("mss_not_a_syn_unchanged", "mss", "536", syn("A", SYN_OPTIONS(1460)), syn("A", SYN_OPTIONS(1460)))
add("mss_syn_without_option_unchanged", "mss", "536", syn("S", [("NOP", None), ("WScale", 7)]),
    syn("S", [("NOP", None), ("WScale", 7)]))
odd = lambda mss: [("NOP", None), ("MSS", mss), ("NOP", None), ("NOP", None), ("NOP", None)]
add("mss_syn_odd_offset_clamped", "mss", "1200", syn("S", odd(0x5B4)), syn("S", odd(1200)))
inp = with_checksum_error(raw(syn("S", SYN_OPTIONS(1460))), 14 + 20 + 16, 0x0101)
exp = with_checksum_error(raw(syn("S", SYN_OPTIONS(1452))), 14 + 20 + 16, 0x0101)
add("mss_syn_invalid_checksum_stays_invalid", "mss", "1452", inp, exp)


names = [c[0] for c in cases]
assert len(names) == len(set(names)), "duplicate case names"
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.tsv")
with open(path, "w") as f:
    f.write("# Generated by nat/tests/golden/generate.py (scapy). Do not edit by hand.\n")
    f.write("# name\top\tto\tinput_hex\texpected_hex_or_drop\n")
    for c in cases:
        f.write("\t".join(c) + "\n")
print(f"wrote {len(cases)} cases to {path}")

# Seeds for the fuzz target (nat/fuzz): 9 selector bytes, then each golden input frame.
seeds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fuzz", "seeds")
os.makedirs(seeds, exist_ok=True)
for i, (name, _op, _to, inp, _exp) in enumerate(cases):
    selector = bytes([203, 0, 113, 2, 0xee, 0x49, 198, 51, i % 3])
    with open(os.path.join(seeds, name), "wb") as f:
        f.write(selector + bytes.fromhex(inp))
print(f"wrote {len(cases)} fuzz seeds to {os.path.normpath(seeds)}")
