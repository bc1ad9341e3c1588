//! `hivehub-bench control`: the `hubcli launcher ls` round trip with N running plugins, against
//! `supervisorctl status` over the same N programs under Debian's supervisord, in the same run.
//!
//! * Setup: a launcher home (hubcore in `bin/`, N copies of the trivial plugin
//!   [`PLUGIN_SCRIPT`] in `plugins/`, `createPluginCred: false`, `autorestart: never`) and a
//!   supervisord with the same N programs. The benchmark waits until all N plugins have a live
//!   process (seen in `/proc`), the launcher's `view/list` reports N + 1 running entries (the
//!   plugins and hubcore), and `supervisorctl status` reports N `RUNNING`.
//! * Whole process: `hubcli --home H launcher ls`, `hubcli --home H launcher ls --json` and
//!   `supervisorctl -c CONF status`, each timed from `spawn` to exit (stdout and stderr read
//!   through pipes), after 2 untimed warm-up runs each. The three commands are interleaved run
//!   by run, so drift on the (shared) machine hits them alike. Every output is checked (N
//!   plugin rows, a JSON array of N + 1, N `RUNNING` lines).
//! * In process: one SDK client logged in as `admin` (the credentials hubcore wrote in the home)
//!   sends `launcher/view/list` sequentially, after a warm-up; each request-to-reply time is
//!   recorded. To break the whole-process time down, the same client steps as hubcli (connect,
//!   one `list`, disconnect) are timed in process, and `hubcli --version` gives the floor of
//!   starting the binary at all.
//!
//! The module also holds the setup shared with [`crate::restart`]: supervisors guarded so that
//! every process is gone when a [`Setup`] is dropped, even on an error path. The homes, configs
//! and small helpers every benchmark uses are in [`crate::common`].

use crate::common::{
    bench_tempdir, clock, find_in_path, launcher_home, loadavg, ms, plugin_names, quantile,
    raise_nofile, sorted_ms, supervisord_dir, tail, warn_about_other_supervisords, LauncherConf,
    PLUGIN_SCRIPT,
};
use crate::procobs::{Observer, Supervised};
use crate::sibling_binary;
use anyhow::{bail, Context, Result};
use hivehub_api::auth::{ADMIN_ID, LAUNCHER_ID};
use hivehub_api::launcher::{methods, ListResp, PluginState, CAP_VIEW};
use hivehub_client::{ClientOptions, HubClient};
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
}

impl Bins {
    /// The launcher and hubcore next to this binary; supervisord and supervisorctl from PATH
    /// unless `no_supervisord` (the caller says why they are left out).
    pub fn find(no_supervisord: bool) -> Result<Bins> {
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
        })
    }
}

