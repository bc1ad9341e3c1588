//! Text rendering of hubcli's output. Pure functions of their inputs (the current time and the
//! terminal width are parameters), so every layout is unit-tested without a hub.

use comfy_table::{presets, CellAlignment, ContentArrangement, Row, Table};
use hivehub_api::auth::ClientProfile;
use hivehub_api::cluster::LauncherStatus;
use hivehub_api::launcher::{
    BatchItem, ExitInfo, LauncherEvent, PluginInfo, PluginState, ResourceSample, StatusResp,
};
use serde::Serialize;

/// What stands in for a value that is not known (never a fake 0).
pub const NONE: &str = "-";

/// Uptime for people: "45s", "3m12s", "2h05m", "4d03h" (below 10 days), "12d".
pub fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if secs < 60 {
        format!("{s}s")
    } else if secs < 3600 {
        format!("{m}m{s:02}s")
    } else if d == 0 {
        format!("{h}h{m:02}m")
    } else if d < 10 {
        format!("{d}d{h:02}h")
    } else {
        format!("{d}d")
    }
}

/// Like [`uptime`], with a tenth of a second below 10 s: a crash loop's "ran 0.3s" matters.
pub fn uptime_f64(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        NONE.to_string()
    } else if secs < 10.0 {
        format!("{secs:.1}s")
    } else {
        uptime(secs as u64)
    }
}

/// A byte count in MiB or GiB: "0.5 MiB", "4.2 MiB", "245 MiB", "1.5 GiB".
pub fn memory(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib < 10.0 {
        format!("{mib:.1} MiB")
    } else if mib < 1024.0 {
        format!("{mib:.0} MiB")
    } else if mib < 100.0 * 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{:.0} GiB", mib / 1024.0)
    }
}

/// A file size: "512 B", "3.4 KiB", then as [`memory`].
pub fn file_size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        memory(bytes)
    }
}

/// Seconds a running plugin has been up at `now_ms`: from its start time, since a retained
/// status carries the uptime of when it was published; else the reported uptime.
pub fn uptime_at(p: &PluginInfo, now_ms: u64) -> Option<u64> {
    if !p.running {
        return None;
    }
    match p.start_time {
        Some(t) if t <= now_ms => Some((now_ms - t) / 1000),
        _ => p.uptime,
    }
}

/// CPU use in percent of one core.
pub fn cpu(percent: f64) -> String {
    format!("{percent:.1}%")
}

/// A unix-milliseconds time as RFC 3339 UTC with milliseconds: "2026-11-26T08:55:21.123Z".
pub fn timestamp(ms: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => format!("@{ms}ms"),
    }
}

/// A unix-seconds time to the minute, UTC: "2026-11-26 08:55" (for tables).
pub fn date(secs: u64) -> String {
    match i64::try_from(secs).map(time::OffsetDateTime::from_unix_timestamp) {
        Ok(Ok(t)) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        _ => format!("@{secs}"),
    }
}

/// How long ago `then_ms` was, at `now_ms` ("3m12s"); a time in the future reads "0s".
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    uptime(now_ms.saturating_sub(then_ms) / 1000)
}

/// A signal's name ("SIGTERM"), or its number when unknown.
pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

/// How a process ended: "exit code 1", "killed by SIGKILL".
pub fn exit_text(e: &ExitInfo) -> String {
    match (e.code, e.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by {}", signal_name(s)),
        (None, None) => "ended".to_string(),
    }
}

/// The "last error" of a plugin: why a plugin that is not running is not, when that is an
/// error. In state `failed`, its status text (or how its last process ended); in `backoff`, how
/// its last process ended, how long ago and when it is retried; in `missing`, its status text.
/// Anything else is no error, [`NONE`]: a running plugin (whatever ended its previous process),
/// a stop by a user ("killed by SIGTERM"), a plugin that ended by itself and stays stopped.
pub fn last_error(p: &PluginInfo, now_ms: u64) -> String {
    if p.running {
        return NONE.to_string();
    }
    let exit = || match &p.last_exit {
        Some(e) => format!("{} ({} ago)", exit_text(e), ago(e.time, now_ms)),
        None => NONE.to_string(),
    };
    match p.state {
        PluginState::Failed if !p.status.is_empty() => p.status.clone(),
        PluginState::Failed => exit(),
        PluginState::Backoff => {
            let mut s = exit();
            if let Some(t) = p.next_retry_at {
                s.push_str(&format!("; retry #{} in {}", p.attempt, ago(now_ms, t)));
            }
            s
        }
        PluginState::Missing if !p.status.is_empty() => p.status.clone(),
        _ => NONE.to_string(),
    }
}

fn or_none<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| NONE.to_string())
}

/// Columns are separated by this many spaces.
const GAP: usize = 2;

