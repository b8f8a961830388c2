//! The `gatecheck` binary: a thin shell over the library's CLI.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(gatecheck::cli::main());
}
