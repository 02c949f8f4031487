//! One instance at a time: the first launch listens on a local socket in its
//! config folder; a second launch finds it, asks it to come to the front,
//! and exits. The socket lives in the config folder (not a global name) so
//! each user, and each test run with its own folder, has its own instance.

use std::path::Path;

/// Who this launch is.
pub enum Claim {
    /// The first: it runs the jam.
    First,
    /// Another one runs; it was asked to show its window.
    Other,
}

#[cfg(unix)]
pub fn claim(dir: &Path, on_second_launch: impl Fn() + Send + 'static) -> Claim {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::time::Duration;

    let path = dir.join("instance.sock");
    if let Ok(mut s) = UnixStream::connect(&path) {
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"show\n").is_ok() {
            return Claim::Other;
        }
    }
    // Nobody answers: a socket file left by a crash. Take it over.
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            // Not fatal: the app runs, only without the single-instance check.
            tracing::warn!("single-instance socket {}: {e}", path.display());
            return Claim::First;
        }
    };
    let _ = std::thread::Builder::new()
        .name("single-instance".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 16];
                // Any short message means "show yourself"; nothing else is read.
                if conn.read(&mut buf).is_ok() {
                    on_second_launch();
                }
            }
        });
    Claim::First
}

#[cfg(not(unix))]
pub fn claim(_dir: &Path, _on_second_launch: impl Fn() + Send + 'static) -> Claim {
    // Windows would use a named pipe the same way; not built yet.
    Claim::First
}
