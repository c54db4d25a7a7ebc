//! A private LAN of network namespaces, for what loopback cannot show: nodes on separate hosts
//! finding each other by multicast (mDNS), a fleet whose every host has a link of its own
//! with a capped rate, so bytes move as they would between machines (`tc` token buckets on
//! both ends of each host's link), and sites: groups of hosts on bridges of their own, joined
//! by one link whose bytes can be counted.
//!
//! ```text
//!   this host               hub namespace                    LAN hosts (one namespace each)
//!   shl<K> 10.213.K.254 ─── uplink ─┐
//!                                   br0 ─── h0 ───────────── eth0 10.213.K.1
//!                                    ├───── h1 ───────────── eth0 10.213.K.2
//!                                    └───── …
//! ```
//!
//! Every LAN host is a namespace of its own with one interface, so each runs a node on the
//! default ports as a separate machine would. The bridge lives in a hub namespace, never on
//! this host: the multicast the nodes send stays on the LAN and its one link to this host,
//! which forwards none of it. Dropping the LAN deletes the namespaces, and with them every
//! interface it made. Needs root (CAP_NET_ADMIN) and `ip` from iproute2.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::{HarnessError, Result};

/// The /24 of LAN `K` is `10.213.K.0`: a private range, and only on interfaces the LAN makes.
const SUBNET_PREFIX: [u8; 2] = [10, 213];
/// This host's address on every LAN.
const GATEWAY_HOST: u8 = 254;

/// One machine on the LAN: a network namespace, its address, and its site (0 on a LAN of
/// one site).
#[derive(Debug, Clone)]
pub struct LanHost {
    pub netns: String,
    pub ip: Ipv4Addr,
    pub site: usize,
}

impl LanHost {
    /// `command` to be run inside this host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = ip_command();
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }
}

/// A running LAN. Dropping it removes every namespace and interface it made; processes still
/// running in its namespaces lose their network, so drop them first.
#[derive(Debug)]
pub struct Lan {
    index: u8,
    hosts: Vec<LanHost>,
    sites: usize,
}

impl Lan {
    /// Makes a LAN of `hosts` machines linked to this host.
    pub fn create(hosts: usize) -> Result<Self> {
        Self::create_capped(hosts, None)
    }

    /// Makes a LAN whose every host's link carries at most `mbit` Mbit/s each way.
    pub fn create_capped(hosts: usize, mbit: Option<u32>) -> Result<Self> {
        Self::create_sites(&[hosts], mbit, None)
    }

    /// Makes one site per entry of `sites`, with that many hosts each. Each site has a bridge
    /// of its own; site 0's bridge has the link to this host, and site `s` is joined to site
    /// `s - 1` by one link capped at `between_mbit`. Every host's link is capped at `mbit`.
    pub fn create_sites(
        sites: &[usize],
        mbit: Option<u32>,
        between_mbit: Option<u32>,
    ) -> Result<Self> {
        let hosts: usize = sites.iter().sum();
        assert!(hosts < usize::from(GATEWAY_HOST), "a LAN has at most 253 hosts");
        let index = free_index()?;
        let mut lan = Self { index, hosts: Vec::new(), sites: sites.len() };
        // Leftovers of a run that was killed before it could clean up.
        lan.remove();
        lan.build(sites)?;
        if let Some(mbit) = mbit {
            lan.cap(mbit)?;
        }
        if let Some(mbit) = between_mbit {
            lan.cap_between_sites(mbit)?;
        }
        Ok(lan)
    }

    /// Caps `host`'s link at `mbit` Mbit/s each way from now on (replacing its cap).
    pub fn recap(&self, host: &LanHost, mbit: u32) -> Result<()> {
        let rate = format!("{mbit}mbit");
        let tbf = ["root", "tbf", "rate", &rate, "burst", "256kb", "latency", "50ms"];
        let port = self.hosts.iter().position(|h| h.netns == host.netns).map(|i| format!("h{i}"));
        let port = port.ok_or_else(|| {
            HarnessError::io(
                format!("{} is not on this LAN", host.netns),
                std::io::Error::other("no such host"),
            )
        })?;
        tc_replace(&host.netns, "eth0", &tbf)?;
        tc_replace(&self.site_hub(host.site), &port, &tbf)
    }

    /// Bytes that crossed the link between site `site - 1` and `site`, both ways.
    pub fn between_sites_bytes(&self, site: usize) -> Result<u64> {
        let hub = self.site_hub(site);
        let mut total = 0;
        for counter in ["tx_bytes", "rx_bytes"] {
            let path = format!("/sys/class/net/xprev/statistics/{counter}");
            total += read_counter(&hub, &path)?;
        }
        Ok(total)
    }

