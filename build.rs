//! Build script: finds out whether this machine can run the io_uring
//! architectures, so that their tests are reported as ignored, with the
//! reason printed here, where io_uring is unavailable (a kernel before 6.0,
//! the `kernel.io_uring_disabled` sysctl, a seccomp filter) instead of
//! failing or passing without running.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(uring_unavailable)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=MUSE_FAULT_URING_UNAVAILABLE");
    if let Err(why) = probe() {
        println!("cargo::rustc-cfg=uring_unavailable");
        println!("cargo::warning=the io_uring architectures' tests are ignored: {why}");
    }
}

fn probe() -> Result<(), String> {
    if std::env::var_os("MUSE_FAULT_URING_UNAVAILABLE").is_some() {
        return Err("MUSE_FAULT_URING_UNAVAILABLE is set".into());
    }
    // struct io_uring_params is 120 bytes; zeroed asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) with a valid, writable params struct.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(format!(
            "io_uring_setup failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the ring descriptor just made.
    unsafe { libc::close(fd as i32) };
    // SAFETY: uname fills the zeroed struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } == 0 {
        let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy();
        let major: u32 = release
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if major < 6 {
            return Err(format!(
                "Linux {release} lacks multishot receive (6.0 or later)"
            ));
        }
    }
    Ok(())
}
