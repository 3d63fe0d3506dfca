/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * flowpin: the layout shared by the XDP program and its userspace loader.
 *
 * This header is the ONE definition of the maps' keys and values, their names and sizes, and the
 * decision counters. The Rust crate `flowpin-bpf` mirrors every type here with `#[repr(C)]` types;
 * its build script compiles a probe of this header with the host compiler and the crate asserts at
 * compile time that every size, offset and constant of the mirror equals the C one.
 *
 * Conventions:
 * - IPv4 addresses are stored as they appear on the wire (network byte order), ports and ICMP
 *   identifiers in host byte order.
 * - Port ranges are inclusive: [port_min, port_max].
 * - The XSKMAP key of an AF_XDP socket is `slot * FLOWPIN_MAX_QUEUES + rx_queue_index`, where `slot`
 *   comes from the interface's `struct flowpin_iface_config`; every slot is unique per attached
 *   interface, so one program serves several interfaces without their queues colliding.
 */
#ifndef FLOWPIN_MAPS_H
#define FLOWPIN_MAPS_H

#include <linux/types.h>

/* Map and program names, as they appear in the object file. */
#define FLOWPIN_PROGRAM_NAME "flowpin_xdp"
#define FLOWPIN_MAP_IFACES "flowpin_ifaces"
#define FLOWPIN_MAP_LOCAL_ADDRS "flowpin_local"
#define FLOWPIN_MAP_XSKS "flowpin_xsks"
#define FLOWPIN_MAP_COUNTERS "flowpin_counters"
#define FLOWPIN_MAP_ADMISSION "flowpin_admit"   /* array[1]: struct flowpin_admission */
#define FLOWPIN_MAP_BUCKETS "flowpin_buckets"   /* array: enum flowpin_bucket_index -> bucket */
#define FLOWPIN_MAP_HOST_BUCKETS "flowpin_hosts" /* LRU hash: struct flowpin_host_key -> bucket */
#define FLOWPIN_MAP_LAN_PREFIXES "flowpin_lan"   /* LPM trie: struct flowpin_prefix_key -> __u32 */
#define FLOWPIN_MAP_FORWARDS "flowpin_forwards"  /* hash: struct flowpin_forward_key -> __u32 */
#define FLOWPIN_MAP_FRAGS "flowpin_frags"        /* LRU hash: struct flowpin_frag_key -> way */

/* Sizes. */
#define FLOWPIN_MAX_IFACES 16        /* interface slots (LAN + uplinks) */
#define FLOWPIN_MAX_QUEUES 64        /* receive queues per interface */
#define FLOWPIN_XSKMAP_SIZE (FLOWPIN_MAX_IFACES * FLOWPIN_MAX_QUEUES)
#define FLOWPIN_MAX_LOCAL_ADDRS 256  /* the router's own IPv4 addresses (every interface's) */
#define FLOWPIN_MAX_ADMISSION_HOSTS 8192 /* LAN senders with a bucket of their own (LRU) */
#define FLOWPIN_MAX_FRAG_DATAGRAMS 8192  /* uplink datagrams whose first fragment's way is kept (LRU) */
#define FLOWPIN_MAX_LAN_PREFIXES 64  /* the LAN's prefixes */
#define FLOWPIN_MAX_FORWARD_PORTS 8192 /* forwarded (uplink address, protocol, port) entries */

/* What an interface is to flowpin. */
enum flowpin_role {
	FLOWPIN_ROLE_LAN = 1,
	FLOWPIN_ROLE_UPLINK = 2,
};

/*
 * Value of the `flowpin_ifaces` map, keyed by ifindex (__u32). An uplink interface may carry several
 * uplinks (one NAT address each): which addresses are its uplinks' is in `flowpin_local`
 * (`struct flowpin_local_addr.ifindex`), so return traffic is dispatched by destination address.
 */
struct flowpin_iface_config {
	__u32 role;  /* enum flowpin_role */
	__u32 slot;  /* < FLOWPIN_MAX_IFACES, unique among configured interfaces */
	__u32 flags; /* FLOWPIN_IFACE_* */
};