    fn cap_between_sites(&self, mbit: u32) -> Result<()> {
        let rate = format!("{mbit}mbit");
        let tbf = ["root", "tbf", "rate", &rate, "burst", "256kb", "latency", "50ms"];
        for site in 1..self.sites {
            tc(&self.site_hub(site), "xprev", &tbf)?;
            tc(&self.site_hub(site - 1), &format!("xnext{site}"), &tbf)?;
        }
        Ok(())
    }

    /// A token bucket on each end of every host's link: `eth0` in the host caps what it sends,
    /// its port on the bridge caps what it receives.
    fn cap(&self, mbit: u32) -> Result<()> {
        let rate = format!("{mbit}mbit");
        // Bursts of a few GSO segments, and a queue of at most 50 ms at the rate.
        let tbf = ["root", "tbf", "rate", &rate, "burst", "256kb", "latency", "50ms"];
        for (i, host) in self.hosts.iter().enumerate() {
            tc(&host.netns, "eth0", &tbf)?;
            tc(&self.site_hub(host.site), &format!("h{i}"), &tbf)?;
        }
        Ok(())
    }

    /// Bytes `host` sent and received on its link, from the kernel's interface counters.
    pub fn link_bytes(&self, host: &LanHost) -> Result<(u64, u64)> {
        let read = |counter: &str| {
            read_counter(&host.netns, &format!("/sys/class/net/eth0/statistics/{counter}"))
        };
        Ok((read("tx_bytes")?, read("rx_bytes")?))
    }

    /// Cuts `host` off from `others` silently, as a failed switch port or a firewall would:
    /// every packet from them is dropped as it reaches `host` (`iptables DROP` in its
    /// namespace), so neither side gets an answer, a reset or an ICMP error — connections,
    /// new and established, just go quiet. Dropping on arrival only keeps it silent for
    /// `host` too: a packet dropped on its way out fails the sender's `send` at once.
    pub fn partition(&self, host: &LanHost, others: &[&LanHost]) -> Result<()> {
        let iptables = crate::require::find_tool("iptables").unwrap_or_else(|| "iptables".into());
        for other in others {
            let source = other.ip.to_string();
            let args = ["-I", "INPUT", "-s", source.as_str(), "-j", "DROP"];
            let output = host
                .command(&iptables)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map_err(|source| HarnessError::Spawn { program: "iptables".into(), source })?;
            if !output.status.success() {
                return Err(HarnessError::ToolFailed {
                    tool: format!("iptables {} (in {})", args.join(" "), host.netns),
                    status: output.status,
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                });
            }
        }
        Ok(())
    }

    pub fn hosts(&self) -> &[LanHost] {
        &self.hosts
    }

