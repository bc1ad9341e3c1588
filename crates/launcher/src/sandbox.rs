//! Confinement of plugins. A plugin is third-party code: it gets its own credentials and its
//! own data folder, and nothing else of the hub.
//!
//! Three mechanisms, each used where the kernel and the launcher's privileges allow:
//!
//! * **Landlock** (any user, Linux 5.13+): a ruleset built per start ([`Confinement`]) lets the
//!   plugin read and execute the system folders ([`SYSTEM_READ`]), read its binary, the hub CA,
//!   its own key, token and `config/{name}.yaml`, and read and write `stores/{name}/`, a few
//!   devices and the temporary folders. Everything else under the home is out of reach. Paths a
//!   binding needs are added with `plugins.<name>.sandbox: {read, write}`. From ABI 6 the
//!   ruleset also scopes signals and abstract Unix sockets, so the plugin cannot signal the
//!   launcher, the core, the guard or another plugin. Landlock always limits `ptrace` (and so
//!   `/proc/<pid>/environ` and `mem`) to the plugin's own domain.
//! * **A Unix user per plugin** (launcher running as root): a user ID from a reserved range,
//!   recorded as the owner of `stores/{name}/` (as systemd's `DynamicUser` does), or
//!   `plugins.<name>.user`. Its key and token are chowned to it. A dynamic user ID is claimed
//!   for the whole host in [`UID_REGISTRY`] (`/run/hivehub/uids/{uid}`, a symlink to the data
//!   folder that has it), so two plugins never share one, even plugins of different homes; a
//!   claim whose folder is gone or owned by someone else is stale and taken over.
//! * **`no_new_privs`**, so no setuid binary can undo the above.
//!
//! Landlock cannot deny a path below an allowed one, so a default folder that contains the
//! home (a home under `/tmp` or `/opt`) is not granted whole: its other entries are, down to
//! the home's branch (`beneath_except`); the temporary folders are then left out and the
//! plugin uses its private `TMPDIR` (`stores/{name}/tmp`), which it always gets.
//!
//! The child applies all of it between `clone` and `execve` with raw system calls
//! ([`crate::process`]); everything that allocates or opens files happens here, before.

use crate::config::{LauncherConfig, PluginConfig};
use hivehub_api::launcher::SandboxLevel;
use hivehub_home::Home;
use landlock::{Access, AccessFs, BitFlags, ABI};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod ruleset;

/// The Landlock ABI whose rights this launcher hands out: every filesystem right up to ABI 9
/// (which adds connecting to Unix socket files) and the ABI 6 scopes. A kernel enforces what
/// it knows of this set.
const LANDLOCK_ABI: ABI = ABI::V9;
/// First Landlock ABI that governs connecting to Unix socket files.
const ABI_UNIX_CONNECT: i32 = 9;
/// First Landlock ABI that scopes signals (Linux 6.12).
const ABI_SIGNAL_SCOPE: i32 = 6;

/// System folders every plugin may read and execute. Not `/dev`: terminals there (`/dev/pts`)
/// are the launcher's user's too; a binding names its devices in `sandbox.write`.
pub const SYSTEM_READ: [&str; 13] = [
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt", "/srv", "/run",
    "/proc", "/sys",
];
/// Devices every plugin may read and write.
const DEVICES_WRITE: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/shm",
];
/// System sockets a plugin may connect to (enforced from Landlock ABI 9): logging, the system
/// bus (which has its own policy) and name resolution. Not `/run/user`, where the sockets of
/// the launcher's user (its session bus, ssh-agent) would let a plugin run commands outside.
const SYSTEM_SOCKETS: [&str; 6] = [
    "/dev/log",
    "/run/systemd/journal",
    "/run/dbus/system_bus_socket",
    "/run/systemd/resolve",
    "/run/nscd",
    "/run/avahi-daemon",
];
/// Shared temporary folders, writable unless the home lies below them.
const TEMP_WRITE: [&str; 2] = ["/tmp", "/var/tmp"];

/// First user ID of the range the launcher gives plugins (as root), above systemd's dynamic
/// users (61184–65519) and container ranges (524288–1879048191).
pub const DYNAMIC_UID_BASE: u32 = 2_000_000_000;
/// Size of that range.
pub const DYNAMIC_UID_COUNT: u32 = 65_536;

/// Environment variables passed from the launcher's own environment; everything else stays
/// with the launcher.
fn env_allowed(key: &[u8]) -> bool {
    matches!(key, b"PATH" | b"LANG" | b"TZ" | b"LANGUAGE")
        || key.starts_with(b"LC_")
        || key.starts_with(b"HIVEHUB_")
}

/// What this host offers: the kernel's Landlock ABI and whether the launcher is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// Landlock ABI of the running kernel; 0 without Landlock.
    pub abi: i32,
    /// The launcher runs as root, so each plugin can get a user of its own.
    pub root: bool,
    /// The launcher's own user and group.
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
}