/*
 * Bits of `struct flowpin_iface_config.flags`.
 * FLOWPIN_IFACE_L3: the device has no link-layer header (tun, PPP, WireGuard, raw-IP modems):
 * generic XDP shows the IPv4 header at `data`; a packet for AF_XDP gets a synthetic Ethernet
 * header pushed in front (all-zero MACs, type IPv4) so the datapath sees one frame format, and the
 * AF_XDP layer transmits on such a device from after that header.
 */
#define FLOWPIN_IFACE_L3 1

/* Bits of `struct flowpin_local_addr.flags`. */
#define FLOWPIN_LOCAL_NAT 1 /* an uplink's NAT address: the port range is meaningful */

/* Value of the `flowpin_local` map, keyed by an IPv4 address (__u32, network order). */
struct flowpin_local_addr {
	__u32 flags;    /* FLOWPIN_LOCAL_* */
	__u16 port_min; /* with FLOWPIN_LOCAL_NAT: the owning uplink's NAT range, inclusive */
	__u16 port_max;
	__u32 ifindex;  /* with FLOWPIN_LOCAL_NAT: the owning uplink's interface; else 0 */
};

/*
 * Admission of packets that can only open a flow, before they reach the AF_XDP ring: a TCP SYN
 * without ACK from the LAN (transit) passes its sender's budget, then the LAN's; one to an uplink's
 * NAT range passes the inbound budget. Every other packet, return traffic and established flows
 * included, never touches a budget.
 *
 * A budget is a token bucket kept as GCRA: a bucket holds the theoretical arrival time `tat_ns` of
 * the next admission (bpf_ktime_get_ns clock); a packet is admitted when
 * `max(tat_ns, now) + interval_ns - now <= limit_ns`, and then moves `tat_ns` on by `interval_ns`
 * (an atomic add). So `limit_ns / interval_ns` packets pass at once after an idle time, and one
 * every `interval_ns` after that. `interval_ns == 0` switches the budget off (everything passes).
 * Buckets are shared by every CPU without a lock: the reset after an idle time is a plain store, so
 * a race can admit a few packets (one per CPU) above the budget, never fewer.
 */
struct flowpin_budget {
	__u64 interval_ns; /* 1e9 / packets per second; 0: no budget */
	__u64 limit_ns;    /* burst * interval_ns */
};

/* Value of the `flowpin_admit` array's one entry (key 0): the budgets. */
struct flowpin_admission {
	struct flowpin_budget host;    /* per LAN sender (source MAC) */
	struct flowpin_budget lan;     /* every LAN sender together */
	struct flowpin_budget inbound; /* SYNs from the uplinks to the NAT ranges, together */
};

/* Value of the bucket maps. */
struct flowpin_bucket {
	__u64 tat_ns;
};

/* Index of the `flowpin_buckets` array. */
enum flowpin_bucket_index {
	FLOWPIN_BUCKET_LAN = 0,
	FLOWPIN_BUCKET_INBOUND,
	FLOWPIN_BUCKET_COUNT,
};

/* Key of the `flowpin_hosts` LRU hash: a LAN sender's source MAC. */
struct flowpin_host_key {
	__u8 mac[6];
	__u16 pad; /* zero */
};

/* Key of the `flowpin_frags` LRU hash: one IPv4 datagram (RFC 791 §3.2). */
struct flowpin_frag_key {
	__u32 saddr;   /* network order */
	__u32 daddr;   /* network order */
	__u16 id;      /* network order */
	__u8 protocol;
	__u8 pad;      /* zero */
};

/* Value of `flowpin_frags`: where the datagram's first fragment went. */
enum flowpin_frag_way {
	FLOWPIN_FRAG_SOCKET = 1, /* AF_XDP: the later fragments follow it */
	FLOWPIN_FRAG_KERNEL = 2, /* the router's own datagram: the kernel reassembles it */
};

