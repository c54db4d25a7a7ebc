//! Shared helpers for the node's integration tests.

pub mod fake_upstream;
