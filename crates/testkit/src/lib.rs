//! Helpers for integration tests. Everything here drives real processes: a real `hubcore` in a
//! temporary home on a free port, real `mosquitto_pub`/`mosquitto_sub`, real SDK clients.
//! Every process started here is killed when its guard is dropped.

use hivehub_api::auth::{methods, AddClientReq, AddClientResp, AUTH_SERVICE, CAP_CLIENTS};
use hivehub_api::Role;
use hivehub_auth::KeyPair;
use hivehub_client::{ClientOptions, HubClient};
use hivehub_home::{write_atomic, Home, SECRET_MODE};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary built by this workspace (`target/<profile>/<name>`), found from the running
/// test executable (`target/<profile>/deps/<test>`). Tests run with `--workspace` so every binary
/// is built.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built; run the tests with --workspace",
        p.display()
    );
    p
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hubcore process in its own temporary home.
pub struct Core {
    /// The home (inside `dir`).
    pub home: Home,
    /// Keeps the temporary folder alive.
    pub dir: Option<tempfile::TempDir>,
    /// The TLS URL.
    pub url: String,
    /// The TLS port.
    pub port: u16,
    bin: PathBuf,
    child: Option<Child>,
}

impl Core {
    /// Starts `bin` (the hubcore binary) in a new temporary home on a free port.
    pub fn start(bin: &Path) -> Core {
        Core::start_on(bin, "127.0.0.1")
    }

    /// Starts `bin` with `yaml` as its `config/hubcore.yaml` (limits for a test).
    pub fn start_with_config(bin: &Path, yaml: &str) -> Core {
        Core::start_configured(bin, "127.0.0.1", Some(yaml))
    }

    /// Starts `bin` listening on a free port of `ip` (its server certificate names `ip`).
    pub fn start_on(bin: &Path, ip: &str) -> Core {
        Core::start_configured(bin, ip, None)
    }

    /// [`start_on`](Self::start_on) with `yaml` as its `config/hubcore.yaml`.
    pub fn start_on_with_config(bin: &Path, ip: &str, yaml: &str) -> Core {
        Core::start_configured(bin, ip, Some(yaml))
    }

    fn start_configured(bin: &Path, ip: &str, yaml: Option<&str>) -> Core {
        let dir = tempdir();
        let home = Home::at(dir.path().join("home"));
        if let Some(y) = yaml {
            std::fs::create_dir_all(home.config()).expect("config folder");
            std::fs::write(home.config_file("hubcore"), y).expect("hubcore.yaml");
        }
        let mut c = Core {
            home,
            dir: Some(dir),
            url: String::new(),
            port: 0,
            bin: bin.to_path_buf(),
            child: None,
        };
        c.spawn(&format!("{ip}:0"));
        c
    }