/// `s` cut to `w` characters, the last one an ellipsis when something was cut.
pub fn truncate(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Cuts the cells of the columns in `shrink` (in that order, each down to its minimum width)
/// until the table fits `width`. Cutting by characters keeps as much text as possible, where
/// word wrapping would leave a "killed by…" stub.
fn fit(header: &[&str], rows: &mut [Vec<String>], width: usize, shrink: &[(usize, usize)]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows.iter() {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let total = |ws: &[usize]| ws.iter().sum::<usize>() + GAP * ws.len().saturating_sub(1);
    for &(col, min) in shrink {
        let excess = total(&widths).saturating_sub(width);
        if excess == 0 {
            break;
        }
        let Some(w) = widths.get_mut(col) else {
            continue;
        };
        let target = w
            .saturating_sub(excess)
            .max(min.max(header[col].chars().count()));
        if target < *w {
            *w = target;
            for r in rows.iter_mut() {
                if let Some(c) = r.get_mut(col) {
                    *c = truncate(c, target);
                }
            }
        }
    }
}

/// A borderless table that fits `width` columns: one line per row, overlong cells end in "…".
/// The columns in `shrink` give way first (see [`fit`]); comfy-table's dynamic arrangement then
/// only acts when that was not enough (a very narrow terminal, double-width characters).
fn table(
    width: u16,
    header: &[&str],
    right_aligned: &[usize],
    shrink: &[(usize, usize)],
    mut rows: Vec<Vec<String>>,
) -> String {
    fit(header, &mut rows, usize::from(width), shrink);
    if let Some(text) = plain_table(header, right_aligned, &rows, usize::from(width)) {
        return text;
    }
    comfy(width, header, right_aligned, rows)
}

/// Whether comfy-table would show `s` as that many columns, one per character: printable ASCII
/// and the ellipsis that [`truncate`] adds.
fn is_plain(s: &str) -> bool {
    s.chars().all(|c| matches!(c, ' '..='~' | '…'))
}

/// The table as comfy-table lays it out when every cell fits on its line: each column as wide
/// as its widest cell, [`GAP`] spaces after each but the last, trailing spaces trimmed. It is
/// built directly because comfy-table's general layout (display widths, wrapping) was a
/// visible share of `hubcli launcher ls` at 100 plugins. `None` when comfy-table has to
/// decide: a cell with other characters, or a table too wide for `width`.
fn plain_table(
    header: &[&str],
    right_aligned: &[usize],
    rows: &[Vec<String>],
    width: usize,
) -> Option<String> {
    let cols = header.len();
    let mut widths: Vec<usize> = Vec::with_capacity(cols);
    for h in header {
        if !is_plain(h) {
            return None;
        }
        widths.push(h.chars().count());
    }
    for r in rows {
        if r.len() != cols {
            return None;
        }
        for (w, c) in widths.iter_mut().zip(r) {
            if !is_plain(c) {
                return None;
            }
            *w = (*w).max(c.chars().count());
        }
    }
    let total = widths.iter().sum::<usize>() + GAP * cols.saturating_sub(1);
    if cols == 0 || total > width {
        return None;
    }
    let mut out = String::with_capacity((rows.len() + 1) * (total + 1));
    let mut line = String::with_capacity(total);
    let lines = std::iter::once(header.to_vec())
        .chain(rows.iter().map(|r| r.iter().map(String::as_str).collect()));
    for (i, cells) in lines.enumerate() {
        if i > 0 {
            out.push('\n');
        }
        line.clear();
        for (col, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            if right_aligned.contains(&col) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
            if col + 1 < cols {
                line.extend(std::iter::repeat_n(' ', GAP));
            }
        }
        out.push_str(line.trim_end());
    }
    Some(out)
}

/// The table laid out by comfy-table (what [`plain_table`] leaves to it).
fn comfy(width: u16, header: &[&str], right_aligned: &[usize], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    let mut head = Row::from(header.to_vec());
    head.max_height(1);
    t.load_style(presets::NOTHING)
        .force_no_tty()
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(width)
        .set_truncation_indicator("…")
        .set_header(head);
    let last = header.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { GAP as u16 }));
        if right_aligned.contains(&i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    for cells in rows {
        let mut row = Row::from(cells);
        row.max_height(1);
        t.add_row(row);
    }
    t.trim_fmt()
}

/// The STATE cell: the state, or where a movable plugin runs when that is another launcher.
fn state_cell(p: &PluginInfo) -> String {
    match (&p.held_by, p.pid) {
        (Some(h), None) => format!("on {h}"),
        _ => p.state.as_str().to_string(),
    }
}

/// The CPU, MEMORY, UPTIME and LAST ERROR cells of a plugin row.
fn usage_cells(p: &PluginInfo, now_ms: u64) -> [String; 4] {
    [
        or_none(p.cpu, cpu),
        or_none(p.rss, memory),
        or_none(
            p.uptime
                .filter(|_| p.running)
                .or_else(|| uptime_at(p, now_ms)),
            uptime,
        ),
        last_error(p, now_ms),
    ]
}

/// The `launcher ls` table.
pub fn plugin_table(plugins: &[PluginInfo], width: u16, now_ms: u64) -> String {
    let rows = plugins
        .iter()
        .map(|p| {
            let mut row = vec![
                p.name.clone(),
                state_cell(p),
                or_none(p.pid, |v| v.to_string()),
                p.start_count.to_string(),
                or_none(p.sandbox, |s| s.as_str().to_string()),
            ];
            row.extend(usage_cells(p, now_ms));
            row
        })
        .collect();
    table(
        width,
        &[
            "NAME",
            "STATE",
            "PID",
            "STARTS",
            "SANDBOX",
            "CPU",
            "MEMORY",
            "UPTIME",
            "LAST ERROR",
        ],
        &[2, 3, 5, 6, 7],
        &[(8, 16), (0, 16), (8, 8), (0, 8)],
        rows,
    )
}

/// The `launcher ls --all` table: one row per plugin with its launcher; an offline launcher
/// gets a row of its own saying so.
pub fn launchers_table(all: &[LauncherStatus], width: u16, now_ms: u64) -> String {
    let mut rows = Vec::new();
    for s in all {
        if !s.online {
            let why = s.reason.as_deref().unwrap_or("offline");
            rows.push(vec![
                s.launcher_id.clone(),
                "-".into(),
                "offline".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{why}, {} ago", ago(s.time, now_ms)),
            ]);
            continue;
        }
        if s.plugins.is_empty() {
            rows.push(vec![
                s.launcher_id.clone(),
                "-".into(),
                "online".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "no plugins".into(),
            ]);
        }
        for p in &s.plugins {
            let mut row = vec![
                s.launcher_id.clone(),
                if p.movable {
                    format!("{} (movable)", p.name)
                } else {
                    p.name.clone()
                },
                state_cell(p),
                or_none(p.pid, |v| v.to_string()),
            ];
            row.extend(usage_cells(p, now_ms));
            rows.push(row);
        }
    }
    table(
        width,
        &[
            "LAUNCHER",
            "NAME",
            "STATE",
            "PID",
            "CPU",
            "MEMORY",
            "UPTIME",
            "LAST ERROR",
        ],
        &[3, 4, 5, 6],
        &[(7, 16), (1, 16), (0, 12), (7, 8)],
        rows,
    )
}

/// The `auth ls` table.
pub fn clients_table(clients: &[ClientProfile], width: u16) -> String {
    let rows = clients
        .iter()
        .map(|c| {
            vec![
                c.client_id.clone(),
                c.client_type.to_string(),
                c.role.to_string(),
                c.display_name.clone(),
                date(c.created),
            ]
        })
        .collect();
    table(
        width,
        &["ID", "TYPE", "ROLE", "NAME", "CREATED (UTC)"],
        &[],
        &[(3, 12), (0, 12), (3, 4)],
        rows,
    )
}

/// The `launcher status` text: aligned "key: value" lines, then the log tail.
pub fn status_text(s: &StatusResp, now_ms: u64) -> String {
    let p = &s.info;
    let when =
        |ms: Option<u64>| or_none(ms, |t| format!("{} ({} ago)", timestamp(t), ago(t, now_ms)));
    let binary = {
        let mut extra = Vec::new();
        if let Some(n) = p.size {
            extra.push(file_size(n));
        }
        if let Some(t) = p.modified_time {
            extra.push(format!("modified {}", timestamp(t)));
        }
        if extra.is_empty() {
            p.path.clone()
        } else {
            format!("{} ({})", p.path, extra.join(", "))
        }
    };
    let fields: Vec<(&str, String)> = vec![
        ("name", p.name.clone()),
        ("launcher", p.launcher_id.clone()),
        ("state", p.state.as_str().to_string()),
        ("sandbox", or_none(p.sandbox, |s| s.as_str().to_string())),
        (
            "status",
            if p.status.is_empty() {
                NONE.into()
            } else {
                p.status.clone()
            },
        ),
        ("pid", or_none(p.pid, |v| v.to_string())),
        ("starts", p.start_count.to_string()),
        ("started", when(p.start_time)),
        ("stopped", when(p.stop_time)),
        (
            "uptime",
            or_none(
                p.uptime
                    .filter(|_| p.running)
                    .or_else(|| uptime_at(p, now_ms)),
                uptime,
            ),
        ),
        (
            "last exit",
            or_none(p.last_exit.as_ref(), |e| {
                format!("{} at {}", exit_text(e), timestamp(e.time))
            }),
        ),
        ("last error", last_error(p, now_ms)),
        ("restarts", restarts_text(p)),
        (
            "next retry",
            or_none(p.next_retry_at, |t| {
                format!("{} (in {})", timestamp(t), ago(now_ms, t))
            }),
        ),
        ("cpu", or_none(p.cpu, cpu)),
        ("memory", or_none(p.rss, memory)),
        ("history", history_text(&s.history)),
        ("binary", binary),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!("{:<11} {v}\n", format!("{k}:")));
    }
    if s.log_tail.is_empty() {
        out.push_str("log:        (no output)\n");
    } else {
        out.push_str(&format!("log (last {} lines):\n", s.log_tail.len()));
        for l in &s.log_tail {
            out.push_str("  ");
            out.push_str(&printable(l));
            out.push('\n');
        }
    }
    out
}

