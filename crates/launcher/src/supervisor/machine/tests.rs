//! The lifecycle without processes: every state × event × restart policy, against a table
//! written out here independently of [`TRANSITIONS`].

use super::*;
use std::time::{Duration, UNIX_EPOCH};

const T: SystemTime = UNIX_EPOCH;

/// A representative phase of each state, with the data a real one would carry.
fn phase_of(s: PluginState) -> Phase {
    match s {
        S::Stopped => Phase::Stopped,
        S::Starting => Phase::Starting { pid: Some(7) },
        S::Running => Phase::Running { pid: 7 },
        S::Stopping => Phase::Stopping { pid: Some(7) },
        S::Backoff => Phase::Backoff {
            retry: Retry::At(T),
        },
        S::Failed => Phase::Failed,
        S::Missing => Phase::Missing,
        S::Disabled => Phase::Disabled,
        S::External => Phase::External { pid: 9 },
    }
}

/// A representative event of each kind.
fn event_of(k: EventKind) -> Event {
    match k {
        E::Start => Event::Start,
        E::Spawned => Event::Spawned(8),
        E::Ready => Event::Ready,
        E::Fail => Event::Fail,
        E::BinaryLost => Event::BinaryLost,
        E::BinaryFound => Event::BinaryFound,
        E::NotPlaced => Event::NotPlaced,
        E::ExitedClean => Event::Exited {
            pid: 7,
            clean: true,
        },
        E::ExitedError => Event::Exited {
            pid: 7,
            clean: false,
        },
        E::ScheduleRestart => Event::ScheduleRestart(Retry::At(T + Duration::from_secs(2))),
        E::Release => Event::Release(T + Duration::from_secs(3)),
        E::Stop => Event::Stop(7),
        E::Stopped => Event::Stopped { by_user: false },
        E::StoppedByUser => Event::Stopped { by_user: true },
        E::Disable => Event::Disable,
        E::Found => Event::Found(9),
        E::Vanished => Event::Vanished,
    }
}

/// The allowed transitions from the representative phases, as the design says: (from, event,
/// policies, to). `None` as policies means any policy.
#[rustfmt::skip]
const EXPECTED: &[(S, E, Option<&[P]>, S)] = &[
    (S::Stopped, E::Start, None, S::Starting),
    (S::Failed, E::Start, None, S::Starting),
    (S::Missing, E::Start, None, S::Starting),
    (S::Backoff, E::Start, None, S::Starting),
    (S::Disabled, E::Start, None, S::Starting),
    (S::Starting, E::Ready, None, S::Running),
    (S::Starting, E::Fail, None, S::Failed),
    (S::Stopping, E::Fail, None, S::Failed),
    (S::Failed, E::Fail, None, S::Failed),
    (S::Stopped, E::Fail, None, S::Failed),
    (S::Starting, E::BinaryLost, None, S::Missing),
    (S::Stopped, E::BinaryLost, None, S::Missing),
    (S::Failed, E::BinaryLost, None, S::Missing),
    (S::Disabled, E::BinaryLost, None, S::Missing),
    (S::Backoff, E::BinaryLost, None, S::Backoff),
    (S::Missing, E::BinaryFound, None, S::Stopped),
    (S::Starting, E::NotPlaced, None, S::Stopped),
    (S::Running, E::ExitedClean, None, S::Stopped),
    (S::Running, E::ExitedError, None, S::Failed),
    (S::Starting, E::ExitedClean, None, S::Failed),
    (S::Starting, E::ExitedError, None, S::Failed),
    (S::Stopping, E::ExitedClean, None, S::Stopping),
    (S::Stopping, E::ExitedError, None, S::Stopping),
    (S::Stopped, E::ScheduleRestart, Some(&[P::Always]), S::Backoff),
    (S::Stopped, E::ScheduleRestart, Some(&[P::Never, P::OnFailure]), S::Stopped),
    (S::Failed, E::ScheduleRestart, Some(&[P::OnFailure, P::Always]), S::Backoff),
    (S::Failed, E::ScheduleRestart, Some(&[P::Never]), S::Failed),
    (S::Missing, E::ScheduleRestart, Some(&[P::OnFailure, P::Always]), S::Backoff),
    (S::Missing, E::ScheduleRestart, Some(&[P::Never]), S::Missing),
    (S::Backoff, E::ScheduleRestart, Some(&[P::OnFailure, P::Always]), S::Backoff),
    (S::Backoff, E::ScheduleRestart, Some(&[P::Never]), S::Failed),
    (S::Starting, E::Stop, None, S::Stopping),
    (S::Running, E::Stop, None, S::Stopping),
    (S::Failed, E::Stop, None, S::Stopping),
    (S::Stopping, E::Stopped, None, S::Stopped),
    (S::Stopping, E::StoppedByUser, None, S::Disabled),
    (S::Stopped, E::Disable, None, S::Disabled),
    (S::Failed, E::Disable, None, S::Disabled),
    (S::Backoff, E::Disable, None, S::Disabled),
    (S::Disabled, E::Disable, None, S::Disabled),
    (S::Stopped, E::Found, None, S::External),
    (S::Failed, E::Found, None, S::External),
    (S::Missing, E::Found, None, S::External),
    (S::Backoff, E::Found, None, S::External),
    (S::Disabled, E::Found, None, S::External),
    (S::External, E::Found, None, S::External),
    (S::External, E::Vanished, None, S::Stopped),
    (S::External, E::Stop, None, S::Stopping),
    (S::External, E::Fail, None, S::External),
];