    fn spawn(&mut self, listen: &str) {
        let _ = std::fs::remove_file(self.home.core_url_file());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir_path().join("hubcore.log"))
            .expect("log file");
        let child = Command::new(&self.bin)
            .arg("--home")
            .arg(self.home.root())
            .arg("--listen")
            .arg(listen)
            .arg("--log-level")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hubcore");
        self.child = Some(child);
        let url_file = self.home.core_url_file();
        let ok = wait_until(Duration::from_secs(30), || url_file.exists());
        assert!(ok, "hubcore did not become ready; log:\n{}", self.log());
        self.url = std::fs::read_to_string(&url_file)
            .expect("url")
            .trim()
            .to_string();
        self.port = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in url");
    }

    fn dir_path(&self) -> PathBuf {
        self.home
            .root()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.home.root().to_path_buf())
    }

    /// The core's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir_path().join("hubcore.log")).unwrap_or_default()
    }

    /// The hubcore process ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        kill_child(self.child.take());
    }

    /// Stops with SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        terminate_child(self.child.take()?, Duration::from_secs(10))
    }

    /// Starts the core again in the same home on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let ip = self
            .url
            .split_once("://")
            .and_then(|(_, a)| a.rsplit_once(':'))
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        let listen = format!("{ip}:{}", self.port);
        self.spawn(&listen);
    }

    /// Client options for `id` in this home.
    pub fn options(&self, id: &str) -> ClientOptions {
        let mut o = ClientOptions::from_home(&self.home, id, Some(&self.url)).expect("options");
        o.connect_timeout = Duration::from_secs(10);
        o
    }

    /// Connects an SDK client as `id` with the credential files in `certs/`.
    pub async fn client(&self, id: &str) -> HubClient {
        HubClient::connect(self.options(id))
            .await
            .unwrap_or_else(|e| panic!("connect as {id}: {e}\ncore log:\n{}", self.log()))
    }

    /// Adds a client with `role` through the admin's auth service, writing its key and token
    /// files in `certs/` the way the launcher does.
    pub async fn add_client(&self, admin: &HubClient, id: &str, role: Role) -> AddClientResp {
        let (key, _) = KeyPair::load_or_create(&self.home.key_file(id)).expect("key");
        let resp: AddClientResp = admin
            .request(
                AUTH_SERVICE,
                CAP_CLIENTS,
                methods::ADD_CLIENT,
                &AddClientReq {
                    client_id: id.into(),
                    client_type: None,
                    display_name: None,
                    role,
                    pub_key: key.public_key_b64(),
                },
            )
            .await
            .expect("addClient");
        write_atomic(
            &self.home.token_file(id),
            resp.token.as_bytes(),
            SECRET_MODE,
        )
        .expect("token");
        resp
    }

    /// Common arguments for mosquitto clients logging in as `id` (with its token file).
    pub fn mosq_args(&self, id: &str) -> Vec<String> {
        let token = std::fs::read_to_string(self.home.token_file(id)).unwrap_or_default();
        self.mosq_args_with(id, token.trim())
    }

    /// Mosquitto arguments for username `id` with an explicit password.
    pub fn mosq_args_with(&self, id: &str, password: &str) -> Vec<String> {
        vec![
            // Sessions belong to logins: the client identifier is `id:suffix`.
            "-i".into(),
            session_name(id),
            "-V".into(),
            "mqttv5".into(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "--cafile".into(),
            self.home.ca_cert().display().to_string(),
            "-u".into(),
            id.into(),
            "-P".into(),
            password.into(),
        ]
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A background `mosquitto_sub`, killed on drop.
pub struct Sub {
    child: Option<Child>,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sub {
    /// Starts `mosquitto_sub` with `args` (add `-v` to get topics) writing to a file. Returns once
    /// the subscription is confirmed, using `--will`-free `-d` debug output ("SUBACK").
    pub fn start(args: &[String]) -> Sub {
        let dir = tempdir();
        let out = dir.path().join("sub.out");
        let f = std::fs::File::create(&out).expect("out");
        // Line-buffered, or the output sits in stdio buffers until exit.
        let child = Command::new("stdbuf")
            .args(["-oL", "-eL", "mosquitto_sub"])
            .args(args)
            .arg("-d")
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("mosquitto_sub (install mosquitto-clients)");
        let s = Sub {
            child: Some(child),
            out,
            _dir: dir,
        };
        let ok = wait_until(Duration::from_secs(10), || {
            let o = s.output();
            o.contains("SUBACK") || o.contains("Error") || o.contains("denied")
        });
        assert!(ok, "mosquitto_sub did not subscribe: {}", s.output());
        s
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits until the output contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.output().contains(needle))
    }

    /// The mosquitto_sub process (`stdbuf` execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        kill_child(self.child.take());
    }
}

/// Runs `mosquitto_pub` with `args` and returns its output.
pub fn mosquitto_pub(args: &[String]) -> Output {
    Command::new("mosquitto_pub")
        .args(args)
        .output()
        .expect("mosquitto_pub (install mosquitto-clients)")
}

/// A fresh MQTT client identifier for login `id` (`id:` and 8 hex digits), as the hub
/// requires and the SDK does.
pub fn session_name(id: &str) -> String {
    format!("{id}:{:08x}", rand::random::<u32>())
}

/// Helper to turn `&str` lists into argument vectors.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A temporary folder for a test's home that others may pass through (0711): when the tests
/// run as root, the launcher runs each plugin as a user of its own, which must reach its
/// binary and key below it.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod tempdir");
    dir
}

