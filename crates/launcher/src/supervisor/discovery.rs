//! Which plugins exist: the binaries in `plugins/` (and the core in `bin/`), rescanned when
//! inotify says `plugins/` changed (every 60 s as a safety net, every 2 s without inotify) and
//! before a start, and the autostart names without a binary.
//!
//! A scan publishes the status of every plugin it added to the list or whose state or binary it
//! changed (found, lost, replaced), like any other change of a plugin: the bus keeps each
//! plugin's retained status current, and the cluster hears that a movable plugin may now be
//! placed here.

use super::*;

pub(super) fn binary_meta(path: &std::path::Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    if !m.is_file() || m.permissions().mode() & 0o111 == 0 {
        return None;
    }
    let mtime = m.modified().map(now_ms).unwrap_or(0);
    Some((m.len(), mtime))
}

impl Supervisor {
    /// Scans `plugins/` (and `bin/` for the core): new binaries are listed, vanished ones are
    /// marked missing. Called at start and periodically, so no restart is needed. Publishes the
    /// status of each plugin it added or changed.
    pub fn discover(&self) {
        let mut changed: Vec<Arc<Slot>> = Vec::new();
        let mut found: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(self.sh.home.plugins()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if hivehub_api::validate_id(&name).is_ok() && binary_meta(&e.path()).is_some() {
                    found.insert(name, (e.path(), false));
                }
            }
        }
        if let Some(core) = &self.cfg().core {
            found.insert(core.clone(), (self.sh.home.bin().join(core), true));
        }
        let mut slots = lock(&self.sh.slots);
        for (name, (path, is_core)) in &found {
            if !slots.contains_key(name) {
                let stale = self.stale_instance(name);
                let (attempt, last_delay) = self.load_backoff(name);
                let (tx, _) = watch::channel(0);
                let slot = Arc::new(Slot {
                    name: name.clone(),
                    is_core: *is_core,
                        op: tokio::sync::Mutex::new(()),
                        exits: tx,
                        after_spawn: Mutex::new(Vec::new()),
                        st: Mutex::new(Run::new(
                            path.clone(),
                            match stale {
                                Some(pid) => Phase::External { pid },
                                None => Phase::Stopped,
                            },
                            match stale {
                                Some(pid) => format!(
                                    "an instance started by an earlier launcher is still running (pid {pid}); stop it first"
                                ),
                                None => String::new(),
                            },
                        )
                    .with_backoff(attempt, last_delay)),
                });
                changed.push(slot.clone());
                slots.insert(name.clone(), slot);
            }
        }
        // Autostart names without a binary are listed as missing, so `ls` shows the problem.
        for name in &self.cfg().autostart {
            if !slots.contains_key(name) {
                let (tx, _) = watch::channel(0);
                let slot = Arc::new(Slot {
                    name: name.clone(),
                    is_core: false,
                    op: tokio::sync::Mutex::new(()),
                    exits: tx,
                    after_spawn: Mutex::new(Vec::new()),
                    st: Mutex::new(Run::new(
                        self.sh.home.plugins().join(name),
                        Phase::Missing,
                        String::new(),
                    )),
                });
                changed.push(slot.clone());
                slots.insert(name.clone(), slot);
            }
        }
        let cfg = self.cfg();
        let mut gone = Vec::new();
        for slot in slots.values() {
            let mut st = lock(&slot.st);
            let before = (st.state(), st.size, st.modified);
            match binary_meta(&st.path) {
                Some((size, mtime)) => {
                    st.present = true;
                    st.size = Some(size);
                    st.modified = Some(mtime);
                    if self.apply(slot, &mut st, Event::BinaryFound).is_ok() {
                        st.status = "binary found".into();
                    }
                }
                None => {
                    st.present = false;
                    // A binary that is deleted and that the config does not name leaves the
                    // list; one it names, one only not executable (an upgrade in progress) and
                    // one with a restart pending stay, so the problem shows.
                    let named =
                        cfg.autostart.contains(&slot.name) || cfg.plugins.contains_key(&slot.name);
                    let deleted = std::fs::symlink_metadata(&st.path).is_err();
                    if deleted
                        && !slot.is_core
                        && !named
                        && st.pid().is_none()
                        && st.life.phase().external().is_none()
                        && st.state() != PluginState::Backoff
                    {
                        gone.push(slot.name.clone());
                        continue;
                    }
                    if self.apply(slot, &mut st, Event::BinaryLost) == Ok(PluginState::Missing) {
                        st.status = format!("binary {} not found", st.path.display());
                    }
                }
            }
            if (st.state(), st.size, st.modified) != before
                && !changed.iter().any(|c| Arc::ptr_eq(c, slot))
            {
                changed.push(slot.clone());
            }
        }
        for name in gone {
            slots.remove(&name);
            changed.retain(|c| c.name != name);
            lock(&self.sh.started_order).retain(|n| n != &name);
            tracing::info!(plugin = %name, "binary removed; no longer listed");
            self.notice(Notice::Gone(name));
        }
        drop(slots);
        for slot in changed {
            self.publish_status(&slot);
        }
    }

    /// Looks for processes of plugins' binaries that this launcher did not start (by hand, or
    /// left by an earlier launcher) and marks those plugins `external`, so that they are not
    /// started a second time and a stop stops them; an `external` plugin whose process is gone
    /// is `stopped` again. Costs a pass over `/proc`, so only when some plugin has no process
    /// of its own; called when a user lists, starts or stops plugins.
    pub(super) fn find_external(&self) {
        let slots: Vec<Arc<Slot>> = lock(&self.sh.slots).values().cloned().collect();
        let idle: Vec<Arc<Slot>> = slots
            .into_iter()
            .filter(|s| lock(&s.st).pid().is_none())
            .collect();
        if idle.is_empty() {
            return;
        }
        let found = if idle.iter().any(|s| !s.is_core) {
            process::instances_in(&self.sh.home.plugins(), &self.live_leaders(&[]))
        } else {
            HashMap::new()
        };
        for slot in idle {
            let changed = {
                let mut st = lock(&slot.st);
                let seen = found
                    .get(&slot.name)
                    .and_then(|pids| {
                        pids.iter()
                            .copied()
                            .find(|p| !self.belongs_to_another_plugin(*p, &slot.name))
                    })
                    .filter(|_| !slot.is_core);
                match (seen, st.life.phase().external()) {
                    (Some(pid), was) if was != Some(pid) => {
                        let ok = self.apply(&slot, &mut st, Event::Found(pid)).is_ok();
                        if ok {
                            st.status = format!(
                                "running outside this launcher (pid {pid}): not started again; a stop stops it"
                            );
                        }
                        ok
                    }
                    (None, Some(pid)) if !process::pid_alive(pid) => {
                        let ok = self.apply(&slot, &mut st, Event::Vanished).is_ok();
                        if ok {
                            st.status = format!(
                                "the process started outside this launcher (pid {pid}) is gone"
                            );
                        }
                        ok
                    }
                    _ => false,
                }
            };
            if changed {
                self.publish_status(&slot);
            }
        }
    }

    /// True when `pid` is another plugin's process (its own user, or its identity in the
    /// environment): a plugin must not be able to pin another as `external` (and so keep it
    /// from starting) by running something with that plugin's path on its command line.
    fn belongs_to_another_plugin(&self, pid: u32, name: &str) -> bool {
        let (uid, marked) = process::identity_of(pid, self.sh.home.root());
        let other_user = uid.is_some_and(|u| {
            sandbox::in_dynamic_range(u) && sandbox::own_uid(&self.sh.home, name) != Some(u)
        });
        other_user || marked.is_some_and(|id| id != name)
    }

    /// Rescans `plugins/` every `every`.
    pub fn spawn_watcher(&self, every: Duration) {
        let this = self.clone();
        let watch = watch_folder(&self.sh.home.plugins());
        if let Err(e) = &watch {
            tracing::warn!("cannot watch plugins/ ({e}); rescanning it every {every:?}");
        }
        self.spawn_task(async move {
            // With inotify a scan runs when plugins/ changes, and otherwise only every
            // `RESCAN` as a safety net: an idle launcher does not stat every binary each
            // `every`.
            let period = if watch.is_ok() {
                RESCAN.max(every)
            } else {
                every
            };
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut watch = watch.ok();
            loop {
                match &mut watch {
                    Some(w) => tokio::select! {
                        _ = tick.tick() => {}
                        r = w.readable() => match r {
                            Ok(mut guard) => {
                                // Drain what is there; one scan covers every event.
                                let _ = guard.try_io(|fd| {
                                    fd.get_ref().0.read_events().map_err(std::io::Error::from)
                                });
                            }
                            Err(_) => watch = None,
                        },
                    },
                    None => {
                        tick.tick().await;
                    }
                }
                this.discover();
            }
        });
    }
}

/// How often `plugins/` is rescanned when inotify reports its changes.
const RESCAN: Duration = Duration::from_secs(60);

/// An inotify instance, as tokio's `AsyncFd` wants it.
struct Watch(nix::sys::inotify::Inotify);

impl std::os::fd::AsRawFd for Watch {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// An inotify watch on `dir` for the changes that matter to the list: a binary created,
/// written, deleted, moved or made (not) executable.
fn watch_folder(dir: &std::path::Path) -> std::io::Result<tokio::io::unix::AsyncFd<Watch>> {
    use nix::sys::inotify::{AddWatchFlags as W, InitFlags, Inotify};
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    ino.add_watch(
        dir,
        W::IN_CREATE
            | W::IN_CLOSE_WRITE
            | W::IN_DELETE
            | W::IN_MOVED_FROM
            | W::IN_MOVED_TO
            | W::IN_ATTRIB,
    )?;
    // SAFETY: `Watch` owns the inotify instance, so its descriptor stays open and the same for
    // as long as the `AsyncFd` holds it.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(Watch(ino), tokio::io::Interest::READABLE)
    }
    .map_err(std::io::Error::from)
}
