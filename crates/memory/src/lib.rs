//! What a long-running hivehub process (the launcher, hubcore) gives back once its start is
//! over, and the link order that keeps the code it runs afterwards together.
//!
//! A process's resident code is not the code it runs but every 64 KB window of its binary
//! that it ever touched: on a page fault the kernel also maps the cached pages around it
//! (fault-around). The start (configuration, keys, TLS set-up, spawning every plugin) touches
//! code all over the binary, so nearly all of the launcher's and the core's text (4.3 and
//! 4.4 MB) stayed mapped for their whole lives, although their steady state (sampling,
//! statuses, keep-alives, a `hubcli` request, a restart) runs 0.57 and 0.45 MB of it.
//!
//! Two parts, measured together in `docs/PERFORMANCE.md`:
//!
//! * [`build::link_order`] (from a build script) asks the linker to place the functions that the
//!   steady state ran, listed in the crate's `link-order.txt`, first and together, so that
//!   they fill few windows. `scripts/link-order.py` writes that list from a live hub.
//! * [`release_after_start`] (once the start is over) returns glibc's free heap and drops the
//!   process's mappings of its executable's code. The pages stay in the page cache; the steady state maps
//!   back only the windows it uses, and the rest is the kernel's to reclaim.

use std::io;

pub mod build;

/// What [`release_after_start`] gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Code mappings (read-only, executable, file-backed) whose pages were dropped.
    pub mappings: usize,
    /// Their resident size before, in bytes.
    pub code_bytes: u64,
}

/// Returns the allocator's free heap to the kernel and drops the process's resident code
/// pages (see the module docs). Call it once the start's burst of work is over; it costs one
/// read of `/proc/self/smaps` and a system call per code mapping.
pub fn release_after_start() -> io::Result<Released> {
    trim_heap();
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = Released::default();
    for m in code_mappings(&smaps, &exe.to_string_lossy()) {
        // SAFETY: `m` is a private, read-only, executable mapping of this process's own
        // executable with no private (copy-on-write) pages, so its content is the file's:
        // dropping its page-table entries changes no byte of memory, and the next access maps
        // the same cached page again, as after the kernel's own reclaim. The executable stays
        // mapped for the process's life, so the range cannot have been reused since `smaps`
        // was read (a shared library could be unloaded and its addresses given to the heap:
        // libraries are left alone).
        let r = unsafe {
            nix::sys::mman::madvise(
                std::ptr::NonNull::new_unchecked(m.start as *mut std::ffi::c_void),
                m.len,
                nix::sys::mman::MmapAdvise::MADV_DONTNEED,
            )
        };
        if r.is_ok() {
            released.mappings += 1;
            released.code_bytes += m.rss;
        }
    }
    Ok(released)
}

/// Hands glibc's free heap pages back: the start's transient allocations (configuration,
/// keys, the first statuses) leave free chunks that glibc keeps mapped otherwise.
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages of glibc's own heaps.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// A code mapping of `/proc/self/smaps` that may be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CodeMapping {
    start: usize,
    len: usize,
    /// Resident bytes.
    rss: u64,
}

/// The mappings of an smaps text that are code of the executable `exe` with no private pages:
/// permissions `r-xp`, path `exe`, and `Anonymous: 0 kB` (a debugger's breakpoint or a
/// relocation would have made a private copy, which dropping would lose).
fn code_mappings(smaps: &str, exe: &str) -> Vec<CodeMapping> {
    let mut out = Vec::new();
    let mut cur: Option<(CodeMapping, bool)> = None;
    fn finish(c: Option<(CodeMapping, bool)>, out: &mut Vec<CodeMapping>) {
        if let Some((m, true)) = c {
            out.push(m);
        }
    }
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            finish(cur.take(), &mut out);
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            let perms = fields.next().unwrap_or("");
            // The path is the rest of the line (it may contain spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            // `Anonymous:` must be read before it may be dropped: false until then.
            let candidate = perms == "r-xp" && path == exe && b > a;
            cur = candidate.then(|| {
                (
                    CodeMapping {
                        start: a,
                        len: b - a,
                        rss: 0,
                    },
                    false,
                )
            });
        } else if let Some((m, ok)) = cur.as_mut() {
            let kb = || {
                fields
                    .clone()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|v| v * 1024)
            };
            match first {
                "Rss:" => m.rss = kb().unwrap_or(0),
                "Anonymous:" => *ok = kb() == Some(0),
                _ => {}
            }
        }
    }
    finish(cur.take(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(range: &str, perms: &str, path: &str, rss_kb: u64, anon_kb: u64) -> String {
        format!(
            "{range} {perms} 00163000 fe:00 10084508    {path}\nSize:  4356 kB\nRss:  {rss_kb} kB\n\
             Pss:  3872 kB\nAnonymous:  {anon_kb} kB\nVmFlags: rd ex mr mw me\n"
        )
    }

    #[test]
    fn only_clean_executable_file_mappings_are_code_to_drop() {
        // (perms, path, anonymous kB, dropped); the executable is /opt/hivehub/bin/launcher.
        let cases = [
            ("r-xp", "/opt/hivehub/bin/launcher", 0, true),
            ("r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0, false), // could be unloaded
            ("r-xp", "/opt/hivehub/bin/launcher", 4, false), // a private copy (breakpoint)
            ("r-xp", "[vdso]", 0, false),
            ("r-xp", "", 0, false), // anonymous executable memory
            ("r--p", "/opt/hivehub/bin/launcher", 0, false), // relocated read-only data
            ("rw-p", "/opt/hivehub/bin/launcher", 0, false),
            ("r-xs", "/dev/shm/x", 0, false),
        ];
        for (i, (perms, path, anon, dropped)) in cases.iter().enumerate() {
            let text = entry("1000-3000", perms, path, 8, *anon);
            let got = code_mappings(&text, "/opt/hivehub/bin/launcher");
            let want = dropped.then(|| CodeMapping {
                start: 0x1000,
                len: 0x2000,
                rss: 8 * 1024,
            });
            assert_eq!(
                got.first(),
                want.as_ref(),
                "case {i}: {perms} {path} anon {anon}"
            );
        }
    }

    #[test]
    fn every_mapping_of_a_whole_smaps_text_is_judged_on_its_own_fields() {
        let text = [
            entry("1000-3000", "r-xp", "/bin/a", 8, 0),
            entry("3000-4000", "r-xp", "/bin/a", 4, 4),
            entry("4000-6000", "r-xp", "/bin/a", 0, 0),
            entry("6000-7000", "r-xp", "/bin/b", 4, 0),
        ]
        .concat();
        let got: Vec<usize> = code_mappings(&text, "/bin/a")
            .iter()
            .map(|m| m.start)
            .collect();
        assert_eq!(got, vec![0x1000, 0x4000]);
    }

    /// The process keeps running the code whose pages it dropped, and its own binary's
    /// resident code shrinks.
    #[test]
    fn dropping_code_keeps_the_process_running_and_shrinks_its_resident_code() {
        let own_code = || -> u64 {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            code_mappings(&smaps, &exe.to_string_lossy())
                .iter()
                .map(|m| m.rss)
                .sum()
        };
        let before = own_code();
        assert!(before > 0, "the test binary's code is resident");
        let r = release_after_start().expect("release");
        assert!(
            r.mappings >= 1 && r.code_bytes >= before / 2,
            "{r:?} vs {before}"
        );
        let after = own_code();
        assert!(after < before, "resident code {before} -> {after}");
        // Still runs: formatting, allocation and the standard library's code fault back in.
        assert_eq!(format!("{:?}", vec![1, 2]), "[1, 2]");
    }
}
