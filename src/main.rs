//! The `deskport` binary: parse the command line, run the command (`deskport::cmd`), print
//! an error in the chosen log format and map the result to the exit code. Everything else
//! is in the library.

use clap::Parser;
use deskport::cmd::{self, Cli};
use std::process::ExitCode;

/// mimalloc: measured faster than the system allocator for our many small, short-lived
/// strings (see the README's benchmark section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3 option numbers (`mi_option_e` in its `mimalloc.h`; the Rust bindings name
/// only the v2 ones). `allocator_options_are_the_ones_we_mean` checks them against their
/// documented defaults, so an upgrade that renumbers them fails the tests.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to commit arena memory only when it is used and to hand freed pages back to
/// the OS after 100 ms. Its defaults (eager commit, a 1-second purge delay) kept ~50 MB more
/// resident for no measured speed gain; handing pages back at once (a delay of 0) made the
/// next allocations fault them in again: ~160,000 page faults and 0.7 s of system time on a
/// 1M-row `validate`, against ~38,000 and 0.25 s with 100 ms, for ~2 MiB more resident
/// (README, "Where the memory goes").
///
/// The options must be set before the first allocation reserves an arena, so on Linux this
/// runs from the executable's `.init_array`, before Rust's runtime starts; elsewhere from
/// `main` (later, so less effective). Not in the test binary, whose test checks the defaults.
fn return_freed_memory_promptly() {
    // SAFETY: plain option setters of the allocator, called once before any thread is
    // spawned; they take no pointers.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100);
    }
}

#[cfg(all(target_os = "linux", not(test)))]
#[used]
#[unsafe(link_section = ".init_array")]
static RETURN_FREED_MEMORY_PROMPTLY: extern "C" fn() = {
    extern "C" fn before_main() {
        return_freed_memory_promptly()
    }
    before_main
};

fn main() -> ExitCode {
    if cfg!(not(target_os = "linux")) {
        return_freed_memory_promptly();
    }
    let cli = Cli::parse();
    let log_format = cli.log_format();
    match cmd::run(cli) {
        Ok(exit) => exit.into(),
        Err(err) => cmd::report_error(&err, log_format).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_options_are_the_ones_we_mean() {
        // The documented defaults of mimalloc v3: arena_eager_commit = 2, purge_delay = 1000 ms.
        // SAFETY: option getters with no pointers.
        let (eager, delay) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!((eager, delay), (2, 1000));
    }
}
