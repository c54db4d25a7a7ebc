//! The open-file limit. Every client connection is a descriptor, and so is every blob it
//! streams, every download's temp file and every connection to a peer or an upstream; the
//! usual soft limit of 1,024 is reached by a few hundred busy clients. The soft limit is raised
//! to the hard one at start, and the connection cap is kept below what it can hold.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything but client connections: the index, downloads' temp files,
/// connections to peers and upstreams, the control plane.
const RESERVED: u64 = 256;
/// A connection may hold a second descriptor: the blob file its response streams.
const PER_CONNECTION: u64 = 2;
/// However low the limit, a node that accepts no one is of no use.
const MIN_CAP: usize = 8;

/// Raises the soft limit on open files to the hard limit and logs the outcome; returns the
/// soft limit now in force (`None`: unlimited).
pub(super) fn raise() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current == maximum {
        tracing::info!(limit = current, "open-file limit");
        return current;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum }) {
        Ok(()) => {
            tracing::info!(
                from = current,
                to = maximum,
                "raised the open-file limit to its hard limit"
            );
            maximum
        }
        Err(e) => {
            tracing::warn!(limit = current, hard = maximum, error = %e, "cannot raise the open-file limit");
            current
        }
    }
}

/// The configured cap, lowered to what `open_files` descriptors can hold.
pub(super) fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else { return configured };
    let fits = limit.saturating_sub(RESERVED) / PER_CONNECTION;
    configured.min(usize::try_from(fits).unwrap_or(usize::MAX)).max(MIN_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_under_the_limit() {
        assert_eq!(connection_cap(4096, None), 4096);
        assert_eq!(connection_cap(4096, Some(1 << 20)), 4096);
        assert_eq!(connection_cap(4096, Some(1024)), 384);
        assert_eq!(connection_cap(4096, Some(10)), MIN_CAP);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let Rlimit { maximum, .. } = getrlimit(Resource::Nofile);
        // One below the hard limit: lowering it further could starve tests running beside this.
        if let Some(hard) = maximum.filter(|h| *h > 1024) {
            let lowered = Rlimit { current: Some(hard - 1), maximum };
            setrlimit(Resource::Nofile, lowered).expect("lower the soft limit");
            assert_eq!(raise(), Some(hard));
            assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
        }
    }
}