impl Host {
    /// Asks the kernel.
    pub fn probe() -> Host {
        let uid = nix::unistd::geteuid().as_raw();
        Host {
            abi: landlock_abi(),
            root: uid == 0,
            uid,
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    /// How far a plugin with settings `pc` is confined on this host.
    pub fn level(&self, pc: &PluginConfig) -> SandboxLevel {
        let own_user = self.root && pc.user.as_deref() != Some("root");
        let landlock = pc.sandbox.enabled && self.abi > 0;
        match (landlock, own_user) {
            // A user of its own cannot signal or trace the launcher's processes.
            (true, true) => SandboxLevel::Full,
            (true, false) if self.abi >= ABI_SIGNAL_SCOPE => SandboxLevel::Full,
            (true, false) => SandboxLevel::Files,
            (false, true) => SandboxLevel::User,
            (false, false) => SandboxLevel::None,
        }
    }

    /// One warning naming what this host lacks, if plugins cannot be fully confined here.
    pub fn shortfall(&self) -> Option<String> {
        match (self.abi, self.root) {
            (0, false) => Some(
                "plugins run unconfined (sandbox: none): this kernel has no Landlock (Linux 5.13+ \
                 with landlock in the lsm= list) and the launcher is not root, so it cannot give \
                 plugins users of their own"
                    .into(),
            ),
            (0, true) => Some(
                "plugins run as users of their own but without Landlock (sandbox: user): this \
                 kernel has no Landlock, so their files are protected by Unix permissions only"
                    .into(),
            ),
            (abi, false) if abi < ABI_SIGNAL_SCOPE => Some(format!(
                "plugins are confined to their files only (sandbox: files): Landlock ABI {abi} \
                 cannot scope signals (needs ABI 6, Linux 6.12), so a plugin can signal the \
                 launcher's processes; run the launcher as root to give plugins users of their own"
            )),
            (abi, false) if abi < ABI_UNIX_CONNECT => Some(format!(
                "plugins share the launcher's user: Landlock ABI {abi} cannot stop them from \
                 connecting to that user's Unix sockets (needs ABI 9) or changing the modes of \
                 the hub's files; run the launcher as root to give plugins users of their own"
            )),
            _ => None,
        }
    }
}

/// The Landlock ABI of the running kernel, 0 when Landlock is absent or disabled.
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: nix::libc::c_uint = 1;
    // SAFETY: the documented version query: no attribute, size 0, the version flag.
    let v = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        0
    } else {
        v as i32
    }
}

/// A Unix identity a plugin runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary groups (a named user's, e.g. `dialout`; none for a dynamic user).
    pub groups: Vec<u32>,
    /// `$USER`.
    pub user: String,
    /// `$HOME`.
    pub home: PathBuf,
}

/// What the child applies to itself before `execve`, prepared by the parent.
#[derive(Debug, Default)]
pub struct Confinement {
    /// Switch to this user (launcher running as root).
    pub creds: Option<Creds>,
    /// A Landlock ruleset to restrict itself with.
    pub landlock: Option<OwnedFd>,
    /// Set `no_new_privs` (always with Landlock, which requires it).
    pub no_new_privs: bool,
}

/// Everything needed to start one plugin confined: its identity, its ruleset and its
/// environment.
#[derive(Debug)]
pub struct Prepared {
    /// Applied by the child.
    pub confinement: Confinement,
    /// The plugin's whole environment.
    pub env: Vec<(OsString, OsString)>,
    /// The level it runs at.
    pub level: SandboxLevel,
}

/// Why a plugin may not start confined; shown to the user as is.
pub type Refusal = String;

/// Names a plugin may not have: they belong to the hub itself or to other kinds of clients.
pub fn reserved_name(name: &str, cfg: &LauncherConfig) -> Option<String> {
    if name.starts_with('_') {
        Some(format!(
            "'{name}' is reserved: names starting with '_' belong to the hub"
        ))
    } else if name == hivehub_api::auth::AUTH_SERVICE {
        Some(format!("'{name}' is reserved for the core's auth service"))
    } else if cfg.core.as_deref() == Some(name) {
        Some(format!("'{name}' is the core's name"))
    } else if name == cfg.id {
        Some(format!("'{name}' is this launcher's own client ID"))
    } else {
        None
    }
}

/// Refuses a binary that someone other than root or the launcher's user could change, as
/// sshd's `StrictModes` does: whoever can rewrite it runs code with the plugin's credentials.
/// Checks the file (after symlinks) and the folder that holds it.
pub fn check_binary(path: &Path, launcher_uid: u32) -> Result<(), Refusal> {
    let target = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let shown = if target == path {
        path.display().to_string()
    } else {
        format!("{} (-> {})", path.display(), target.display())
    };
    let meta = fs::metadata(&target).map_err(|e| format!("{shown}: {e}"))?;
    let owner_ok = |uid: u32| uid == 0 || uid == launcher_uid;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "refusing to run {shown}: it is writable by {} (mode {mode:04o}); run chmod go-w on it",
            if mode & 0o002 != 0 {
                "anyone"
            } else {
                "its group"
            }
        ));
    }
    if !owner_ok(meta.uid()) {
        return Err(format!(
            "refusing to run {shown}: it is owned by uid {}, not by root or the launcher's user (uid {launcher_uid})",
            meta.uid()
        ));
    }
    if let Some(dir) = target.parent() {
        let d = fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let dmode = d.mode() & 0o7777;
        // A sticky folder (/tmp) lets only a file's owner replace it.
        if dmode & 0o022 != 0 && dmode & 0o1000 == 0 {
            return Err(format!(
                "refusing to run {shown}: its folder {} is writable by others (mode {dmode:04o}), so the binary could be replaced",
                dir.display()
            ));
        }
        if !owner_ok(d.uid()) {
            return Err(format!(
                "refusing to run {shown}: its folder {} is owned by uid {}, not by root or the launcher's user",
                dir.display(),
                d.uid()
            ));
        }
    }
    Ok(())
}

/// A plugin's data folder.
pub fn data_dir(home: &Home, name: &str) -> PathBuf {
    home.stores().join(name)
}

/// A plugin's private temporary folder (`$TMPDIR`).
pub fn tmp_dir(home: &Home, name: &str) -> PathBuf {
    data_dir(home, name).join("tmp")
}

/// The user ID that plugin `name` has to itself (the dynamic owner of its data folder), if any.
pub fn own_uid(home: &Home, name: &str) -> Option<u32> {
    fs::symlink_metadata(data_dir(home, name))
        .ok()
        .map(|m| m.uid())
        .filter(|u| in_dynamic_range(*u))
}

/// True for a user ID of the range given to plugins.
pub fn in_dynamic_range(uid: u32) -> bool {
    (DYNAMIC_UID_BASE..DYNAMIC_UID_BASE + DYNAMIC_UID_COUNT).contains(&uid)
}

