//! The set of upstream registries a node may fetch from, by the name clients use for them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::config::RoutingConfig;
use crate::metrics::Metrics;
use crate::upstream::{ClientSettings, Credentials, Upstream, UpstreamConfig, UpstreamError};

use super::FetchError;
use shoal_protocol::is_registry_host;

/// Registries reached through `allow_any_upstream` whose clients (connection pools, cached
/// tokens) are kept at once.
const MAX_DYNAMIC_UPSTREAMS: usize = 256;

pub struct Upstreams {
    configured: HashMap<String, Upstream>,
    /// Clients for registries reached through `allow_any_upstream`, made on first use.
    dynamic: Mutex<HashMap<String, Upstream>>,
    allow_any: bool,
    allow_private: bool,
    extra_credentials: BTreeMap<String, Credentials>,
    settings: ClientSettings,
    /// What the clients' tokens live on.
    clock: Clock,
    /// Counts requests by registry, kind and outcome.
    metrics: Arc<Metrics>,
}

impl Upstreams {
    pub fn new(
        routing: &RoutingConfig,
        settings: &ClientSettings,
        clock: &Clock,
    ) -> Result<Self, UpstreamError> {
        let configured = routing
            .upstreams
            .iter()
            .map(|(name, config)| {
                let upstream = Upstream::with_clock(config.clone(), settings, clock.clone())?;
                Ok((name.clone(), upstream))
            })
            .collect::<Result<_, UpstreamError>>()?;
        Ok(Self {
            configured,
            dynamic: Mutex::new(HashMap::new()),
            allow_any: routing.allow_any_upstream,
            allow_private: routing.allow_private_upstreams,
            extra_credentials: routing.extra_credentials.clone(),
            settings: settings.clone(),
            clock: clock.clone(),
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// Counts requests in `metrics` instead of a private set.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// Counts one request of `kind` (`blob`, `manifest`, `tags`) to `registry` by its outcome,
    /// and hands its result on.
    pub fn counted<T>(
        &self,
        registry: &str,
        kind: &'static str,
        result: Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(UpstreamError::NotFound { .. }) => "not_found",
            Err(UpstreamError::Unauthorized { .. }) => "denied",
            Err(UpstreamError::TooManyRequests { .. }) => "rate_limited",
            Err(_) => "error",
        };
        self.metrics.upstream_request(registry, kind, outcome);
        result
    }

    /// The client for a registry name, or `UnknownRegistry` when the node may not fetch from it.
    pub fn get(&self, registry: &str) -> Result<Upstream, FetchError> {
        if let Some(upstream) = self.configured.get(registry) {
            return Ok(upstream.clone());
        }
        if !self.allow_any || !is_registry_host(registry) {
            return Err(FetchError::UnknownRegistry(registry.to_owned()));
        }
        // A literal address never reaches the resolver that keeps the others public.
        let host = registry.rsplit_once(':').map_or(registry, |(host, _)| host);
        if !self.allow_private
            && host.parse().is_ok_and(|ip| !crate::upstream::is_public_address(ip))
        {
            return Err(FetchError::PrivateRegistry(registry.to_owned()));
        }
        let mut dynamic = self.dynamic.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(upstream) = dynamic.get(registry) {
            return Ok(upstream.clone());
        }
        let config = UpstreamConfig {
            name: registry.to_owned(),
            url: format!("https://{registry}"),
            credentials: self.extra_credentials.get(registry).cloned(),
            public_only: !self.allow_private,
            ..Default::default()
        };
        let upstream = Upstream::with_clock(config, &self.settings, self.clock.clone())?;
        if dynamic.len() >= MAX_DYNAMIC_UPSTREAMS {
            // Clients choose these names. Starting afresh costs the busy registries a new
            // connection and token each; keeping every name ever asked for costs memory for good.
            tracing::info!(
                registries = dynamic.len(),
                "too many registries reached through allow_any_upstream; forgetting their clients"
            );
            dynamic.clear();
        }
        dynamic.insert(registry.to_owned(), upstream.clone());
        Ok(upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_reached_by_name_are_remembered_up_to_a_bound() {
        let routing = RoutingConfig {
            upstreams: Default::default(),
            default_upstream: "docker.io".to_owned(),
            aliases: Default::default(),
            hosted: Default::default(),
            allow_any_upstream: true,
            allow_private_upstreams: false,
            extra_credentials: Default::default(),
        };
        let upstreams =
            Upstreams::new(&routing, &ClientSettings::default(), &Clock::system()).unwrap();
        for i in 0..MAX_DYNAMIC_UPSTREAMS * 3 {
            upstreams.get(&format!("registry-{i}.example")).unwrap();
            assert!(upstreams.dynamic.lock().unwrap().len() <= MAX_DYNAMIC_UPSTREAMS);
        }
        assert!(
            upstreams
                .dynamic
                .lock()
                .unwrap()
                .contains_key(&format!("registry-{}.example", MAX_DYNAMIC_UPSTREAMS * 3 - 1))
        );
    }
}
