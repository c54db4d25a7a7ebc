//! What the node keeps, as the config file says: `[lifecycle]` (rules that expire or cap
//! content by repository prefix) and `[warm]` (images fetched and placed ahead of a rollout).

use std::time::Duration;

use super::ConfigError;
use super::file;

/// `[lifecycle]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleConfig {
    pub interval: Duration,
    pub rules: Vec<crate::store::LifecycleRule>,
}

/// How often lifecycle rules are applied unless `[lifecycle] interval` says otherwise.
pub const DEFAULT_LIFECYCLE_INTERVAL: Duration = Duration::from_secs(600);

/// `[warm]`, checked: the images, and on how many members each is kept warm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmConfig {
    pub images: Vec<crate::archive::ImageRef>,
    /// `None`: every member.
    pub replicas: Option<u32>,
    pub platform: Option<String>,
    pub with_referrers: bool,
}

pub(super) fn resolve_lifecycle(
    entry: Option<file::LifecycleEntry>,
) -> Result<LifecycleConfig, ConfigError> {
    let Some(entry) = entry else {
        return Ok(LifecycleConfig { interval: DEFAULT_LIFECYCLE_INTERVAL, rules: Vec::new() });
    };
    let mut rules = Vec::with_capacity(entry.rule.len());
    for rule in entry.rule {
        let prefix = rule.prefix.trim_end_matches('/').to_owned();
        let well_formed = prefix == "*"
            || (!prefix.is_empty()
                && prefix.split('/').all(|part| {
                    !part.is_empty()
                        && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
                }));
        let nothing =
            rule.expire_unused.is_none() && rule.max_size.is_none() && rule.max_share.is_none();
        if !well_formed || nothing {
            return Err(ConfigError::BadLifecycleRule(rule.prefix));
        }
        let max_share = match &rule.max_share {
            None => None,
            Some(text) => Some(parse_share(text).ok_or_else(|| ConfigError::BadShare {
                prefix: rule.prefix.clone(),
                given: text.clone(),
            })?),
        };
        rules.push(crate::store::LifecycleRule {
            prefix,
            expire_unused: rule.expire_unused.map(|d| d.0),
            max_size: rule.max_size.map(|s| s.0),
            max_share,
        });
    }
    let interval = entry.interval.map_or(DEFAULT_LIFECYCLE_INTERVAL, |d| d.0);
    Ok(LifecycleConfig { interval: interval.max(Duration::from_secs(1)), rules })
}

/// `"25%"` or `"12.5%"` as hundredths of a percent (2500, 1250), from more than 0 to 100 %.
fn parse_share(text: &str) -> Option<u32> {
    let number = text.trim().strip_suffix('%')?.trim();
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!fraction.is_empty() && (!digits(fraction) || fraction.len() > 2)) {
        return None;
    }
    let whole: u32 = whole.parse().ok().filter(|w| *w <= 100)?;
    let hundredths: u32 = format!("{fraction:0<2}").parse().ok()?;
    let share = whole * 100 + hundredths;
    (1..=10_000).contains(&share).then_some(share)
}

pub(super) fn resolve_warm(
    entry: Option<file::WarmEntry>,
    default_replicas: u32,
) -> Result<WarmConfig, ConfigError> {
    let Some(entry) = entry else { return Ok(WarmConfig::default()) };
    let images = entry
        .images
        .iter()
        .map(|i| crate::archive::ImageRef::parse(i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::BadWarmImage(e.to_string()))?;
    let platform = entry
        .platform
        .map(|p| {
            shoal_protocol::peer::check_platform(p.clone())
                .map_err(|_| ConfigError::BadWarmPlatform(p))
        })
        .transpose()?;
    let replicas = match (entry.all_nodes, entry.replicas) {
        (true, _) => None,
        (false, Some(n)) if n == 0 || n > shoal_protocol::peer::MAX_REPLICAS => {
            return Err(ConfigError::Replicas(n));
        }
        (false, n) => Some(n.unwrap_or(default_replicas)),
    };
    Ok(WarmConfig { images, replicas, platform, with_referrers: entry.with_referrers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_percentages_in_hundredths() {
        for (text, want) in [("25%", 2500), ("12.5%", 1250), ("0.01%", 1), ("100%", 10_000)] {
            assert_eq!(parse_share(text), Some(want), "{text}");
        }
        for bad in ["0%", "101%", "25", "-5%", "1.234%", "%", "a%", "25 %x", "100.01%", ".5%"] {
            assert_eq!(parse_share(bad), None, "{bad}");
        }
    }
}
