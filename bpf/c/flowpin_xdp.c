/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * flowpin's XDP program: per packet, choose between the AF_XDP fast path and the kernel.
 *
 * Attached to the LAN interface and to every uplink; one object, shared maps (flowpin_maps.h).
 * Invariants:
 * - Transit traffic is never handed to the kernel from the LAN: TCP/UDP/ICMP go to AF_XDP, every
 *   other IP protocol is dropped (the kernel would forward it un-NATed).
 * - The XSKMAP miss action is XDP_DROP: a queue without a socket drops what it would redirect
 *   (fail closed), counted as FLOWPIN_DROP_NO_SOCKET.
 * - The router's own traffic always reaches the kernel: ARP, ND, DHCP, and packets to any of its
 *   addresses (the `flowpin_local` map holds every IPv4 address of the router's namespace) except
 *   return and hairpin traffic of translated flows, i.e. TCP/UDP to a NAT address inside its port
 *   range, echo replies with an identifier inside it, and ICMP errors about such flows, and TCP/UDP
 *   to a forwarded port of a NAT address (`flowpin_forwards`, `[[forward]]`). Echo
 *   requests to any router address are answered by the kernel, whatever their identifier.
 * - LAN transit with TTL <= 1 reaches the kernel (it answers Time Exceeded).
 * - On an uplink, what flowpin does not translate is XDP_PASS, malformed IPv4 included: the kernel
 *   decides. From the LAN, what it cannot translate is dropped.
 * - A TCP SYN without ACK that would go to AF_XDP as LAN transit, or as uplink traffic to a NAT
 *   range or a forwarded port, first passes its admission budgets (flowpin_maps.h); over budget it is dropped, counted
 *   under the budget that refused it. No other packet touches a budget.
 * - On an uplink, a packet to a LAN prefix that is not a router address is dropped: return traffic
 *   is addressed to a NAT address, never to the LAN, so this is transit the kernel must not forward
 *   even with the forward guard gone.
 * - IPv4 fragments to an uplink address: a first fragment is decided like a whole packet and its
 *   way (AF_XDP or kernel) kept in the `flowpin_frags` LRU by (source, destination, protocol, IP
 *   ID); a later fragment goes the same way, and one that came before its first goes to AF_XDP
 *   when it is UDP or ICMP (the datapath holds it for its first), to the kernel otherwise.
 * - Every packet increments exactly one decision counter.
 * - On an interface flagged FLOWPIN_IFACE_L3 (tun, PPP, WireGuard: no link-layer header; generic
 *   XDP shows the IPv4 header at `data`) the same decisions apply to the IPv4 packet; what goes to
 *   AF_XDP first gets a synthetic Ethernet header (zero MACs, type IPv4) pushed in front, so every
 *   AF_XDP frame is an Ethernet frame. Only uplinks may be L3 (the LAN needs source MACs).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "flowpin_maps.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FLOWPIN_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct flowpin_iface_config);
} flowpin_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FLOWPIN_MAX_LOCAL_ADDRS);
	__type(key, __u32);
	__type(value, struct flowpin_local_addr);
} flowpin_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, FLOWPIN_XSKMAP_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} flowpin_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLOWPIN_DECISION_COUNT);
	__type(key, __u32);
	__type(value, struct flowpin_counter);
} flowpin_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flowpin_admission);
} flowpin_admit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FLOWPIN_BUCKET_COUNT);
	__type(key, __u32);
	__type(value, struct flowpin_bucket);
} flowpin_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOWPIN_MAX_ADMISSION_HOSTS);
	__type(key, struct flowpin_host_key);
	__type(value, struct flowpin_bucket);
} flowpin_hosts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FLOWPIN_MAX_FRAG_DATAGRAMS);
	__type(key, struct flowpin_frag_key);
	__type(value, __u32);
} flowpin_frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FLOWPIN_MAX_LAN_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flowpin_prefix_key);
	__type(value, __u32);
} flowpin_lan SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FLOWPIN_MAX_FORWARD_PORTS);
	__type(key, struct flowpin_forward_key);
	__type(value, __u32);
} flowpin_forwards SEC(".maps");

#define IP_OFFSET 0x1fff
#define IP_MF 0x2000

/* <linux/icmp.h> pulls in libc headers that a BPF target cannot include: the part we need. */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 echo_id;
	__be16 echo_sequence;
};

static __always_inline int count(struct xdp_md *ctx, __u32 decision, int action)
{
	struct flowpin_counter *counter = bpf_map_lookup_elem(&flowpin_counters, &decision);

	if (counter) {
		counter->packets += 1;
		counter->bytes += ctx->data_end - ctx->data;
	}
	return action;
}

