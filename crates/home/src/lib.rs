//! The home folder of a hivehub installation, the same for every binary:
//!
//! ```text
//! HOME/
//!   bin/                        hubcore, launcher, hubcli
//!   plugins/                    plugin executables (the launcher rescans them every 2 s)
//!   config/                     hubcore.yaml, launcher.yaml, {plugin}.yaml (read, never written)
//!   certs/               0700   0711 under a root launcher: plugin users pass, never list
//!     caCert.pem         0644   the hub CA, created once
//!     caKey.pem          0400   created once
//!     hubCert.pem        0644   re-issued at every core start
//!     hubKey.pem         0400   re-generated at every core start
//!     tokenSigningKey.pem 0400  created once, kept
//!     {clientID}.key     0400   created when missing (admin and launcher by the core,
//!                               plugins by the launcher, others by `hubcli auth add`)
//!     {clientID}.token   0400   a plugin's is rewritten at every start; owned by the
//!                               plugin's own user under a root launcher, like its key
//!   logs/                       {plugin}.log[.N] (the core's too), launcher.log with
//!                               `logtofile`, audit.log[.N] (0600, the core's security record)
//!   stores/              0700   (0711 under a root launcher)
//!     auth/clients.json  0600   profiles and capability grants
//!     leases.json        0600   movable plugins disabled hub-wide, held leases
//!     {plugin}/          0700   a plugin's data, owned by its own user under a root launcher
//!       tmp/             0700   its TMPDIR
//!   run/                 0700   (0711 under a root launcher)
//!     hubcore.url        0644   e.g. mqtts://127.0.0.1:8883; removed on a clean stop
//!     hubcore.sock       0600   the core's socket for local clients; removed on a clean stop
//!     launcher.lock             flock of the running launcher; holds its PID
//!     {plugin}.pid       0644   `PID starttime` of the running process (the core's too)
//!     {plugin}.backoff   0644   `attempt delayMs` while the attempt count is above 0
//!     notify/{plugin}.sock      readiness socket, only while a start awaits READY=1
//! ```
//!
//! hubcore and the launcher create the seven folders at start ([`Home::ensure_dirs`]). Files
//! are replaced atomically, which also works on read-only 0400 files: [`write_atomic`]
//! (temporary file, fsync, rename) for credentials and stores, [`write_replace`] (no fsync)
//! for the pid and backoff records. The YAML files in `config/` are read by [`yaml`], with errors
//! that name file, line, column and key.
//!
//! Resolution order of the home: the `--home` flag; else the parent of the executable's folder
//! when that folder is named `bin`; else `$HIVEHUB_HOME`; else an error that says so. Relative
//! paths are made absolute. The SDK's `ClientOptions::from_env` (for plugins) passes
//! `$HIVEHUB_HOME` as the flag, so there the variable wins over the binary's location.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub mod yaml;

/// Environment variable naming the home folder.
pub const ENV_HOME: &str = "HIVEHUB_HOME";

/// Errors while locating or preparing the home.
#[derive(Debug, Error)]
pub enum HomeError {
    /// No flag, no environment variable, and the executable is not in a home.
    #[error(
        "no hivehub home: no --home flag, {ENV_HOME} is not set, and {exe} is not in a home's \
         bin/ or plugins/ folder; set {ENV_HOME}=DIR (hivehub's own commands also take --home DIR)"
    )]
    NotFound {
        /// The executable that was looked at.
        exe: String,
    },
    /// `--home` or the environment variable is set to an empty value: taking that as the
    /// working folder would put credentials wherever the process happens to run.
    #[error("{what} is set but empty; give the home folder, e.g. {ENV_HOME}=/opt/hivehub")]
    Empty {
        /// `--home` or the variable.
        what: String,
    },
    /// The home exists but is not a folder, or cannot be read.
    #[error("hivehub home {path}: {source}")]
    Unusable {
        /// The home path.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// The folders of one home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home at `root`, without touching the disk. Relative paths are made absolute so that
    /// children started in another working folder see the same home.
    pub fn at(root: impl Into<PathBuf>) -> Home {
        let root = root.into();
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|d| d.join(&root))
                .unwrap_or(root)
        };
        Home { root }
    }

    /// Resolves the home from an explicit flag, the executable's location (in a home's `bin/`
    /// or `plugins/`), or `$HIVEHUB_HOME`.
    pub fn resolve(flag: Option<&Path>) -> Result<Home, HomeError> {
        if let Some(p) = flag {
            if p.as_os_str().is_empty() {
                return Err(HomeError::Empty {
                    what: "--home".into(),
                });
            }
            return Ok(Home::at(p));
        }
        let exe = std::env::current_exe().ok();
        if let Some(root) = exe.as_deref().and_then(home_of_executable) {
            return Ok(Home::at(root));
        }
        match std::env::var_os(ENV_HOME) {
            Some(v) if v.is_empty() => Err(HomeError::Empty {
                what: ENV_HOME.into(),
            }),
            Some(v) => Ok(Home::at(PathBuf::from(v))),
            None => Err(HomeError::NotFound {
                exe: exe.map_or_else(|| "the executable".into(), |e| e.display().to_string()),
            }),
        }
    }

    /// Creates the standard folders if missing. `certs`, `stores` and `run` are made private
    /// (0700) because they hold secrets and locks.
    pub fn ensure_dirs(&self) -> Result<(), HomeError> {
        let unusable = |source| HomeError::Unusable {
            path: self.root.clone(),
            source,
        };
        if self.root.exists() && !self.root.is_dir() {
            return Err(unusable(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a folder",
            )));
        }
        for (dir, private) in [
            (self.bin(), false),
            (self.plugins(), false),
            (self.config(), false),
            (self.certs(), true),
            (self.logs(), false),
            (self.stores(), true),
            (self.run(), true),
        ] {
            fs::create_dir_all(&dir).map_err(unusable)?;
            if private {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(unusable)?;
            }
        }
        Ok(())
    }

    /// The home folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Core binaries.
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    /// Plugin executables.
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }
    /// Configuration files.
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }
    /// Keys, tokens and certificates.
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }
    /// Log files.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Persistent service data.
    pub fn stores(&self) -> PathBuf {
        self.root.join("stores")
    }
    /// Runtime state: pid files, locks, the core's URL.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    /// `config/{name}.yaml`
    pub fn config_file(&self, name: &str) -> PathBuf {
        self.config().join(format!("{name}.yaml"))
    }
    /// `certs/{clientID}.key`
    pub fn key_file(&self, client_id: &str) -> PathBuf {
        self.certs().join(format!("{client_id}.key"))
    }
    /// `certs/{clientID}.token`
    pub fn token_file(&self, client_id: &str) -> PathBuf {
        self.certs().join(format!("{client_id}.token"))
    }
    /// `certs/caCert.pem`: the hub CA that clients verify the server with.
    pub fn ca_cert(&self) -> PathBuf {
        self.certs().join("caCert.pem")
    }
    /// `run/hubcore.url`: written by the core once it accepts connections.
    pub fn core_url_file(&self) -> PathBuf {
        self.run().join("hubcore.url")
    }
    /// `run/hubcore.sock`: the core's Unix socket for local clients (plain MQTT).
    pub fn core_socket_file(&self) -> PathBuf {
        self.run().join("hubcore.sock")
    }
}

