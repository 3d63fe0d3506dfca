//! What the control plane learns from the kernel about interfaces and neighbours.
//!
//! Interface index, MAC, MTU and IPv4 addresses, and the gateway MAC of each uplink, are read from the
//! kernel's tables through iproute2's JSON output (`ip -j`), which speaks rtnetlink for us. This runs only in
//! the control plane (at start and on a periodic refresh), never per packet. When a gateway has no complete
//! neighbour entry, [`solicit_neighbour`] makes the kernel resolve it (it sends the ARP request itself).
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// A MAC address.
pub type Mac = [u8; 6];

/// What the datapath needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Kernel interface name.
    pub name: String,
    /// Kernel interface index.
    pub ifindex: u32,
    /// Its MAC address.
    pub mac: Mac,
    /// Its MTU.
    pub mtu: u32,
    /// Whether the carrier is up (`LOWER_UP`).
    pub carrier: bool,
    /// Its IPv4 addresses with prefix lengths, in kernel order.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

#[derive(Deserialize)]
struct IpLink {
    ifindex: u32,
    ifname: String,
    #[serde(default)]
    address: Option<String>,
    mtu: u32,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    family: String,
    local: String,
    prefixlen: u8,
}

#[derive(Deserialize)]
struct IpNeigh {
    dst: String,
    #[serde(default)]
    lladdr: Option<String>,
    #[serde(default)]
    state: Vec<String>,
}

/// Parses a MAC address written `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .with_context(|| format!("MAC {s:?} is too short"))?;
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("bad MAC {s:?}"))?;
    }
    if parts.next().is_some() {
        bail!("MAC {s:?} is too long");
    }
    Ok(mac)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip_json(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .context("cannot run `ip` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "`ip -j {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads one interface's index, MAC, MTU, carrier and IPv4 addresses.
pub fn interface(name: &str) -> Result<InterfaceInfo> {
    let json = ip_json(&["addr", "show", "dev", name])
        .with_context(|| format!("interface {name:?} not found"))?;
    parse_interface(&json).with_context(|| format!("interface {name:?}"))
}

fn parse_interface(json: &str) -> Result<InterfaceInfo> {
    let links: Vec<IpLink> =
        serde_json::from_str(json).context("unexpected `ip -j addr` output")?;
    let link = links.into_iter().next().context("no such interface")?;
    let mac = match link.address.as_deref() {
        Some(a) => parse_mac(a)?,
        None => bail!("interface has no MAC address (not an Ethernet interface)"),
    };
    let ipv4 = link
        .addr_info
        .iter()
        .filter(|a| a.family == "inet")
        .map(|a| Ok((a.local.parse::<Ipv4Addr>()?, a.prefixlen)))
        .collect::<Result<Vec<_>>>()?;
    Ok(InterfaceInfo {
        name: link.ifname,
        ifindex: link.ifindex,
        mac,
        mtu: link.mtu,
        carrier: link.flags.iter().any(|f| f == "LOWER_UP"),
        ipv4,
    })
}

/// The MAC of `ip` in the neighbour table of `dev`, if the entry is usable (reachable, stale, delay,
/// probe or permanent — not incomplete or failed).
pub fn neighbour(dev: &str, ip: Ipv4Addr) -> Result<Option<Mac>> {
    let json = ip_json(&["-4", "neigh", "show", "dev", dev, "to", &ip.to_string()])?;
    parse_neighbour(&json, ip)
}

fn parse_neighbour(json: &str, ip: Ipv4Addr) -> Result<Option<Mac>> {
    let entries: Vec<IpNeigh> =
        serde_json::from_str(json).context("unexpected `ip -j neigh` output")?;
    for e in entries {
        if e.dst.parse::<Ipv4Addr>().ok() != Some(ip) {
            continue;
        }
        let unusable = e
            .state
            .iter()
            .any(|s| s == "INCOMPLETE" || s == "FAILED" || s == "NONE");
        if let (Some(mac), false) = (e.lladdr.as_deref(), unusable) {
            return Ok(Some(parse_mac(mac)?));
        }
    }
    Ok(None)
}

/// Makes the kernel resolve `gateway`: a datagram to its discard port makes the kernel send the ARP
/// request itself. The gateway is on the uplink's own subnet, so the kernel routes the datagram out of that
/// uplink; an unresolved neighbour just queues it (and drops it if nobody answers).
pub fn solicit_neighbour(gateway: Ipv4Addr) -> Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    // Errors (EHOSTUNREACH once resolution failed) are expected and say nothing new.
    let _ = sock.send_to(&[0], (gateway, 9));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_interface_with_addresses() {
        let json = r#"[{"ifindex":5,"ifname":"wan1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
            "mtu":1500,"address":"02:00:00:00:01:02","addr_info":[
            {"family":"inet","local":"198.51.100.2","prefixlen":29},
            {"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let i = parse_interface(json).unwrap();
        assert_eq!(i.ifindex, 5);
        assert_eq!(i.mac, [2, 0, 0, 0, 1, 2]);
        assert!(i.carrier);
        assert_eq!(i.ipv4, vec![("198.51.100.2".parse().unwrap(), 29)]);
    }

    #[test]
    fn neighbour_states_decide_usability() {
        let gw: Ipv4Addr = "198.51.100.1".parse().unwrap();
        let ok = r#"[{"dst":"198.51.100.1","dev":"wan1","lladdr":"aa:bb:cc:dd:ee:ff","state":["STALE"]}]"#;
        assert_eq!(
            parse_neighbour(ok, gw).unwrap(),
            Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff])
        );
        let inc = r#"[{"dst":"198.51.100.1","dev":"wan1","state":["INCOMPLETE"]}]"#;
        assert_eq!(parse_neighbour(inc, gw).unwrap(), None);
        let failed = r#"[{"dst":"198.51.100.1","lladdr":"aa:bb:cc:dd:ee:ff","state":["FAILED"]}]"#;
        assert_eq!(parse_neighbour(failed, gw).unwrap(), None);
    }

    #[test]
    fn mac_parsing_rejects_bad_input() {
        assert!(parse_mac("aa:bb:cc:dd:ee").is_err());
        assert!(parse_mac("aa:bb:cc:dd:ee:ff:00").is_err());
        assert!(parse_mac("zz:bb:cc:dd:ee:ff").is_err());
        assert_eq!(format_mac(&[1, 2, 3, 0xa, 0xb, 0xc]), "01:02:03:0a:0b:0c");
    }
}