static __always_inline int in_range(__u16 value, __u16 min, __u16 max)
{
	return value >= min && value <= max;
}

/* Redirects to the socket of (interface slot, rx queue); fails closed. */
static __always_inline int to_socket(struct xdp_md *ctx, __u32 slot, __u32 decision)
{
	__u32 queue = ctx->rx_queue_index;
	long action;

	if (queue >= FLOWPIN_MAX_QUEUES || slot >= FLOWPIN_MAX_IFACES)
		return count(ctx, FLOWPIN_DROP_NO_SOCKET, XDP_DROP);
	action = bpf_redirect_map(&flowpin_xsks, slot * FLOWPIN_MAX_QUEUES + queue, XDP_DROP);
	if (action != XDP_REDIRECT)
		return count(ctx, FLOWPIN_DROP_NO_SOCKET, XDP_DROP);
	return count(ctx, decision, XDP_REDIRECT);
}

/*
 * Uplink return or forwarded traffic to its socket; on an L3 uplink behind a synthetic Ethernet header (the
 * pointers the caller held are invalid afterwards).
 */
static __always_inline int uplink_to_socket(struct xdp_md *ctx,
					    const struct flowpin_iface_config *iface, __u32 decision)
{
	struct ethhdr *eth;
	__u32 slot = iface->slot;

	if (iface->flags & FLOWPIN_IFACE_L3) {
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ethhdr)))
			return count(ctx, FLOWPIN_DROP_L3_HEADROOM, XDP_DROP);
		eth = (void *)(long)ctx->data;
		if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
			return count(ctx, FLOWPIN_DROP_L3_HEADROOM, XDP_DROP);
		__builtin_memset(eth->h_dest, 0, ETH_ALEN);
		__builtin_memset(eth->h_source, 0, ETH_ALEN);
		eth->h_proto = bpf_htons(ETH_P_IP);
	}
	return to_socket(ctx, slot, decision);
}

/*
 * The IPv4 header of a packet: after the Ethernet header, or at the start on an L3 interface.
 * NULL (and *eth NULL) when the packet is not IPv4; the header itself is not validated here.
 */
static __always_inline struct iphdr *ipv4_header(void *data, void *data_end,
						 const struct flowpin_iface_config *iface,
						 struct ethhdr **eth)
{
	__u8 *first = data;

