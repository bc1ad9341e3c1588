//! Landlock rulesets made with the system calls themselves, for the path rules a plugin's start
//! adds.
//!
//! The `landlock` crate's builder `fstat`s every rule's descriptor to learn whether it is a file,
//! one more system call per rule, and a restart builds a ruleset of about twenty rules. Here a
//! rule costs one `landlock_add_rule`: a caller that knows a path is a file asks for file rights
//! only, and a rule the kernel refuses because a file cannot carry folder rights (`EINVAL`) is
//! added again with file rights. The crate still says which rights and scopes each ABI has.

use landlock::{Access, AccessFs, BitFlags, Scope, ABI};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `struct landlock_ruleset_attr` up to ABI 6. A kernel of an older ABI takes it whole as long
/// as the fields it does not know are zero.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr`.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_RULE_PATH_BENEATH: nix::libc::c_uint = 1;

/// What a ruleset restricts: `wanted`, less what the running kernel does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// Filesystem rights the ruleset governs.
    pub fs: BitFlags<AccessFs>,
    /// Scopes (signals, abstract Unix sockets).
    pub scopes: BitFlags<Scope>,
}

impl Handled {
    /// Every right and scope of `wanted` that a kernel of Landlock ABI `kernel` enforces.
    pub fn new(wanted: ABI, kernel: i32) -> Handled {
        let kernel = ABI::from(kernel);
        Handled {
            fs: AccessFs::from_all(wanted) & AccessFs::from_all(kernel),
            scopes: Scope::from_all(wanted) & Scope::from_all(kernel),
        }
    }
}

/// A ruleset being filled; [`Ruleset::into_fd`] gives it to the child that restricts itself.
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
    fs: BitFlags<AccessFs>,
}

impl Ruleset {
    /// A ruleset that denies everything of `handled` until rules allow it.
    pub fn create(handled: Handled) -> io::Result<Ruleset> {
        let attr = RulesetAttr {
            handled_access_fs: handled.fs.bits(),
            handled_access_net: 0,
            scoped: handled.scopes.bits(),
        };
        // SAFETY: `attr` is a valid `landlock_ruleset_attr` of the size given.
        let fd = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this new descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Ruleset { fd, fs: handled.fs })
    }

    /// Allows `access` beneath the file or folder open at `path` (an `O_PATH` descriptor does).
    /// Rights the ruleset does not govern are left out; a file gets only the file rights of
    /// `access`. Nothing is added when nothing is left.
    pub fn allow(&mut self, path: BorrowedFd<'_>, access: BitFlags<AccessFs>) -> io::Result<()> {
        let access = access & self.fs;
        match self.add(path, access) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                let file = access & AccessFs::from_file(ABI::V9);
                if file == access {
                    return Err(e);
                }
                self.add(path, file)
            }
            r => r,
        }
    }

    fn add(&mut self, path: BorrowedFd<'_>, access: BitFlags<AccessFs>) -> io::Result<()> {
        if access.is_empty() {
            return Ok(());
        }
        let attr = PathBeneathAttr {
            allowed_access: access.bits(),
            parent_fd: path.as_raw_fd(),
        };
        // SAFETY: `attr` is a valid `landlock_path_beneath_attr`; both descriptors are open.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                LANDLOCK_RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The ruleset's descriptor, for `landlock_restrict_self`.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Command, Stdio};

    fn abi() -> Option<i32> {
        let abi = crate::sandbox::landlock_abi();
        if abi == 0 {
            eprintln!("skipped: this kernel has no Landlock");
            return None;
        }
        Some(abi)
    }

    fn open(path: &Path) -> OwnedFd {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
    }

    /// Runs `program args` restricted by a ruleset that lets it run (the system folders) and
    /// allows `rules`; true when it succeeded.
    fn runs_under(
        abi: i32,
        rules: &[(&Path, BitFlags<AccessFs>)],
        program: &str,
        arg: &Path,
    ) -> bool {
        let mut rs = Ruleset::create(Handled::new(ABI::V9, abi)).unwrap();
        let exec = AccessFs::from_read(ABI::V9);
        for dir in ["/usr", "/lib", "/lib64", "/bin", "/etc"] {
            if Path::new(dir).exists() {
                rs.allow(open(Path::new(dir)).as_fd(), exec).unwrap();
            }
        }
        for (path, access) in rules {
            rs.allow(open(path).as_fd(), *access).unwrap();
        }
        let fd = rs.into_fd();
        let raw = fd.as_raw_fd();
        let mut cmd = Command::new(program);
        cmd.arg(arg).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: only system calls run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || nix::libc::syscall(nix::libc::SYS_landlock_restrict_self, raw, 0u32) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.status().is_ok_and(|s| s.success())
    }

    #[test]
    fn a_file_keeps_its_file_rights_and_a_folder_all() {
        let Some(abi) = abi() else { return };
        let d = tempfile::tempdir().unwrap();
        let (file, other, dir) = (d.path().join("f"), d.path().join("g"), d.path().join("d"));
        std::fs::write(&file, "x").unwrap();
        std::fs::write(&other, "x").unwrap();
        std::fs::create_dir(&dir).unwrap();
        let read = AccessFs::from_read(ABI::V9);
        // Read rights hold a folder right (reading a folder), which a file cannot carry: the
        // kernel refuses the rule, and it is added again with the file's rights.
        type Rules<'a> = &'a [(&'a Path, BitFlags<AccessFs>)];
        let cases: [(Rules, &str, &Path, bool); 5] = [
            (&[(&file, read)], "cat", &file, true),
            (&[(&file, read)], "cat", &other, false),
            (&[(&file, read)], "ls", &dir, false),
            (&[(&dir, read)], "ls", &dir, true),
            (&[], "cat", &file, false),
        ];
        for (rules, program, arg, want) in cases {
            let paths: Vec<_> = rules.iter().map(|(p, _)| p.display().to_string()).collect();
            assert_eq!(
                runs_under(abi, rules, program, arg),
                want,
                "{program} {} with rules on {paths:?}",
                arg.display()
            );
        }
    }

    #[test]
    fn rights_the_kernel_does_not_know_are_left_out() {
        let Some(abi) = abi() else { return };
        let h = Handled::new(ABI::V9, abi);
        assert_eq!(
            h.fs,
            AccessFs::from_all(ABI::from(abi)) & AccessFs::from_all(ABI::V9)
        );
        assert_eq!(Handled::new(ABI::V9, 5).scopes, BitFlags::empty());
        assert_eq!(Handled::new(ABI::V9, 6).scopes, Scope::from_all(ABI::V6));
        assert!(!Handled::new(ABI::V9, 8).fs.contains(AccessFs::ResolveUnix));
        assert!(Handled::new(ABI::V9, 9).fs.contains(AccessFs::ResolveUnix));
        // A rule made only of rights this kernel does not govern adds nothing, and is no error.
        let mut rs = Ruleset::create(Handled::new(ABI::V9, abi.min(8))).unwrap();
        rs.allow(
            open(Path::new("/tmp")).as_fd(),
            AccessFs::ResolveUnix.into(),
        )
        .unwrap();
    }
}
