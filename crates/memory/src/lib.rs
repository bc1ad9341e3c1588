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
//! Three parts, measured together in `docs/PERFORMANCE.md`:
//!
//! * [`build::link_order`] (from a build script) asks the linker to place the functions that the
//!   steady state ran, listed in the crate's `link-order.txt`, first and together, so that
//!   they fill few windows. `scripts/link-order.py` writes that list from a live hub. (hubcli
//!   has none: ordering the code of its common commands did not shorten a run.)
//! * [`release_after_start`] (once the start is over) returns glibc's free heap and drops the
//!   process's mappings of read-only file pages: the code, constants and unwind tables of its
//!   executable and of its shared libraries (libc, an NSS module loaded for a user lookup).
//!   The pages stay in the page cache; the steady state maps back only the windows it uses,
//!   and the rest is the kernel's to reclaim.
//! * [`pow`](mod@pow) keeps the C math library out of the process altogether.

use std::io;
use std::ops::Range;

pub mod build;
pub mod pow;

/// What [`release_after_start`] gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Read-only file mappings (code and constant data) whose pages were dropped.
    pub mappings: usize,
    /// Their resident size before, in bytes.
    pub code_bytes: u64,
}

/// Returns the allocator's free heap to the kernel and drops the process's resident pages of
/// read-only file mappings: the code and constant data of its executable and of every shared
/// library loaded (see the module docs). Call it once the start's burst of work is over; it
/// costs one read of `/proc/self/smaps` and a system call per mapping.
///
/// A library is only touched once it can no longer be unloaded: each one is first pinned with
/// `dlopen(RTLD_NOLOAD | RTLD_NODELETE)`, so the addresses of its segments cannot be given to
/// anything else between the read of `smaps` and the drop.
pub fn release_after_start() -> io::Result<Released> {
    trim_heap();
    let segments = objects::pinned_readonly_segments();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = Released::default();
    for m in droppable(&smaps, &segments) {
        // SAFETY: `m` lies in a read-only segment of an object that stays loaded for the
        // process's life (the executable, or a library pinned above), and `smaps` shows it as
        // a private, read-only file mapping with no private (copy-on-write) page: its content
        // is the file's, so dropping its page-table entries changes no byte of memory, and the
        // next access maps the same cached page again, as after the kernel's own reclaim.
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

/// A range of a mapping of `/proc/self/smaps` whose pages may be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DropRange {
    start: usize,
    len: usize,
    /// Resident bytes of the whole mapping (on its first range only).
    rss: u64,
}

/// The parts of the mappings of an smaps text that lie in one of `segments` (read-only
/// segments of objects that stay loaded) and are clean read-only file mappings: permissions
/// `r-xp` or `r--p`, a file path, and `Anonymous: 0 kB` (a relocation, a debugger's breakpoint
/// or `mprotect` would have made a private copy, which dropping would lose).
fn droppable(smaps: &str, segments: &[Range<usize>]) -> Vec<DropRange> {
    let mut out = Vec::new();
    let mut cur: Option<(Range<usize>, u64, bool)> = None;
    let mut finish = |c: Option<(Range<usize>, u64, bool)>| {
        let Some((m, mut rss, true)) = c else { return };
        for s in segments {
            let (a, b) = (
                m.start.max(page_floor(s.start)),
                m.end.min(page_ceil(s.end)),
            );
            if a < b {
                out.push(DropRange {
                    start: a,
                    len: b - a,
                    rss,
                });
                // A mapping split over several segments counts its resident size once.
                rss = 0;
            }
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            finish(cur.take());
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            let perms = fields.next().unwrap_or("");
            // The path is the rest of the line (it may contain spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            let candidate = matches!(perms, "r-xp" | "r--p") && path.starts_with('/') && b > a;
            // `Anonymous:` must be read before it may be dropped: false until then.
            cur = candidate.then_some((a..b, 0, false));
        } else if let Some((_, rss, ok)) = cur.as_mut() {
            let kb = || {
                fields
                    .clone()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|v| v * 1024)
            };
            match first {
                "Rss:" => *rss = kb().unwrap_or(0),
                "Anonymous:" => *ok = kb() == Some(0),
                _ => {}
            }
        }
    }
    finish(cur.take());
    out
}