/// Where the user IDs given to plugins are claimed, for the whole host: `{uid}` is a symlink to
/// the data folder of the plugin that has it. Several hubs on one host (or a test run) must
/// never give two plugins the same user. Under `/run`, so a reboot forgets stale claims; the
/// data folders' owners are the lasting record.
pub const UID_REGISTRY: &str = "/run/hivehub/uids";

/// Claims `uid` for the plugin whose data folder is `data`. A claim whose folder is gone or no
/// longer owned by `uid` (a deleted home) is stale and taken over.
fn claim_uid(uid: u32, data: &Path) -> io::Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    let link = Path::new(UID_REGISTRY).join(uid.to_string());
    for _ in 0..3 {
        match std::os::unix::fs::symlink(data, &link) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(UID_REGISTRY)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let held = fs::read_link(&link)?;
                if held == data {
                    return Ok(true);
                }
                let live = fs::symlink_metadata(&held).is_ok_and(|m| m.uid() == uid);
                if live {
                    return Ok(false);
                }
                let _ = fs::remove_file(&link);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// The user ID of a plugin without `user`: the owner of its data folder when that is in the
/// range (and not claimed by another hub's plugin), else a free one: claimed by no plugin on
/// this host ([`UID_REGISTRY`]), not in the user or group database. The search starts from a
/// hash of the home and the name, so a plugin usually gets the same one again. The caller
/// serializes calls within this launcher.
pub fn dynamic_uid(home: &Home, name: &str) -> io::Result<u32> {
    dynamic_uid_in(&canonical(home.root()), name)
}

/// [`dynamic_uid`] in the home whose path, symlinks resolved, is `root`. The claim is made again
/// at every start, so a registry emptied meanwhile gets it back.
fn dynamic_uid_in(root: &Path, name: &str) -> io::Result<u32> {
    let data = root.join("stores").join(name);
    if let Ok(m) = fs::metadata(&data) {
        if in_dynamic_range(m.uid()) && claim_uid(m.uid(), &data)? {
            return Ok(m.uid());
        }
    }
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = data
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ *b as u32).wrapping_mul(0x0100_0193)
        });
    for i in 0..DYNAMIC_UID_COUNT {
        let uid = DYNAMIC_UID_BASE + (hash.wrapping_add(i)) % DYNAMIC_UID_COUNT;
        if matches!(nix::unistd::User::from_uid(uid.into()), Ok(None))
            && matches!(nix::unistd::Group::from_gid(uid.into()), Ok(None))
            && claim_uid(uid, &data)?
        {
            return Ok(uid);
        }
    }
    Err(io::Error::other("no free user ID left for plugins"))
}

/// The identity of plugin `name`: `None` when it runs as the launcher's own user (the launcher
/// is not root, or `user: root`). `root` is the home's path with symlinks resolved.
fn creds_for(
    home: &Home,
    root: &Path,
    name: &str,
    pc: &PluginConfig,
    host: &Host,
) -> Result<Option<Creds>, Refusal> {
    match pc.user.as_deref() {
        Some(user) if !host.root => {
            if nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .is_some_and(|u| u.uid.as_raw() == host.uid)
            {
                return Ok(None);
            }
            Err(format!(
                "plugins.{name}.user is {user}, but the launcher is not root and cannot switch users"
            ))
        }
        None if !host.root => Ok(None),
        Some(user) => named_creds(user).map_err(|e| format!("plugins.{name}.user: {e}")),
        None => {
            let uid =
                dynamic_uid_in(root, name).map_err(|e| format!("cannot pick a user ID: {e}"))?;
            Ok(Some(Creds {
                uid,
                gid: uid,
                groups: Vec::new(),
                user: name.to_string(),
                home: data_dir(home, name),
            }))
        }
    }
}

/// The identity of the core under a root launcher: `plugins.<core>.user`, else the owner of
/// `certs/` (the hub's user, as `scripts/install.sh --systemd` sets it up), so the
/// network-facing broker runs as root only when its secrets are root's anyway. `None`: it runs
/// as the launcher does.
pub fn core_creds(home: &Home, pc: &PluginConfig, host: &Host) -> Result<Option<Creds>, Refusal> {
    if !host.root {
        return Ok(None);
    }
    if let Some(user) = pc.user.as_deref() {
        return named_creds(user);
    }
    let uid = fs::metadata(home.certs())
        .map_err(|e| format!("{}: {e}", home.certs().display()))?
        .uid();
    if uid == 0 {
        return Ok(None);
    }
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => named_creds(&u.name),
        _ => Ok(Some(Creds {
            uid,
            gid: uid,
            groups: Vec::new(),
            user: uid.to_string(),
            home: home.root().to_path_buf(),
        })),
    }
}