/// A plugin's output line made safe for a terminal: control characters (escape sequences that
/// could retitle the window, write the clipboard or fake lines) are shown as `\x1b`.
pub fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Automatic restarts: "0", or "5 (2 for resource limits; 3 failed in a row)".
fn restarts_text(p: &PluginInfo) -> String {
    let mut extra = Vec::new();
    if p.threshold_restarts > 0 {
        extra.push(format!("{} for resource limits", p.threshold_restarts));
    }
    if p.attempt > 0 {
        extra.push(format!("{} failed in a row", p.attempt));
    }
    if extra.is_empty() {
        p.restarts.to_string()
    } else {
        format!("{} ({})", p.restarts, extra.join("; "))
    }
}

/// The resource samples in one line: span, and the peaks of CPU and memory.
fn history_text(h: &[ResourceSample]) -> String {
    let (Some(first), Some(last)) = (h.first(), h.last()) else {
        return NONE.to_string();
    };
    // The first sample has no CPU figure (no window yet): a peak only from real measurements.
    let max_cpu = h.iter().filter_map(|x| x.cpu).reduce(f64::max);
    let max_rss = h.iter().map(|x| x.rss).max().unwrap_or(0);
    format!(
        "{} samples over {}; peak cpu {}, peak memory {}",
        h.len(),
        ago(first.time, last.time),
        or_none(max_cpu, cpu),
        memory(max_rss)
    )
}

/// A resource value: percent for `cpu`, bytes for `rss` (and anything else as a number).
fn resource_value(measure: &str, v: f64) -> String {
    match measure {
        "cpu" => cpu(v),
        "rss" if v.is_finite() && v >= 0.0 => memory(v as u64),
        _ => format!("{v}"),
    }
}

/// One launcher event as text: `TIME LAUNCHER PLUGIN EVENT DETAILS`, then for `exited` the log
/// tail, indented. Details are the fields present: pid, how it ended, how long it ran, by whom.
pub fn event_line(e: &LauncherEvent) -> String {
    let mut details = Vec::new();
    if let Some(pid) = e.pid {
        details.push(format!("pid {pid}"));
    }
    if let Some(x) = &e.exit {
        details.push(exit_text(x));
    }
    if let Some(u) = e.uptime_secs {
        details.push(format!("ran {}", uptime_f64(u)));
    }
    if let Some(a) = e.attempt {
        details.push(format!("attempt {a}"));
    }
    if let Some(ms) = e.delay_ms {
        details.push(format!("in {}", uptime_f64(ms as f64 / 1000.0)));
    }
    if let Some(r) = &e.reason {
        details.push(format!("reason: {r}"));
    }
    if let Some(m) = &e.measure {
        let mut s = m.clone();
        if let Some(v) = e.value {
            s.push_str(&format!(" {}", resource_value(m, v)));
        }
        if let Some(l) = e.limit {
            s.push_str(&format!(" over limit {}", resource_value(m, l)));
        }
        if let Some(f) = e.for_secs {
            s.push_str(&format!(" for {}", uptime_f64(f)));
        }
        details.push(s);
    }
    if let Some(a) = &e.action {
        details.push(format!("action {a}"));
    }
    if let Some(by) = &e.by {
        details.push(format!("by {by}"));
    }
    let mut out = format!(
        "{} {} {} {} {}",
        timestamp(e.time),
        e.launcher_id,
        e.plugin,
        e.event,
        details.join(", ")
    )
    .trim_end()
    .to_string();
    for l in &e.log_tail {
        out.push_str("\n    ");
        out.push_str(&printable(l));
    }
    out
}

