//! The `muse` command: see `cli.rs` for the flags and DESIGN.md §5 for the
//! contract.

fn main() -> std::process::ExitCode {
    muse::cli::main()
}
