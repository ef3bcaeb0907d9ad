//! The `graphgate` binary: everything is in the library; see `cli`.

fn main() -> std::process::ExitCode {
    return_large_blocks_to_the_kernel();
    graphgate::cli::main()
}

/// glibc's malloc raises its mmap threshold (up to 32 MiB) each time it
/// frees a block it had mmapped; from then on blocks of that size come from
/// the heap, and their pages stay with the process when freed. Every
/// password check (SMTP AUTH, IMAP LOGIN — wrong ones too) allocates and
/// frees 19 MiB for Argon2id, so each left 19 MiB resident in some arena:
/// 64 logins made the gateway 725 MB. A fixed threshold of 1 MiB keeps
/// such blocks mmapped and gives them back on free (the same 64 logins:
/// 24 MB afterwards).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_blocks_to_the_kernel() {
    // SAFETY: mallopt only changes malloc's tunables, and this runs before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_blocks_to_the_kernel() {}
