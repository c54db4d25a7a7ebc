//! Human units in configuration: sizes like `50GiB` and durations like `5m`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {expected}")]
pub struct UnitError {
    kind: &'static str,
    input: String,
    expected: &'static str,
}

/// A byte count written as `1048576`, `512MiB`, `50GiB`, `1TB` (SI and binary prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnitError {
            kind: "size",
            input: s.to_owned(),
            expected: "a number with an optional unit: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB",
        };
        let (number, unit) = split_number(s.trim());
        let number: u64 = number.parse().map_err(|_| err())?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(err()),
        };
        number.checked_mul(multiplier).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] =
            [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A duration written as `30s`, `5m`, `2h`, `1d`, `250ms`, or a plain number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || UnitError {
            kind: "duration",
            input: s.to_owned(),
            expected: "a number with a unit: ms, s, m, h, d",
        };
        let (number, unit) = split_number(s.trim());
        let number: u64 = number.parse().map_err(|_| err())?;
        let duration = match unit.trim() {
            "ms" => Duration::from_millis(number),
            "" | "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(err)?),
            "h" => Duration::from_secs(number.checked_mul(3600).ok_or_else(err)?),
            "d" => Duration::from_secs(number.checked_mul(86_400).ok_or_else(err)?),
            _ => return Err(err()),
        };
        Ok(HumanDuration(duration))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() != 0 {
            write!(f, "{}ms", d.as_millis())
        } else if d.as_secs().is_multiple_of(3600) && d.as_secs() > 0 {
            write!(f, "{}h", d.as_secs() / 3600)
        } else if d.as_secs().is_multiple_of(60) && d.as_secs() > 0 {
            write!(f, "{}m", d.as_secs() / 60)
        } else {
            write!(f, "{}s", d.as_secs())
        }
    }
}

fn split_number(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Both units read from TOML as strings (`"50GiB"`) or, for convenience, bare integers.
macro_rules! deserialize_via_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Text(String),
                    Number(u64),
                }
                match Raw::deserialize(d)? {
                    Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
                    Raw::Number(n) => n.to_string().parse().map_err(serde::de::Error::custom),
                }
            }
        }
    };
}
deserialize_via_from_str!(ByteSize);
deserialize_via_from_str!(HumanDuration);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("50GiB".parse(), Ok(ByteSize(50 << 30)));
        assert_eq!("1 TB".parse(), Ok(ByteSize(1_000_000_000_000)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("512mib".parse(), Ok(ByteSize(512 << 20)));
        assert!("".parse::<ByteSize>().is_err());
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("-1GiB".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(50 << 30).to_string(), "50GiB");
    }

    #[test]
    fn durations() {
        assert_eq!("5m".parse(), Ok(HumanDuration(Duration::from_secs(300))));
        assert_eq!("250ms".parse(), Ok(HumanDuration(Duration::from_millis(250))));
        assert_eq!("30".parse(), Ok(HumanDuration(Duration::from_secs(30))));
        assert!("5 minutes".parse::<HumanDuration>().is_err());
        assert_eq!(HumanDuration(Duration::from_secs(300)).to_string(), "5m");
    }
}
