// The benchmark's XDP programs (not part of the router):
// - bench_sink: counts and drops every IPv4 frame addressed to the configured destination (any IPv4
//   frame when it is 0) and passes everything else (ARP, the router's health checks); frames carrying a generator
//   timestamp (UDP payload starting with STAMP_MAGIC) add their one-way latency to a histogram.
//   Frames of the watched flow (TCP/UDP to the configured destination port, any address) are counted
//   apart and passed on to the kernel, so a real flow (e.g. the established flow beside a SYN flood)
//   keeps running through the sink's interface while it is measured.
// - bench_redirect: the "X" configuration, the plumbing ceiling: rewrites the Ethernet addresses
//   and redirects every frame to one interface, with no lookup at all.
// Counters are per-CPU arrays, summed by the reader; nothing here takes a lock.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// "flowpin!" as a little-endian u64, followed by a CLOCK_MONOTONIC nanosecond stamp.
#define STAMP_MAGIC 0x216e6970776f6c66ULL
// One bucket per microsecond up to LATENCY_BUCKETS - 1; the last bucket holds everything above.
#define LATENCY_BUCKETS 4096

enum count_slot {
    COUNT_PACKETS = 0,
    COUNT_BYTES = 1,
    COUNT_STAMPED = 2,
    COUNT_WATCHED = 3,
    COUNT_SLOTS = 4
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, COUNT_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} bench_counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, LATENCY_BUCKETS);
    __type(key, __u32);
    __type(value, __u64);
} bench_latency SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} bench_sink_match SEC(".maps");

// The watched destination port in network byte order (0: none).
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} bench_sink_watch_port SEC(".maps");

struct redirect_target {
    __u8 destination[ETH_ALEN];
    __u8 source[ETH_ALEN];
};

struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} bench_egress SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct redirect_target);
} bench_egress_macs SEC(".maps");

static __always_inline void add(__u32 slot, __u64 value)
{
    __u64 *counter = bpf_map_lookup_elem(&bench_counts, &slot);
    if (counter)
        *counter += value;
}

static __always_inline void record_latency(struct iphdr *ip, void *data_end)
{
    if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
        return;
    struct udphdr *udp = (void *)(ip + 1);
    __u64 *stamp = (void *)(udp + 1);
    if ((void *)(stamp + 2) > data_end || stamp[0] != STAMP_MAGIC)
        return;
    __u64 now = bpf_ktime_get_ns();
    __u64 sent = stamp[1];
    __u64 micros = now > sent ? (now - sent) / 1000 : 0;
    __u32 bucket = micros < LATENCY_BUCKETS - 1 ? (__u32)micros : LATENCY_BUCKETS - 1;
    __u64 *count = bpf_map_lookup_elem(&bench_latency, &bucket);
    if (count)
        *count += 1;
    add(COUNT_STAMPED, 1);
}

// Whether the frame is TCP or UDP to the watched destination port.
static __always_inline int watched(struct iphdr *ip, void *data_end)
{
    __u32 zero = 0;
    __u32 *port = bpf_map_lookup_elem(&bench_sink_watch_port, &zero);
    if (!port || !*port || ip->ihl != 5)
        return 0;
    if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP)
        return 0;
    // Both headers start with the source and destination ports.
    __be16 *ports = (void *)(ip + 1);
    if ((void *)(ports + 2) > data_end)
        return 0;
    return ports[1] == (__be16)*port;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    __u32 zero = 0;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return XDP_PASS;
    if (watched(ip, data_end)) {
        add(COUNT_WATCHED, 1);
        return XDP_PASS;
    }
    __u32 *match = bpf_map_lookup_elem(&bench_sink_match, &zero);
    if (match && *match && ip->daddr != *match)
        return XDP_PASS;
    add(COUNT_PACKETS, 1);
    add(COUNT_BYTES, (__u64)(data_end - data));
    record_latency(ip, data_end);
    return XDP_DROP;
}

SEC("xdp")
int bench_redirect(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    __u32 zero = 0;
    add(COUNT_PACKETS, 1);
    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    struct redirect_target *target = bpf_map_lookup_elem(&bench_egress_macs, &zero);
    if (!target)
        return XDP_DROP;
    __builtin_memcpy(eth->h_dest, target->destination, ETH_ALEN);
    __builtin_memcpy(eth->h_source, target->source, ETH_ALEN);
    return bpf_redirect_map(&bench_egress, 0, XDP_DROP);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
