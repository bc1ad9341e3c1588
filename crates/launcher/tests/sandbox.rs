//! Plugin isolation, attacked from inside: a hostile plugin (a shell script started by a real
//! launcher) tries to read the hub's secrets, change its binaries and config, signal, trace and
//! read the memory of the launcher, the core, the guard and another plugin. Every attempt must
//! fail, while its own key, token, data folder and children stay usable. Run with the launcher
//! as root (each plugin a user of its own, plus Landlock) and as an unprivileged user (Landlock
//! alone).

use hivehub_api::launcher::{ListResp, PluginInfo, SandboxLevel};
use hivehub_client::{HubClient, RpcError};
use hivehub_testkit::{plugin_script, wait_until, workspace_bin, LauncherHub};
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

/// The user the unprivileged launcher runs as (`nobody`).
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The hostile plugin: each `try NAME COMMAND` line prints `ALLOWED NAME` or `DENIED NAME`.
const HOSTILE: &str = r#"
H=$HIVEHUB_HOME
try() { if sh -c "$2" >/dev/null 2>&1; then echo "ALLOWED $1"; else echo "DENIED $1"; fi; }
pid_of() {
  for d in /proc/[0-9]*; do
    c=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)
    case "$c" in *"$1"*) echo "${d#/proc/}"; return;; esac
  done
}
# The launcher's forked guard: its child named hivehub-guard.
guard_of() {
  for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = hivehub-guard ] || continue
    read -r _ _ _ pp _ < "$d/stat" 2>/dev/null || continue
    [ "$pp" = "$1" ] && { echo "${d#/proc/}"; return; }
  done
}
core=$(pid_of "$H/bin/hubcore")
guard=$(guard_of "$PPID")
victim=$(pid_of "$H/plugins/victim")
echo "PIDS launcher=$PPID core=$core guard=$guard victim=$victim"
# Secrets of the hub and of others.
for f in certs/admin.token certs/admin.key certs/tokenSigningKey.pem certs/caKey.pem \
         certs/hubKey.pem certs/launcher.key certs/launcher.token certs/victim.key \
         certs/victim.token stores/auth/clients.json stores/victim/secret logs/victim.log \
         logs/hubcore.log config/launcher.yaml run/launcher.lock bin/hubcore; do
  try "read:$f" "cat $H/$f"
done
try "list:certs" "ls $H/certs"
try "read:/dev/pts" "ls /dev/pts"
echo "FDS $(ls /proc/self/fd | tr '\n' ' ')"
try "list:stores" "ls $H/stores"
# Binaries and config.
try "write:bin/hubcore" "echo x >> $H/bin/hubcore"
try "write:config/launcher.yaml" "echo x >> $H/config/launcher.yaml"
try "write:config/new.yaml" "echo x > $H/config/new.yaml"
try "write:plugins/victim" "echo x >> $H/plugins/victim"
try "write:plugins/new" "echo x > $H/plugins/new"
try "delete:plugins/victim" "rm -f $H/plugins/victim && test ! -e $H/plugins/victim"
try "write:stores/victim" "echo x > $H/stores/victim/mine"
try "write:logs" "echo x >> $H/logs/victim.log"
try "write:run" "echo x > $H/run/x"
try "replace:run/hubcore.sock" "rm -f $H/run/hubcore.sock"
# The core's local socket: reaching it is no login. Only `info:` lines may go either way.
cat > "$TMPDIR/login.py" <<'PY'
import socket, struct, sys
path, user, pw = sys.argv[1], sys.argv[2], sys.argv[3]
def s(b): return struct.pack('!H', len(b)) + b
body = s(b'MQTT') + bytes([5, 0xC2]) + struct.pack('!H', 30) + bytes([0])
body += s((user + ':try').encode()) + s(user.encode()) + s(pw.encode())
n, rl = len(body), b''
while True:
    d, n = n % 128, n // 128
    rl += bytes([d | (0x80 if n else 0)])
    if not n: break