/// Hands what the core writes to the user it runs as: the folders `certs`, `stores` and `run`
/// (the launcher, as root, still writes there), and the core's own files in them, so a home
/// whose core ran as root before keeps working.
pub fn prepare_core_dirs(home: &Home, c: &Creds) -> Result<(), Refusal> {
    let certs = home.certs();
    let mut paths = vec![
        home.certs(),
        home.stores(),
        home.run(),
        home.stores().join("auth"),
    ];
    for f in [
        "caCert.pem",
        "caKey.pem",
        "hubCert.pem",
        "hubKey.pem",
        "tokenSigningKey.pem",
        "admin.key",
        "admin.token",
        "launcher.key",
        "launcher.token",
    ] {
        paths.push(certs.join(f));
    }
    paths.push(home.stores().join("auth/clients.json"));
    paths.push(home.stores().join("leases.json"));
    paths.push(home.core_url_file());
    for p in paths {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.uid() != c.uid && !m.file_type().is_symlink() => {
                std::os::unix::fs::lchown(&p, Some(c.uid), Some(c.gid))
                    .map_err(|e| format!("cannot hand {} to {}: {e}", p.display(), c.user))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The identity of an existing user, with its groups (e.g. `dialout` for a serial stick).
fn named_creds(user: &str) -> Result<Option<Creds>, Refusal> {
    if user == "root" {
        return Ok(None);
    }
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("cannot look up user {user}: {e}"))?
        .ok_or_else(|| format!("there is no user named {user}"))?;
    let cname = std::ffi::CString::new(user).map_err(|_| format!("bad user name {user}"))?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid)
        .map_err(|e| format!("cannot list the groups of {user}: {e}"))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Ok(Some(Creds {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
        user: user.to_string(),
        home: u.dir,
    }))
}

/// Every folder from `/` to the home must let others pass (`x`), or a plugin with a user of
/// its own cannot reach its binary and key.
fn check_reachable(home: &Home) -> Result<(), Refusal> {
    let mut dirs: Vec<PathBuf> = home.root().ancestors().map(Path::to_path_buf).collect();
    dirs.extend([home.plugins(), home.certs(), home.stores(), home.config()]);
    for d in dirs {
        if let Ok(m) = fs::metadata(&d) {
            if m.mode() & 0o001 == 0 {
                return Err(format!(
                    "plugins run as users of their own but cannot pass {} (mode {:04o}); make it 0711 or 0755",
                    d.display(),
                    m.mode() & 0o7777
                ));
            }
        }
    }
    Ok(())
}

/// Changes the owner of `path` and everything below it, without following symlinks.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for e in fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Prepares the folders and files a plugin owns: `stores/{name}/` (0700) with `tmp/`, and, for
/// a user of its own, the ownership of those and of its key and token ([`prepare_home`] must
/// have opened the home to plugin users).
pub fn prepare_files(home: &Home, name: &str, creds: Option<&Creds>) -> Result<(), Refusal> {
    let err = |what: &Path| {
        let what = what.display().to_string();
        move |e: io::Error| format!("cannot prepare {what}: {e}")
    };
    let data = data_dir(home, name);
    let tmp = tmp_dir(home, name);
    let owner = creds.map(|c| (c.uid, c.gid));
    let mut found = fs::symlink_metadata(&data).ok();
    if let Some((uid, gid)) = owner {
        // A plugin that changed users takes its data along.
        if found
            .as_ref()
            .is_some_and(|m| m.is_dir() && (m.uid(), m.gid()) != (uid, gid))
        {
            chown_tree(&data, uid, gid).map_err(err(&data))?;
            found = None;
        }
        for f in [home.key_file(name), home.token_file(name)] {
            match std::os::unix::fs::lchown(&f, Some(uid), Some(gid)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(&f)(e)),
            }
        }
    }
    private_dir(&data, owner, found).map_err(err(&data))?;
    private_dir(&tmp, owner, None).map_err(err(&tmp))?;
    Ok(())
}

/// Opens the home to plugin users: the folders they pass through (`certs`, `stores`, `run`)
/// become 0711 (passable, not listable) and the public hub CA 0644; every folder from `/` to
/// the home must let them pass. Once per launcher run is enough (see `Supervisor`), as the
/// launcher alone changes these.
pub fn prepare_home(home: &Home) -> Result<(), Refusal> {
    let err = |what: &Path| {
        let what = what.display().to_string();
        move |e: io::Error| format!("cannot prepare {what}: {e}")
    };
    for dir in [home.certs(), home.stores(), home.run()] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).map_err(err(&dir))?;
    }
    let ca = home.ca_cert();
    if fs::metadata(&ca).is_ok_and(|m| m.mode() & 0o004 == 0) {
        fs::set_permissions(&ca, fs::Permissions::from_mode(0o644)).map_err(err(&ca))?;
    }
    check_reachable(home)
}

/// Makes `path` a real folder of mode 0700 (owned by `owner` when given) without following a
/// symlink: the plugin owns what is inside its data folder and could plant one there to make
/// the launcher chmod or chown something else. `found` is what `lstat` said of it just before,
/// if the caller asked; a folder that is already right is left alone (a restart's case).
fn private_dir(
    path: &Path,
    owner: Option<(u32, u32)>,
    found: Option<fs::Metadata>,
) -> io::Result<()> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use std::os::unix::fs::DirBuilderExt;
    let make = || fs::DirBuilder::new().mode(0o700).create(path);
    let found = match found {
        Some(m) => Ok(m),
        None => fs::symlink_metadata(path),
    };
    match found {
        Ok(m)
            if m.is_dir()
                && m.mode() & 0o7777 == 0o700
                && owner.is_none_or(|o| (m.uid(), m.gid()) == o) =>
        {
            return Ok(());
        }
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            fs::remove_file(path)?;
            make()?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => make()?,
        Err(e) => return Err(e),
    }
    let fd = nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )?;
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o700))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(&fd, Some(uid.into()), Some(gid.into()))?;
    }
    Ok(())
}

/// The plugin's environment: the allowed part of the launcher's own (`PATH`, `LANG`, `LC_*`,
/// `TZ`, `HIVEHUB_*`), its user's `HOME` and `USER`, its `TMPDIR`, then `extra` (the
/// launcher's `HIVEHUB_*`, `NOTIFY_SOCKET`, the plugin's `env`), later entries winning.
pub fn environment(
    home: &Home,
    name: &str,
    creds: Option<&Creds>,
    extra: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    BaseEnv::read().environment(home, name, creds, extra)
}

/// What plugins get of the launcher's own environment: the allowed variables, and its `HOME`
/// and `USER` for a plugin that runs as the launcher's user. Read once, as the launcher never
/// changes its environment (a copy costs a restart tens of µs).
#[derive(Debug, Clone)]
pub struct BaseEnv {
    allowed: Vec<(OsString, OsString)>,
    own: Vec<(OsString, OsString)>,
}

