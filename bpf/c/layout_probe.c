/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * Host-side probe run by flowpin-bpf's build script: prints, as Rust constants, every size, offset
 * and value of flowpin_maps.h, so the crate can assert its #[repr(C)] mirrors against the C truth.
 */
#include <stddef.h>
#include <stdio.h>

#include "flowpin_maps.h"

#define CONST_U32(name, value) printf("pub const %s: u32 = %u;\n", name, (unsigned)(value))
#define CONST_USIZE(name, value) printf("pub const %s: usize = %zu;\n", name, (size_t)(value))
#define CONST_STR(name, value) printf("pub const %s: &str = \"%s\";\n", name, value)

int main(void)
{
	CONST_STR("PROGRAM_NAME", FLOWPIN_PROGRAM_NAME);
	CONST_STR("MAP_IFACES", FLOWPIN_MAP_IFACES);
	CONST_STR("MAP_LOCAL_ADDRS", FLOWPIN_MAP_LOCAL_ADDRS);
	CONST_STR("MAP_XSKS", FLOWPIN_MAP_XSKS);
	CONST_STR("MAP_COUNTERS", FLOWPIN_MAP_COUNTERS);
	CONST_STR("MAP_ADMISSION", FLOWPIN_MAP_ADMISSION);
	CONST_STR("MAP_BUCKETS", FLOWPIN_MAP_BUCKETS);
	CONST_STR("MAP_HOST_BUCKETS", FLOWPIN_MAP_HOST_BUCKETS);
	CONST_STR("MAP_LAN_PREFIXES", FLOWPIN_MAP_LAN_PREFIXES);
	CONST_STR("MAP_FORWARDS", FLOWPIN_MAP_FORWARDS);

	CONST_U32("MAX_IFACES", FLOWPIN_MAX_IFACES);
	CONST_U32("MAX_QUEUES", FLOWPIN_MAX_QUEUES);
	CONST_U32("XSKMAP_SIZE", FLOWPIN_XSKMAP_SIZE);
	CONST_U32("MAX_LOCAL_ADDRS", FLOWPIN_MAX_LOCAL_ADDRS);
	CONST_U32("MAX_ADMISSION_HOSTS", FLOWPIN_MAX_ADMISSION_HOSTS);
	CONST_U32("MAX_LAN_PREFIXES", FLOWPIN_MAX_LAN_PREFIXES);
	CONST_U32("MAX_FORWARD_PORTS", FLOWPIN_MAX_FORWARD_PORTS);
	CONST_U32("BUCKET_LAN", FLOWPIN_BUCKET_LAN);
	CONST_U32("BUCKET_INBOUND", FLOWPIN_BUCKET_INBOUND);
	CONST_U32("BUCKET_COUNT", FLOWPIN_BUCKET_COUNT);

	CONST_U32("ROLE_LAN", FLOWPIN_ROLE_LAN);
	CONST_U32("ROLE_UPLINK", FLOWPIN_ROLE_UPLINK);
	CONST_U32("LOCAL_NAT", FLOWPIN_LOCAL_NAT);
	CONST_U32("IFACE_L3", FLOWPIN_IFACE_L3);

	CONST_USIZE("IFACE_CONFIG_SIZE", sizeof(struct flowpin_iface_config));
	CONST_USIZE("IFACE_CONFIG_ROLE", offsetof(struct flowpin_iface_config, role));
	CONST_USIZE("IFACE_CONFIG_SLOT", offsetof(struct flowpin_iface_config, slot));
	CONST_USIZE("IFACE_CONFIG_UPLINK_ADDR", offsetof(struct flowpin_iface_config, uplink_addr));
	CONST_USIZE("IFACE_CONFIG_PORT_MIN", offsetof(struct flowpin_iface_config, port_min));
	CONST_USIZE("IFACE_CONFIG_PORT_MAX", offsetof(struct flowpin_iface_config, port_max));
	CONST_USIZE("IFACE_CONFIG_FLAGS", offsetof(struct flowpin_iface_config, flags));

	CONST_USIZE("LOCAL_ADDR_SIZE", sizeof(struct flowpin_local_addr));
	CONST_USIZE("LOCAL_ADDR_FLAGS", offsetof(struct flowpin_local_addr, flags));
	CONST_USIZE("LOCAL_ADDR_PORT_MIN", offsetof(struct flowpin_local_addr, port_min));
	CONST_USIZE("LOCAL_ADDR_PORT_MAX", offsetof(struct flowpin_local_addr, port_max));

	CONST_USIZE("BUDGET_SIZE", sizeof(struct flowpin_budget));
	CONST_USIZE("BUDGET_INTERVAL_NS", offsetof(struct flowpin_budget, interval_ns));
	CONST_USIZE("BUDGET_LIMIT_NS", offsetof(struct flowpin_budget, limit_ns));
	CONST_USIZE("ADMISSION_SIZE", sizeof(struct flowpin_admission));
	CONST_USIZE("ADMISSION_HOST", offsetof(struct flowpin_admission, host));
	CONST_USIZE("ADMISSION_LAN", offsetof(struct flowpin_admission, lan));
	CONST_USIZE("ADMISSION_INBOUND", offsetof(struct flowpin_admission, inbound));
	CONST_USIZE("PREFIX_KEY_SIZE", sizeof(struct flowpin_prefix_key));
	CONST_USIZE("FORWARD_KEY_SIZE", sizeof(struct flowpin_forward_key));
	CONST_USIZE("FORWARD_KEY_ADDR", offsetof(struct flowpin_forward_key, addr));
	CONST_USIZE("FORWARD_KEY_PORT", offsetof(struct flowpin_forward_key, port));
	CONST_USIZE("FORWARD_KEY_PROTOCOL", offsetof(struct flowpin_forward_key, protocol));

	CONST_USIZE("COUNTER_SIZE", sizeof(struct flowpin_counter));
	CONST_USIZE("COUNTER_PACKETS", offsetof(struct flowpin_counter, packets));
	CONST_USIZE("COUNTER_BYTES", offsetof(struct flowpin_counter, bytes));

	CONST_U32("PASS_NOT_IPV4", FLOWPIN_PASS_NOT_IPV4);
	CONST_U32("PASS_UNKNOWN_IFACE", FLOWPIN_PASS_UNKNOWN_IFACE);
	CONST_U32("PASS_BROADCAST", FLOWPIN_PASS_BROADCAST);
	CONST_U32("PASS_TTL", FLOWPIN_PASS_TTL);
	CONST_U32("PASS_LOCAL", FLOWPIN_PASS_LOCAL);
	CONST_U32("PASS_UPLINK_OWN", FLOWPIN_PASS_UPLINK_OWN);
	CONST_U32("PASS_UPLINK_FRAGMENT", FLOWPIN_PASS_UPLINK_FRAGMENT);
	CONST_U32("PASS_UPLINK_TRANSIT", FLOWPIN_PASS_UPLINK_TRANSIT);
	CONST_U32("PASS_UPLINK_MALFORMED", FLOWPIN_PASS_UPLINK_MALFORMED);
	CONST_U32("REDIRECT_LAN_TRANSIT", FLOWPIN_REDIRECT_LAN_TRANSIT);
	CONST_U32("REDIRECT_HAIRPIN", FLOWPIN_REDIRECT_HAIRPIN);
	CONST_U32("REDIRECT_UPLINK_RETURN", FLOWPIN_REDIRECT_UPLINK_RETURN);
	CONST_U32("DROP_UNTRANSLATABLE", FLOWPIN_DROP_UNTRANSLATABLE);
	CONST_U32("DROP_MALFORMED", FLOWPIN_DROP_MALFORMED);
	CONST_U32("DROP_NO_SOCKET", FLOWPIN_DROP_NO_SOCKET);
	CONST_U32("DROP_ADMISSION_HOST", FLOWPIN_DROP_ADMISSION_HOST);
	CONST_U32("DROP_ADMISSION_LAN", FLOWPIN_DROP_ADMISSION_LAN);
	CONST_U32("DROP_ADMISSION_INBOUND", FLOWPIN_DROP_ADMISSION_INBOUND);
	CONST_U32("DROP_UPLINK_TO_LAN", FLOWPIN_DROP_UPLINK_TO_LAN);
	CONST_U32("DROP_L3_HEADROOM", FLOWPIN_DROP_L3_HEADROOM);
	CONST_U32("REDIRECT_FORWARD", FLOWPIN_REDIRECT_FORWARD);
	CONST_U32("DECISION_COUNT", FLOWPIN_DECISION_COUNT);
	return 0;
}