	*eth = NULL;
	if (iface && (iface->flags & FLOWPIN_IFACE_L3)) {
		if ((void *)(first + 1) > data_end || (*first >> 4) != 4)
			return NULL;
		return data;
	}
	*eth = data;
	if ((void *)(*eth + 1) > data_end || (*eth)->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	return (void *)(*eth + 1);
}

/*
 * The destination port of TCP/UDP, the L4 identifier NAT keys return traffic on. Returns 0 for other
 * protocols and if the header is truncated (the caller then lets it be).
 */
static __always_inline int l4_dest_id(void *l4, void *data_end, __u8 protocol, __u16 *id)
{
	if (protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return 0;
		*id = bpf_ntohs(tcp->dest);
		return 1;
	}
	if (protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return 0;
		*id = bpf_ntohs(udp->dest);
		return 1;
	}
	return 0;
}

static __always_inline int icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/*
 * Whether an ICMP error's embedded packet is one flowpin sent from a NAT address with range
 * [min, max]: a TCP/UDP source port or an echo REQUEST identifier in the range (flowpin only ever
 * sends echo requests out; errors about the router's own traffic, identifiers outside the range,
 * stay with the kernel).
 */
static __always_inline int icmp_error_in_range(struct icmphdr *icmp, void *data_end, __u16 min,
					       __u16 max)
{
	struct iphdr *inner = (void *)(icmp + 1);
	void *inner_l4;

	if ((void *)(inner + 1) > data_end || inner->ihl < 5)
		return 0;
	inner_l4 = (void *)inner + inner->ihl * 4;
	if (inner->protocol == IPPROTO_TCP || inner->protocol == IPPROTO_UDP) {
		/* Source port: the first 16 bits of both headers. */
		__be16 *ports = inner_l4;

		if ((void *)(ports + 1) > data_end)
			return 0;
		return in_range(bpf_ntohs(ports[0]), min, max);
	}
	if (inner->protocol == IPPROTO_ICMP) {
		struct icmphdr *inner_icmp = inner_l4;

		if ((void *)(inner_icmp + 1) > data_end)
			return 0;
		return inner_icmp->type == ICMP_ECHO &&
		       in_range(bpf_ntohs(inner_icmp->echo_id), min, max);
	}
	return 0;
}

/*
 * Whether an ICMP message to a NAT address with range [min, max] belongs to a translated flow: an
 * echo REPLY with its identifier in the range (the only ICMP query flowpin translates, and flows are
 * only opened by echo requests from the LAN), or an error about such a flow. An echo REQUEST to a
 * router address is for the router itself, whatever its identifier: the kernel answers it.
 */
static __always_inline int icmp_in_range(struct icmphdr *icmp, void *data_end, __u16 min, __u16 max)
{
	if ((void *)(icmp + 1) > data_end)
		return 0;
	if (icmp->type == ICMP_ECHOREPLY)
		return in_range(bpf_ntohs(icmp->echo_id), min, max);
	if (icmp_is_error(icmp->type))
		return icmp_error_in_range(icmp, data_end, min, max);
	return 0;
}

/*
 * Whether a packet to a NAT address with range [min, max] belongs to a translated flow: TCP/UDP with
 * its destination port in the range, or ICMP as [`icmp_in_range`] says. Everything else addressed to
 * the router (echo requests, other protocols, ports outside the range) is the kernel's.
 */
static __always_inline int nat_in_range(struct iphdr *ip, void *l4, void *data_end, __u16 min, __u16 max)
{
	__u16 id;

	if (ip->protocol == IPPROTO_ICMP)
		return icmp_in_range(l4, data_end, min, max);
	if (l4_dest_id(l4, data_end, ip->protocol, &id))
		return in_range(id, min, max);
	return 0;
}

/* Whether a first fragment's TCP/UDP destination is a forwarded port of `ip->daddr`. */
static __always_inline int is_forwarded(struct iphdr *ip, void *l4, void *data_end)
{
	struct flowpin_forward_key key = {};
	__u16 port;

	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return 0;
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return 0;
	if (!l4_dest_id(l4, data_end, ip->protocol, &port))
		return 0;
	key.addr = ip->daddr;
	key.port = port;
	key.protocol = ip->protocol;
	return bpf_map_lookup_elem(&flowpin_forwards, &key) != NULL;
}

/* Whether a first fragment's TCP header is a SYN without ACK: a packet that can only open a flow. */
static __always_inline int tcp_opens_flow(struct iphdr *ip, void *l4, void *data_end)
{
	struct tcphdr *tcp = l4;

	if (ip->protocol != IPPROTO_TCP || (ip->frag_off & bpf_htons(IP_OFFSET)))
		return 0;
	if ((void *)(tcp + 1) > data_end)
		return 0;
	return tcp->syn && !tcp->ack;
}

/* Takes one packet's worth from a bucket (GCRA, see flowpin_maps.h); 1: admitted. */
static __always_inline int bucket_take(struct flowpin_bucket *bucket,
				       const struct flowpin_budget *budget, __u64 now)
{
	__u64 tat;

	if (!budget->interval_ns)
		return 1;
	tat = *(volatile __u64 *)&bucket->tat_ns;
	if (tat < now) {
		tat = now;
		bucket->tat_ns = now;
	}
	if (tat + budget->interval_ns - now > budget->limit_ns)
		return 0;
	__sync_fetch_and_add(&bucket->tat_ns, budget->interval_ns);
	return 1;
}

/* The sender's bucket (by source MAC), created full on its first packet; 1: admitted. */
static __always_inline int host_admits(struct ethhdr *eth, const struct flowpin_budget *budget,
				       __u64 now)
{
	struct flowpin_host_key key = {};
	struct flowpin_bucket *bucket;
	struct flowpin_bucket fresh;

	if (!budget->interval_ns)
		return 1;
	__builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);
	bucket = bpf_map_lookup_elem(&flowpin_hosts, &key);
	if (bucket)
		return bucket_take(bucket, budget, now);
	fresh.tat_ns = now + budget->interval_ns;
	bpf_map_update_elem(&flowpin_hosts, &key, &fresh, BPF_NOEXIST);
	return 1;
}

/* A shared bucket of `flowpin_buckets`; 1: admitted. */
static __always_inline int shared_admits(__u32 index, const struct flowpin_budget *budget, __u64 now)
{
	struct flowpin_bucket *bucket = bpf_map_lookup_elem(&flowpin_buckets, &index);

	return !bucket || bucket_take(bucket, budget, now);
}