/// When a plugin's state last changed, as far as its status tells: the newest of its last
/// start, its last stop and its last exit (unix ms); `None` for a plugin never started.
pub fn status_time(p: &PluginInfo) -> Option<u64> {
    [
        p.start_time,
        p.stop_time,
        p.last_exit.as_ref().map(|e| e.time),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// A plugin's retained status as an event line, stamped with the time of its last change
/// ([`status_time`]), else with `now_ms` (when it was received); the uptime is at `now_ms`.
pub fn status_event_line(now_ms: u64, launcher: &str, plugin: &str, p: &PluginInfo) -> String {
    let mut details = vec![p.state.as_str().to_string()];
    if let Some(pid) = p.pid {
        details.push(format!("pid {pid}"));
    }
    details.push(format!("starts {}", p.start_count));
    if let Some(u) = uptime_at(p, now_ms) {
        details.push(format!("up {}", uptime(u)));
    }
    if let (PluginState::Backoff, Some(t)) = (p.state, p.next_retry_at) {
        details.push(format!("retry at {}", timestamp(t)));
    }
    let mut line = format!(
        "{} {launcher} {plugin} status {}",
        timestamp(status_time(p).unwrap_or(now_ms)),
        details.join(", ")
    );
    if !p.status.is_empty() {
        line.push_str(": ");
        line.push_str(&p.status);
    }
    line
}

/// The `--json` line of a retained status: `{"event":"status","launcherID","plugin","status"}`,
/// shaped like the launcher's events so one `jq` filter reads both.
#[derive(Debug, Serialize)]
pub struct StatusEventJson<'a> {
    /// Always "status".
    pub event: &'static str,
    /// The publishing launcher.
    #[serde(rename = "launcherID")]
    pub launcher_id: &'a str,
    /// The plugin.
    pub plugin: &'a str,
    /// Its current state.
    pub status: &'a PluginInfo,
}

/// Start or stop, for the outcome lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// startPlugin / startAllPlugins
    Start,
    /// stopPlugin / stopAllPlugins
    Stop,
}

impl Op {
    /// "start" or "stop".
    pub fn verb(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Stop => "stop",
        }
    }
}

/// What a successful start or stop of `name` did, from the plugin before and after:
/// "started heartbeat (pid 1234)", "heartbeat: already running (pid 1234)",
/// "stopped heartbeat (was pid 1234)", "heartbeat: not running", and for the stop of a plugin
/// that was waiting to be restarted (state `backoff`), "heartbeat: restart cancelled (…)".
pub fn outcome(
    op: Op,
    name: &str,
    before: Option<&PluginInfo>,
    after: Option<&PluginInfo>,
) -> String {
    let was = before.and_then(|p| p.pid);
    let now = after.and_then(|p| p.pid);
    match op {
        Op::Start => match (was, now) {
            (Some(a), Some(b)) if a == b => format!("{name}: already running (pid {b})"),
            (_, Some(pid)) => match after.map(|p| p.state) {
                Some(PluginState::Running) | None => format!("started {name} (pid {pid})"),
                Some(s) => format!("started {name} (pid {pid}, {})", s.as_str()),
            },
            (_, None) => match after {
                Some(p) if !p.status.is_empty() => {
                    format!("{name}: {}: {}", p.state.as_str(), p.status)
                }
                Some(p) => format!("{name}: {}", p.state.as_str()),
                None => format!("started {name}"),
            },
        },
        Op::Stop => match (was, before.map(|p| p.state)) {
            (Some(pid), _) => format!("stopped {name} (was pid {pid})"),
            (None, Some(PluginState::Backoff)) => {
                format!("{name}: restart cancelled (it was in backoff, waiting to be restarted)")
            }
            (None, _) => format!("{name}: not running"),
        },
    }
}

/// What a successful start or stop of `name` did when the plugin list before it could not be
/// read (the login may not list): only the plugin after it is known.
pub fn outcome_after(op: Op, name: &str, after: &PluginInfo) -> String {
    match (op, after.pid) {
        (Op::Start, _) => outcome(op, name, None, Some(after)),
        (Op::Stop, Some(pid)) => format!("{name}: still running (pid {pid})"),
        (Op::Stop, None) => format!("{name}: not running ({})", after.state.as_str()),
    }
}