    /// This host's address on the LAN: processes meant for the LAN's machines (an upstream
    /// registry) listen on it.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        self.ip(GATEWAY_HOST)
    }

    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], self.index, host)
    }

    /// The namespace of site `site`'s bridge (site 0's also holds the link to this host).
    fn site_hub(&self, site: usize) -> String {
        match site {
            0 => format!("shoal-lan{}-hub", self.index),
            s => format!("shoal-lan{}-hub{s}", self.index),
        }
    }

    fn uplink(&self) -> String {
        format!("shl{}", self.index)
    }

    fn build(&mut self, sites: &[usize]) -> Result<()> {
        let uplink = self.uplink();
        for site in 0..sites.len() {
            let hub = self.site_hub(site);
            ip(&["netns", "add", &hub])?;
            ip(&["-n", &hub, "link", "set", "lo", "up"])?;
            ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &hub, "link", "set", "br0", "up"])?;
            if site > 0 {
                // One link to the previous site: `xprev` here, `xnext<site>` there.
                let previous = self.site_hub(site - 1);
                let down = format!("xnext{site}");
                ip(&[
                    "-n", &hub, "link", "add", "xprev", "type", "veth", "peer", "name", &down,
                    "netns", &previous,
                ])?;
                ip(&["-n", &hub, "link", "set", "xprev", "master", "br0", "up"])?;
                ip(&["-n", &previous, "link", "set", &down, "master", "br0", "up"])?;
            }
        }
        let hub = self.site_hub(0);
        ip(&["link", "add", &uplink, "type", "veth", "peer", "name", "uplink", "netns", &hub])?;
        ip(&["-n", &hub, "link", "set", "uplink", "master", "br0", "up"])?;
        let gateway = format!("{}/24", self.gateway_ip());
        ip(&["addr", "add", &gateway, "dev", &uplink])?;
        ip(&["link", "set", &uplink, "up"])?;
        let placed = sites.iter().enumerate().flat_map(|(site, &n)| std::iter::repeat_n(site, n));
        for (i, site) in placed.enumerate() {
            let host = LanHost {
                netns: format!("shoal-lan{}-h{i}", self.index),
                ip: self.ip(u8::try_from(i + 1).expect("checked above")),
                site,
            };
            let hub = self.site_hub(site);
            let port = format!("h{i}");
            ip(&["netns", "add", &host.netns])?;
            // Pushed to self.hosts at once, so that a failure below still removes it.
            self.hosts.push(host.clone());
            ip(&["-n", &host.netns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &hub,
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &host.netns,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", host.ip);
            ip(&["-n", &host.netns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &host.netns, "link", "set", "eth0", "up"])?;
            // Multicast needs a route out of eth0; the LAN has no other way out.
            ip(&["-n", &host.netns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        tracing::debug!(index = self.index, ?sites, "LAN up");
        Ok(())
    }

    /// Deletes the namespaces by name, whether or not this run made them.
    fn remove(&self) {
        let prefix = format!("shoal-lan{}-", self.index);
        for netns in list_netns() {
            if netns.starts_with(&prefix) {
                let _ = ip(&["netns", "del", &netns]);
            }
        }
        // Gone with the hub's end of the pair; deleted here too in case the hub was not made.
        let _ = ip_command()
            .args(["link", "del", &self.uplink()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}

/// True when this process may make network namespaces. When it may not: panics if `CI=true`,
/// otherwise says why the test is skipped and returns false.
pub fn require_lan() -> bool {
    if !crate::require_tool("ip") {
        return false;
    }
    // Tests of one binary run side by side: each probe needs a name of its own.
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("shoal-probe-{}-{n}", std::process::id());
    if ip(&["netns", "add", &probe]).is_ok() {
        let _ = ip(&["netns", "del", &probe]);
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("network namespaces are required under CI=true: run the tests as root");
    }
    eprintln!("skipped: making network namespaces needs root (CAP_NET_ADMIN)");
    false
}

/// A LAN index whose uplink interface does not exist yet. Test processes run side by side,
/// so the index comes from this process id and a counter rather than from one fixed number.
fn free_index() -> Result<u8> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let taken = list_links();
    for _ in 0..250 {
        let n = std::process::id().wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let index = u8::try_from(n % 250).expect("below 250") + 1;
        if !taken.contains(&format!("shl{index}")) {
            return Ok(index);
        }
    }
    Err(HarnessError::io("choosing a LAN index", std::io::Error::other("all 250 are in use")))
}

fn list_netns() -> Vec<String> {
    let output = ip_command().args(["netns", "list"]).output();
    output
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn list_links() -> Vec<String> {
    let output = ip_command().args(["-o", "link", "show"]).output();
    output
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|line| {
                    let name = line.split(':').nth(1)?.trim();
                    Some(name.split('@').next().unwrap_or(name).to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A number from a file read inside namespace `netns` (an interface counter).
fn read_counter(netns: &str, path: &str) -> Result<u64> {
    let output = ip_command()
        .args(["netns", "exec", netns, "cat", path])
        .output()
        .map_err(|source| HarnessError::Spawn { program: "ip netns exec".to_owned(), source })?;
    String::from_utf8_lossy(&output.stdout).trim().parse().map_err(|_| {
        HarnessError::io(
            format!("reading {path} in {netns}"),
            std::io::Error::other("not a number"),
        )
    })
}

/// `tc qdisc add dev DEV ARGS` in namespace `netns`.
fn tc(netns: &str, dev: &str, args: &[&str]) -> Result<()> {
    tc_qdisc("add", netns, dev, args)
}

/// `tc qdisc replace dev DEV ARGS` in namespace `netns`.
fn tc_replace(netns: &str, dev: &str, args: &[&str]) -> Result<()> {
    tc_qdisc("replace", netns, dev, args)
}

fn tc_qdisc(verb: &str, netns: &str, dev: &str, args: &[&str]) -> Result<()> {
    let tc = crate::require::find_tool("tc").unwrap_or_else(|| "tc".into());
    let output = Command::new(tc)
        .args(["-n", netns, "qdisc", verb, "dev", dev])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn { program: "tc".to_owned(), source })?;
    if output.status.success() {
        return Ok(());
    }
    Err(HarnessError::ToolFailed {
        tool: format!("tc -n {netns} qdisc {verb} dev {dev} {}", args.join(" ")),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// `ip`, found in the sbin directories when they are not on `PATH`.
fn ip_command() -> Command {
    Command::new(crate::require::find_tool("ip").unwrap_or_else(|| "ip".into()))
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let output = ip_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn { program: "ip".to_owned(), source })?;
    if output.status.success() {
        return Ok(());
    }
    Err(HarnessError::ToolFailed {
        tool: format!("ip {}", args.join(" ")),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}
