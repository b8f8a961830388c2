//! Process exit codes, in one place (architecture.md: CLI contract).

/// Every applicable scenario passed; `check-stanza` input is acceptable.
pub const OK: i32 = 0;
/// Some scenario failed; `check-stanza` input violates the profile.
pub const FAILED: i32 = 1;
/// Usage error, bad scenario or IUT file, or a harness fault.
pub const ERROR: i32 = 2;
/// The run was stopped by SIGINT (128 + 2, as shells report it); the report was written.
pub const INTERRUPTED: i32 = 130;
/// The run was stopped by SIGTERM (128 + 15); the report was written.
pub const TERMINATED: i32 = 143;

/// The multi-threaded async runtime every subcommand that talks to an IUT runs on; the
/// error is the message a command prints before exiting with [`ERROR`].
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// The exit code for a run stopped by `signal` (`SIGINT` or `SIGTERM`).
pub fn for_signal(signal: &str) -> i32 {
    if signal == "SIGTERM" {
        TERMINATED
    } else {
        INTERRUPTED
    }
}