/// One line per plugin of a batch result, errors included ("heartbeat: failed: …"); `before` is
/// the list before the batch, `None` when it could not be read.
pub fn batch_lines(
    op: Op,
    results: &[BatchItem],
    before: Option<&[PluginInfo]>,
    after: &[PluginInfo],
) -> Vec<String> {
    let find = |list: &'_ [PluginInfo], n: &str| list.iter().find(|p| p.name == n).cloned();
    results
        .iter()
        .map(|r| {
            if !r.ok {
                let why = r.error.as_deref().unwrap_or("no reason given");
                return format!("{}: failed to {}: {why}", r.name, op.verb());
            }
            let now = find(after, &r.name);
            match (before, &now) {
                (None, Some(now)) => outcome_after(op, &r.name, now),
                (before, _) => outcome(
                    op,
                    &r.name,
                    before.and_then(|b| find(b, &r.name)).as_ref(),
                    now.as_ref(),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivehub_api::launcher::SandboxLevel;

    const NOW: u64 = 1_764_147_321_123; // 2025-11-26T08:55:21.123Z

    /// The direct layout is exactly comfy-table's wherever it applies, and leaves the rest to it.
    #[test]
    fn plain_table_is_comfy_tables_layout() {
        let header = ["NAME", "STATE", "PID", "CPU", "LAST ERROR"];
        let right = [2, 3];
        let row = |c: [&str; 5]| c.map(String::from).to_vec();
        let cases: Vec<Vec<Vec<String>>> = vec![
            vec![],
            vec![row(["a", "running", "1", "0.0%", "-"])],
            vec![
                row(["heartbeat", "running", "12345", "12.5%", ""]),
                row(["x", "failed", "-", "-", "exit code 1 (3m12s ago)"]),
                row([
                    "plugin-with-a-long-name",
                    "backoff",
                    "7",
                    "100.0%",
                    "killed by…",
                ]),
                row(["", "", "", "", ""]),
                row(["sp ace", "  lead", "trail  ", "-", "a  b"]),
            ],
        ];
        for rows in cases {
            let need = plain_table(&header, &right, &rows, 1000)
                .map(|t| t.lines().map(|l| l.chars().count()).max().unwrap_or(0))
                .unwrap();
            for width in [need, need + 1, 80, 200] {
                let Ok(w) = u16::try_from(width) else {
                    continue;
                };
                let plain = plain_table(&header, &right, &rows, width)
                    .unwrap_or_else(|| panic!("width {width}: {rows:?}"));
                assert_eq!(
                    plain,
                    comfy(w, &header, &right, rows.clone()),
                    "width {width}"
                );
            }
        }
        // Too wide, or characters whose width comfy-table must measure: comfy-table decides.
        let wide = vec![row(["a", "b", "c", "d", &"e".repeat(100)])];
        assert_eq!(plain_table(&header, &right, &wide, 80), None);
        let cjk = vec![row(["温度", "running", "1", "-", "-"])];
        assert_eq!(plain_table(&header, &right, &cjk, 80), None);
        let tab = vec![row(["a\tb", "running", "1", "-", "-"])];
        assert_eq!(plain_table(&header, &right, &tab, 80), None);
        assert_eq!(
            table(80, &header, &right, &[], cjk.clone()),
            comfy(80, &header, &right, cjk)
        );
    }

    /// Fixtures are built from JSON so that fields the API adds with a serde default do not
    /// break these tests; the fields that matter are then set by hand.
    fn plugin(name: &str, state: PluginState) -> PluginInfo {
        let running = matches!(state, PluginState::Running | PluginState::Starting);
        let mut p: PluginInfo = serde_json::from_value(serde_json::json!({
            "name": name,
            "launcherID": "launcher",
            "path": format!("/opt/hivehub/plugins/{name}"),
            "running": running,
            "state": state,
            "startCount": 3,
            "status": "",
        }))
        .expect("PluginInfo fixture");
        p.size = Some(3 * 1024 * 1024);
        p.modified_time = Some(NOW - 86_400_000);
        p.pid = running.then_some(4242);
        p.start_time = Some(NOW - 192_000);
        p.uptime = running.then_some(192);
        p.sandbox = Some(SandboxLevel::Full);
        p
    }

    fn status(info: PluginInfo, log: &[&str]) -> StatusResp {
        serde_json::from_value(serde_json::json!({"info": info, "logTail": log}))
            .expect("StatusResp fixture")
    }

    #[test]
    fn movable_plugins_show_where_they_run() {
        let mut p = plugin("zwave", PluginState::Stopped);
        p.movable = true;
        p.held_by = Some("launcher-pi2".into());
        let t = plugin_table(&[p.clone()], 100, 0);
        assert!(t.contains("on launcher-pi2"), "{t}");
        let mut off = LauncherStatus {
            schema_version: 1,
            launcher_id: "launcher-pi2".into(),
            online: true,
            host: "pi2".into(),
            cpus: 4,
            load1: 0.1,
            mem_free: 1,
            mem_total: 2,
            labels: vec![],
            eligible: vec![],
            plugins: vec![],
            time: 1_000,
            reason: None,
        };
        p.held_by = None;
        p.pid = Some(42);
        p.running = true;
        p.state = PluginState::Running;
        off.plugins = vec![p];
        let mut gone = off.clone();
        gone.launcher_id = "launcher-pi3".into();
        gone.online = false;
        gone.reason = Some("connection lost".into());
        let t = launchers_table(&[off, gone], 120, 61_000);
        assert!(t.contains("LAUNCHER"), "{t}");
        assert!(t.contains("zwave (movable)") && t.contains("42"), "{t}");
        assert!(
            t.contains("offline") && t.contains("connection lost, 1m"),
            "{t}"
        );
    }

    #[test]
    fn plugin_output_cannot_drive_the_terminal() {
        assert_eq!(
            printable("\u{1b}]0;pwned\u{7}x\ty\r"),
            "\\x1b]0;pwned\\x07x\ty\\x0d"
        );
        let mut st = status(plugin("p", PluginState::Running), &["\u{1b}[2Jfake"]);
        st.log_tail.push("ok".into());
        assert!(!status_text(&st, NOW).contains('\u{1b}'));
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("äöüäöüä", 3), "äö…");
    }

    fn max_line(s: &str) -> usize {
        s.lines().map(|l| l.chars().count()).max().unwrap_or(0)
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(45), "45s");
        assert_eq!(uptime(192), "3m12s");
        assert_eq!(uptime(3599), "59m59s");
        assert_eq!(uptime(2 * 3600 + 5 * 60 + 7), "2h05m");
        assert_eq!(uptime(4 * 86_400), "4d00h");
        assert_eq!(uptime(4 * 86_400 + 3 * 3600), "4d03h");
        assert_eq!(uptime(12 * 86_400 + 3 * 3600), "12d");
        assert_eq!(uptime_f64(0.34), "0.3s");
        assert_eq!(uptime_f64(192.9), "3m12s");
        assert_eq!(uptime_f64(f64::NAN), "-");
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(memory(512 * 1024), "0.5 MiB");
        assert_eq!(memory(4_404_019), "4.2 MiB");
        assert_eq!(memory(245 * 1024 * 1024), "245 MiB");
        assert_eq!(memory(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(memory(200 * 1024 * 1024 * 1024), "200 GiB");
        assert_eq!(cpu(12.345), "12.3%");
        assert_eq!(file_size(100), "100 B");
        assert_eq!(file_size(3482), "3.4 KiB");
        assert_eq!(file_size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn times_and_exits() {
        assert_eq!(timestamp(NOW), "2025-11-26T08:55:21.123Z");
        assert_eq!(date(NOW / 1000), "2025-11-26 08:55");
        assert_eq!(ago(NOW - 192_000, NOW), "3m12s");
        assert_eq!(ago(NOW + 5000, NOW), "0s");
        let code = ExitInfo {
            code: Some(1),
            signal: None,
            time: NOW,
        };
        let sig = ExitInfo {
            code: None,
            signal: Some(9),
            time: NOW,
        };
        assert_eq!(exit_text(&code), "exit code 1");
        assert_eq!(exit_text(&sig), "killed by SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(200), "signal 200");
    }

    #[test]
    fn last_error_is_status_when_failed_else_last_exit() {
        let mut p = plugin("a", PluginState::Failed);
        p.status = "binary /x not found".into();
        p.last_exit = Some(ExitInfo {
            code: Some(2),
            signal: None,
            time: NOW - 60_000,
        });
        assert_eq!(last_error(&p, NOW), "binary /x not found");
        p.state = PluginState::Backoff;
        assert_eq!(last_error(&p, NOW), "exit code 2 (1m00s ago)");
        p.next_retry_at = Some(NOW + 8000);
        p.attempt = 3;
        assert_eq!(
            last_error(&p, NOW),
            "exit code 2 (1m00s ago); retry #3 in 8s"
        );
        p.next_retry_at = None;
        p.last_exit = None;
        assert_eq!(last_error(&p, NOW), "-");
    }

    #[test]
    fn table_shows_unknown_values_as_dash_never_zero() {
        let t = plugin_table(&[plugin("heartbeat", PluginState::Running)], 80, NOW);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "heartbeat",
                "running",
                "4242",
                "3",
                "full",
                "-",
                "-",
                "3m12s",
                "-"
            ],
            "{t}"
        );
        assert!(lines[0].starts_with("NAME"), "{t}");
        let mut p = plugin("heartbeat", PluginState::Running);
        p.cpu = Some(1.25);
        p.rss = Some(12 * 1024 * 1024);
        let t = plugin_table(&[p], 80, NOW);
        assert!(t.contains("1.2%") && t.contains("12 MiB"), "{t}");
    }

    #[test]
    fn table_fits_80_columns_with_long_status() {
        let mut failed = plugin("a-plugin-with-a-rather-long-name", PluginState::Failed);
        failed.status = "cannot start 'a-plugin-with-a-rather-long-name': binary /opt/hivehub/plugins/a-plugin-with-a-rather-long-name not found or not executable (permission denied)".into();
        let mut unbroken = plugin("b", PluginState::Failed);
        unbroken.status = "x".repeat(300);
        let mut busy = plugin("heartbeat", PluginState::Running);
        busy.cpu = Some(100.0);
        busy.rss = Some(1536 * 1024 * 1024);
        busy.pid = Some(4_194_304);
        busy.start_count = 123_456;
        busy.uptime = Some(4 * 86_400 + 3 * 3600);
        busy.last_exit = Some(ExitInfo {
            code: None,
            signal: Some(9),
            time: NOW - 86_400_000,
        });
        let plugins = [failed, unbroken, busy];
        for width in [80u16, 100, 60] {
            let t = plugin_table(&plugins, width, NOW);
            assert!(max_line(&t) <= width as usize, "width {width}:\n{t}");
            assert_eq!(t.lines().count(), 4, "one line per plugin:\n{t}");
            assert!(t.contains('…'), "long status is cut with an ellipsis:\n{t}");
        }
        let t = plugin_table(&plugins, 80, NOW);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[3],
            // Running: whatever ended its previous process is no error now.
            "heartbe…  running  4194304  123456  full     100.0%  1.5 GiB   4d03h  -",
            "{t}"
        );
        assert!(lines[1].starts_with("a-plugi…  failed"), "{t}");
        assert!(lines[1].ends_with("cannot st…"), "{t}");
        assert_eq!(max_line(&t), 80, "the table uses the whole width: {t}");
        // Narrower than the fixed columns: the safety net still keeps it inside the width.
        let t = plugin_table(&plugins, 50, NOW);
        assert!(max_line(&t) <= 50, "{t}");
    }

    #[test]
    fn status_text_lists_fields_then_log() {
        let mut p = plugin("heartbeat", PluginState::Running);
        p.status = "started, pid 4242".into();
        let s = status(p, &["beat 1", "beat 2"]);
        let t = status_text(&s, NOW);
        assert!(t.starts_with("name:       heartbeat\n"), "{t}");
        assert!(t.contains("\npid:        4242\n"), "{t}");
        assert!(t.contains("\ncpu:        -\n"), "{t}");
        assert!(t.contains("\nmemory:     -\n"), "{t}");
        assert!(t.contains("\nhistory:    -\n"), "{t}");
        assert!(t.contains("\nrestarts:   0\n"), "{t}");
        assert!(t.contains("\nuptime:     3m12s\n"), "{t}");
        assert!(
            t.contains("\nstarted:    2025-11-26T08:52:09.123Z (3m12s ago)\n"),
            "{t}"
        );
        assert!(
            t.ends_with("log (last 2 lines):\n  beat 1\n  beat 2\n"),
            "{t}"
        );

        let mut p = plugin("x", PluginState::Backoff);
        p.restarts = 5;
        p.threshold_restarts = 2;
        p.attempt = 3;
        p.next_retry_at = Some(NOW + 4000);
        let mut s = status(p, &[]);
        // JSON, so that fields the API adds with a serde default need no change here.
        s.history = serde_json::from_value(serde_json::json!([
            {"time": NOW - 300_000, "rss": 10 << 20},
            {"time": NOW - 150_000, "cpu": 1.0, "rss": 12 << 20},
            {"time": NOW, "cpu": 50.0, "rss": 20 << 20},
        ]))
        .expect("ResourceSample fixtures");
        let t = status_text(&s, NOW);
        assert!(
            t.contains("\nrestarts:   5 (2 for resource limits; 3 failed in a row)\n"),
            "{t}"
        );
        assert!(
            t.contains("\nnext retry: 2025-11-26T08:55:25.123Z (in 4s)\n"),
            "{t}"
        );
        assert!(
            t.contains("\nhistory:    3 samples over 5m00s; peak cpu 50.0%, peak memory 20 MiB\n"),
            "{t}"
        );
        assert!(t.ends_with("\nlog:        (no output)\n"), "{t}");
    }

    fn event(name: &str) -> LauncherEvent {
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 1,
            "event": name,
            "launcherID": "launcher",
            "plugin": "heartbeat",
            "time": NOW,
            "pid": 4242,
        }))
        .expect("LauncherEvent fixture")
    }

    #[test]
    fn event_lines() {
        assert_eq!(
            event_line(&event("started")),
            "2025-11-26T08:55:21.123Z launcher heartbeat started pid 4242"
        );
        let mut e = event("stopped");
        e.exit = Some(ExitInfo {
            code: None,
            signal: Some(15),
            time: NOW,
        });
        e.uptime_secs = Some(192.4);
        e.by = Some("admin".into());
        assert_eq!(
            event_line(&e),
            "2025-11-26T08:55:21.123Z launcher heartbeat stopped pid 4242, killed by SIGTERM, ran 3m12s, by admin"
        );
        let mut e = event("exited");
        e.exit = Some(ExitInfo {
            code: Some(1),
            signal: None,
            time: NOW,
        });
        e.uptime_secs = Some(0.25);
        e.log_tail = vec!["panic: oops".into(), "bye".into()];
        assert_eq!(
            event_line(&e),
            "2025-11-26T08:55:21.123Z launcher heartbeat exited pid 4242, exit code 1, ran 0.2s\n    panic: oops\n    bye"
        );
        let mut e = event("ready");
        e.pid = None;
        assert_eq!(
            event_line(&e),
            "2025-11-26T08:55:21.123Z launcher heartbeat ready"
        );
        let mut e = event("restarting");
        e.pid = None;
        e.attempt = Some(3);
        e.delay_ms = Some(4000);
        e.reason = Some("exit code 1".into());
        assert_eq!(
            event_line(&e),
            "2025-11-26T08:55:21.123Z launcher heartbeat restarting attempt 3, in 4.0s, reason: exit code 1"
        );
        let mut e = event("resourceExceeded");
        e.measure = Some("rss".into());
        e.value = Some(612.0 * 1024.0 * 1024.0);
        e.limit = Some(512.0 * 1024.0 * 1024.0);
        e.for_secs = Some(30.0);
        e.action = Some("restart".into());
        assert_eq!(
            event_line(&e),
            "2025-11-26T08:55:21.123Z launcher heartbeat resourceExceeded pid 4242, rss 612 MiB over limit 512 MiB for 30s, action restart"
        );
        e.measure = Some("cpu".into());
        e.value = Some(150.0);
        e.limit = Some(100.0);
        assert!(event_line(&e).contains("cpu 150.0% over limit 100.0% for 30s"));
    }

    #[test]
    fn status_event_lines_and_json() {
        let mut p = plugin("heartbeat", PluginState::Running);
        p.status = "started, pid 4242".into();
        // A retained status was published long ago: its uptime field is stale. The line is
        // stamped with the start (192 s ago), the uptime is counted to now.
        p.uptime = Some(0);
        assert_eq!(
            status_event_line(NOW, "launcher", "heartbeat", &p),
            "2025-11-26T08:52:09.123Z launcher heartbeat status running, pid 4242, starts 3, up 3m12s: started, pid 4242"
        );
        let j = serde_json::to_value(StatusEventJson {
            event: "status",
            launcher_id: "launcher",
            plugin: "heartbeat",
            status: &p,
        })
        .unwrap();
        assert_eq!(j["event"], "status");
        assert_eq!(j["launcherID"], "launcher");
        assert_eq!(j["status"]["pid"], 4242);
        assert!(j["status"].get("cpu").is_none(), "absent, not 0: {j}");
    }

    #[test]
    fn outcomes() {
        let run = plugin("hb", PluginState::Running);
        let stopped = plugin("hb", PluginState::Stopped);
        let mut other = run.clone();
        other.pid = Some(5000);
        assert_eq!(
            outcome(Op::Start, "hb", Some(&stopped), Some(&run)),
            "started hb (pid 4242)"
        );
        assert_eq!(
            outcome(Op::Start, "hb", Some(&run), Some(&run)),
            "hb: already running (pid 4242)"
        );
        assert_eq!(
            outcome(Op::Start, "hb", Some(&run), Some(&other)),
            "started hb (pid 5000)"
        );
        let mut starting = run.clone();
        starting.state = PluginState::Starting;
        assert_eq!(
            outcome(Op::Start, "hb", None, Some(&starting)),
            "started hb (pid 4242, starting)"
        );
        assert_eq!(
            outcome(Op::Stop, "hb", Some(&run), Some(&stopped)),
            "stopped hb (was pid 4242)"
        );
        assert_eq!(
            outcome(Op::Stop, "hb", Some(&stopped), Some(&stopped)),
            "hb: not running"
        );

        let results = vec![
            BatchItem {
                name: "hb".into(),
                ok: true,
                error: None,
            },
            BatchItem {
                name: "bad".into(),
                ok: false,
                error: Some("cannot start 'bad': binary not found".into()),
            },
        ];
        assert_eq!(
            batch_lines(Op::Start, &results, Some(&[stopped]), &[run]),
            vec![
                "started hb (pid 4242)".to_string(),
                "bad: failed to start: cannot start 'bad': binary not found".to_string()
            ]
        );
    }

    #[test]
    fn clients_table_fits() {
        let c = ClientProfile {
            client_id: "p9".into(),
            client_type: hivehub_api::ClientType::Service,
            display_name: "A plugin with a very long display name that goes on and on and on"
                .into(),
            role: hivehub_api::Role::Service,
            pub_key: "x".into(),
            created: NOW / 1000,
            updated: NOW / 1000,
            created_by: None,
            plugin: false,
            generation: None,
        };
        let t = clients_table(&[c], 60);
        assert!(max_line(&t) <= 60, "{t}");
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&row[..3], ["p9", "service", "service"], "{t}");
        assert!(t.contains("2025-11-26 08:55"), "{t}");
    }
    fn exit(code: Option<i32>, signal: Option<i32>, time: u64) -> Option<ExitInfo> {
        Some(ExitInfo { code, signal, time })
    }

    #[test]
    fn last_error_shows_an_exit_only_when_failed_or_backoff_and_not_running() {
        let sigterm = exit(None, Some(15), NOW - 60_000);
        let code0 = exit(Some(0), None, NOW - 60_000);
        let code1 = exit(Some(1), None, NOW - 60_000);
        // (state, running, last exit, status, next retry) → LAST ERROR
        type Case = (
            PluginState,
            bool,
            Option<ExitInfo>,
            &'static str,
            Option<u64>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            // A user stop is not an error…
            (
                PluginState::Disabled,
                false,
                sigterm.clone(),
                "stopped by admin",
                None,
                "-",
            ),
            (
                PluginState::Disabled,
                false,
                code0.clone(),
                "stopped by admin",
                None,
                "-",
            ),
            (PluginState::Stopped, false, code0.clone(), "", None, "-"),
            (PluginState::Stopping, true, None, "", None, "-"),
            // …and a running plugin shows none, whatever ended its previous process.
            (PluginState::Running, true, sigterm.clone(), "", None, "-"),
            (PluginState::Running, true, code1.clone(), "", None, "-"),
            (PluginState::Starting, true, code1.clone(), "", None, "-"),
            // Failed: why it cannot start, else how it ended.
            (
                PluginState::Failed,
                false,
                code1.clone(),
                "binary /x not found",
                None,
                "binary /x not found",
            ),
            (
                PluginState::Failed,
                false,
                code1.clone(),
                "",
                None,
                "exit code 1 (1m00s ago)",
            ),
            (PluginState::Failed, false, None, "", None, "-"),
            // Backoff: how it ended, and when it is retried.
            (
                PluginState::Backoff,
                false,
                code1.clone(),
                "",
                None,
                "exit code 1 (1m00s ago)",
            ),
            (
                PluginState::Backoff,
                false,
                sigterm.clone(),
                "",
                Some(NOW + 8000),
                "killed by SIGTERM (1m00s ago); retry #3 in 8s",
            ),
            // Missing binary: the launcher's status says so (no exit involved).
            (
                PluginState::Missing,
                false,
                code0.clone(),
                "binary gone",
                None,
                "binary gone",
            ),
            (PluginState::Missing, false, code0, "", None, "-"),
        ];
        for (state, running, last_exit, text, retry, want) in cases {
            let mut p = plugin("hb", state);
            p.running = running;
            p.last_exit = last_exit;
            p.status = text.into();
            p.next_retry_at = retry;
            p.attempt = 3;
            assert_eq!(
                last_error(&p, NOW),
                want,
                "{state:?} running={running} {text:?}"
            );
            let row = plugin_table(&[p.clone()], 200, NOW);
            assert!(
                row.lines().nth(1).unwrap().ends_with(want),
                "{state:?}: {row}"
            );
            let st = status_text(&status(p, &[]), NOW);
            assert!(
                st.contains(&format!("\nlast error: {want}\n")),
                "{state:?}: {st}"
            );
        }
    }

    #[test]
    fn status_line_is_stamped_with_newest_start_stop_or_exit() {
        let t = |ms: u64| timestamp(ms);
        // (start, stop, exit) → the stamp; none of them → the time it was received (NOW).
        type Case = (Option<u64>, Option<u64>, Option<u64>, u64);
        let cases: Vec<Case> = vec![
            (None, None, None, NOW),
            (Some(NOW - 5000), None, None, NOW - 5000),
            (Some(NOW - 5000), Some(NOW - 3000), None, NOW - 3000),
            (
                Some(NOW - 5000),
                Some(NOW - 3000),
                Some(NOW - 2999),
                NOW - 2999,
            ),
            // Restarted after a stop: the start is the newest.
            (
                Some(NOW - 1000),
                Some(NOW - 3000),
                Some(NOW - 3000),
                NOW - 1000,
            ),
            (None, None, Some(NOW - 7000), NOW - 7000),
        ];
        for (start, stop, exit_at, want) in cases {
            let mut p = plugin("hb", PluginState::Stopped);
            p.start_time = start;
            p.stop_time = stop;
            p.last_exit = exit_at.and_then(|at| exit(Some(1), None, at));
            let line = status_event_line(NOW, "launcher", "hb", &p);
            assert!(
                line.starts_with(&format!("{} launcher hb status stopped", t(want))),
                "{start:?} {stop:?} {exit_at:?}: {line}"
            );
            assert_eq!(status_time(&p).unwrap_or(NOW), want);
        }
    }

    #[test]
    fn stop_of_a_plugin_in_backoff_says_restart_cancelled() {
        let mut backoff = plugin("hb", PluginState::Backoff);
        backoff.next_retry_at = Some(NOW + 60_000);
        let disabled = plugin("hb", PluginState::Disabled);
        let failed = plugin("hb", PluginState::Failed);
        let run = plugin("hb", PluginState::Running);
        // (before, after) → the line of a single stop
        let cases = [
            (
                Some(&backoff),
                "hb: restart cancelled (it was in backoff, waiting to be restarted)",
            ),
            (Some(&failed), "hb: not running"),
            (Some(&disabled), "hb: not running"),
            (Some(&run), "stopped hb (was pid 4242)"),
            (None, "hb: not running"),
        ];
        for (before, want) in cases {
            assert_eq!(outcome(Op::Stop, "hb", before, Some(&disabled)), want);
        }
        let ok = vec![BatchItem {
            name: "hb".into(),
            ok: true,
            error: None,
        }];
        assert_eq!(
            batch_lines(
                Op::Stop,
                &ok,
                Some(&[backoff]),
                std::slice::from_ref(&disabled)
            ),
            ["hb: restart cancelled (it was in backoff, waiting to be restarted)"]
        );
        // Without the list before (the login may not list), the reply alone says what it is.
        assert_eq!(
            batch_lines(Op::Stop, &ok, None, std::slice::from_ref(&disabled)),
            ["hb: not running (disabled)"]
        );
        assert_eq!(
            outcome_after(Op::Start, "hb", &run),
            "started hb (pid 4242)"
        );
        assert_eq!(
            outcome_after(Op::Stop, "hb", &run),
            "hb: still running (pid 4242)"
        );
    }
}