c = socket.socket(socket.AF_UNIX)
c.settimeout(5)
c.connect(path)
c.sendall(bytes([0x10]) + rl + body)
r = c.recv(16)
sys.exit(0 if len(r) >= 4 and r[0] == 0x20 and r[3] == 0 else 1)
PY
try "info:reach:run/hubcore.sock" "/usr/bin/python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' $H/run/hubcore.sock"
try "info:login:socket:self" "/usr/bin/python3 $TMPDIR/login.py $H/run/hubcore.sock $HIVEHUB_CLIENT_ID $(cat $H/certs/$HIVEHUB_CLIENT_ID.token)"
try "login:socket:admin-without-password" "/usr/bin/python3 $TMPDIR/login.py $H/run/hubcore.sock admin ''"
try "login:socket:admin-with-own-token" "/usr/bin/python3 $TMPDIR/login.py $H/run/hubcore.sock admin $(cat $H/certs/$HIVEHUB_CLIENT_ID.token)"
try "login:socket:victim-with-own-token" "/usr/bin/python3 $TMPDIR/login.py $H/run/hubcore.sock victim $(cat $H/certs/$HIVEHUB_CLIENT_ID.token)"
# Other processes: signals, /proc secrets, memory, ptrace.
for p in launcher:$PPID core:$core guard:$guard victim:$victim; do
  n=${p%%:*}; pid=${p#*:}
  try "signal:$n" "kill -0 $pid"
  try "environ:$n" "cat /proc/$pid/environ"
  try "mem:$n" "head -c 1 /proc/$pid/mem"
  try "ptrace:$n" "/usr/bin/python3 -c 'import ctypes,sys; sys.exit(ctypes.CDLL(None).ptrace(16, $pid, 0, 0) != 0)'"
done
# What it must keep.
try "own:key" "cat $H/certs/$HIVEHUB_CLIENT_ID.key"
try "own:token" "cat $H/certs/$HIVEHUB_CLIENT_ID.token"
try "own:ca" "cat $H/certs/caCert.pem"
try "own:store" "echo x > $H/stores/$HIVEHUB_CLIENT_ID/data && cat $H/stores/$HIVEHUB_CLIENT_ID/data"
try "own:tmpdir" "echo x > \$TMPDIR/t && cat \$TMPDIR/t"
try "own:child" "sleep 30 & kill \$!"
try "own:system" "ls /usr/bin >/dev/null && cat /etc/hostname"
grep -q '^NoNewPrivs:.*1' /proc/self/status && echo "NNP 1" || echo "NNP 0"
env | grep -q LAUNCHER_SECRET && echo "ENV leaked" || echo "ENV clean"
echo "ID $(id -u)"
# A daemon that leaves the session and clears its environment (only where it is asked for).
[ -n "$ESCAPE" ] && env -i /usr/bin/setsid -f /bin/sh -c 'while :; do sleep 1; done'
echo DONE
exec sleep 1000
"#;

/// The results of the hostile plugin, by attempt.
fn outcomes(log: &str) -> BTreeMap<String, bool> {
    log.lines()
        .filter_map(|l| {
            let l = l.split("[out] ").nth(1)?;
            if let Some(n) = l.strip_prefix("ALLOWED ") {
                Some((n.to_string(), true))
            } else {
                l.strip_prefix("DENIED ").map(|n| (n.to_string(), false))
            }
        })
        .collect()
}

async fn admin(h: &LauncherHub) -> HubClient {
    let c = HubClient::connect(h.options("admin"))
        .await
        .expect("admin connects");
    let ok = wait_until_async(|| async {
        c.request_raw(
            "launcher",
            "view",
            "list",
            b"{}".to_vec(),
            Duration::from_millis(500),
        )
        .await
        .is_ok()
    })
    .await;
    assert!(ok, "launcher never answered; output:\n{}", h.out());
    c
}

async fn wait_until_async<F, Fut>(f: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(Duration::from_secs(30), async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok()
}

async fn info(c: &HubClient, name: &str) -> PluginInfo {
    let l: ListResp = c
        .request("launcher", "view", "list", &json!({}))
        .await
        .expect("list");
    l.plugins
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

fn log_of(h: &LauncherHub, name: &str) -> String {
    std::fs::read_to_string(h.home.logs().join(format!("{name}.log"))).unwrap_or_default()
}

fn wait_log(h: &LauncherHub, name: &str, needle: &str) -> String {
    let ok = wait_until(Duration::from_secs(30), || log_of(h, name).contains(needle));
    assert!(
        ok,
        "{name} never wrote {needle:?}; its log:\n{}\nlauncher:\n{}",
        log_of(h, name),
        h.out()
    );
    log_of(h, name)
}

/// A hub with the victim (a plugin with a data file and a log) and the hostile plugin.
fn hostile_hub(escape: &str) -> LauncherHub {
    let h = LauncherHub::new(
        env!("CARGO_BIN_EXE_launcher").as_ref(),
        "autostart: [victim, evil]\n",
        &format!("  victim:\n    waitReady: false\n  evil:\n    env: {{ESCAPE: \"{escape}\"}}\n"),
    );
    plugin_script(
        &h.home,
        "victim",
        "echo victim-secret > $HIVEHUB_HOME/stores/victim/secret\necho VICTIM UP\nwhile :; do sleep 1; done",
    );
    plugin_script(&h.home, "evil", HOSTILE);
    h
}

async fn attack(h: &LauncherHub) -> (BTreeMap<String, bool>, String) {
    wait_log(h, "victim", "VICTIM UP");
    let log = wait_log(h, "evil", "DONE");
    let got = outcomes(&log);
    let allowed: Vec<&String> = got
        .iter()
        .filter(|(n, ok)| **ok && !n.starts_with("own:") && !n.starts_with("info:"))
        .map(|(n, _)| n)
        .collect();
    assert!(
        allowed.is_empty(),
        "the hostile plugin got through: {allowed:?}\n{log}"
    );
    let denied_own: Vec<&String> = got
        .iter()
        .filter(|(n, ok)| !**ok && n.starts_with("own:"))
        .map(|(n, _)| n)
        .collect();
    assert!(
        denied_own.is_empty(),
        "the plugin lost its own: {denied_own:?}\n{log}"
    );
    // Every attempt ran (a script that died early would pass the checks above).
    for must in [
        "read:certs/admin.token",
        "read:/dev/pts",
        "read:certs/tokenSigningKey.pem",
        "read:certs/victim.token",
        "read:stores/auth/clients.json",
        "write:bin/hubcore",
        "write:plugins/new",
        "signal:launcher",
        "signal:core",
        "signal:guard",
        "signal:victim",
        "environ:launcher",
        "environ:core",
        "mem:core",
        "ptrace:launcher",
        "ptrace:victim",
        "own:child",
        "replace:run/hubcore.sock",
        "login:socket:admin-without-password",
        "login:socket:victim-with-own-token",
    ] {
        assert!(got.contains_key(must), "{must} was not tried:\n{log}");
    }
    assert!(log.contains("NNP 1"), "no_new_privs not set:\n{log}");
    assert!(
        log.contains("ENV clean"),
        "the launcher's environment leaked:\n{log}"
    );
    // Pids were found, so the process attempts aimed at real processes.
    let pids = log.lines().find(|l| l.contains("PIDS")).unwrap_or_default();
    assert!(
        !pids.contains("=\n") && !pids.contains("= ") && !pids.ends_with('='),
        "{pids}"
    );
    // The victim still runs and its files are intact.
    assert_eq!(
        std::fs::read_to_string(h.home.stores().join("victim/secret")).unwrap_or_default(),
        "victim-secret\n"
    );
    assert!(h.home.plugins().join("victim").exists());
    assert!(!h.home.plugins().join("new").exists());
    (got, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugin_is_confined_under_a_root_launcher() {
    if !is_root() {
        eprintln!("skipped: the launcher runs as root only when the tests do");
        return;
    }
    let mut h = hostile_hub("1");
    std::env::set_var("LAUNCHER_SECRET", "x");
    // A descriptor the launcher inherits without close-on-exec must not reach a plugin.
    let leak = std::fs::File::open("/etc/hostname").unwrap();
    let leaked_fd = {
        use std::os::fd::AsRawFd;
        nix::fcntl::fcntl(
            &leak,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        leak.as_raw_fd()
    };
    h.start();
    let (got, log) = attack(&h).await;
    // The core's socket belongs to the core's user: a plugin cannot even reach it.
    assert_eq!(
        got.get("info:reach:run/hubcore.sock"),
        Some(&false),
        "{log}"
    );
    assert_eq!(got.get("info:login:socket:self"), Some(&false), "{log}");
    // Its own user, from the reserved range, owning its data folder.
    let uid: u32 = log
        .lines()
        .find_map(|l| l.split("ID ").nth(1)?.trim().parse().ok())
        .expect("uid line");
    assert!(
        uid >= hivehub_launcher::sandbox::DYNAMIC_UID_BASE,
        "uid {uid}"
    );
    let fds = log.lines().find(|l| l.contains("FDS ")).unwrap_or_default();
    let fds: Vec<&str> = fds
        .split("FDS ")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        !fds.contains(&leaked_fd.to_string().as_str()) && fds.len() <= 4,
        "descriptors reached the plugin: {fds:?} (leaked {leaked_fd})"
    );
    drop(leak);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(h.home.stores().join("evil")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o700));
    assert_eq!(
        std::fs::metadata(h.home.key_file("evil")).unwrap().uid(),
        uid
    );
    let victim_uid = std::fs::metadata(h.home.stores().join("victim"))
        .unwrap()
        .uid();
    assert_ne!(victim_uid, uid, "two plugins share a user");
    let admin = admin(&h).await;
    assert_eq!(info(&admin, "evil").await.sandbox, Some(SandboxLevel::Full));
    assert_eq!(info(&admin, "hubcore").await.sandbox, None);
    assert!(h.out().contains("plugins start confined"), "{}", h.out());
    // The daemon that left its session and cleared its environment is still the plugin's:
    // a stop leaves no process of the plugin's user.
    let of_uid = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
            .count()
    };
    assert!(of_uid() >= 2, "the escaping daemon did not start");
    let _: PluginInfo = admin
        .request("launcher", "manage", "stopPlugin", &json!({"name": "evil"}))
        .await
        .expect("stop");
    assert_eq!(
        of_uid(),
        0,
        "a process of the plugin's user survived its stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugin_is_confined_under_an_unprivileged_launcher() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to another user with setpriv");
        return;
    }
    let mut h = hostile_hub("");
    h.start_as(NOBODY);
    let (got, log) = attack(&h).await;
    assert!(log.contains(&format!("ID {NOBODY}")), "{log}");
    // Landlock does not govern connecting to a socket file, so a plugin of the launcher's own
    // user reaches the core's socket; the logins it tried there were refused (above).
    assert_eq!(got.get("info:reach:run/hubcore.sock"), Some(&true), "{log}");
    // The same script logs in with the plugin's own credentials, so the refusals are real.
    assert_eq!(got.get("info:login:socket:self"), Some(&true), "{log}");
    let admin = admin(&h).await;
    assert_eq!(info(&admin, "evil").await.sandbox, Some(SandboxLevel::Full));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_paths_and_sandbox_off() {
    let outside = hivehub_testkit::tempdir();
    std::fs::write(outside.path().join("data.txt"), "hardware\n").unwrap();
    std::fs::set_permissions(
        outside.path().join("data.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let user = if is_root() { "    user: root\n" } else { "" };
    let mut h = LauncherHub::new(
        env!("CARGO_BIN_EXE_launcher").as_ref(),
        "autostart: [reader, blind, open]\n",
        &format!(
            "  reader:\n    sandbox:\n      read: [{dir}]\n  blind: {{}}\n  open:\n    sandbox: off\n{user}",
            dir = outside.path().display()
        ),
    );
    let body = format!(
        "cat {}/data.txt && echo READ-OK || echo READ-DENIED\ncat $HIVEHUB_HOME/certs/admin.token >/dev/null && echo ADMIN-OK || echo ADMIN-DENIED\necho DONE\nexec sleep 1000",
        outside.path().display()
    );
    for p in ["reader", "blind", "open"] {
        plugin_script(&h.home, p, &body);
    }
    h.start();
    let reader = wait_log(&h, "reader", "DONE");
    assert!(
        reader.contains("READ-OK") && reader.contains("ADMIN-DENIED"),
        "{reader}"
    );
    let blind = wait_log(&h, "blind", "DONE");
    assert!(
        blind.contains("READ-DENIED") && blind.contains("ADMIN-DENIED"),
        "{blind}"
    );
    let open = wait_log(&h, "open", "DONE");
    assert!(
        open.contains("READ-OK") && open.contains("ADMIN-OK"),
        "{open}"
    );
    let admin = admin(&h).await;
    assert_eq!(info(&admin, "open").await.sandbox, Some(SandboxLevel::None));
    assert_eq!(
        info(&admin, "reader").await.sandbox,
        Some(SandboxLevel::Full)
    );
    assert!(
        h.out().contains("sandbox: off"),
        "no warning for the unconfined plugin:\n{}",
        h.out()
    );
    // hubcli shows the level.
    let ls = hubcli(&h, &["launcher", "ls"]);
    let row = ls
        .lines()
        .find(|l| l.starts_with("open"))
        .unwrap_or_default();
    assert!(row.contains("none"), "{ls}");
}

fn hubcli(h: &LauncherHub, args: &[&str]) -> String {
    let out = Command::new(workspace_bin("hubcli"))
        .arg("--home")
        .arg(h.home.root())
        .arg("--server")
        .arg(h.url())
        .args(args)
        .env("COLUMNS", "120")
        .output()
        .expect("hubcli");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn start(c: &HubClient, name: &str) -> Result<PluginInfo, RpcError> {
    c.request(
        "launcher",
        "manage",
        "startPlugin",
        &json!({ "name": name }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_reserved_names_and_writable_binaries_are_refused() {
    let mut h = LauncherHub::new(env!("CARGO_BIN_EXE_launcher").as_ref(), "", "");
    h.start();
    let admin = admin(&h).await;
    // A remote service added by an admin: a plugin binary of that name must not re-key it.
    let out = hubcli(&h, &["auth", "add", "remotesvc", "--role", "service"]);
    assert!(h.home.token_file("remotesvc").exists(), "{out}");
    let token = std::fs::read_to_string(h.home.token_file("remotesvc")).unwrap();
    let key = std::fs::read(h.home.key_file("remotesvc")).unwrap();
    plugin_script(&h.home, "remotesvc", "exec sleep 1000");
    let e = start(&admin, "remotesvc").await.expect_err("start refused");
    assert!(e.to_string().contains("no launcher made"), "{e}");
    assert_eq!(std::fs::read(h.home.key_file("remotesvc")).unwrap(), key);
    let mut opts = h.options("remotesvc");
    opts.token = Some(token.trim().to_string());
    let c = HubClient::connect(opts).await;
    assert!(c.is_ok(), "the remote service's token no longer logs in");

    // Reserved names.
    for name in ["_launcher", "auth", "launcher"] {
        plugin_script(&h.home, name, "exec sleep 1000");
        let e = start(&admin, name).await.expect_err("start refused");
        assert!(
            e.to_string().contains("reserved") || e.to_string().contains("own client ID"),
            "{name}: {e}"
        );
    }

    // A binary anyone could rewrite.
    plugin_script(&h.home, "loose", "exec sleep 1000");
    let loose = h.home.plugins().join("loose");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = start(&admin, "loose").await.expect_err("start refused");
    let msg = e.to_string();
    assert!(
        msg.contains(&loose.display().to_string()) && msg.contains("0777"),
        "{msg}"
    );
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    start(&admin, "loose").await.expect("a fixed binary starts");
}

/// The real user ID of a process.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(u32::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_launcher_runs_the_core_as_the_owner_of_its_certs() {
    if !is_root() {
        eprintln!("skipped: the launcher runs as root only when the tests do");
        return;
    }
    let mut h = LauncherHub::new(
        env!("CARGO_BIN_EXE_launcher").as_ref(),
        "autostart: [plain]\n",
        "",
    );
    plugin_script(&h.home, "plain", "echo UP\nexec sleep 1000");
    for d in [h.home.certs(), h.home.stores(), h.home.run()] {
        std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    h.start();
    let core = h.wait_running("hubcore");
    assert_eq!(uid_of(core), NOBODY, "{}", h.out());
    wait_log(&h, "plain", "UP");
    let plain = h.wait_running("plain");
    assert!(uid_of(plain) >= hivehub_launcher::sandbox::DYNAMIC_UID_BASE);
    assert_eq!(uid_of(h.pid().unwrap()), 0);
    // The plugin logged in with the credentials the launcher minted through that core.
    let admin = admin(&h).await;
    assert_eq!(
        info(&admin, "plain").await.sandbox,
        Some(SandboxLevel::Full)
    );
}

/// Runs `launcher --check` on a home whose plugin `cam` may read `path`: success, and stderr.
fn check_with_read_path(h: &LauncherHub, path: &str) -> (bool, String) {
    std::fs::write(
        h.home.config_file("launcher"),
        format!("core: hubcore\nplugins:\n  cam:\n    sandbox:\n      read: [{path}]\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_launcher"))
        .arg("--home")
        .arg(h.home.root())
        .arg("--check")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_an_extra_path_that_holds_the_home() {
    let h = LauncherHub::new(env!("CARGO_BIN_EXE_launcher").as_ref(), "", "");
    // The folder above the home: granting it would hand out every secret of the hub.
    let above = h.home.root().parent().unwrap().display().to_string();
    let (ok, err) = check_with_read_path(&h, &above);
    assert!(!ok, "{err}");
    assert!(
        err.contains("plugins.cam.sandbox.read") && err.contains("contains the hub home"),
        "{err}"
    );
    // A relative path is refused with its key and line.
    let (ok, err) = check_with_read_path(&h, "relative/dir");
    assert!(
        !ok && err.contains("plugins.cam.sandbox.read[0]") && err.contains("not an absolute path"),
        "{err}"
    );
    // A folder beside the home is fine.
    let (ok, err) = check_with_read_path(&h, "/usr/share");
    assert!(ok, "{err}");
}
