//! A plugin's lifecycle as code.
//!
//! [`Phase`] is the state of one plugin together with the data that exists only in that state
//! (a starting plugin may have a PID, a running one has one, a plugin in backoff has a retry
//! time). [`Lifecycle::apply`] is the only way to change it, and it changes it only along a row
//! of [`TRANSITIONS`]. An event the table does not allow is refused and leaves the state as it
//! was, so a late or duplicate event (a scan during a start, a second stop) cannot corrupt it.
//!
//! The restart policy is part of a row's key: after an exit, [`Event::ScheduleRestart`] leads
//! to `backoff` or leaves the plugin where it is, depending on `restart:`. The table is
//! printed in `docs/ARCHITECTURE.md`; a test keeps the two equal.

use crate::config::RestartPolicy;
use hivehub_api::launcher::PluginState;
use std::time::SystemTime;

/// When a plugin in backoff is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// At this time.
    At(SystemTime),
    /// When the core runs again: without it the plugin could not log in.
    WhenCoreIsBack,
}

/// A plugin's state with the data that belongs to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not running; may be started.
    Stopped,
    /// Being started: `pid` once spawned, until it is ready.
    Starting { pid: Option<u32> },
    /// Running (and ready, when readiness is awaited).
    Running { pid: u32 },
    /// Being stopped: `pid` until the process has exited; then its leftovers are killed.
    Stopping { pid: Option<u32> },
    /// Waiting for an automatic restart.
    Backoff { retry: Retry },
    /// A start failed, the process exited with an error, or a stop left processes behind.
    Failed,
    /// Its binary is not there.
    Missing,
    /// Stopped by a user: not restarted automatically.
    Disabled,
    /// `pid` runs its binary but was not started by this launcher.
    External { pid: u32 },
}

impl Phase {
    /// The state as shown to users.
    pub(crate) fn state(self) -> PluginState {
        match self {
            Phase::Stopped => PluginState::Stopped,
            Phase::Starting { .. } => PluginState::Starting,
            Phase::Running { .. } => PluginState::Running,
            Phase::Stopping { .. } => PluginState::Stopping,
            Phase::Backoff { .. } => PluginState::Backoff,
            Phase::Failed => PluginState::Failed,
            Phase::Missing => PluginState::Missing,
            Phase::Disabled => PluginState::Disabled,
            Phase::External { .. } => PluginState::External,
        }
    }

    /// The plugin's process, while there is one.
    pub(crate) fn pid(self) -> Option<u32> {
        match self {
            Phase::Running { pid } => Some(pid),
            Phase::Starting { pid } | Phase::Stopping { pid } => pid,
            _ => None,
        }
    }

    /// The process of its binary that this launcher did not start.
    pub(crate) fn external(self) -> Option<u32> {
        match self {
            Phase::External { pid } => Some(pid),
            _ => None,
        }
    }

    /// When the scheduled restart happens.
    pub(crate) fn retry_at(self) -> Option<SystemTime> {
        match self {
            Phase::Backoff {
                retry: Retry::At(t),
            } => Some(t),
            _ => None,
        }
    }

    /// True while a restart waits for the core.
    pub(crate) fn waits_for_core(self) -> bool {
        matches!(
            self,
            Phase::Backoff {
                retry: Retry::WhenCoreIsBack
            }
        )
    }
}

/// What happens to a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A start begins (by a user, the autostart or a restart), after the checks that need no
    /// process.
    Start,
    /// The process was spawned.
    Spawned(u32),
    /// It is ready (or readiness is not awaited).
    Ready,
    /// A start failed, or a stop left processes behind.
    Fail,
    /// A scan found no executable binary.
    BinaryLost,
    /// A scan found the binary.
    BinaryFound,
    /// A movable plugin may not run here (its lease is elsewhere).
    NotPlaced,
    /// The process `pid` exited; `clean` for exit code 0.
    Exited { pid: u32, clean: bool },
    /// After an exit or a failed start: restart at `Retry`, if the policy wants it.
    ScheduleRestart(Retry),
    /// The core is back: a restart that waited for it happens at this time.
    Release(SystemTime),
    /// A stop begins by signalling this process.
    Stop(u32),
    /// A stop is done and nothing of the plugin remains; `by_user` for a user's stop.
    Stopped { by_user: bool },
    /// A user stopped a plugin that had no process.
    Disable,
    /// A process of its binary that this launcher did not start was found.
    Found(u32),
    /// That process is gone.
    Vanished,
}

