//! Free loopback ports for the processes a test starts.

use std::net::{Ipv4Addr, TcpListener};

use crate::{HarnessError, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before it is returned so that a child process can bind it; another
/// process could take it in between, which the kernel makes unlikely by not reusing a just
/// released ephemeral port at once.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|source| HarnessError::io("binding 127.0.0.1:0 for a free port", source))?;
    let port = listener
        .local_addr()
        .map_err(|source| HarnessError::io("reading the port of a bound listener", source))?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound_again() {
        let port = free_port().expect("free port");
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free after release");
    }
}
