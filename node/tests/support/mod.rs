//! Shared helpers for the node's integration tests.
//!
//! Each test binary uses a different part of this module, so unused items are expected.
#![allow(dead_code)]

pub mod fake_upstream;
