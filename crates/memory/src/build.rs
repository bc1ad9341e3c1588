//! The link order of a binary, for its crate's build script.
//!
//! `link-order.txt` lists the functions (symbol names) that the binary ran in its steady
//! state, as `scripts/link-order.py` found them on a live hub. The names carry the hashes of
//! one toolchain, target and dependency set: they stay valid across changes of our own code,
//! but a change of the crate's dependencies (in any crate it depends on) renames most generic
//! functions. A name that no longer exists is skipped, so a stale list only places fewer
//! functions; regenerate the lists after such a change.
//! It is applied to release builds for the target it was made on, when rustc links with its
//! own lld (the default there since Rust 1.90): GNU ld does not take the option.

use std::path::Path;

/// The target the committed lists were made on.
pub const ORDER_TARGET: &str = "x86_64-unknown-linux-gnu";

/// From a build script: asks the linker to place the functions listed in `list` (a path
/// relative to the crate) first, in that order, in binary `bin`'s text.
pub fn link_order(bin: &str, list: &str) {
    println!("cargo:rerun-if-changed={list}");
    println!("cargo:rerun-if-env-changed=HIVEHUB_NO_LINK_ORDER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let dir = env("CARGO_MANIFEST_DIR");
    let path = Path::new(&dir).join(list);
    match skip_reason(
        &env("PROFILE"),
        &env("TARGET"),
        &env("CARGO_ENCODED_RUSTFLAGS"),
        std::env::var_os("HIVEHUB_NO_LINK_ORDER").is_some(),
        path.is_file(),
    ) {
        None => {
            println!(
                "cargo:rustc-link-arg-bin={bin}=-Wl,--symbol-ordering-file={}",
                path.display()
            );
            // Names from another build of a dependency are expected; they are skipped.
            println!("cargo:rustc-link-arg-bin={bin}=-Wl,--no-warn-symbol-ordering");
        }
        // A debug build, another target or linker: the default order, nothing to say.
        Some(_why) => {}
    }
}

/// Why the list is not applied, if it is not.
fn skip_reason(
    profile: &str,
    target: &str,
    rustflags: &str,
    opted_out: bool,
    list_exists: bool,
) -> Option<&'static str> {
    if opted_out {
        Some("HIVEHUB_NO_LINK_ORDER is set")
    } else if profile != "release" {
        Some("not a release build")
    } else if target != ORDER_TARGET {
        Some("the list was made on another target")
    } else if rustflags.contains("linker-features=-lld")
        || rustflags.contains("link-self-contained=-linker")
        || rustflags.contains("linker=")
    {
        Some("another linker than rustc's lld")
    } else if !list_exists {
        Some("no list")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_applies_only_to_release_builds_linked_by_lld_on_its_target() {
        let t = ORDER_TARGET;
        // (profile, target, rustflags, opted out, list exists, applied)
        let cases = [
            ("release", t, "", false, true, true),
            (
                "release",
                t,
                "-Cforce-frame-pointers=yes",
                false,
                true,
                true,
            ),
            ("debug", t, "", false, true, false),
            (
                "release",
                "aarch64-unknown-linux-gnu",
                "",
                false,
                true,
                false,
            ),
            ("release", t, "-Clinker-features=-lld", false, true, false),
            (
                "release",
                t,
                "-Clink-self-contained=-linker",
                false,
                true,
                false,
            ),
            ("release", t, "-Clinker=clang", false, true, false),
            ("release", t, "", true, true, false),
            ("release", t, "", false, false, false),
        ];
        for (i, (p, tg, f, out, exists, applied)) in cases.iter().enumerate() {
            let flags = f.replace(' ', "\u{1f}");
            assert_eq!(
                skip_reason(p, tg, &flags, *out, *exists).is_none(),
                *applied,
                "case {i}"
            );
        }
    }
}