/*
 * Admission of a LAN packet that can only open a flow: its sender's budget first (so one flooding
 * host spends its own budget, not the LAN's), then the LAN's. Returns the drop decision, or
 * FLOWPIN_DECISION_COUNT when admitted.
 */
static __always_inline __u32 lan_admission(struct ethhdr *eth)
{
	__u32 zero = 0;
	struct flowpin_admission *admission = bpf_map_lookup_elem(&flowpin_admit, &zero);
	__u64 now;

	if (!admission)
		return FLOWPIN_DECISION_COUNT;
	now = bpf_ktime_get_ns();
	if (!host_admits(eth, &admission->host, now))
		return FLOWPIN_DROP_ADMISSION_HOST;
	if (!shared_admits(FLOWPIN_BUCKET_LAN, &admission->lan, now))
		return FLOWPIN_DROP_ADMISSION_LAN;
	return FLOWPIN_DECISION_COUNT;
}

/* Admission of an uplink SYN to a NAT range: 1 when the inbound budget admits it. */
static __always_inline int inbound_admits(void)
{
	__u32 zero = 0;
	struct flowpin_admission *admission = bpf_map_lookup_elem(&flowpin_admit, &zero);

	return !admission || shared_admits(FLOWPIN_BUCKET_INBOUND, &admission->inbound,
					   bpf_ktime_get_ns());
}

/* Whether an address lies in one of the LAN's prefixes. */
static __always_inline int in_lan_prefix(__u32 addr)
{
	struct flowpin_prefix_key key = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(&flowpin_lan, &key) != NULL;
}

/* A LAN packet chosen for AF_XDP: admitted first if it can only open a flow. */
static __always_inline int lan_to_socket(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip,
					 void *l4, __u32 slot, __u32 decision)
{
	void *data_end = (void *)(long)ctx->data_end;

	if (tcp_opens_flow(ip, l4, data_end)) {
		__u32 refused = lan_admission(eth);

		if (refused != FLOWPIN_DECISION_COUNT)
			return count(ctx, refused, XDP_DROP);
	}
	return to_socket(ctx, slot, decision);
}

static __always_inline void frag_key(struct iphdr *ip, struct flowpin_frag_key *key)
{
	key->saddr = ip->saddr;
	key->daddr = ip->daddr;
	key->id = ip->id;
	key->protocol = ip->protocol;
	key->pad = 0;
}

/*
 * A first fragment (MF set, offset 0) to an uplink address: remember where it went, so that its
 * datagram's later fragments go the same way. Whole packets are not recorded.
 */
static __always_inline void remember_first_fragment(struct iphdr *ip, __u32 way)
{
	struct flowpin_frag_key key;

	if (!(ip->frag_off & bpf_htons(IP_MF)))
		return;
	frag_key(ip, &key);
	bpf_map_update_elem(&flowpin_frags, &key, &way, BPF_ANY);
}

/*
 * A later fragment to an uplink address: the way of its first fragment; one that came before its
 * first goes to AF_XDP when its protocol can be translated in pieces (UDP, ICMP: the datapath holds
 * it for its first), to the kernel otherwise.
 */
static __always_inline int later_fragment_to_socket(struct iphdr *ip)
{
	struct flowpin_frag_key key;
	__u32 *way;

	frag_key(ip, &key);
	way = bpf_map_lookup_elem(&flowpin_frags, &key);
	if (way)
		return *way == FLOWPIN_FRAG_SOCKET;
	return ip->protocol == IPPROTO_UDP || ip->protocol == IPPROTO_ICMP;
}

static __always_inline int is_translatable(__u8 protocol)
{
	return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_ICMP;
}

