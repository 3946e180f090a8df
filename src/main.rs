//! The `muse` command: see `cli.rs` for the flags and DESIGN.md §5 for the
//! contract. It runs on a counting allocator (`allocator.rs`), whose count
//! is kv's `used_memory`.

#[global_allocator]
static ALLOCATOR: muse::allocator::Counting = muse::allocator::Counting::new();

fn main() -> std::process::ExitCode {
    muse::allocator::register(&ALLOCATOR);
    muse::allocator::tune_malloc();
    muse::restart::remember_exe();
    muse::cli::main()
}
