//! The machine facts a file is checked against ([`Host`]), and the kernel's CPU list format.
//!
//! Invariants: no I/O here; the daemon reads `/sys/devices/system/cpu/online` and parses it with
//! [`parse_cpu_list`]. A fact that is `None` is not checked: without the online CPUs only the
//! list's own rules hold (`[datapath] cpus` not empty, no duplicate).

/// The machine facts validation checks a file against. Unknown facts (`None`) are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// The router's `net.ipv4.ip_local_port_range`: the NAT port range must avoid it.
    pub local_port_range: Option<super::PortRange>,
    /// The online CPU ids, ascending: `[datapath] cpus` must name some of them.
    pub online_cpus: Option<Vec<u32>>,
}

/// Why a kernel CPU list is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpuListError {
    /// Nothing but white space.
    #[error("empty CPU list")]
    Empty,
    /// A part that is neither an id nor a range of ids.
    #[error("`{part}` in CPU list `{list}` is not a CPU id or range")]
    NotAnId {
        /// The part.
        part: String,
        /// The whole list.
        list: String,
    },
    /// A range whose first id is above its last.
    #[error("CPU range `{part}` in `{list}` is reversed")]
    Reversed {
        /// The range.
        part: String,
        /// The whole list.
        list: String,
    },
}

/// Parses a kernel CPU list (`/sys/devices/system/cpu/online`: `0-3,6,8-9`, newline-terminated)
/// into ascending ids.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, CpuListError> {
    let text = text.trim();
    let mut cpus = Vec::new();
    if text.is_empty() {
        return Err(CpuListError::Empty);
    }
    for part in text.split(',') {
        let id = |s: &str| {
            s.trim().parse::<u32>().map_err(|_| CpuListError::NotAnId {
                part: part.to_owned(),
                list: text.to_owned(),
            })
        };
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (id(first)?, id(last)?);
                if first > last {
                    return Err(CpuListError::Reversed {
                        part: part.to_owned(),
                        list: text.to_owned(),
                    });
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(id(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// `ids` as a kernel CPU list (`0-3,6`), for messages.
pub fn format_cpu_list(ids: &[u32]) -> String {
    let mut out = String::new();
    let mut index = 0;
    while index < ids.len() {
        let first = ids[index];
        let mut last = first;
        while index + 1 < ids.len() && ids[index + 1] == last + 1 {
            index += 1;
            last = ids[index];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if first == last {
            out.push_str(&first.to_string());
        } else {
            out.push_str(&format!("{first}-{last}"));
        }
        index += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_ranges_and_singles_in_order() {
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(
            parse_cpu_list("8-9,0-2,6\n").unwrap(),
            vec![0, 1, 2, 6, 8, 9]
        );
        assert_eq!(parse_cpu_list("3").unwrap(), vec![3]);
        assert!(parse_cpu_list("").is_err());
        assert!(
            parse_cpu_list("2-1")
                .unwrap_err()
                .to_string()
                .contains("reversed")
        );
        assert!(parse_cpu_list("0-a").is_err());
        assert!(parse_cpu_list("0,,1").is_err());
    }

    #[test]
    fn cpu_lists_format_back_to_ranges() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 6, 8, 9]), "0-2,6,8-9");
        assert_eq!(format_cpu_list(&[5]), "5");
        assert_eq!(format_cpu_list(&[]), "");
        let online = "0-3,7,10-11";
        assert_eq!(format_cpu_list(&parse_cpu_list(online).unwrap()), online);
    }
}
