#!/bin/sh
# What generic XDP shows on a tun device (docs/architecture.md, "Uplinks without a link layer"):
# attaches a probe program to a tun in a scratch namespace, writes one IPv4/UDP packet into the tun
# file, and prints what the program saw: packets, the first byte at `data` (0x45 = an IPv4 header),
# the length, and whether bpf_xdp_adjust_head(-14) found headroom (1 = yes). Needs root and clang.
set -eu
dir=$(mktemp -d); ns=tunexp$$
trap 'ip netns del "$ns" 2>/dev/null; rm -rf "$dir"' EXIT
cat > "$dir/probe.c" <<'C'
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u64); } seen SEC(".maps");
SEC("xdp")
int probe(struct xdp_md *ctx)
{
	unsigned char *d = (void *)(long)ctx->data, *e = (void *)(long)ctx->data_end;
	__u32 k0 = 0, k1 = 1, k2 = 2, k3 = 3;
	__u64 *c = bpf_map_lookup_elem(&seen, &k0), *b = bpf_map_lookup_elem(&seen, &k1);
	__u64 *l = bpf_map_lookup_elem(&seen, &k2), *h = bpf_map_lookup_elem(&seen, &k3);
	if (!c || !b || !l || !h)
		return XDP_PASS;
	*c += 1;
	if (d + 1 <= e)
		*b = d[0];
	*l = e - d;
	if (bpf_xdp_adjust_head(ctx, -14) == 0) {
		*h = 1;
		bpf_xdp_adjust_head(ctx, 14);
	} else {
		*h = 2;
	}
	return XDP_PASS;
}
char LICENSE[] SEC("license") = "GPL";
C
clang -O2 -g -target bpf -I "/usr/include/$(uname -m)-linux-gnu" -c "$dir/probe.c" -o "$dir/probe.o"
ip netns add "$ns"
ip -n "$ns" tuntap add mode tun name tunx0
ip -n "$ns" addr add 10.99.0.1/30 dev tunx0
ip -n "$ns" link set tunx0 up
if ip -n "$ns" link set dev tunx0 xdpdrv obj "$dir/probe.o" sec xdp 2>"$dir/native.err"; then
	echo "native XDP: attached"; ip -n "$ns" link set dev tunx0 xdpdrv off
else
	echo "native XDP: refused: $(cat "$dir/native.err")"
fi
ip -n "$ns" link set dev tunx0 xdpgeneric obj "$dir/probe.o" sec xdp && echo "generic XDP: attached"
ip netns exec "$ns" python3 - <<'PY'
import fcntl, os, struct, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"tunx0", 0x0001 | 0x1000))
time.sleep(0.3)
udp = struct.pack("!HHHH", 1234, 9, 13, 0) + b"hello"
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 bytes([198, 51, 100, 7]), bytes([10, 99, 0, 1]))
total = sum(struct.unpack("!10H", ip))
total = (total >> 16) + (total & 0xFFFF)
ip = ip[:10] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + ip[12:]
os.write(fd, ip + udp)
time.sleep(0.2)
PY
bpftool map dump name seen | python3 -c '
import json, sys
v = {e["key"]: e["value"] for e in json.load(sys.stdin)}
print(f"packets {v[0]}, first byte at data 0x{v[1]:02x}, length {v[2]}, 14 bytes of headroom: {v[3] == 1}")'