impl BaseEnv {
    /// Reads the launcher's environment.
    pub fn read() -> BaseEnv {
        use std::os::unix::ffi::OsStrExt;
        let mut allowed: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| env_allowed(k.as_bytes()))
            .collect();
        if !allowed.iter().any(|(k, _)| k == "PATH") {
            allowed.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
        }
        let own = ["HOME", "USER"]
            .into_iter()
            .filter_map(|k| std::env::var_os(k).map(|v| (k.into(), v)))
            .collect();
        BaseEnv { allowed, own }
    }

    /// See [`environment`].
    pub fn environment(
        &self,
        home: &Home,
        name: &str,
        creds: Option<&Creds>,
        extra: &[(String, String)],
    ) -> Vec<(OsString, OsString)> {
        let mut env = self.allowed.clone();
        match creds {
            Some(c) => {
                env.push(("HOME".into(), c.home.clone().into()));
                env.push(("USER".into(), c.user.clone().into()));
            }
            None => env.extend(self.own.iter().cloned()),
        }
        env.push(("TMPDIR".into(), tmp_dir(home, name).into()));
        env.extend(extra.iter().map(|(k, v)| (k.into(), v.into())));
        // Later entries win; keep each variable once, in first-seen order.
        let mut out: Vec<(OsString, OsString)> = Vec::with_capacity(env.len());
        for (k, v) in env {
            match out.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        out
    }
}

/// `dir`, or, when `home` lies below it, every entry of it except the branch towards the home,
/// recursively: Landlock cannot take back a path below a granted one, so the branch must never
/// be granted. A `dir` equal to the home gives nothing.
fn beneath_except(dir: &Path, home: &Path, out: &mut Vec<PathBuf>) {
    if !home.starts_with(dir) {
        out.push(dir.to_path_buf());
        return;
    }
    if home == dir {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if home.starts_with(&p) {
            beneath_except(&p, home, out);
        } else {
            out.push(p);
        }
    }
}

/// The paths every plugin of this home may use, with the rights on each: the system, a few
/// devices, system sockets and the temporary folders (see the module docs).
pub fn system_paths(home: &Home) -> Vec<(PathBuf, BitFlags<AccessFs>)> {
    let read = AccessFs::from_read(LANDLOCK_ABI);
    // Shared folders hold other programs' sockets (tmux, ssh-agent): no connecting there.
    let shared = AccessFs::from_all(LANDLOCK_ABI) & !AccessFs::ResolveUnix;
    let root = canonical(home.root());
    let mut sys = Vec::new();
    for d in SYSTEM_READ {
        beneath_except(Path::new(d), &root, &mut sys);
    }
    let mut rules: Vec<_> = sys.into_iter().map(|p| (p, read)).collect();
    for d in DEVICES_WRITE {
        rules.push((PathBuf::from(d), shared));
    }
    for d in SYSTEM_SOCKETS {
        rules.push((PathBuf::from(d), AccessFs::ResolveUnix.into()));
    }
    for d in TEMP_WRITE {
        // A home below a temporary folder keeps the whole folder out; `TMPDIR` replaces it.
        if !root.starts_with(canonical(Path::new(d))) {
            rules.push((PathBuf::from(d), shared));
        }
    }
    rules
}

/// The paths plugin `name` alone may use: its binary, the hub CA, its key, token and config,
/// its data folder, its readiness socket, and its `sandbox.read` and `sandbox.write`. `root` is
/// the home's path with symlinks resolved. The files among them get file rights only.
pub fn plugin_paths(
    home: &Home,
    root: &Path,
    name: &str,
    binary: &Path,
    pc: &PluginConfig,
    notify: Option<&Path>,
) -> Result<Vec<(PathBuf, BitFlags<AccessFs>)>, Refusal> {
    let read = AccessFs::from_read(LANDLOCK_ABI);
    let read_file = read & AccessFs::from_file(LANDLOCK_ABI);
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let mut rules = Vec::new();
    if let Some(sock) = notify {
        rules.push((sock.to_path_buf(), AccessFs::ResolveUnix.into()));
    }
    rules.push((binary.to_path_buf(), read_file));
    for f in [
        home.ca_cert(),
        home.key_file(name),
        home.token_file(name),
        home.config_file(name),
    ] {
        rules.push((f, read_file));
    }
    rules.push((data_dir(home, name), all));
    for (list, paths, access) in [
        ("read", &pc.sandbox.read, read),
        ("write", &pc.sandbox.write, all),
    ] {
        for p in paths {
            if root.starts_with(canonical(p)) {
                return Err(format!(
                    "plugins.{name}.sandbox.{list}: {} contains the hub home {}, which holds every secret of the hub; name a folder beside it",
                    p.display(),
                    root.display()
                ));
            }
            rules.push((p.clone(), access));
        }
    }
    Ok(rules)
}

/// The path with symlinks resolved, or as given when it does not exist.
fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A path opened for a Landlock rule (`O_PATH`, following symlinks). `None` when it does not
/// exist.
fn open_rule(path: &Path) -> Option<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).ok()
}

/// [`system_paths`], opened once per launcher run, each with the rights a rule on it may carry
/// (file rights only, for a file): every start then only adds them to its ruleset, one system
/// call each (each rule otherwise costs an open, a stat and a close, and they are the same for
/// every plugin).
pub struct SystemRules(Vec<(OwnedFd, BitFlags<AccessFs>)>);

impl SystemRules {
    /// Opens the system paths of `home` that exist, less those another one already covers.
    pub fn open(home: &Home) -> SystemRules {
        use nix::sys::stat::SFlag;
        let mut kept: Vec<(PathBuf, OwnedFd, BitFlags<AccessFs>)> = Vec::new();
        for (path, access) in system_paths(home) {
            let Some(fd) = open_rule(&path) else { continue };
            let is_dir = nix::sys::stat::fstat(&fd)
                .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode).contains(SFlag::S_IFDIR));
            let access = if is_dir {
                access
            } else {
                access & AccessFs::from_file(LANDLOCK_ABI)
            };
            kept.push((canonical(&path), fd, access));
        }
        SystemRules(
            covered_removed(kept)
                .into_iter()
                .map(|(_, fd, a)| (fd, a))
                .collect(),
        )
    }
}