SEC("xdp")
int flowpin_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct flowpin_iface_config *iface;
	struct flowpin_local_addr *local;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 decision;
	void *l4;

	iface = bpf_map_lookup_elem(&flowpin_ifaces, &ifindex);
	ip = ipv4_header(data, data_end, iface, &eth);
	if (!ip)
		return count(ctx, FLOWPIN_PASS_NOT_IPV4, XDP_PASS);
	if (!iface)
		return count(ctx, FLOWPIN_PASS_UNKNOWN_IFACE, XDP_PASS);

	/*
	 * A bad IPv4 header: nothing flowpin could translate. On an uplink the kernel decides (it drops
	 * it, or it is someone else's protocol trick flowpin has no say in); from the LAN it is dropped,
	 * never handed to a kernel that might forward it (fail closed).
	 */
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5 ||
	    (void *)ip + ip->ihl * 4 > data_end) {
		if (iface->role == FLOWPIN_ROLE_UPLINK)
			return count(ctx, FLOWPIN_PASS_UPLINK_MALFORMED, XDP_PASS);
		return count(ctx, FLOWPIN_DROP_MALFORMED, XDP_DROP);
	}
	l4 = (void *)ip + ip->ihl * 4;

	/* Group bit of the destination MAC: broadcast and multicast frames. */
	if ((eth && (eth->h_dest[0] & 1)) || ip->daddr == bpf_htonl(0xffffffff) ||
	    (bpf_ntohl(ip->daddr) >> 28) == 0xe)
		return count(ctx, FLOWPIN_PASS_BROADCAST, XDP_PASS);

	/*
	 * TTL <= 1 is the kernel's only for transit (it answers Time Exceeded before its forward hook).
	 * Return traffic and hairpin packets to a NAT address go to AF_XDP whatever their TTL: handed to
	 * the kernel they would be delivered locally and answered with an RST or a port unreachable from
	 * the router itself; the datapath drops them, counted as ttl_exceeded.
	 */
	if (iface->role == FLOWPIN_ROLE_UPLINK) {
		/*
		 * Dispatch by destination address: the NAT address of an uplink on this interface (there
		 * may be several, one address each) is that uplink's return traffic.
		 */
		local = bpf_map_lookup_elem(&flowpin_local, &ip->daddr);
		if (local && (local->flags & FLOWPIN_LOCAL_NAT) && local->ifindex == ifindex) {
			if (ip->frag_off & bpf_htons(IP_OFFSET)) {
				if (later_fragment_to_socket(ip))
					return uplink_to_socket(ctx, iface,
								FLOWPIN_REDIRECT_UPLINK_FRAGMENT);
				return count(ctx, FLOWPIN_PASS_UPLINK_FRAGMENT, XDP_PASS);
			}
			if (nat_in_range(ip, l4, data_end, local->port_min, local->port_max)) {
				decision = FLOWPIN_REDIRECT_UPLINK_RETURN;
			} else if (is_forwarded(ip, l4, data_end)) {
				decision = FLOWPIN_REDIRECT_FORWARD;
			} else {
				remember_first_fragment(ip, FLOWPIN_FRAG_KERNEL);
				return count(ctx, FLOWPIN_PASS_UPLINK_OWN, XDP_PASS);
			}
			if (tcp_opens_flow(ip, l4, data_end) && !inbound_admits())
				return count(ctx, FLOWPIN_DROP_ADMISSION_INBOUND, XDP_DROP);
			remember_first_fragment(ip, FLOWPIN_FRAG_SOCKET);
			return uplink_to_socket(ctx, iface, decision);
		}
		if (local)
			return count(ctx, FLOWPIN_PASS_LOCAL, XDP_PASS);
		if (in_lan_prefix(ip->daddr))
			return count(ctx, FLOWPIN_DROP_UPLINK_TO_LAN, XDP_DROP);
		return count(ctx, FLOWPIN_PASS_UPLINK_TRANSIT, XDP_PASS);
	}

	if (iface->role != FLOWPIN_ROLE_LAN || !eth)
		return count(ctx, FLOWPIN_PASS_UNKNOWN_IFACE, XDP_PASS);

	local = bpf_map_lookup_elem(&flowpin_local, &ip->daddr);
	if (local) {
		/*
		 * Hairpin: to an uplink's NAT address, TCP/UDP inside its range or an ICMP error about
		 * such a flow (first fragments only). Everything else to a router address, echo requests
		 * included, is the router's own: the kernel answers.
		 */
		if ((local->flags & FLOWPIN_LOCAL_NAT) && !(ip->frag_off & bpf_htons(IP_OFFSET)) &&
		    (nat_in_range(ip, l4, data_end, local->port_min, local->port_max) ||
		     is_forwarded(ip, l4, data_end)))
			return lan_to_socket(ctx, eth, ip, l4, iface->slot, FLOWPIN_REDIRECT_HAIRPIN);
		return count(ctx, FLOWPIN_PASS_LOCAL, XDP_PASS);
	}

	if (ip->ttl <= 1)
		return count(ctx, FLOWPIN_PASS_TTL, XDP_PASS);

	if (!is_translatable(ip->protocol))
		return count(ctx, FLOWPIN_DROP_UNTRANSLATABLE, XDP_DROP);
	return lan_to_socket(ctx, eth, ip, l4, iface->slot, FLOWPIN_REDIRECT_LAN_TRANSIT);
}