/// An [`Event`] without its data: the table's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Start,
    Spawned,
    Ready,
    Fail,
    BinaryLost,
    BinaryFound,
    NotPlaced,
    ExitedClean,
    ExitedError,
    ScheduleRestart,
    Release,
    Stop,
    Stopped,
    StoppedByUser,
    Disable,
    Found,
    Vanished,
}

impl EventKind {
    /// Every kind, in the table's order.
    #[cfg(test)]
    pub(crate) const ALL: [EventKind; 17] = [
        EventKind::Start,
        EventKind::Spawned,
        EventKind::Ready,
        EventKind::Fail,
        EventKind::BinaryLost,
        EventKind::BinaryFound,
        EventKind::NotPlaced,
        EventKind::ExitedClean,
        EventKind::ExitedError,
        EventKind::ScheduleRestart,
        EventKind::Release,
        EventKind::Stop,
        EventKind::Stopped,
        EventKind::StoppedByUser,
        EventKind::Disable,
        EventKind::Found,
        EventKind::Vanished,
    ];

    /// The name in the documented table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Spawned => "spawned",
            EventKind::Ready => "ready",
            EventKind::Fail => "fail",
            EventKind::BinaryLost => "binary lost",
            EventKind::BinaryFound => "binary found",
            EventKind::NotPlaced => "not placed",
            EventKind::ExitedClean => "exited 0",
            EventKind::ExitedError => "exited ≠ 0",
            EventKind::ScheduleRestart => "schedule restart",
            EventKind::Release => "core back",
            EventKind::Stop => "stop",
            EventKind::Stopped => "stopped",
            EventKind::StoppedByUser => "stopped by user",
            EventKind::Disable => "disable",
            EventKind::Found => "found running",
            EventKind::Vanished => "vanished",
        }
    }
}

impl Event {
    /// The table key of this event.
    pub(crate) fn kind(self) -> EventKind {
        match self {
            Event::Start => EventKind::Start,
            Event::Spawned(_) => EventKind::Spawned,
            Event::Ready => EventKind::Ready,
            Event::Fail => EventKind::Fail,
            Event::BinaryLost => EventKind::BinaryLost,
            Event::BinaryFound => EventKind::BinaryFound,
            Event::NotPlaced => EventKind::NotPlaced,
            Event::Exited { clean: true, .. } => EventKind::ExitedClean,
            Event::Exited { clean: false, .. } => EventKind::ExitedError,
            Event::ScheduleRestart(_) => EventKind::ScheduleRestart,
            Event::Release(_) => EventKind::Release,
            Event::Stop(_) => EventKind::Stop,
            Event::Stopped { by_user: false } => EventKind::Stopped,
            Event::Stopped { by_user: true } => EventKind::StoppedByUser,
            Event::Disable => EventKind::Disable,
            Event::Found(_) => EventKind::Found,
            Event::Vanished => EventKind::Vanished,
        }
    }
}

/// One allowed transition: in state `from`, `event` under one of `policies` leads to `to`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    pub(crate) from: PluginState,
    pub(crate) event: EventKind,
    pub(crate) policies: &'static [RestartPolicy],
    pub(crate) to: PluginState,
}

use EventKind as E;
use PluginState as S;
use RestartPolicy as P;

const ANY: &[RestartPolicy] = &[P::Never, P::OnFailure, P::Always];
const RESTART: &[RestartPolicy] = &[P::OnFailure, P::Always];

const fn row(from: S, event: E, to: S) -> Row {
    Row {
        from,
        event,
        policies: ANY,
        to,
    }
}

