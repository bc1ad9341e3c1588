//! `hivehub-bench control`: the `hubcli launcher ls` round trip with N running plugins, against
//! the "status of all" command of each peer over the same N plugins, in the same run:
//! `supervisorctl status` (Debian's supervisord), `sv status` (runit) and `s6-svstat` once per
//! service (s6 has no command for the status of all services outside s6-rc: a `/bin/sh` loop
//! over the service folders, as a user would type it).
//!
//! * Setup: a launcher home (hubcore in `bin/`, N copies of the trivial plugin
//!   [`PLUGIN_SCRIPT`] in `plugins/`, `createPluginCred: false`, `autorestart: never`), a
//!   supervisord, a runsvdir and an s6-svscan with the same N plugins, all running side by
//!   side. The benchmark waits until all N plugins have a live process under each (seen in
//!   `/proc`), the launcher's `view/list` reports N + 1 running entries (the plugins and
//!   hubcore), and each peer's status command reports N running.
//! * Whole process: `hubcli --home H launcher ls` (through the core's socket, as by default),
//!   the same with `--server` naming the TLS listener, `hubcli --home H launcher ls --json`,
//!   `supervisorctl -c CONF status`, `sv status DIR/plugin001 ..` and
//!   `sh -c 'for d; do s6-svstat "$d" || exit 1; done' sh DIR/plugin001 ..`, each timed from
//!   `spawn` to exit (stdout and stderr read through pipes), after 2 untimed warm-up runs each.
//!   The commands are interleaved run by run, each run starting with the next one in turn, so
//!   drift on the (shared) machine and the order within a run hit them alike.
//!   Every output is checked (N plugin rows, a JSON array of N + 1, N `RUNNING`, `run: ` or
//!   `up ` lines).
//! * In process: one SDK client logged in as `admin` (the credentials hubcore wrote in the home,
//!   through the core's socket as hubcli)
//!   sends `launcher/view/list` sequentially, after a warm-up; each request-to-reply time is
//!   recorded. To break the whole-process time down, the same client steps as hubcli (connect,
//!   one `list`, disconnect) are timed in process, and `hubcli --version` gives the floor of
//!   starting the binary at all.
//!
//! The module also holds the setup shared with [`crate::restart`]: supervisors guarded so that
//! every process is gone when a [`Setup`] is dropped, even on an error path. The homes, configs
//! and small helpers every benchmark uses are in [`crate::common`].

use crate::common::{
    bench_tempdir, check_interrupted, clock, find_in_path, launcher_home, loadavg, ms, nap,
    peer_dir, plugin_names, prepare_supervisor, quantile, raise_nofile, sorted_ms, supervisord_dir,
    tail, warn_about_other_supervisords, LauncherConf, Peer, PeerBins, PLUGIN_SCRIPT, STILL_SCRIPT,
};
use crate::procobs::{self, Observer, Supervised};
use crate::sibling_binary;
use anyhow::{bail, Context, Result};
use hivehub_api::auth::{ADMIN_ID, LAUNCHER_ID};
use hivehub_api::launcher::{methods, ListResp, PluginState, CAP_VIEW};
use hivehub_client::{ClientOptions, HubClient, ServerUrl};
use hivehub_home::Home;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Untimed runs of each command before the timed ones.
const WARMUP_RUNS: usize = 2;

// ---------------------------------------------------------------------------------------------
// Setup shared with restart.rs (the small helpers are in common.rs).

/// The binaries a benchmark needs.
pub(crate) struct Bins {
    pub launcher: PathBuf,
    pub hubcore: PathBuf,
    pub supervisord: Option<PathBuf>,
    pub supervisorctl: Option<PathBuf>,
    /// runit, s6 and the floor ([`PeerBins::find`]).
    pub peers: PeerBins,
}

impl Bins {
    /// The launcher and hubcore next to this binary; supervisord and supervisorctl from PATH
    /// unless `no_supervisord` (the caller says why they are left out); the other peers as
    /// given.
    pub fn find(no_supervisord: bool, peers: PeerBins) -> Result<Bins> {
        let (supervisord, supervisorctl) = if no_supervisord {
            (None, None)
        } else {
            match (find_in_path("supervisord"), find_in_path("supervisorctl")) {
                (Some(d), Some(c)) => {
                    eprintln!(
                        "supervisord: {}, supervisorctl: {}",
                        d.display(),
                        c.display()
                    );
                    warn_about_other_supervisords();
                    (Some(d), Some(c))
                }
                _ => {
                    eprintln!(
                        "note: supervisord/supervisorctl not found in PATH (Debian: apt-get install supervisor); its rows are skipped"
                    );
                    (None, None)
                }
            }
        };
        Ok(Bins {
            launcher: sibling_binary("launcher")?,
            hubcore: sibling_binary("hubcore")?,
            supervisord,
            supervisorctl,
            peers,
        })
    }
}

