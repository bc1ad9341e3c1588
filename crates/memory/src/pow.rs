//! The C library's `pow`, defined in the binary itself so that the C math library is not
//! loaded at all.
//!
//! tokio's multi-threaded scheduler calls `pow` after each batch of tasks (to age its average
//! poll time), and it is the only function of `libm.so.6` that the launcher, hubcore and
//! hubcli call. For it, each of them loaded and relocated the whole library at every start,
//! and the launcher and hubcore kept about 0.3 MB of it resident (0.15 MB of proportional
//! memory each, shared with no plugin). Defined here, the reference is resolved at link time
//! and the linker (`--as-needed`) no longer asks for the library. The `libm` crate is the
//! Rust port of musl's implementation.

/// `x` raised to the power `y`, as C's `pow` (IEEE 754 binary64, special cases included).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn is_the_c_pow() {
        let cases: [(f64, f64, f64); 8] = [
            (2.0, 10.0, 1024.0),
            (0.8, 3.0, 0.8 * 0.8 * 0.8),
            (9.0, 0.5, 3.0),
            (1.0, f64::NAN, 1.0),
            (f64::NAN, 0.0, 1.0),
            (0.0, -1.0, f64::INFINITY),
            (-8.0, 1.0 / 3.0, f64::NAN),
            (10.0, -2.0, 0.01),
        ];
        for (x, y, want) in cases {
            let got = pow(std::hint::black_box(x), std::hint::black_box(y));
            assert!(
                got == want
                    || (got.is_nan() && want.is_nan())
                    || (got - want).abs() <= want.abs() * 1e-15,
                "pow({x}, {y}) = {got}, want {want}"
            );
        }
    }

    /// `f64::powf` compiles to a call of `pow`: this test binary makes it, and does not map the
    /// C math library.
    #[test]
    fn the_math_library_is_not_loaded() {
        let x = std::hint::black_box(2.0f64).powf(std::hint::black_box(3.0));
        assert_eq!(x, 8.0);
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        assert!(!maps.contains("/libm.so"), "{maps}");
    }
}
