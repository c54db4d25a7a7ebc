//! A single byte range of a blob, as a client asked for it and as it resolves against the size.

/// One `Range: bytes=` specifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=a-b` (inclusive)
    FromTo(u64, u64),
    /// `bytes=a-`
    From(u64),
    /// `bytes=-n`: the last n bytes
    Suffix(u64),
}

impl RangeSpec {
    /// Where the range starts, when that does not depend on the size.
    pub fn start(&self) -> Option<u64> {
        match self {
            RangeSpec::FromTo(start, _) | RangeSpec::From(start) => Some(*start),
            RangeSpec::Suffix(_) => None,
        }
    }
}

impl RangeSpec {
    /// The half-open interval `[start, end)` it selects, or `None` when it is not satisfiable.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            RangeSpec::FromTo(a, b) if a <= b && a < size => {
                Some((a, b.saturating_add(1).min(size)))
            }
            RangeSpec::From(a) if a < size => Some((a, size)),
            RangeSpec::Suffix(n) if n > 0 && size > 0 => Some((size - n.min(size), size)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeSpec::*;

    #[test]
    fn resolves_against_size() {
        assert_eq!(FromTo(0, 9).resolve(100), Some((0, 10)));
        assert_eq!(FromTo(90, 200).resolve(100), Some((90, 100)));
        assert_eq!(FromTo(100, 200).resolve(100), None);
        assert_eq!(FromTo(5, 4).resolve(100), None);
        assert_eq!(From(99).resolve(100), Some((99, 100)));
        assert_eq!(From(100).resolve(100), None);
        assert_eq!(Suffix(10).resolve(100), Some((90, 100)));
        assert_eq!(Suffix(1000).resolve(100), Some((0, 100)));
        assert_eq!(Suffix(0).resolve(100), None);
        assert_eq!(From(0).resolve(0), None);
    }
}