/// One supervisor (the launcher, supervisord, runit, s6 or the floor) with N plugins in a
/// temporary folder. Dropping it kills the supervisor, its descendants and every process whose
/// command line contains the folder or that carries the round's mark ([`Supervised`]), then
/// removes the folder.
pub(crate) struct Setup {
    /// Declared first: dropped (processes killed) before the folder is removed.
    pub sup: Supervised,
    pub label: String,
    pub names: Vec<String>,
    /// The folder holding the plugin executables.
    pub plugins: PathBuf,
    /// The launcher's home.
    pub home: Option<Home>,
    /// supervisord's configuration file.
    pub conf: Option<PathBuf>,
    /// runit and s6: each plugin's service folder.
    pub services: Vec<PathBuf>,
    /// runit and s6 with loggers: the folder each plugin's logger writes.
    pub logs: Vec<PathBuf>,
    /// The signal that stops the whole tree (SIGHUP for runsvdir, SIGTERM for the others).
    pub stop_signal: Signal,
    /// The supervisor's stdout and stderr.
    pub out: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Setup {
    /// A setup of `names` in the folder `root` (guarded by `tmp`), its supervisor not yet
    /// started.
    fn new(
        tmp: tempfile::TempDir,
        root: PathBuf,
        label: &str,
        names: &[String],
        plugins: PathBuf,
    ) -> Setup {
        Setup {
            sup: Supervised {
                child: None,
                dir: root.clone(),
            },
            label: label.to_string(),
            names: names.to_vec(),
            plugins,
            home: None,
            conf: None,
            services: Vec::new(),
            logs: Vec::new(),
            stop_signal: Signal::SIGTERM,
            out: root.join("supervisor.out"),
            _tmp: tmp,
        }
    }

    /// Spawns the supervisor ([`prepare_supervisor`]) with its output in `supervisor.out`.
    fn start(&mut self, mut cmd: Command) -> Result<()> {
        prepare_supervisor(&mut cmd, &self.sup.dir, &self.out)?;
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.label))?;
        self.sup.child = Some(child);
        Ok(())
    }

    /// Starts a launcher on a fresh home with `names` as autostart plugins.
    pub fn launcher(
        bins: &Bins,
        names: &[String],
        conf: &LauncherConf,
        label: &str,
    ) -> Result<Setup> {
        Setup::launcher_with(bins, names, conf, label, PLUGIN_SCRIPT)
    }

    /// [`Setup::launcher`] with each plugin a copy of `script`.
    pub fn launcher_with(
        bins: &Bins,
        names: &[String],
        conf: &LauncherConf,
        label: &str,
        script: &str,
    ) -> Result<Setup> {
        let (tmp, root) = bench_tempdir("hivehub-bench-launcher-")?;
        let home = launcher_home(&root, &bins.hubcore, names, conf, script)?;
        let mut cmd = Command::new(&bins.launcher);
        cmd.arg("--home").arg(home.root());
        let mut s = Setup::new(tmp, root, label, names, home.plugins());
        s.home = Some(home);
        s.start(cmd)?;
        Ok(s)
    }

    /// Starts supervisord (in the foreground) with one program per name.
    pub fn supervisord(bin: &Path, names: &[String], autorestart: bool) -> Result<Setup> {
        let (tmp, root) = bench_tempdir("hivehub-bench-sv-")?;
        let (plugins, conf) = supervisord_dir(&root, names, autorestart)?;
        let mut cmd = Command::new(bin);
        cmd.arg("-n").arg("-c").arg(&conf);
        let mut s = Setup::new(tmp, root, "supervisord", names, plugins);
        s.conf = Some(conf);
        s.start(cmd)?;
        Ok(s)
    }

    /// Starts runit, s6 or the floor ([`peer_dir`]) over `names`, each a copy of `script`, with a
    /// logger per plugin if `logged`.
    pub fn peer(
        bins: &Bins,
        peer: Peer,
        names: &[String],
        script: &str,
        logged: bool,
        label: &str,
    ) -> Result<Setup> {
        let (tmp, root) = bench_tempdir("hivehub-bench-peer-")?;
        let d = peer_dir(peer, &bins.peers, &root, names, script, logged)?;
        let mut s = Setup::new(tmp, root, label, names, d.plugins);
        s.services = d.services;
        s.logs = d.logs;
        s.stop_signal = d.stop;
        s.start(d.cmd)?;
        Ok(s)
    }

    /// The supervisor's PID.
    pub fn pid(&self) -> u32 {
        self.sup.pid()
    }

    fn check_alive(&mut self, what: &str) -> Result<()> {
        if let Some(st) = self
            .sup
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            bail!(
                "{} exited ({st}) while {what}; its output:\n{}",
                self.label,
                tail(&self.out, 30)
            );
        }
        Ok(())
    }

    /// Waits until every plugin has a live process; returns the time it took.
    pub fn wait_all_running(&mut self, timeout: Duration) -> Result<Duration> {
        let n = self.names.len();
        let mut obs = Observer::new(&self.plugins);
        let t0 = Instant::now();
        loop {
            let c = obs.census();
            if c.plugins >= n {
                return Ok(t0.elapsed());
            }
            self.check_alive("starting its plugins")?;
            check_interrupted()?;
            if t0.elapsed() > timeout {
                bail!(
                    "only {}/{n} plugins running after {:.0} s under {}; its output:\n{}",
                    c.plugins,
                    timeout.as_secs_f64(),
                    self.label,
                    tail(&self.out, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the supervisor's output contains `needle`.
    pub fn wait_output(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if std::fs::read_to_string(&self.out).is_ok_and(|s| s.contains(needle)) {
                return Ok(());
            }
            self.check_alive(&format!("waiting for `{needle}`"))?;
            check_interrupted()?;
            if t0.elapsed() > timeout {
                bail!(
                    "no `{needle}` from {} after {:.0} s; its output:\n{}",
                    self.label,
                    timeout.as_secs_f64(),
                    tail(&self.out, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Live plugin processes (distinct plugins) right now.
    pub fn census(&self) -> usize {
        Observer::new(&self.plugins).census().plugins
    }

    /// The stop signal (SIGTERM; SIGHUP for runsvdir), then waits for the supervisor to exit
    /// (the launcher stops its plugins and hubcore first) and for the rest of its tree (runsv,
    /// s6-supervise, plugins) to go. Whatever is left is killed when the Setup is dropped.
    pub fn stop(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.sup.child.as_mut()?;
        let _ = kill(Pid::from_raw(child.id() as i32), self.stop_signal);
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(st)) = child.try_wait() {
                self.sup.child = None;
                while t0.elapsed() < timeout && procobs::round_processes(&self.sup.dir) > 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "warning: {} did not exit within {:.0} s of SIGTERM; killing it",
            self.label,
            timeout.as_secs_f64()
        );
        None
    }
}

/// A generous limit for N plugins to start.
pub(crate) fn start_timeout(n: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(200) * n as u32
}

// ---------------------------------------------------------------------------------------------
// control

/// The command-line options of `hivehub-bench control`.
pub struct Opts {
    /// Plugins.
    pub n: usize,
    /// Timed runs of each whole-process command.
    pub runs: usize,
    /// Timed in-process `view/list` requests.
    pub requests: usize,
    /// Leave supervisord out even when it is installed.
    pub no_supervisord: bool,
    /// Leave runit out even when it is installed.
    pub no_runit: bool,
    /// Leave s6 out even when it is installed.
    pub no_s6: bool,
    /// Plugins that only sleep ([`STILL_SCRIPT`], as in issue 15's measurements) instead of
    /// looping over `sleep 1` ([`PLUGIN_SCRIPT`]).
    pub still: bool,
}

impl Opts {
    /// The plugin every supervisor runs.
    fn script(&self) -> &'static str {
        if self.still {
            STILL_SCRIPT
        } else {
            PLUGIN_SCRIPT
        }
    }
}

/// How the output of a timed command is checked.
#[derive(Clone, Copy)]
enum Check {
    /// `hubcli launcher ls`: a row per plugin.
    Table,
    /// `hubcli launcher ls --json`: an array of N + 1 PluginInfo (the plugins and hubcore).
    Json,
    /// `supervisorctl status`: N lines with RUNNING.
    Status,
    /// `sv status`, the `s6-svstat` loop: N lines that start with this.
    Lines(&'static str),
    /// One `s6-svstat`: one line that starts with this.
    Line(&'static str),
    /// Anything that exits 0.
    Exit0,
}

struct Timed {
    label: String,
    program: PathBuf,
    args: Vec<OsString>,
    check: Check,
    times: Vec<Duration>,
    /// Bytes on stdout (last run).
    out_bytes: usize,
}

impl Timed {
    /// A command not run yet.
    fn new(label: &str, program: &Path, args: Vec<OsString>, check: Check) -> Timed {
        Timed {
            label: label.into(),
            program: program.to_path_buf(),
            args,
            check,
            times: Vec::new(),
            out_bytes: 0,
        }
    }
}

fn check_output(check: Check, n: usize, o: &Output) -> Result<()> {
    let out = String::from_utf8_lossy(&o.stdout);
    // supervisorctl status exits 0 only when every program runs.
    if !o.status.success() {
        bail!(
            "exit status {}; stderr: {}; stdout: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim(),
            out.lines().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    match check {
        Check::Table => {
            let rows = out.lines().filter(|l| l.contains("plugin")).count();
            if rows < n {
                bail!("{rows} plugin rows in the table, {n} expected:\n{out}");
            }
        }
        Check::Json => {
            let v: serde_json::Value = serde_json::from_str(&out).context("not JSON")?;
            let len = v.as_array().map_or(0, Vec::len);
            if len != n + 1 {
                bail!("{len} entries in the JSON array, {} expected", n + 1);
            }
        }
        Check::Status => {
            let running = out.lines().filter(|l| l.contains(" RUNNING ")).count();
            if running != n {
                bail!("{running} RUNNING lines, {n} expected:\n{out}");
            }
        }
        Check::Lines(prefix) | Check::Line(prefix) => {
            let want = if matches!(check, Check::Line(_)) {
                1
            } else {
                n
            };
            let running = out.lines().filter(|l| l.starts_with(prefix)).count();
            if running != want {
                bail!("{running} lines starting with `{prefix}`, {want} expected:\n{out}");
            }
        }
        Check::Exit0 => {}
    }
    Ok(())
}

fn run_once(t: &Timed, n: usize) -> Result<(Duration, usize)> {
    let mut cmd = Command::new(&t.program);
    cmd.args(&t.args)
        .env_remove("HIVEHUB_HOME")
        .env_remove("HIVEHUB_SERVER")
        .env_remove("COLUMNS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", t.label))?;
    let o = child.wait_with_output()?;
    let took = t0.elapsed();
    check_output(t.check, n, &o).with_context(|| format!("{}: unexpected result", t.label))?;
    Ok((took, o.stdout.len()))
}

/// Warm-up runs of each command, then `runs` rounds running each command once, in turn.
fn time_commands(cmds: &mut [Timed], n: usize, runs: usize) -> Result<()> {
    for t in cmds.iter() {
        for _ in 0..WARMUP_RUNS {
            run_once(t, n)?;
        }
    }
    // Each run starts with the next command in turn: whichever follows the s6 loop (a hundred
    // processes) pays for the caches it evicted, and that must not always be the same one.
    let len = cmds.len();
    for r in 0..runs {
        check_interrupted()?;
        for i in 0..len {
            let t = &mut cmds[(r + i) % len];
            let (d, bytes) = run_once(t, n)?;
            t.times.push(d);
            t.out_bytes = bytes;
        }
    }
    Ok(())
}

/// The core's TLS URL, from `run/hubcore.url`.
fn tls_url(home: &Home) -> Result<String> {
    Ok(std::fs::read_to_string(home.core_url_file())
        .context("no run/hubcore.url")?
        .trim()
        .to_string())
}

/// admin's options, connecting as hubcli does: through the core's socket when there is one.
fn admin_options(home: &Home) -> Result<ClientOptions> {
    let socket = home.core_socket_file();
    let url = if socket.exists() {
        ServerUrl::Unix(socket).to_string()
    } else {
        tls_url(home)?
    };
    let mut o = ClientOptions::from_home(home, ADMIN_ID, Some(&url))?;
    o.refresh_token = false;
    o.connect_timeout = Duration::from_secs(10);
    o.request_timeout = Duration::from_secs(5);
    Ok(o)
}

async fn list(client: &HubClient) -> Result<(ListResp, usize)> {
    let v = client
        .request_raw(
            LAUNCHER_ID,
            CAP_VIEW,
            methods::LIST,
            b"{}".to_vec(),
            Duration::from_secs(5),
        )
        .await?;
    let bytes = serde_json::to_vec(&v)?.len();
    Ok((serde_json::from_value(v)?, bytes))
}

/// Waits until the launcher answers `view/list` with N + 1 running entries.
async fn wait_launcher_answers(home: &Home, n: usize, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    let mut last = String::from("no answer yet");
    while t0.elapsed() < timeout {
        if let Ok(opts) = admin_options(home) {
            match HubClient::connect(opts).await {
                Ok(c) => {
                    loop {
                        match list(&c).await {
                            Ok((r, _)) => {
                                let running = r
                                    .plugins
                                    .iter()
                                    .filter(|p| p.running && p.state == PluginState::Running)
                                    .count();
                                if r.plugins.len() == n + 1 && running == n + 1 {
                                    c.disconnect().await;
                                    return Ok(());
                                }
                                last = format!("{running}/{} entries running", r.plugins.len());
                            }
                            Err(e) => last = format!("{e:#}"),
                        }
                        if t0.elapsed() > timeout {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    c.disconnect().await;
                }
                Err(e) => last = e.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the launcher did not list {n} running plugins within {:.0} s: {last}",
        timeout.as_secs_f64()
    )
}

/// What the in-process part measured.
struct InProcess {
    /// Sequential `view/list` round trips.
    list: Vec<Duration>,
    /// Reply size (JSON bytes of the result).
    reply_bytes: usize,
    /// hubcli's steps in process: connect, first `list`, disconnect.
    connect: Vec<Duration>,
    first_list: Vec<Duration>,
    disconnect: Vec<Duration>,
}

async fn in_process(home: &Home, requests: usize, cycles: usize) -> Result<InProcess> {
    let client = HubClient::connect(admin_options(home)?).await?;
    let mut reply_bytes = 0;
    for _ in 0..(requests / 10).max(20) {
        reply_bytes = list(&client).await?.1;
    }
    let mut lat = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let (r, _) = list(&client).await?;
        lat.push(t.elapsed());
        std::hint::black_box(r);
    }
    client.disconnect().await;

    let mut res = InProcess {
        list: lat,
        reply_bytes,
        connect: Vec::new(),
        first_list: Vec::new(),
        disconnect: Vec::new(),
    };
    for _ in 0..cycles {
        let opts = admin_options(home)?;
        let t0 = Instant::now();
        let c = HubClient::connect(opts).await?;
        let t1 = Instant::now();
        let _ = list(&c).await?;
        let t2 = Instant::now();
        c.disconnect().await;
        let t3 = Instant::now();
        res.connect.push(t1 - t0);
        res.first_list.push(t2 - t1);
        res.disconnect.push(t3 - t2);
    }
    Ok(res)
}

fn med(v: &[Duration]) -> f64 {
    quantile(&sorted_ms(v), 0.5)
}

fn q(v: &[Duration], p: f64) -> f64 {
    quantile(&sorted_ms(v), p)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// The timed runs start once other processes used less than this many cores for 3 s ...
const QUIET_CORES: f64 = 0.15;
/// ... or after this long.
const QUIET_WAIT: Duration = Duration::from_secs(60);

/// Runs the benchmark and prints the markdown report.
pub async fn run(o: Opts) -> Result<()> {
    if o.n == 0 || o.runs == 0 || o.requests == 0 {
        bail!("nothing to do: --n, --runs and --requests must be at least 1");
    }
    if o.no_supervisord {
        eprintln!("note: supervisord skipped (--no-supervisord)");
    }
    let bins = Bins::find(o.no_supervisord, PeerBins::find(o.no_runit, o.no_s6))?;
    let hubcli = sibling_binary("hubcli")?;
    raise_nofile(o.n);
    eprintln!("{} load average at start: {}", clock(), loadavg());
    let names = plugin_names(o.n);

    let mut lh = Setup::launcher_with(
        &bins,
        &names,
        &LauncherConf::default(),
        "launcher",
        o.script(),
    )?;
    let took = lh.wait_all_running(start_timeout(o.n))?;
    eprintln!("launcher: {} plugins running after {:.0} ms", o.n, ms(took));
    let home = lh.home.clone().context("launcher home")?;
    wait_launcher_answers(&home, o.n, Duration::from_secs(60)).await?;
    eprintln!(
        "launcher: view/list reports all {} plugins and hubcore running",
        o.n
    );

    // The peers, running side by side with the launcher, and each one's "status of all"
    // command (`cmds[i]` is `peers[i]`'s).
    let mut peers: Vec<Setup> = Vec::new();
    let mut cmds: Vec<Timed> = Vec::new();
    // One call of the s6 loop's command, to tell the per-service cost from the loop's.
    let mut s6_one = None;
    if let (Some(d), Some(ctl)) = (&bins.supervisord, &bins.supervisorctl) {
        let s = Setup::supervisord(d, &names, false)?;
        let conf = s.conf.clone().context("supervisord conf")?;
        cmds.push(Timed::new(
            SUPERVISORCTL,
            ctl,
            vec!["-c".into(), conf.into(), "status".into()],
            Check::Status,
        ));
        peers.push(s);
    }
    if let Some(r) = &bins.peers.runit {
        let s = Setup::peer(&bins, Peer::Runit, &names, o.script(), false, "runit")?;
        let mut args: Vec<OsString> = vec!["status".into()];
        args.extend(s.services.iter().map(|d| d.clone().into_os_string()));
        cmds.push(Timed::new(SV_STATUS, &r.sv, args, Check::Lines("run: ")));
        peers.push(s);
    }
    if let Some(b) = &bins.peers.s6 {
        let s = Setup::peer(
            &bins,
            Peer::S6 { ready: true },
            &names,
            o.script(),
            false,
            "s6",
        )?;
        let mut args: Vec<OsString> = vec![
            "-c".into(),
            format!("for d; do {} \"$d\" || exit 1; done", b.svstat.display()).into(),
            "sh".into(),
        ];
        args.extend(s.services.iter().map(|d| d.clone().into_os_string()));
        cmds.push(Timed::new(
            S6_SVSTAT,
            Path::new("/bin/sh"),
            args,
            Check::Lines("up "),
        ));
        let first = s.services.first().context("no s6 service")?;
        s6_one = Some(Timed::new(
            S6_SVSTAT_ONE,
            &b.svstat,
            vec![first.clone().into_os_string()],
            Check::Line("up "),
        ));
        peers.push(s);
    }
    for (s, status) in peers.iter_mut().zip(&cmds) {
        let took = s.wait_all_running(start_timeout(o.n))?;
        wait_status(status, o.n)?;
        eprintln!(
            "{}: {} plugins running after {:.0} ms; `{}` reports all",
            s.label,
            o.n,
            ms(took),
            status.label
        );
    }
    cmds.extend(s6_one);

    let ls_args: Vec<OsString> = vec![
        "--home".into(),
        home.root().into(),
        "launcher".into(),
        "ls".into(),
    ];
    let mut json_args = ls_args.clone();
    json_args.push("--json".into());
    let mut tls_args = ls_args.clone();
    tls_args.splice(2..2, ["--server".into(), tls_url(&home)?.into()]);
    cmds.splice(
        0..0,
        [
            Timed::new("hubcli launcher ls", &hubcli, ls_args, Check::Table),
            Timed::new("hubcli launcher ls --json", &hubcli, json_args, Check::Json),
            Timed::new(LS_TLS, &hubcli, tls_args, Check::Table),
            Timed::new(
                "hubcli --version",
                &hubcli,
                vec!["--version".into()],
                Check::Exit0,
            ),
        ],
    );

    // The starts of 3 × N processes are over before anything is timed: wait (at most a minute)
    // until the rest of the machine is quiet, as the launcher benchmark does before a round.
    let quiet = crate::launcher::wait_quiet(QUIET_CORES, QUIET_WAIT)?;
    eprintln!(
        "{} load average before the timed runs: {}{}",
        clock(),
        loadavg(),
        if quiet { "" } else { " (never quiet)" }
    );
    let load = if quiet {
        loadavg()
    } else {
        format!("{}, not quiet within {} s", loadavg(), QUIET_WAIT.as_secs())
    };
    let (n, runs) = (o.n, o.runs);
    let cmds = tokio::task::spawn_blocking(move || -> Result<Vec<Timed>> {
        time_commands(&mut cmds, n, runs)?;
        Ok(cmds)
    })
    .await??;
    for t in &cmds {
        eprintln!(
            "{}: {} (ms, in run order)",
            t.label,
            t.times
                .iter()
                .map(|d| format!("{:.1}", ms(*d)))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    check_interrupted()?;
    let ip = in_process(&home, o.requests, o.runs).await?;
    eprintln!("{} load average at end: {}", clock(), loadavg());

    let mut outcomes = vec![Outcome::of(&mut lh, o.n)];
    outcomes.extend(peers.iter_mut().map(|s| Outcome::of(s, o.n)));
    drop(peers);
    drop(lh);

    report(&o, &cmds, &ip, &outcomes, &bins, &load);
    Ok(())
}

const SUPERVISORCTL: &str = "supervisorctl status";
const SV_STATUS: &str = "sv status";
const S6_SVSTAT: &str = "s6-svstat × N";
const S6_SVSTAT_ONE: &str = "s6-svstat (one service)";

/// Runs a status command until it reports all N running (the supervisor may answer before it
/// has started everything, or before its control files exist).
fn wait_status(probe: &Timed, n: usize) -> Result<()> {
    let t0 = Instant::now();
    loop {
        match run_once(probe, n) {
            Ok(_) => return Ok(()),
            Err(e) if t0.elapsed() > Duration::from_secs(60) => {
                return Err(e.context(format!("`{}` never reported all running", probe.label)))
            }
            Err(_) => nap(Duration::from_millis(200))?,
        }
    }
}

/// How a supervisor ended the run.
struct Outcome {
    label: String,
    /// Plugins not running at the end.
    lost: usize,
    /// Exit status after the stop signal.
    exit: Option<std::process::ExitStatus>,
    stop_signal: Signal,
}

impl Outcome {
    /// Counts the plugins still running, then stops the supervisor.
    fn of(s: &mut Setup, n: usize) -> Outcome {
        let lost = n.saturating_sub(s.census());
        Outcome {
            label: s.label.clone(),
            lost,
            exit: s.stop(Duration::from_secs(60)),
            stop_signal: s.stop_signal,
        }
    }
}

/// The label of `hubcli launcher ls` forced onto the TLS listener.
const LS_TLS: &str = "hubcli launcher ls (TLS)";

fn report(o: &Opts, cmds: &[Timed], ip: &InProcess, outcomes: &[Outcome], bins: &Bins, load: &str) {
    let by = |l: &str| cmds.iter().find(|t| t.label == l);
    let ls = by("hubcli launcher ls");
    let js = by("hubcli launcher ls --json");
    let ver = by("hubcli --version");
    let st = by(SUPERVISORCTL);
    let sv = by(SV_STATUS);
    let s6 = by(S6_SVSTAT);
    let cell = |t: Option<&Timed>, p: f64| match t {
        Some(t) if !t.times.is_empty() => format!("{:.1} ms", q(&t.times, p)),
        _ => "—".into(),
    };
    let ratio = |a: Option<&Timed>, b: Option<&Timed>, p: f64| match (a, b) {
        (Some(a), Some(b)) if !a.times.is_empty() && !b.times.is_empty() => {
            format!("{:.2}", q(&a.times, p) / q(&b.times, p))
        }
        _ => "—".into(),
    };
    let ls_med = ls.map(|t| med(&t.times)).unwrap_or(f64::NAN);
    let js_med = js.map(|t| med(&t.times)).unwrap_or(f64::NAN);
    let list_med = med(&ip.list);

    println!(
        "\n**Launcher control round trip, N = {} running plugins** (whole process: {} runs each, spawn to exit; in process: {} sequential requests; load average before the timed runs {load})\n",
        o.n,
        o.runs,
        ip.list.len()
    );
    println!("| measure | hivehub | supervisord (`supervisorctl status`) | runit (`sv status`) | s6 (`s6-svstat` × N) | ratio hivehub/runit | ratio hivehub/supervisord | target | |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let whole = |what: &str, t: Option<&Timed>, p: f64, target: &str, verdict: &str| {
        println!(
            "| whole process `{what}`, {} | {} | {} | {} | {} | {} | {} | {target} | {verdict} |",
            if p == 0.5 { "median" } else { "p90" },
            cell(t, p),
            cell(st, p),
            cell(sv, p),
            cell(s6, p),
            ratio(t, sv, p),
            ratio(t, st, p),
        );
    };
    whole(
        "hubcli launcher ls",
        ls,
        0.5,
        "< 4 ms",
        verdict(ls_med < 4.0),
    );
    whole("hubcli launcher ls", ls, 0.9, "–", "");
    whole(
        "hubcli launcher ls --json",
        js,
        0.5,
        "< 4 ms",
        verdict(js_med < 4.0),
    );
    whole("hubcli launcher ls --json", js, 0.9, "–", "");
    println!(
        "| in process `view/list` request, median | {:.2} ms | – | – | – | – | – | < 2 ms | {} |",
        list_med,
        verdict(list_med < 2.0)
    );
    println!(
        "| in process `view/list` request, p99 | {:.2} ms | – | – | – | – | – | – | |",
        q(&ip.list, 0.99)
    );

    println!("\nWhere the whole-process time goes (medians):\n");
    println!(
        "- `hubcli --version` (start the binary, parse arguments, exit; no hub): {}",
        cell(ver, 0.5)
    );
    if let Some(one) = by(S6_SVSTAT_ONE) {
        println!(
            "- s6 has no \"status of all\" command outside s6-rc: the s6 column is one `/bin/sh -c 'for d; do s6-svstat \"$d\" || exit 1; done'` over the N service folders; one `s6-svstat` alone takes {}.",
            cell(Some(one), 0.5)
        );
    }
    println!(
        "- `hubcli launcher ls` over TLS (`--server mqtts://…` instead of the core's socket): {}",
        cell(by(LS_TLS), 0.5)
    );
    println!(
        "- in process, the same steps as `hubcli launcher ls` ({} cycles): connect (socket + login + inbox subscription) {:.2} ms, first `view/list` {:.2} ms, disconnect {:.2} ms",
        ip.connect.len(),
        med(&ip.connect),
        med(&ip.first_list),
        med(&ip.disconnect)
    );
    let bytes: Vec<String> = [st, sv, s6]
        .into_iter()
        .flatten()
        .map(|t| format!(", `{}` {} bytes", t.label, t.out_bytes))
        .collect();
    println!(
        "- `view/list` reply: {} bytes of JSON for {} entries; `hubcli launcher ls` printed {} bytes, `--json` {} bytes{}",
        ip.reply_bytes,
        o.n + 1,
        ls.map_or(0, |t| t.out_bytes),
        js.map_or(0, |t| t.out_bytes),
        bytes.concat()
    );
    let mut notes = Vec::new();
    for oc in outcomes {
        if oc.lost > 0 {
            notes.push(format!(
                "{} plugins died under {} during the run",
                oc.lost, oc.label
            ));
        }
        // runsvdir exits 111 on SIGHUP (runsvdir(8)), after telling every runsv to stop.
        let expected = |s: &std::process::ExitStatus| {
            s.success() || (oc.stop_signal == Signal::SIGHUP && s.code() == Some(111))
        };
        if let Some(s) = oc.exit.filter(|s| !expected(s)) {
            notes.push(format!(
                "{} exit status after {}: {s}",
                oc.label,
                oc.stop_signal.as_str()
            ));
        }
    }
    if st.is_none() {
        notes.push("supervisord not run (not installed, or --no-supervisord)".into());
    }
    if bins.peers.runit.is_none() {
        notes.push("runit not run (not installed, or --no-runit)".into());
    }
    if bins.peers.s6.is_none() {
        notes.push("s6 not run (not installed, or --no-s6)".into());
    }
    notes.push("the floor (`bench-floor`) has no control interface: no column".into());
    println!(
        "- setup: plugin `{}`, launcher with `createPluginCred: false`, `autorestart: never`; \
         supervisord with `autorestart=false`, `startsecs=0`; runit: runsvdir, a `run` script \
         per plugin that execs it; s6: s6-svscan, the same `run` scripts; all running side by \
         side, the commands interleaved run by run (each run starting with the next in turn) after \
         {WARMUP_RUNS} warm-up runs each; \
         output of every run checked.",
        o.script().lines().nth(1).unwrap_or_default()
    );
    for n in notes {
        println!("- note: {n}");
    }
}