/// Writes an executable shell script `plugins/{name}` in `home`.
pub fn plugin_script(home: &Home, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = home.plugins().join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// SIGKILL, then reap, so no zombie is left behind.
fn kill_child(c: Option<Child>) {
    if let Some(mut c) = c {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// SIGTERM, then up to `timeout` for the exit, then SIGKILL; the exit status.
fn terminate_child(mut c: Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let end = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if Instant::now() > end {
            let _ = c.kill();
            return c.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` (the launcher, or a wrapper that execs it) on `home`, with its output appended to
/// `dir/launcher.out`.
fn spawn_launcher(mut cmd: Command, home: &Home, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("launcher.out"))
        .expect("log");
    cmd.arg("--home")
        .arg(home.root())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("spawn launcher")
}

/// A launcher process (with the hubcore it starts) in a temporary home.
pub struct LauncherHub {
    /// The home.
    pub home: Home,
    dir: tempfile::TempDir,
    child: Option<Child>,
    bin: PathBuf,
}

impl LauncherHub {
    /// A home with hubcore in `bin/` (listening on a free port), `top` appended to the top level
    /// of launcher.yaml and `plugins` (entries indented by 2) under `plugins:`. Not started yet.
    pub fn new(launcher_bin: &Path, top: &str, plugins: &str) -> LauncherHub {
        let dir = tempdir();
        let home = Home::at(dir.path().join("home"));
        home.ensure_dirs().expect("home");
        std::fs::copy(workspace_bin("hubcore"), home.bin().join("hubcore")).expect("copy hubcore");
        std::fs::write(
            home.config_file("launcher"),
            format!(
                "core: hubcore\nreadyTimeout: 30s\n{top}plugins:\n  hubcore:\n    args: [\"--listen\", \"127.0.0.1:0\"]\n{plugins}"
            ),
        )
        .expect("config");
        LauncherHub {
            home,
            dir,
            child: None,
            bin: launcher_bin.to_path_buf(),
        }
    }

    /// Starts the launcher (again).
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts the launcher with extra command-line arguments.
    pub fn start_with(&mut self, args: &[&str]) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        self.child = Some(spawn_launcher(cmd, &self.home, self.dir.path()));
    }

    /// Starts the launcher as user and group `id` (through `setpriv`, with no capabilities
    /// left), after giving it the whole temporary folder.
    pub fn start_as(&mut self, id: u32) {
        let ids = format!("{id}:{id}");
        let st = Command::new("chown")
            .args(["-R", &ids])
            .arg(self.dir.path())
            .status()
            .expect("chown");
        assert!(st.success(), "chown -R {ids}");
        let mut cmd = Command::new("setpriv");
        cmd.args([
            format!("--reuid={id}"),
            format!("--regid={id}"),
            "--clear-groups".into(),
            "--inh-caps=-all".into(),
            "--bounding-set=-all".into(),
            "--".into(),
        ])
        .arg(&self.bin);
        self.child = Some(spawn_launcher(cmd, &self.home, self.dir.path()));
    }

    /// Runs hubcli (logged in as the admin) on this hub's home.
    pub fn hubcli(&self, args: &[&str]) -> Output {
        Command::new(workspace_bin("hubcli"))
            .arg("--home")
            .arg(self.home.root())
            .args(args)
            .output()
            .expect("run hubcli")
    }

    /// The launcher's output so far.
    pub fn out(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("launcher.out")).unwrap_or_default()
    }

    /// The launcher's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The PID recorded in `run/{name}.pid`.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.home.run().join(format!("{name}.pid")))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Waits until `name` runs and returns its PID.
    pub fn wait_running(&self, name: &str) -> u32 {
        let ok = wait_until(Duration::from_secs(30), || {
            self.pid_of(name).is_some_and(pid_running)
        });
        assert!(ok, "{name} did not start; launcher output:\n{}", self.out());
        self.pid_of(name).unwrap_or_default()
    }

    /// Waits until the launcher is connected and ready (its service answers).
    pub fn url(&self) -> String {
        self.wait_running("hubcore");
        let f = self.home.core_url_file();
        assert!(
            wait_until(Duration::from_secs(30), || f.exists()),
            "no core url"
        );
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Sends `sig` to the launcher.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// Waits for the launcher to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let mut status = None;
        wait_until(timeout, || {
            status = c.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Client options for `id` against this hub.
    pub fn options(&self, id: &str) -> ClientOptions {
        let url = self.url();
        ClientOptions::from_home(&self.home, id, Some(&url)).expect("options")
    }

    /// Mosquitto arguments for `id` (its token file) against this hub.
    pub fn mosq_args(&self, id: &str) -> Vec<String> {
        let url = self.url();
        let port = url.rsplit(':').next().unwrap_or_default().to_string();
        let token = std::fs::read_to_string(self.home.token_file(id)).unwrap_or_default();
        args(&[
            "-i",
            &session_name(id),
            "-V",
            "mqttv5",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--cafile",
            &self.home.ca_cert().display().to_string(),
            "-u",
            id,
            "-P",
            token.trim(),
        ])
    }
}

impl Drop for LauncherHub {
    fn drop(&mut self) {
        kill_child(self.child.take());
    }
}

/// A launcher without its own core, as on another host: its own home and ID, connected to a
/// shared [`Core`] with credentials made by `hubcli auth add ID --role launcher` in the core's
/// home and copied over (with the hub CA), as an admin would.
pub struct Member {
    /// Its home.
    pub home: Home,
    /// Its launcher ID.
    pub id: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Member {
    /// Prepares a member launcher `id` for `core` with `top` added to the top level of its
    /// launcher.yaml and `plugins` (entries indented by 2) under `plugins:`. Not started yet.
    pub fn new(core: &Core, id: &str, top: &str, plugins: &str) -> Member {
        let dir = tempdir();
        let home = Home::at(dir.path().join("home"));
        home.ensure_dirs().expect("home");
        let out = Command::new(workspace_bin("hubcli"))
            .arg("--home")
            .arg(core.home.root())
            .args(["auth", "add", id, "--role", "launcher"])
            .output()
            .expect("run hubcli auth add");
        assert!(
            out.status.success(),
            "hubcli auth add {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (from, to, mode) in [
            (core.home.key_file(id), home.key_file(id), SECRET_MODE),
            (core.home.token_file(id), home.token_file(id), SECRET_MODE),
            // The CA certificate is public.
            (core.home.ca_cert(), home.ca_cert(), 0o644),
        ] {
            let bytes = std::fs::read(&from).expect("read credential");
            write_atomic(&to, &bytes, mode).expect("copy credential");
        }
        std::fs::write(
            home.config_file("launcher"),
            format!(
                "id: {id}\ncore: \"\"\nserverURL: {}\nreadyTimeout: 30s\n{top}plugins:\n{plugins}",
                core.url
            ),
        )
        .expect("config");
        Member {
            home,
            id: id.to_string(),
            dir,
            child: None,
        }
    }

    /// Starts the launcher process.
    pub fn start(&mut self) {
        self.start_in(None);
    }

    /// Starts the launcher process inside the network namespace `netns` (`ip netns exec`,
    /// which execs, so the PID is the launcher's), or in this one.
    pub fn start_in(&mut self, netns: Option<&str>) {
        let cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(workspace_bin("launcher"));
                c
            }
            None => Command::new(workspace_bin("launcher")),
        };
        self.child = Some(spawn_launcher(cmd, &self.home, self.dir.path()));
    }

    /// The launcher's output so far.
    pub fn out(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("launcher.out")).unwrap_or_default()
    }

    /// The launcher's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILLs the launcher and reaps it.
    pub fn kill(&mut self) {
        kill_child(self.child.take());
    }

    /// SIGTERMs the launcher and waits up to `timeout` for it to exit (then SIGKILL).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        terminate_child(self.child.take()?, timeout)
    }

    /// PIDs of processes running `plugins/{name}` of this home (by their command line).
    pub fn instances(&self, name: &str) -> Vec<u32> {
        processes_running(&self.home.plugins().join(name))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// PIDs of the live processes whose command line names `path` (the program, or the script a
/// shell runs), leaving out a shell's forked copies of itself: one PID per running instance.
pub fn processes_running(path: &Path) -> Vec<u32> {
    let needle = path.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        // A zombie has an empty command line; it no longer runs.
        if cmd.split(|b| *b == 0).take(2).any(|arg| arg == needle) {
            out.push(pid);
        }
    }
    // A shell forks copies of itself to run commands (`sleep 1`); those are not instances.
    let ppid = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        rest.split_whitespace().nth(1)?.parse::<u32>().ok()
    };
    let all = out.clone();
    out.retain(|p| ppid(*p).is_none_or(|pp| !all.contains(&pp)));
    out
}

/// True while process `pid` exists and is not a zombie: a stopped plugin's PID stays in
/// `/proc` (and in its pid record) until the launcher reaps it, but it no longer runs.
pub fn pid_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            rest.split_whitespace().next().map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

/// Resident memory (`VmRSS`) of process `pid` in KiB, or `None` once it is gone.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Floods `[service, capability, method]` with `payload` the way a hostile client would: every
/// connection in `clients` keeps `outstanding` requests in flight all the time, each sent the
/// moment the one before it is answered (pipelined, so the flood runs as fast as the hub
/// answers), and each sent once: a `busy` reply is counted, not retried.
///
/// First one request must be answered (within 30 s), so a broken setup fails here with its
/// reason rather than as a count of zero. `flooding` is true while the flood runs. Returns
/// (requests sent, `busy` replies, results, other failures, the last other failure).
pub async fn rpc_flood(
    clients: &[HubClient],
    target: [&str; 3],
    payload: &[u8],
    outstanding: usize,
    duration: Duration,
    flooding: &std::sync::atomic::AtomicBool,
) -> (u64, u64, u64, u64, String) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let [service, capability, method] = target.map(str::to_string);
    let first = clients.first().expect("a client to flood with");
    let probe = first
        .request_raw(
            &service,
            &capability,
            &method,
            payload.to_vec(),
            Duration::from_secs(30),
        )
        .await;
    if let Err(e) = probe {
        panic!("a single {service}/{capability}/{method} request failed before the flood: {e}");
    }

    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let last_other = Arc::new(Mutex::new(String::new()));
    let end = tokio::time::Instant::now() + duration;
    flooding.store(true, Ordering::SeqCst);
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        // Every busy reply is counted, not retried.
        c.set_retry_busy(false);
        for _ in 0..outstanding {
            let (c, counts, last_other) = (c.clone(), counts.clone(), last_other.clone());
            let (service, capability, method) =
                (service.clone(), capability.clone(), method.clone());
            let payload = payload.to_vec();
            tasks.spawn(async move {
                while tokio::time::Instant::now() < end {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                    let r = c
                        .request_raw(
                            &service,
                            &capability,
                            &method,
                            payload.clone(),
                            Duration::from_secs(3),
                        )
                        .await;
                    let slot = match &r {
                        Ok(_) => 2,
                        Err(e) if e.is_busy() => 1,
                        Err(e) => {
                            if let Ok(mut l) = last_other.lock() {
                                *l = e.to_string();
                            }
                            3
                        }
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    flooding.store(false, Ordering::SeqCst);
    let n = |i: usize| counts[i].load(Ordering::Relaxed);
    let other = last_other.lock().map(|l| l.clone()).unwrap_or_default();
    (n(0), n(1), n(2), n(3), other)
}

/// What a flood of requests got back.
#[derive(Debug, Default)]
pub struct FloodTally {
    /// Requests sent.
    pub sent: u64,
    /// `busy` replies.
    pub busy: u64,
    /// Normal replies.
    pub results: u64,
    /// Other failures (timeouts, errors), and the last of them.
    pub failed: u64,
    /// The last other failure.
    pub last_failure: String,
}

impl FloodTally {
    /// The service bounded the flood: some requests were answered `busy`, some normally, few
    /// failed otherwise (a busy reply is dropped only when the outgoing queue is full), and its
    /// `log` mentions the refusals at most once per 10 s, not once each.
    pub fn assert_bounded(&self, log: &str) {
        let FloodTally {
            sent,
            busy,
            results,
            failed,
            last_failure,
        } = self;
        assert!(
            *busy > 0,
            "no busy reply to {sent} requests ({results} results, {failed} other failures)"
        );
        assert!(
            *results > 0,
            "no normal reply to {sent} requests ({busy} busy, {failed} other failures)"
        );
        assert!(
            failed * 100 <= *sent,
            "{failed} of {sent} flood requests failed otherwise, last: {last_failure}"
        );
        let lines = log.matches("answering busy").count();
        assert!(
            (1..=3).contains(&lines),
            "{lines} log lines about refusals; expected one per 10 s"
        );
    }
}
