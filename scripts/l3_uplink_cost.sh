#!/bin/sh
# Per-packet cost of an uplink without a link layer (tun) against an Ethernet (veth) uplink, on the
# lab: the same iperf3 TCP load (rate-capped so the lab's python relay is not the bottleneck) is
# pinned to isp1 (veth) and then to isp2 (tun); for each, the flowpin worker thread's CPU time
# (utime + stime from /proc, which includes the copy-mode AF_XDP transmit into the device done in
# its sendto()) is divided by the packets the worker handled (rx from `flowpin status --json`).
# Usage: scripts/l3_uplink_cost.sh [rate, default 200M] [seconds, default 10] [runs, default 3]
# Needs root and the release binaries (cargo build --release -p flowpin -p flowpin-lab).
set -eu
rate=${1:-200M}; seconds=${2:-10}; runs=${3:-3}
target=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}
lab="$target/release/flowpin-lab"; fp="$target/release/flowpin"
name=l3c$(($$ % 100000))
"$lab" up --router flowpin --tun-uplinks 2 --name "$name" >/dev/null
trap '"$lab" down --name "$name" >/dev/null' EXIT
dir=/run/flowpin-lab/$name; sock=$dir/flowpin.sock; conf=$dir/flowpin.toml
cp "$conf" "$conf.orig"
pid=$(pgrep -f "run -c $conf" | head -1)
ticks() { # the worker threads' utime + stime, in clock ticks
	for t in /proc/$pid/task/*; do
		case $(cat "$t/comm") in flowpin-w*) awk '{print $14 + $15}' "$t/stat";; esac
	done | awk '{s += $1} END {print s}'
}
handled() { "$fp" status --json --socket "$sock" | python3 -c 'import json,sys; print(sum(w["rx_frames"] for w in json.load(sys.stdin)["workers"]))'; }
hz=$(getconf CLK_TCK)
for run in $(seq 1 "$runs"); do
	for uplink in isp1 isp2; do
		cp "$conf.orig" "$conf"
		printf '[[policy]]\nname = "only"\nuplinks = ["%s"]\n' "$uplink" >> "$conf"
		"$fp" reload --socket "$sock" >/dev/null
		t0=$(ticks); p0=$(handled)
		ip netns exec "$name-lan1" iperf3 -c 203.0.113.10 -t "$seconds" -b "$rate" -l 1400 >/dev/null
		t1=$(ticks); p1=$(handled)
		echo "$run $uplink $((p1 - p0)) $((t1 - t0))" | awk -v hz="$hz" \
			'{printf "run %s %s: %d packets, worker CPU %.2f s, %.0f ns/packet\n", $1, $2, $3, $4 / hz, $4 / hz * 1e9 / $3}'
	done
done
