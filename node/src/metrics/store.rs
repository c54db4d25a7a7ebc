//! The store's numbers, read at each scrape rather than kept twice: what it holds, its cap,
//! how many blobs it has evicted, and how many of them lifecycle rules removed, and why.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::store::Store;

#[derive(Debug)]
pub(super) struct StoreCollector(pub Store);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let gauges = [
            ("shoal_store_bytes", "Bytes of the blobs in the store", stats.bytes),
            ("shoal_store_blobs", "Blobs in the store", stats.blobs),
            (
                "shoal_store_max_bytes",
                "The store's size cap (--max-size); 0 when there is none",
                stats.max_size.unwrap_or(0),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let evictions = ConstCounter::new(stats.evictions);
        evictions.encode(encoder.encode_descriptor(
            "shoal_store_evictions",
            "Blobs evicted to stay under the size cap or to make room on the disk",
            None,
            evictions.metric_type(),
        )?)?;
        let mut removals = encoder.encode_descriptor(
            "shoal_lifecycle_removals",
            "Blobs lifecycle rules removed, by reason (expired: unread too long; over_cap: the \
             prefix held more than its size or share)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, count) in
            [("expired", stats.lifecycle_expired), ("over_cap", stats.lifecycle_over_cap)]
        {
            ConstCounter::new(count).encode(removals.encode_family(&[("reason", reason)])?)?;
        }
        Ok(())
    }
}