/// One supervisor (the launcher or supervisord) with N plugins in a temporary folder. Dropping
/// it kills the supervisor, its descendants and every process whose command line contains the
/// folder ([`Supervised`]), then removes the folder.
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
            out: root.join("supervisor.out"),
            _tmp: tmp,
        }
    }

    /// Spawns the supervisor with its output in `supervisor.out`.
    fn start(&mut self, mut cmd: Command) -> Result<()> {
        let log = std::fs::File::create(&self.out)?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
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
        let (tmp, root) = bench_tempdir("hivehub-bench-launcher-")?;
        let home = launcher_home(&root, &bins.hubcore, names, conf)?;
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

    /// SIGTERM, then waits for the supervisor to exit (the launcher stops its plugins and
    /// hubcore first). Whatever is left is killed when the Setup is dropped.
    pub fn stop(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.sup.child.as_mut()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(st)) = child.try_wait() {
                self.sup.child = None;
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
    for _ in 0..runs {
        for t in cmds.iter_mut() {
            let (d, bytes) = run_once(t, n)?;
            t.times.push(d);
            t.out_bytes = bytes;
        }
    }
    Ok(())
}

fn admin_options(home: &Home) -> Result<ClientOptions> {
    let url = std::fs::read_to_string(home.core_url_file())
        .context("no run/hubcore.url")?
        .trim()
        .to_string();
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

/// Runs the benchmark and prints the markdown report.
pub async fn run(o: Opts) -> Result<()> {
    if o.n == 0 || o.runs == 0 || o.requests == 0 {
        bail!("nothing to do: --n, --runs and --requests must be at least 1");
    }
    if o.no_supervisord {
        eprintln!("note: supervisord skipped (--no-supervisord)");
    }
    let bins = Bins::find(o.no_supervisord)?;
    let hubcli = sibling_binary("hubcli")?;
    raise_nofile(o.n);
    eprintln!("{} load average at start: {}", clock(), loadavg());
    let names = plugin_names(o.n);

    let mut lh = Setup::launcher(
        &bins,
        &names,
        &LauncherConf {
            creds: false,
            autorestart: "never",
            zero_backoff: false,
            sample_interval: "2s",
            sandbox: true,
        },
        "launcher",
    )?;
    let took = lh.wait_all_running(start_timeout(o.n))?;
    eprintln!("launcher: {} plugins running after {:.0} ms", o.n, ms(took));
    let home = lh.home.clone().context("launcher home")?;
    wait_launcher_answers(&home, o.n, Duration::from_secs(60)).await?;
    eprintln!(
        "launcher: view/list reports all {} plugins and hubcore running",
        o.n
    );

    let mut sv = match (&bins.supervisord, &bins.supervisorctl) {
        (Some(d), Some(_)) => {
            let mut s = Setup::supervisord(d, &names, false)?;
            let took = s.wait_all_running(start_timeout(o.n))?;
            eprintln!(
                "supervisord: {} programs running after {:.0} ms",
                o.n,
                ms(took)
            );
            Some(s)
        }
        _ => None,
    };

    let ls_args: Vec<OsString> = vec![
        "--home".into(),
        home.root().into(),
        "launcher".into(),
        "ls".into(),
    ];
    let mut json_args = ls_args.clone();
    json_args.push("--json".into());
    let mut cmds = vec![
        Timed::new("hubcli launcher ls", &hubcli, ls_args, Check::Table),
        Timed::new("hubcli launcher ls --json", &hubcli, json_args, Check::Json),
        Timed::new(
            "hubcli --version",
            &hubcli,
            vec!["--version".into()],
            Check::Exit0,
        ),
    ];
    if let (Some(s), Some(ctl)) = (&mut sv, &bins.supervisorctl) {
        let conf = s.conf.clone().context("supervisord conf")?;
        // Wait until supervisorctl answers and reports every program RUNNING.
        let t0 = Instant::now();
        let probe = Timed::new(
            "supervisorctl status",
            ctl,
            vec!["-c".into(), conf.into(), "status".into()],
            Check::Status,
        );
        loop {
            match run_once(&probe, o.n) {
                Ok(_) => break,
                Err(e) if t0.elapsed() > Duration::from_secs(60) => {
                    return Err(e.context("supervisorctl status never reported all RUNNING"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        cmds.push(probe);
    }

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

    let ip = in_process(&home, o.requests, o.runs).await?;
    eprintln!("{} load average at end: {}", clock(), loadavg());

    let lost_launcher = o.n.saturating_sub(lh.census());
    let lost_sv = sv.as_ref().map(|s| o.n.saturating_sub(s.census()));
    let lh_exit = lh.stop(Duration::from_secs(60));
    let sv_exit = sv.as_mut().and_then(|s| s.stop(Duration::from_secs(60)));
    drop(sv);
    drop(lh);

    report(&o, &cmds, &ip, lost_launcher, lost_sv, lh_exit, sv_exit);
    Ok(())
}

fn report(
    o: &Opts,
    cmds: &[Timed],
    ip: &InProcess,
    lost_launcher: usize,
    lost_sv: Option<usize>,
    lh_exit: Option<std::process::ExitStatus>,
    sv_exit: Option<std::process::ExitStatus>,
) {
    let by = |l: &str| cmds.iter().find(|t| t.label == l);
    let ls = by("hubcli launcher ls");
    let js = by("hubcli launcher ls --json");
    let ver = by("hubcli --version");
    let st = by("supervisorctl status");
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
        "\n**Launcher control round trip, N = {} running plugins** (whole process: {} runs each, spawn to exit; in process: {} sequential requests)\n",
        o.n,
        o.runs,
        ip.list.len()
    );
    println!("| measure | hivehub | supervisord (`supervisorctl status`) | ratio hivehub/supervisord | target | |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| whole process `hubcli launcher ls`, median | {} | {} | {} | < 50 ms | {} |",
        cell(ls, 0.5),
        cell(st, 0.5),
        ratio(ls, st, 0.5),
        verdict(ls_med < 50.0)
    );
    println!(
        "| whole process `hubcli launcher ls`, p90 | {} | {} | {} | – | |",
        cell(ls, 0.9),
        cell(st, 0.9),
        ratio(ls, st, 0.9)
    );
    println!(
        "| whole process `hubcli launcher ls --json`, median | {} | {} | {} | < 50 ms | {} |",
        cell(js, 0.5),
        cell(st, 0.5),
        ratio(js, st, 0.5),
        verdict(js_med < 50.0)
    );
    println!(
        "| whole process `hubcli launcher ls --json`, p90 | {} | {} | {} | – | |",
        cell(js, 0.9),
        cell(st, 0.9),
        ratio(js, st, 0.9)
    );
    println!(
        "| in process `view/list` request, median | {:.2} ms | – | – | < 2 ms | {} |",
        list_med,
        verdict(list_med < 2.0)
    );
    println!(
        "| in process `view/list` request, p99 | {:.2} ms | – | – | – | |",
        q(&ip.list, 0.99)
    );

    println!("\nWhere the whole-process time goes (medians):\n");
    println!(
        "- `hubcli --version` (start the binary, parse arguments, exit; no hub): {}",
        cell(ver, 0.5)
    );
    println!(
        "- in process, the same steps as `hubcli launcher ls` ({} cycles): connect (TLS + login + inbox subscription) {:.2} ms, first `view/list` {:.2} ms, disconnect {:.2} ms",
        ip.connect.len(),
        med(&ip.connect),
        med(&ip.first_list),
        med(&ip.disconnect)
    );
    println!(
        "- `view/list` reply: {} bytes of JSON for {} entries; `hubcli launcher ls` printed {} bytes, `--json` {} bytes{}",
        ip.reply_bytes,
        o.n + 1,
        ls.map_or(0, |t| t.out_bytes),
        js.map_or(0, |t| t.out_bytes),
        st.map_or(String::new(), |t| format!(
            ", `supervisorctl status` {} bytes",
            t.out_bytes
        ))
    );
    let mut notes = Vec::new();
    if lost_launcher > 0 {
        notes.push(format!(
            "{lost_launcher} launcher plugins died during the run"
        ));
    }
    if let Some(l) = lost_sv.filter(|l| *l > 0) {
        notes.push(format!("{l} supervisord programs died during the run"));
    }
    if let Some(s) = lh_exit.filter(|s| !s.success()) {
        notes.push(format!("launcher exit status after SIGTERM: {s}"));
    }
    if let Some(s) = sv_exit.filter(|s| !s.success()) {
        notes.push(format!("supervisord exit status after SIGTERM: {s}"));
    }
    if st.is_none() {
        notes.push("supervisord not run (not installed, or --no-supervisord)".into());
    }
    println!(
        "- setup: plugin `{}`, launcher with `createPluginCred: false`, `autorestart: never`; \
         supervisord with `autorestart=false`, `startsecs=0`; both running side by side, the \
         commands interleaved run by run after {WARMUP_RUNS} warm-up runs each; output of \
         every run checked.",
        PLUGIN_SCRIPT.lines().nth(1).unwrap_or_default()
    );
    for n in notes {
        println!("- note: {n}");
    }
}
