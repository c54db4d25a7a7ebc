//! Shoal node: a pull-through cache for OCI registries.
