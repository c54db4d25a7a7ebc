//! Harness for running real shoal processes beside real registries and clients.