const fn when(from: S, event: E, policies: &'static [RestartPolicy], to: S) -> Row {
    Row {
        from,
        event,
        policies,
        to,
    }
}

/// Every allowed transition. A pair missing here is refused.
pub(crate) const TRANSITIONS: &[Row] = &[
    row(S::Stopped, E::Start, S::Starting),
    row(S::Failed, E::Start, S::Starting),
    row(S::Missing, E::Start, S::Starting),
    row(S::Backoff, E::Start, S::Starting),
    row(S::Disabled, E::Start, S::Starting),
    row(S::Starting, E::Spawned, S::Starting),
    row(S::Starting, E::Ready, S::Running),
    row(S::Starting, E::Fail, S::Failed),
    // Processes survived the stop.
    row(S::Stopping, E::Fail, S::Failed),
    // Checks before a start: an instance left by an earlier launcher; not ready in time (the
    // start stopped it first).
    row(S::Failed, E::Fail, S::Failed),
    row(S::Stopped, E::Fail, S::Failed),
    row(S::Starting, E::BinaryLost, S::Missing),
    row(S::Stopped, E::BinaryLost, S::Missing),
    row(S::Failed, E::BinaryLost, S::Missing),
    row(S::Disabled, E::BinaryLost, S::Missing),
    // A restart survives a binary that is away for a moment (an upgrade): it keeps retrying.
    row(S::Backoff, E::BinaryLost, S::Backoff),
    row(S::Missing, E::BinaryFound, S::Stopped),
    row(S::Starting, E::NotPlaced, S::Stopped),
    row(S::Running, E::ExitedClean, S::Stopped),
    row(S::Running, E::ExitedError, S::Failed),
    // An exit during a start is a failed start; the starter reports it.
    row(S::Starting, E::ExitedClean, S::Failed),
    row(S::Starting, E::ExitedError, S::Failed),
    // An exit during a stop is what the stop waits for; its leftovers are killed next.
    row(S::Stopping, E::ExitedClean, S::Stopping),
    row(S::Stopping, E::ExitedError, S::Stopping),
    when(S::Stopped, E::ScheduleRestart, &[P::Always], S::Backoff),
    when(
        S::Stopped,
        E::ScheduleRestart,
        &[P::Never, P::OnFailure],
        S::Stopped,
    ),
    when(S::Failed, E::ScheduleRestart, RESTART, S::Backoff),
    when(S::Failed, E::ScheduleRestart, &[P::Never], S::Failed),
    when(S::Missing, E::ScheduleRestart, RESTART, S::Backoff),
    when(S::Missing, E::ScheduleRestart, &[P::Never], S::Missing),
    when(S::Backoff, E::ScheduleRestart, RESTART, S::Backoff),
    // The policy became `never` (a reload) while a restart was pending.
    when(S::Backoff, E::ScheduleRestart, &[P::Never], S::Failed),
    row(S::Backoff, E::Release, S::Backoff),
    row(S::Starting, E::Stop, S::Stopping),
    row(S::Running, E::Stop, S::Stopping),
    // A process left by an earlier launcher (the plugin is `failed` until it is stopped).
    row(S::Failed, E::Stop, S::Stopping),
    row(S::Stopping, E::Stopped, S::Stopped),
    row(S::Stopping, E::StoppedByUser, S::Disabled),
    row(S::Stopped, E::Disable, S::Disabled),
    row(S::Failed, E::Disable, S::Disabled),
    row(S::Backoff, E::Disable, S::Disabled),
    row(S::Disabled, E::Disable, S::Disabled),
    // A copy started by hand (or left by an earlier launcher) while this launcher runs none.
    row(S::Stopped, E::Found, S::External),
    row(S::Failed, E::Found, S::External),
    row(S::Missing, E::Found, S::External),
    row(S::Backoff, E::Found, S::External),
    row(S::Disabled, E::Found, S::External),
    row(S::External, E::Found, S::External),
    row(S::External, E::Vanished, S::Stopped),
    row(S::External, E::Stop, S::Stopping),
    // A start while it runs outside: refused, and said so; it stays external.
    row(S::External, E::Fail, S::External),
];

