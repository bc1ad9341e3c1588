//! Failover when a launcher's network drops without closing its connection: each launcher runs
//! in its own network namespace, linked to this one by a veth pair on a private test subnet;
//! hubcore listens on an address of this namespace's loopback device. Cutting the holder's link (host side down) loses
//! its packets silently, so the core learns nothing until keep-alive gives up, and only the
//! lease timing protects against two instances.
//!
//! Needs CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`; skipped, saying why, without them.

use hivehub_api::cluster::LauncherStatus;
use hivehub_testkit::{plugin_script, processes_running, wait_until, workspace_bin, Core, Member};
use std::process::Command;
use std::time::{Duration, Instant};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a veth link to this one; deleted (with its link) on drop.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    fn new(tag: &str, net: u8, k: u8) -> Netns {
        let name = format!("hh{tag}{k}");
        let host_if = format!("hh{tag}{k}h");
        let ns_if = format!("hh{tag}{k}n");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        let host_ip = format!("10.{net}.{k}.1/30");
        let ns_ip = format!("10.{net}.{k}.2/30");
        let gw = format!("10.{net}.{k}.1");
        ip(&["addr", "add", &host_ip, "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", &name, "ip"];
            a.extend_from_slice(args);
            ip(&a);
        };
        inside(&["addr", "add", &ns_ip, "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", &gw]);
        Netns { name, host_if }
    }

    /// Drops every packet of the link from now on, without closing anything.
    fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    fn mend(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// The core's address on this namespace's loopback device; removed on drop.
struct LoAddr(String);

impl Drop for LoAddr {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &self.0, "dev", "lo"])
            .output();
    }
}

fn ls_all(core: &Core) -> Vec<LauncherStatus> {
    let out = Command::new(workspace_bin("hubcli"))
        .arg("--home")
        .arg(core.home.root())
        .args(["--json", "launcher", "ls", "--all"])
        .output()
        .expect("hubcli");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn failover_when_a_launchers_network_drops_silently() {
    let tag = format!("{}", std::process::id() % 10_000);
    // Needs CAP_SYS_ADMIN and CAP_NET_ADMIN: probe with a throwaway namespace.
    let probe = format!("hh{tag}p");
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(o) if o.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).output();
        }
        Ok(o) => {
            eprintln!(
                "skipped: cannot create a network namespace: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: cannot run ip: {e}");
            return;
        }
    }
    let net = 200 + (std::process::id() % 50) as u8;
    let core_ip = format!("10.{net}.0.1");
    let lo = LoAddr(format!("{core_ip}/32"));
    let _ = Command::new("ip")
        .args(["addr", "del", &lo.0, "dev", "lo"])
        .output();
    ip(&["addr", "add", &lo.0, "dev", "lo"]);
    let nss: Vec<Netns> = (1..=3).map(|k| Netns::new(&tag, net, k)).collect();

    let core = Core::start_on(&workspace_bin("hubcore"), &core_ip);
    let top = "cluster:\n  leaseTtl: 3s\n  statusInterval: 500ms\nautostart: [local]\n";
    let plugins = "  mover:\n    placement: movable\n  local: {}\n";
    let ids = ["ns-a", "ns-b", "ns-c"];
    let mut ms: Vec<Member> = ids
        .iter()
        .map(|id| {
            let m = Member::new(&core, id, top, plugins);
            plugin_script(&m.home, "mover", "while :; do sleep 1; done");
            plugin_script(&m.home, "local", "while :; do sleep 1; done");
            m
        })
        .collect();
    for (m, ns) in ms.iter_mut().zip(&nss) {
        m.start_in(Some(&ns.name));
    }
    let paths: Vec<_> = ms.iter().map(|m| m.home.plugins().join("mover")).collect();
    let count = || {
        paths
            .iter()
            .map(|p| processes_running(p).len())
            .sum::<usize>()
    };
    let holder = |ms: &[Member]| {
        let on: Vec<usize> = (0..ms.len())
            .filter(|&i| !ms[i].instances("mover").is_empty())
            .collect();
        (on.len() == 1).then(|| on[0])
    };
    let outs = |ms: &[Member]| {
        ms.iter()
            .map(|m| m.out())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    assert!(
        wait_until(Duration::from_secs(30), || holder(&ms).is_some()),
        "not placed\n{}",
        outs(&ms)
    );
    let h = holder(&ms).expect("holder");
    assert!(wait_until(Duration::from_secs(20), || ms[h]
        .instances("local")
        .len()
        == 1));
    let local = ms[h].instances("local");

    // Cut the holder's link and watch every 2 ms: never two, and another takes over in time.
    nss[h].cut();
    let cut_at = Instant::now();
    let mut max = 0;
    let mut took = None;
    while cut_at.elapsed() < Duration::from_secs(12) {
        max = max.max(count());
        if took.is_none() && holder(&ms).is_some_and(|i| i != h) {
            took = Some(cut_at.elapsed());
        }
        if took.is_some_and(|t| cut_at.elapsed() > t + Duration::from_secs(1)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = took.unwrap_or_else(|| panic!("no failover within 12 s of the cut\n{}", outs(&ms)));
    assert_eq!(max, 1, "two instances ran at once");
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    eprintln!("failover {took:?} after the link was cut");
    // The cut-off launcher keeps its local plugin.
    assert_eq!(ms[h].instances("local"), local);
    // Keep-alive eventually tells the core; the Last Will marks it offline.
    assert!(
        wait_until(Duration::from_secs(40), || {
            ls_all(&core)
                .iter()
                .any(|s| s.launcher_id == ids[h] && !s.online)
        }),
        "cut-off launcher never shown offline"
    );
    // Mend the link: it comes back online, the plugin stays where it is, still one instance.
    nss[h].mend();
    assert!(
        wait_until(Duration::from_secs(40), || {
            ls_all(&core)
                .iter()
                .any(|s| s.launcher_id == ids[h] && s.online)
        }),
        "launcher not back online\n{}",
        outs(&ms)
    );
    assert_eq!(count(), 1);
    assert_eq!(
        ms[h].instances("local"),
        local,
        "local plugin never restarted"
    );
    drop(ms);
    drop(core);
}