/// The home of an executable at `HOME/bin/exe`, if it lives in a folder named `bin`.
pub fn home_of_executable(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    let home = dir.parent()?;
    match dir.file_name() {
        Some(d) if d == OsStr::new("bin") => Some(home.to_path_buf()),
        // A plugin run by hand from HOME/plugins: only a folder that has a home's certs/ beside
        // it, so a plugin elsewhere in a `plugins` folder is not mistaken for one.
        Some(d) if d == OsStr::new("plugins") && home.join("certs").is_dir() => {
            Some(home.to_path_buf())
        }
        _ => None,
    }
}

/// Writes `data` to `path` atomically with the given mode: a temporary file in the same folder is
/// written, synced and renamed over the target. A reader sees the old or the new content, never a
/// mix, and a crash leaves no half-written secret. Works even if the old file is read-only (0400).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    replace_file(path, data, mode, true)
}

/// Like [`write_atomic`] without the fsyncs: readers still see the old or the new content, but
/// a power cut may lose the update. For small state that is cheap to lose and sits on hot
/// paths (pid records, backoff counters), where two fsyncs cost milliseconds per call.
pub fn write_replace(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    replace_file(path, data, mode, false)
}

/// Writes a temporary file next to `path` with exactly `mode` and renames it over `path`;
/// `durable` syncs the file and the folder so the new content survives a power cut.
fn replace_file(path: &Path, data: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        // create_new honours the umask; set the exact mode explicitly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Mode of secret files: keys and tokens.
pub const SECRET_MODE: u32 = 0o400;
/// Mode of private data files that the owner rewrites: the client store.
pub const PRIVATE_MODE: u32 = 0o600;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn executable_in_bin_gives_home() {
        assert_eq!(
            home_of_executable(Path::new("/opt/hivehub/bin/hubcore")),
            Some(PathBuf::from("/opt/hivehub"))
        );
        assert_eq!(
            home_of_executable(Path::new("/usr/local/sbin/hubcore")),
            None
        );
    }

    #[test]
    fn executable_in_a_home_s_plugins_gives_home() {
        let d = tempfile::tempdir().unwrap();
        let home = Home::at(d.path().join("h"));
        let plugin = home.plugins().join("zwave");
        assert_eq!(home_of_executable(&plugin), None, "no home there yet");
        home.ensure_dirs().unwrap();
        assert_eq!(
            home_of_executable(&plugin).as_deref(),
            Some(home.root()),
            "a plugins/ folder beside certs/"
        );
    }

    #[test]
    fn no_home_says_what_was_tried() {
        let e = HomeError::NotFound {
            exe: "/usr/local/bin/zwave".into(),
        }
        .to_string();
        for tried in [
            "--home",
            ENV_HOME,
            "/usr/local/bin/zwave",
            "bin/ or plugins/",
        ] {
            assert!(e.contains(tried), "{e}");
        }
    }

    #[test]
    fn an_empty_home_is_an_error_not_the_working_folder() {
        let e = Home::resolve(Some(Path::new(""))).unwrap_err();
        assert!(e.to_string().contains("--home is set but empty"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_readonly_file_with_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.token");
        write_atomic(&p, b"one", SECRET_MODE).unwrap();
        write_atomic(&p, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o400);
        // no temporary files left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn ensure_dirs_creates_layout() {
        let d = tempfile::tempdir().unwrap();
        let h = Home::at(d.path().join("h"));
        h.ensure_dirs().unwrap();
        for sub in ["bin", "plugins", "config", "certs", "logs", "stores", "run"] {
            assert!(h.root().join(sub).is_dir(), "{sub}");
        }
        assert_eq!(fs::metadata(h.certs()).unwrap().mode() & 0o777, 0o700);
    }
}