/// The row for `from`, `event` and `policy`, if the change is allowed.
pub(crate) fn lookup(from: PluginState, event: EventKind, policy: RestartPolicy) -> Option<Row> {
    TRANSITIONS
        .iter()
        .find(|r| r.from == from && r.event == event && r.policies.contains(&policy))
        .copied()
}

/// An event the table (or the state's data) does not allow; the state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("'{}' is not allowed in state {}", event.kind().name(), from.as_str())]
pub(crate) struct Refused {
    pub(crate) from: PluginState,
    pub(crate) event: Event,
}

/// The owner of a plugin's [`Phase`]: the one writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifecycle {
    phase: Phase,
}

impl Lifecycle {
    /// A plugin that starts out in `phase` (found at a scan).
    pub(crate) fn new(phase: Phase) -> Lifecycle {
        Lifecycle { phase }
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The state as shown to users.
    pub(crate) fn state(&self) -> PluginState {
        self.phase.state()
    }

    /// The plugin's process, while there is one.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.phase.pid()
    }

    /// Applies `event` under the plugin's restart `policy` and returns the new state; refuses
    /// (changing nothing) what [`TRANSITIONS`] or the phase's data does not allow.
    pub(crate) fn apply(
        &mut self,
        event: Event,
        policy: RestartPolicy,
    ) -> Result<PluginState, Refused> {
        let from = self.phase.state();
        let refused = Refused { from, event };
        let row = lookup(from, event.kind(), policy).ok_or(refused)?;
        if let Event::Exited { pid, .. } = event {
            // Only the plugin's current process can end it.
            if self.phase.pid() != Some(pid) {
                return Err(refused);
            }
        }
        let next = match (row.to, event, self.phase) {
            (S::Stopped, ..) => Phase::Stopped,
            (S::Failed, ..) => Phase::Failed,
            (S::Missing, ..) => Phase::Missing,
            (S::Disabled, ..) => Phase::Disabled,
            (S::Starting, Event::Start, _) => Phase::Starting { pid: None },
            (S::Starting, Event::Spawned(pid), Phase::Starting { pid: None }) => {
                Phase::Starting { pid: Some(pid) }
            }
            (S::Running, Event::Ready, Phase::Starting { pid: Some(pid) }) => {
                Phase::Running { pid }
            }
            (S::Stopping, Event::Stop(pid), _) => Phase::Stopping { pid: Some(pid) },
            (S::Stopping, Event::Exited { .. }, _) => Phase::Stopping { pid: None },
            (S::Backoff, Event::ScheduleRestart(retry), _) => Phase::Backoff { retry },
            (S::Backoff, Event::Release(at), Phase::Backoff { .. })
                if self.phase.waits_for_core() =>
            {
                Phase::Backoff {
                    retry: Retry::At(at),
                }
            }
            (S::Backoff, Event::BinaryLost, p @ Phase::Backoff { .. }) => p,
            (S::External, Event::Found(pid), _) => Phase::External { pid },
            (S::External, Event::Fail, p @ Phase::External { .. }) => p,
            _ => return Err(refused),
        };
        self.phase = next;
        Ok(row.to)
    }
}

#[cfg(test)]
/// The table as Markdown, for `docs/ARCHITECTURE.md`: one line per row, policies spelled out
/// when a row does not apply to all of them.
pub(crate) fn markdown_table() -> String {
    let mut out = String::from("| from | event | restart policy | to |\n|---|---|---|---|\n");
    for r in TRANSITIONS {
        let policies = if r.policies == ANY {
            "any".to_string()
        } else {
            r.policies
                .iter()
                .map(|p| match p {
                    P::Never => "never",
                    P::OnFailure => "on-failure",
                    P::Always => "always",
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.from.as_str(),
            r.event.name(),
            policies,
            r.to.as_str()
        ));
    }
    out
}

#[cfg(test)]
mod tests;