/// `rules` (each with its path, symlinks resolved) less those that a rule on a folder above
/// them, with at least their rights, already gives: with a merged `/usr`, `/bin` and `/lib` are
/// `/usr/bin` and `/usr/lib`.
fn covered_removed<T>(
    rules: Vec<(PathBuf, T, BitFlags<AccessFs>)>,
) -> Vec<(PathBuf, T, BitFlags<AccessFs>)> {
    type Rule<T> = (PathBuf, T, BitFlags<AccessFs>);
    let covers = |a: &Rule<T>, b: &Rule<T>| b.0.starts_with(&a.0) && a.2.contains(b.2);
    let keep: Vec<bool> = (0..rules.len())
        .map(|i| {
            // Of two equal rules, the first stays.
            !(0..rules.len()).any(|j| {
                j != i && covers(&rules[j], &rules[i]) && (j < i || !covers(&rules[i], &rules[j]))
            })
        })
        .collect();
    rules
        .into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

/// Builds the Landlock ruleset of one plugin on a kernel of Landlock ABI `abi`: `system` and
/// its own `rules`, with signals and abstract Unix sockets scoped. A kernel enforces what it
/// knows of them (best effort), and paths that do not exist are skipped.
pub fn landlock_ruleset(
    abi: i32,
    system: &SystemRules,
    rules: &[(PathBuf, BitFlags<AccessFs>)],
) -> Result<OwnedFd, Refusal> {
    use std::os::fd::AsFd;
    let fail = |e: io::Error| format!("cannot build the Landlock ruleset: {e}");
    let mut ruleset =
        ruleset::Ruleset::create(ruleset::Handled::new(LANDLOCK_ABI, abi)).map_err(fail)?;
    for (fd, access) in &system.0 {
        ruleset.allow(fd.as_fd(), *access).map_err(fail)?;
    }
    for (path, access) in rules {
        if let Some(fd) = open_rule(path) {
            ruleset
                .allow(fd.as_fd(), *access)
                .map_err(|e| format!("{}: {}", path.display(), fail(e)))?;
        }
    }
    Ok(ruleset.into_fd())
}

/// The confinement of one launcher's plugins: what the host offers, and what is prepared once
/// per launcher run (the home opened to plugin users, the system part of every ruleset).
///
/// A restart repeats none of a start's work that still holds: the home's resolved path, the
/// launcher's environment, and the plugin's folders when they are already right. (Not the
/// binary's check: a path that still leads to the same file may lead there through another
/// folder.)
pub struct Sandbox {
    home: Home,
    /// The home's path with symlinks resolved, as rules and user claims name it.
    root: PathBuf,
    host: Host,
    /// The system part of every Landlock ruleset (`None` without Landlock).
    system: Option<SystemRules>,
    /// Held while a plugin is prepared, so two new plugins never get the same user; true once
    /// [`prepare_home`] was done.
    home_ready: std::sync::Mutex<bool>,
    /// What plugins get of the launcher's environment.
    env: BaseEnv,
}

impl Sandbox {
    /// Probes the host and opens the system paths of `home`.
    pub fn new(home: &Home) -> Sandbox {
        let host = Host::probe();
        Sandbox {
            home: home.clone(),
            root: canonical(home.root()),
            system: (host.abi > 0).then(|| SystemRules::open(home)),
            host,
            home_ready: std::sync::Mutex::new(false),
            env: BaseEnv::read(),
        }
    }

    /// What this host offers.
    pub fn host(&self) -> Host {
        self.host
    }

    /// Everything for one confined start of plugin `name` from `binary`: the Unix identity
    /// (with its files prepared), the Landlock ruleset and the environment. `extra` is added to
    /// the environment as in [`environment`].
    pub fn prepare(
        &self,
        name: &str,
        binary: &Path,
        pc: &PluginConfig,
        extra: &[(String, String)],
    ) -> Result<Prepared, Refusal> {
        let mut home_ready = self.home_ready.lock().unwrap_or_else(|p| p.into_inner());
        let (home, host) = (&self.home, &self.host);
        let creds = creds_for(home, &self.root, name, pc, host)?;
        if creds.is_some() && !*home_ready {
            prepare_home(home)?;
            *home_ready = true;
        }
        // Still under the lock: a claimed user ID counts as taken once it owns the folder.
        prepare_files(home, name, creds.as_ref())?;
        drop(home_ready);
        let notify = extra
            .iter()
            .find(|(k, _)| k == "NOTIFY_SOCKET")
            .map(|(_, v)| Path::new(v));
        let landlock = match &self.system {
            Some(sys) if pc.sandbox.enabled && host.abi > 0 => {
                let rules = plugin_paths(home, &self.root, name, binary, pc, notify)?;
                Some(landlock_ruleset(host.abi, sys, &rules)?)
            }
            _ => None,
        };
        let env = self.env.environment(home, name, creds.as_ref(), extra);
        Ok(Prepared {
            confinement: Confinement {
                creds,
                no_new_privs: pc.sandbox.enabled,
                landlock,
            },
            env,
            level: host.level(pc),
        })
    }
}

/// Checks the sandbox settings of every plugin against this home and host, for
/// `launcher --check`: users exist, and no extra path exposes the home.
pub fn check_config(cfg: &LauncherConfig, home: &Home) -> Result<(), String> {
    for (name, pc) in &cfg.plugins {
        if cfg.core.as_deref() == Some(name.as_str()) {
            continue;
        }
        if let Some(user) = pc.user.as_deref() {
            if user != "root" && !matches!(nix::unistd::User::from_name(user), Ok(Some(_))) {
                return Err(format!(
                    "plugins.{name}.user: there is no user named {user}"
                ));
            }
        }
        let root = canonical(home.root());
        plugin_paths(home, &root, name, &home.plugins().join(name), pc, None)?;
        if let Some(why) = reserved_name(name, cfg) {
            return Err(format!("plugins.{name}: {why}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    fn host(abi: i32, root: bool) -> Host {
        Host {
            abi,
            root,
            uid: if root { 0 } else { 1000 },
            gid: 0,
        }
    }

    #[test]
    fn level_by_kernel_privilege_and_config() {
        let on = PluginConfig::default();
        let off = PluginConfig {
            sandbox: SandboxConfig {
                enabled: false,
                ..SandboxConfig::default()
            },
            ..PluginConfig::default()
        };
        let as_root = PluginConfig {
            user: Some("root".into()),
            ..PluginConfig::default()
        };
        use SandboxLevel::*;
        let table = [
            (host(7, false), &on, Full),
            (host(6, false), &on, Full),
            (host(5, false), &on, Files),
            (host(0, false), &on, None),
            (host(5, true), &on, Full),
            (host(0, true), &on, User),
            (host(7, false), &off, None),
            (host(7, true), &off, User),
            (host(7, true), &as_root, Full),
            (host(5, true), &as_root, Files),
            (host(0, true), &as_root, None),
        ];
        for (h, pc, want) in table {
            assert_eq!(h.level(pc), want, "{h:?} {:?} {:?}", pc.sandbox, pc.user);
        }
    }

    #[test]
    fn shortfall_names_what_is_missing() {
        assert!(host(9, false).shortfall().is_none());
        assert!(host(7, true).shortfall().is_none());
        assert!(host(7, false).shortfall().unwrap().contains("Unix sockets"));
        assert!(host(5, false).shortfall().unwrap().contains("ABI 5"));
        assert!(host(0, false).shortfall().unwrap().contains("no Landlock"));
        assert!(host(0, true).shortfall().unwrap().contains("sandbox: user"));
    }

    #[test]
    fn a_folder_holding_the_home_is_granted_around_it() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["a/home", "a/other", "b"] {
            fs::create_dir_all(d.path().join(sub)).unwrap();
        }
        fs::write(d.path().join("a/file"), "").unwrap();
        let mut out = Vec::new();
        beneath_except(d.path(), &d.path().join("a/home"), &mut out);
        out.sort();
        assert_eq!(
            out,
            vec![
                d.path().join("a/file"),
                d.path().join("a/other"),
                d.path().join("b")
            ]
        );
        let mut out = Vec::new();
        beneath_except(Path::new("/usr"), d.path(), &mut out);
        assert_eq!(out, vec![PathBuf::from("/usr")]);
    }

    #[test]
    fn a_home_below_tmp_keeps_tmp_out_and_an_extra_path_may_not_hold_it() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path().join("home"));
        home.ensure_dirs().unwrap();
        let mut rules = system_paths(&home);
        rules.extend(
            plugin_paths(
                &home,
                &canonical(home.root()),
                "p",
                &home.plugins().join("p"),
                &PluginConfig::default(),
                None,
            )
            .unwrap(),
        );
        assert!(!rules.iter().any(|(p, _)| p == Path::new("/tmp")));
        assert!(rules.iter().any(|(p, _)| *p == home.stores().join("p")));
        assert!(!rules.iter().any(|(p, _)| home.root().starts_with(p)));
        let wide = PluginConfig {
            sandbox: SandboxConfig {
                read: vec![d.path().to_path_buf()],
                ..SandboxConfig::default()
            },
            ..PluginConfig::default()
        };
        let root = canonical(home.root());
        let e =
            plugin_paths(&home, &root, "p", &home.plugins().join("p"), &wide, None).unwrap_err();
        assert!(e.contains("contains the hub home"), "{e}");
    }

    #[test]
    fn environment_is_an_allow_list() {
        let home = Home::at("/srv/hub");
        let env = environment(
            &home,
            "p",
            None,
            &[
                ("HIVEHUB_CLIENT_ID".into(), "p".into()),
                ("X".into(), "1".into()),
            ],
        );
        let keys: Vec<String> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for k in &keys {
            assert!(
                env_allowed(k.as_bytes()) || ["HOME", "USER", "TMPDIR", "X"].contains(&k.as_str()),
                "{k} leaked"
            );
        }
        assert!(keys.contains(&"PATH".to_string()));
        assert!(env.contains(&("TMPDIR".into(), "/srv/hub/stores/p/tmp".into())));
        assert!(env.contains(&("X".into(), "1".into())));
    }

    #[test]
    fn two_homes_never_share_a_plugin_user() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: claims user IDs under /run as root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let homes: Vec<Home> = ["a", "b"]
            .iter()
            .map(|h| Home::at(d.path().join(h)))
            .collect();
        let mut uids = Vec::new();
        for h in &homes {
            h.ensure_dirs().unwrap();
            let uid = dynamic_uid(h, "same").unwrap();
            let c = Creds {
                uid,
                gid: uid,
                groups: Vec::new(),
                user: "same".into(),
                home: data_dir(h, "same"),
            };
            prepare_home(h).unwrap();
            prepare_files(h, "same", Some(&c)).unwrap();
            uids.push(uid);
        }
        assert_ne!(uids[0], uids[1]);
        // Each keeps its own at the next start.
        assert_eq!(dynamic_uid(&homes[0], "same").unwrap(), uids[0]);
        assert_eq!(dynamic_uid(&homes[1], "same").unwrap(), uids[1]);
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path().join("home"));
        home.ensure_dirs().unwrap();
        let victim = home.certs().join("admin.token");
        fs::write(&victim, "secret").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o400)).unwrap();
        prepare_files(&home, "p", None).unwrap();
        let tmp = tmp_dir(&home, "p");
        fs::remove_dir(&tmp).unwrap();
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        prepare_files(&home, "p", None).unwrap();
        assert!(
            fs::symlink_metadata(&tmp).unwrap().is_dir(),
            "tmp is a folder again"
        );
        assert_eq!(
            fs::metadata(&victim).unwrap().mode() & 0o777,
            0o400,
            "target untouched"
        );
        assert_eq!(fs::metadata(&tmp).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_binary_is_checked_again_at_each_start() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path().join("home"));
        home.ensure_dirs().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let good = d.path().join("good");
        let open = d.path().join("open");
        fs::create_dir(&good).unwrap();
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let bin = good.join("bin");
        let link = home.plugins().join("p");
        let mode =
            |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        let write = |p: &Path| {
            fs::write(p, "#!/bin/sh\n").unwrap();
            mode(p, 0o755);
        };
        write(&bin);
        std::os::unix::fs::symlink(&bin, &link).unwrap();
        // Each step changes something between two starts; the check must see it.
        type Step<'a> = (&'a str, Box<dyn Fn() + 'a>, Option<&'a str>);
        let steps: Vec<Step> = vec![
            ("first start", Box::new(|| {}), None),
            ("same file", Box::new(|| {}), None),
            (
                "made writable",
                Box::new(|| mode(&bin, 0o777)),
                Some("0777"),
            ),
            ("fixed", Box::new(|| mode(&bin, 0o755)), None),
            (
                "its folder opened",
                Box::new(|| mode(&good, 0o777)),
                Some("writable by others"),
            ),
            ("its folder closed", Box::new(|| mode(&good, 0o755)), None),
            (
                "the link now leads into an open folder",
                Box::new(|| {
                    write(&open.join("bin"));
                    fs::remove_file(&link).unwrap();
                    std::os::unix::fs::symlink(open.join("bin"), &link).unwrap();
                }),
                Some("writable by others"),
            ),
            (
                "and back",
                Box::new(|| {
                    fs::remove_file(&link).unwrap();
                    std::os::unix::fs::symlink(&bin, &link).unwrap();
                }),
                None,
            ),
            (
                // The same file (same inode) in an open folder: anyone can swap it there.
                "the file itself moved into an open folder, the link following it",
                Box::new(|| {
                    fs::rename(&bin, open.join("moved")).unwrap();
                    fs::remove_file(&link).unwrap();
                    std::os::unix::fs::symlink(open.join("moved"), &link).unwrap();
                }),
                Some("writable by others"),
            ),
            (
                "and back again",
                Box::new(|| {
                    fs::rename(open.join("moved"), &bin).unwrap();
                    fs::remove_file(&link).unwrap();
                    std::os::unix::fs::symlink(&bin, &link).unwrap();
                }),
                None,
            ),
            (
                "the file replaced by a writable one",
                Box::new(|| {
                    let new = good.join("new");
                    write(&new);
                    mode(&new, 0o666);
                    fs::rename(&new, &bin).unwrap();
                }),
                Some("0666"),
            ),
        ];
        for (what, change, refused) in steps {
            change();
            let got = check_binary(&link, me);
            match refused {
                None => assert!(got.is_ok(), "{what}: {got:?}"),
                Some(why) => {
                    let e = got.expect_err(what);
                    assert!(e.contains(why) && e.contains(" (-> "), "{what}: {e}");
                }
            }
        }
    }

    #[test]
    fn a_restart_puts_the_data_folders_right_again() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path().join("home"));
        home.ensure_dirs().unwrap();
        prepare_files(&home, "p", None).unwrap();
        let (data, tmp) = (data_dir(&home, "p"), tmp_dir(&home, "p"));
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        for (what, path, m) in [
            ("data", &data, 0o755),
            ("tmp", &tmp, 0o777),
            ("data", &data, 0o1700),
        ] {
            fs::set_permissions(path, fs::Permissions::from_mode(m)).unwrap();
            prepare_files(&home, "p", None).unwrap();
            assert_eq!(mode(path), 0o700, "{what} after mode {m:o}");
        }
        // Already right: left alone, and still right.
        prepare_files(&home, "p", None).unwrap();
        assert_eq!((mode(&data), mode(&tmp)), (0o700, 0o700));
    }

    #[test]
    fn system_rules_covered_by_another_are_left_out() {
        let read = AccessFs::from_read(LANDLOCK_ABI);
        let all = AccessFs::from_all(LANDLOCK_ABI);
        let rules =
            |list: &[(&str, BitFlags<AccessFs>)]| -> Vec<(PathBuf, (), BitFlags<AccessFs>)> {
                list.iter()
                    .map(|(p, a)| (PathBuf::from(p), (), *a))
                    .collect()
            };
        type Given<'a> = &'a [(&'a str, BitFlags<AccessFs>)];
        let table: [(Given, &[&str]); 5] = [
            // A merged /usr: /lib and /bin are /usr/lib and /usr/bin.
            (
                &[
                    ("/usr", read),
                    ("/usr/lib", read),
                    ("/usr/bin", read),
                    ("/etc", read),
                ],
                &["/usr", "/etc"],
            ),
            // More rights below: kept.
            (
                &[("/usr", read), ("/usr/local", all)],
                &["/usr", "/usr/local"],
            ),
            // Fewer rights above: both kept.
            (&[("/var/tmp", all), ("/var", read)], &["/var/tmp", "/var"]),
            // The same twice: the first stays.
            (&[("/tmp", all), ("/tmp", all)], &["/tmp"]),
            // A name that only starts the same is no folder above.
            (&[("/usr", read), ("/usrx", read)], &["/usr", "/usrx"]),
        ];
        for (given, want) in table {
            let got: Vec<PathBuf> = covered_removed(rules(given))
                .into_iter()
                .map(|r| r.0)
                .collect();
            let want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "{given:?}");
        }
    }

    #[test]
    fn writable_binaries_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bin");
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        check_binary(&p, me).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_binary(&p, me).unwrap_err();
        assert!(
            e.contains("0777") && e.contains(&p.display().to_string()),
            "{e}"
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o775)).unwrap();
        assert!(check_binary(&p, me).unwrap_err().contains("its group"));
    }
}