fn expected(from: S, event: E, policy: P) -> Option<S> {
    EXPECTED
        .iter()
        .find(|(f, e, ps, _)| *f == from && *e == event && ps.is_none_or(|ps| ps.contains(&policy)))
        .map(|r| r.3)
}

#[test]
fn every_transition_matches_the_design_and_nothing_else_is_allowed() {
    let mut allowed = 0;
    for from in PluginState::ALL {
        for event in EventKind::ALL {
            for policy in [P::Never, P::OnFailure, P::Always] {
                let mut life = Lifecycle::new(phase_of(from));
                let got = life.apply(event_of(event), policy);
                let case = format!("{} × {} × {policy:?}", from.as_str(), event.name());
                match expected(from, event, policy) {
                    Some(to) => {
                        allowed += 1;
                        assert_eq!(got, Ok(to), "{case}");
                        assert_eq!(life.state(), to, "{case}");
                    }
                    None => {
                        assert!(got.is_err(), "{case} must be refused, got {got:?}");
                        assert_eq!(
                            life.phase(),
                            phase_of(from),
                            "{case}: a refusal changes nothing"
                        );
                    }
                }
            }
        }
    }
    assert!(allowed > 100, "the matrix ran ({allowed} allowed cases)");
}

#[test]
fn every_table_row_is_reachable_from_a_real_phase() {
    // A row that no representative phase can take would be dead (or missing from the design).
    for r in TRANSITIONS {
        for p in r.policies {
            let from = if r.event == E::Spawned {
                Phase::Starting { pid: None }
            } else if r.event == E::Release {
                Phase::Backoff {
                    retry: Retry::WhenCoreIsBack,
                }
            } else {
                phase_of(r.from)
            };
            let mut life = Lifecycle::new(from);
            assert_eq!(
                life.apply(event_of(r.event), *p),
                Ok(r.to),
                "{} × {} × {p:?}",
                r.from.as_str(),
                r.event.name()
            );
        }
    }
}

#[test]
fn transition_data_moves_with_the_state() {
    let mut life = Lifecycle::new(Phase::Stopped);
    life.apply(Event::Start, P::Always).unwrap();
    assert_eq!(life.pid(), None, "no process before the spawn");
    assert!(
        life.apply(Event::Ready, P::Always).is_err(),
        "ready before spawned"
    );
    life.apply(Event::Spawned(41), P::Always).unwrap();
    assert!(
        life.apply(Event::Spawned(42), P::Always).is_err(),
        "one spawn per start"
    );
    life.apply(Event::Ready, P::Always).unwrap();
    assert_eq!(life.phase(), Phase::Running { pid: 41 });
    assert!(
        life.apply(
            Event::Exited {
                pid: 40,
                clean: false
            },
            P::Always
        )
        .is_err(),
        "another process's exit"
    );
    life.apply(
        Event::Exited {
            pid: 41,
            clean: false,
        },
        P::Always,
    )
    .unwrap();
    assert_eq!(life.pid(), None);
    let held = Event::ScheduleRestart(Retry::WhenCoreIsBack);
    life.apply(held, P::Always).unwrap();
    assert!(life.phase().waits_for_core());
    assert_eq!(life.phase().retry_at(), None);
    let at = T + Duration::from_secs(9);
    life.apply(Event::Release(at), P::Always).unwrap();
    assert_eq!(life.phase().retry_at(), Some(at));
    assert!(
        life.apply(Event::Release(T), P::Always).is_err(),
        "only a restart that waits for the core is released"
    );
    life.apply(Event::BinaryLost, P::Always).unwrap();
    assert_eq!(
        life.phase().retry_at(),
        Some(at),
        "a pending restart survives a scan"
    );
    life.apply(Event::Start, P::Always).unwrap();
    life.apply(Event::Spawned(50), P::Always).unwrap();
    life.apply(Event::Stop(50), P::Always).unwrap();
    assert_eq!(life.pid(), Some(50));
    life.apply(
        Event::Exited {
            pid: 50,
            clean: true,
        },
        P::Always,
    )
    .unwrap();
    assert_eq!(life.phase(), Phase::Stopping { pid: None });
    life.apply(Event::Stopped { by_user: true }, P::Always)
        .unwrap();
    assert_eq!(life.state(), S::Disabled);
}

#[test]
fn the_documented_transition_table_is_the_code_s() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ARCHITECTURE.md");
    let doc = std::fs::read_to_string(path).expect("docs/ARCHITECTURE.md");
    let start = "<!-- transitions: generated from crates/launcher/src/supervisor/machine.rs; a test checks it -->\n";
    let (head, rest) = doc.split_once(start).expect("the start marker");
    let (table, tail) = rest
        .split_once("<!-- /transitions -->")
        .expect("the end marker");
    if std::env::var_os("HIVEHUB_BLESS").is_some() {
        let text = format!(
            "{head}{start}{}<!-- /transitions -->{tail}",
            markdown_table()
        );
        std::fs::write(path, text).expect("write docs/ARCHITECTURE.md");
        return;
    }
    assert_eq!(
        table,
        markdown_table(),
        "docs/ARCHITECTURE.md's state table differs from the code; run this test with \
         HIVEHUB_BLESS=1 to rewrite it"
    );
}