const PAGE: usize = 4096;

fn page_floor(a: usize) -> usize {
    a & !(PAGE - 1)
}

fn page_ceil(a: usize) -> usize {
    a.saturating_add(PAGE - 1) & !(PAGE - 1)
}

/// The loaded objects (the executable and its shared libraries), through the dynamic loader.
mod objects {
    use std::ffi::{c_char, c_int, c_void, CStr, CString};
    use std::ops::Range;

    use nix::libc;

    /// One loaded object: its name (empty for the executable), load address and read-only
    /// `PT_LOAD` segments.
    struct Object {
        name: CString,
        base: usize,
        readonly: Vec<Range<usize>>,
    }

    fn loaded() -> Vec<Object> {
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut c_void,
        ) -> c_int {
            // SAFETY: the loader passes a valid `dl_phdr_info` whose `dlpi_phdr` points at
            // `dlpi_phnum` headers, and `data` is the vector passed below.
            let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Object>)) };
            let name = if info.dlpi_name.is_null() {
                CString::default()
            } else {
                // SAFETY: a non-null `dlpi_name` is a NUL-terminated string of the loader's.
                unsafe { CStr::from_ptr(info.dlpi_name) }.to_owned()
            };
            let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
                &[]
            } else {
                // SAFETY: see above.
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) }
            };
            let base = info.dlpi_addr as usize;
            let readonly = phdrs
                .iter()
                .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W == 0)
                .map(|p| {
                    let start = base.wrapping_add(p.p_vaddr as usize);
                    start..start.wrapping_add(p.p_memsz as usize)
                })
                .collect();
            out.push(Object {
                name,
                base,
                readonly,
            });
            0
        }
        let mut out: Vec<Object> = Vec::new();
        // SAFETY: `each` only reads what the loader hands it and appends to `out`.
        unsafe { libc::dl_iterate_phdr(Some(each), &mut out as *mut Vec<Object> as *mut c_void) };
        out
    }

    /// The start of `<link.h>`'s `struct link_map`, which `dlinfo(RTLD_DI_LINKMAP)` returns.
    #[repr(C)]
    struct LinkMapHead {
        l_addr: usize,
        l_name: *const c_char,
    }

    /// Makes the library `name` unloadable for the rest of the process's life, if it is
    /// loaded: its load address then, or `None`.
    fn pin(name: &CStr) -> Option<usize> {
        // SAFETY: RTLD_NOLOAD never loads or initializes anything: it only finds an object
        // already loaded, and RTLD_NODELETE marks it as never to be unloaded.
        let h = unsafe {
            libc::dlopen(
                name.as_ptr(),
                libc::RTLD_NOLOAD | libc::RTLD_NODELETE | libc::RTLD_LAZY,
            )
        };
        if h.is_null() {
            return None;
        }
        let mut map: *const LinkMapHead = std::ptr::null();
        // SAFETY: `h` is a live handle; RTLD_DI_LINKMAP writes one pointer.
        let ok = unsafe {
            libc::dlinfo(
                h,
                libc::RTLD_DI_LINKMAP,
                &mut map as *mut *const LinkMapHead as *mut c_void,
            )
        } == 0;
        // SAFETY: the link map of a loaded object is the loader's, valid while it is loaded,
        // which is now for good.
        let base = (ok && !map.is_null()).then(|| unsafe { (*map).l_addr });
        // SAFETY: drops the reference taken above; the object stays (RTLD_NODELETE).
        unsafe { libc::dlclose(h) };
        base
    }

    /// The read-only segments of the executable and of every library that is now pinned.
    pub(super) fn pinned_readonly_segments() -> Vec<Range<usize>> {
        let mut pinned = Vec::new();
        for o in loaded() {
            if o.name.as_bytes().first() == Some(&b'/') {
                if let Some(base) = pin(&o.name) {
                    pinned.push((o.name, base));
                }
            }
        }
        // Listed again after pinning: an object named and placed as a pinned one is that one.
        loaded()
            .into_iter()
            .enumerate()
            .filter(|(i, o)| {
                // The first object is the executable, which is never unloaded.
                *i == 0 || pinned.iter().any(|(n, b)| *n == o.name && *b == o.base)
            })
            .flat_map(|(_, o)| o.readonly)
            .collect()
    }
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
    fn only_clean_read_only_file_mappings_in_a_pinned_segment_are_dropped() {
        // (perms, path, anonymous kB, dropped); the mapping is 0x1000-0x3000, inside the
        // segment 0x1000-0x3000 of a pinned object unless the path says otherwise.
        let cases = [
            ("r-xp", "/opt/hivehub/bin/launcher", 0, true),
            ("r--p", "/opt/hivehub/bin/launcher", 0, true), // constants, headers, unwind tables
            ("r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0, true),
            ("r-xp", "/opt/hivehub/bin/launcher", 4, false), // a private copy (breakpoint)
            ("r--p", "/usr/lib/x86_64-linux-gnu/libc.so.6", 8, false), // relocated (RELRO)
            ("r-xp", "[vdso]", 0, false),
            ("r-xp", "", 0, false), // anonymous executable memory
            ("rw-p", "/opt/hivehub/bin/launcher", 0, false),
            ("r-xs", "/dev/shm/x", 0, false), // shared: the file's pages are everyone's
            ("---p", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0, false),
        ];
        for (i, (perms, path, anon, dropped)) in cases.iter().enumerate() {
            let text = entry("1000-3000", perms, path, 8, *anon);
            let segment = std::slice::from_ref(&(0x1000..0x3000));
            let got = droppable(&text, segment);
            let want = dropped.then(|| DropRange {
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
    fn only_the_part_inside_a_pinned_segment_is_dropped() {
        let text = [
            entry("1000-3000", "r-xp", "/bin/a", 8, 0),
            entry("3000-4000", "r-xp", "/bin/a", 4, 4),
            entry("4000-6000", "r--p", "/bin/a", 0, 0),
            entry("6000-9000", "r-xp", "/lib/b.so", 4, 0),
            entry("9000-a000", "r-xp", "/lib/unpinned.so", 4, 0),
        ]
        .concat();
        // Segments as the loader gives them: unaligned ends round out to whole pages.
        let segments = [0x1000..0x5800, 0x6010..0x7001];
        let got: Vec<(usize, usize)> = droppable(&text, &segments)
            .iter()
            .map(|d| (d.start, d.start + d.len))
            .collect();
        assert_eq!(
            got,
            vec![(0x1000, 0x3000), (0x4000, 0x6000), (0x6000, 0x8000)]
        );
    }

    /// Resident bytes of the clean read-only file mappings of `path_part` in our own smaps.
    fn resident(path_part: &str) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let everything = std::slice::from_ref(&(0..usize::MAX));
        let mut total = 0;
        // Mapping by mapping, each judged with its own path.
        let mut chunk = String::new();
        let flush = |chunk: &mut String, total: &mut u64| {
            let keep = chunk.lines().next().is_some_and(|l| l.contains(path_part));
            if keep {
                *total += droppable(chunk, everything)
                    .iter()
                    .map(|d| d.rss)
                    .sum::<u64>();
            }
            chunk.clear();
        };
        for line in smaps.lines() {
            let head = line
                .split_whitespace()
                .next()
                .is_some_and(|f| f.contains('-') && !f.ends_with(':'));
            if head {
                flush(&mut chunk, &mut total);
            }
            chunk.push_str(line);
            chunk.push('\n');
        }
        flush(&mut chunk, &mut total);
        total
    }

    /// The process keeps running the code whose pages it dropped, and the resident read-only
    /// pages of its own binary and of the C library shrink.
    #[test]
    fn dropping_keeps_the_process_running_and_shrinks_its_resident_code() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy().to_string();
        let (own, libc) = (resident(&exe), resident("libc.so"));
        assert!(own > 0 && libc > 0, "resident: own {own}, libc {libc}");
        let r = release_after_start().expect("release");
        assert!(r.mappings >= 2 && r.code_bytes >= own, "{r:?} vs {own}");
        let (own_after, libc_after) = (resident(&exe), resident("libc.so"));
        assert!(own_after < own, "own {own} -> {own_after}");
        assert!(libc_after < libc, "libc {libc} -> {libc_after}");
        // Still runs: formatting, allocation, the standard library's and libc's code.
        assert_eq!(format!("{:?}", vec![1, 2]), "[1, 2]");
        assert!(std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .contains("VmRSS"));
    }
}