/* Key of the `flowpin_lan` LPM trie (the kernel's `struct bpf_lpm_trie_key` layout). */
struct flowpin_prefix_key {
	__u32 prefixlen; /* 0-32 */
	__u32 addr;      /* network order */
};

/*
 * Key of the `flowpin_forwards` hash: one forwarded port of one uplink's NAT address (`[[forward]]`,
 * a range is one entry per port). Its value (__u32) is 1. Inbound TCP/UDP to it goes to AF_XDP,
 * and so does LAN traffic to it (hairpin); the datapath opens the forwarded flow.
 */
struct flowpin_forward_key {
	__u32 addr;     /* the uplink's NAT address, network order */
	__u16 port;     /* the forwarded destination port, host order */
	__u8 protocol;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;       /* zero */
};

/* One counter per decision: index of the `flowpin_counters` per-CPU array. */
enum flowpin_decision {
	FLOWPIN_PASS_NOT_IPV4 = 0,      /* ARP, IPv6 (ND), anything not IPv4: kernel */
	FLOWPIN_PASS_UNKNOWN_IFACE,     /* ingress interface has no config: kernel */
	FLOWPIN_PASS_BROADCAST,         /* L2 or L3 broadcast / multicast (DHCP, ...): kernel */
	FLOWPIN_PASS_TTL,               /* TTL <= 1: kernel (sends Time Exceeded) */
	FLOWPIN_PASS_LOCAL,             /* to one of the router's addresses (LAN side; uplink side
	                                 * when no uplink of the ingress interface owns it): kernel */
	FLOWPIN_PASS_UPLINK_OWN,        /* to an uplink address, outside the NAT range: kernel */
	FLOWPIN_PASS_UPLINK_FRAGMENT,   /* non-first fragment to an uplink address whose first went
	                                 * to the kernel, or of another protocol than UDP/ICMP: kernel */
	FLOWPIN_PASS_UPLINK_TRANSIT,    /* on an uplink, not addressed to the router: kernel */
	FLOWPIN_PASS_UPLINK_MALFORMED,  /* on an uplink, truncated or invalid IPv4 header: kernel */
	FLOWPIN_REDIRECT_LAN_TRANSIT,   /* LAN TCP/UDP/ICMP transit: AF_XDP */
	FLOWPIN_REDIRECT_HAIRPIN,       /* LAN to an uplink address inside its NAT range: AF_XDP */
	FLOWPIN_REDIRECT_UPLINK_RETURN, /* uplink return traffic inside the NAT range: AF_XDP */
	FLOWPIN_REDIRECT_UPLINK_FRAGMENT, /* non-first fragment to an uplink address whose first
	                                   * went to AF_XDP or has not come yet (UDP, ICMP): AF_XDP */
	FLOWPIN_DROP_UNTRANSLATABLE,    /* LAN transit with another IP protocol (GRE, ESP, ...) */
	FLOWPIN_DROP_MALFORMED,         /* from the LAN, truncated or invalid IPv4 header */
	FLOWPIN_DROP_NO_SOCKET,         /* chosen for AF_XDP but no socket serves the queue */
	FLOWPIN_DROP_ADMISSION_HOST,    /* LAN TCP SYN over its sender's budget */
	FLOWPIN_DROP_ADMISSION_LAN,     /* LAN TCP SYN over the LAN's budget */
	FLOWPIN_DROP_ADMISSION_INBOUND, /* TCP SYN from an uplink to its NAT range over the budget */
	FLOWPIN_DROP_UPLINK_TO_LAN,     /* on an uplink, to a LAN prefix (never return traffic) */
	FLOWPIN_DROP_L3_HEADROOM,       /* L3 uplink return traffic without room for the synthetic
	                                 * Ethernet header (generic XDP guarantees it: never) */
	FLOWPIN_REDIRECT_FORWARD,       /* uplink TCP/UDP to a forwarded port of its address: AF_XDP */
	FLOWPIN_DECISION_COUNT,
};

/* Value of the `flowpin_counters` per-CPU array. */
struct flowpin_counter {
	__u64 packets;
	__u64 bytes;
};

#endif /* FLOWPIN_MAPS_H */
