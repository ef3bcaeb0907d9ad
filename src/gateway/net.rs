//! The gateway's sockets and descriptors: binding a listener with advice
//! that names the setting, and the open-file limit its listeners need.

use std::net::SocketAddr;

/// Raise the soft limit on open files to the hard limit and return it:
/// each SMTP or IMAP connection is a descriptor, and the usual default soft
/// limit (1024) is below what the listeners' `max_connections` allow.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write only the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    None
}

/// Bind a listener, naming the flag to change when the port is taken.
pub async fn bind(
    addr: SocketAddr,
    what: &str,
    flag: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} for the {what}: {e}; choose another address with {flag} \
             (port 0, e.g. 127.0.0.1:0, takes any free port), or stop what uses {addr}"
        )
    })
}
