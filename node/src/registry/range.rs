//! The `Range` request header: exactly one `bytes=` range, or a clear refusal.

use http::HeaderMap;
use http::header::RANGE;

use super::error::ApiError;
use crate::fetch::RangeSpec;

/// `Ok(None)` without a `Range` header. Several ranges, other units or garbage are refused:
/// registry clients only ever ask for one range (to resume), so anything else is a client bug
/// better reported than answered with a surprise multipart body.
pub fn parse(headers: &HeaderMap) -> Result<Option<RangeSpec>, ApiError> {
    let mut values = headers.get_all(RANGE).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::RangeInvalid("more than one Range header".to_owned()));
    }
    let text =
        value.to_str().map_err(|_| ApiError::RangeInvalid("Range is not ASCII".to_owned()))?;
    parse_value(text).map(Some)
}

fn parse_value(text: &str) -> Result<RangeSpec, ApiError> {
    let bad = |why: &str| ApiError::RangeInvalid(format!("{why}: {:?}", truncate(text)));
    let spec =
        text.trim().strip_prefix("bytes=").ok_or_else(|| bad("only bytes= ranges are served"))?;
    if spec.contains(',') {
        return Err(bad("only a single range is served"));
    }
    let (first, last) =
        spec.trim().split_once('-').ok_or_else(|| bad("expected bytes=START-END"))?;
    let number = |s: &str| -> Result<u64, ApiError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("expected decimal offsets"));
        }
        s.parse().map_err(|_| bad("offset too large"))
    };
    match (first.is_empty(), last.is_empty()) {
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if a > b {
                return Err(bad("range ends before it starts"));
            }
            Ok(RangeSpec::FromTo(a, b))
        }
        (false, true) => Ok(RangeSpec::From(number(first)?)),
        (true, false) => Ok(RangeSpec::Suffix(number(last)?)),
        (true, true) => Err(bad("empty range")),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_ranges() {
        assert_eq!(parse_value("bytes=0-99").unwrap(), RangeSpec::FromTo(0, 99));
        assert_eq!(parse_value("bytes=100-").unwrap(), RangeSpec::From(100));
        assert_eq!(parse_value("bytes=-5").unwrap(), RangeSpec::Suffix(5));
    }

    #[test]
    fn refuses_the_rest() {
        for bad in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "0-1",
            "bytes=0x10-",
        ] {
            assert!(matches!(parse_value(bad), Err(ApiError::RangeInvalid(_))), "{bad}");
        }
    }

    #[test]
    fn refuses_two_headers() {
        let mut headers = HeaderMap::new();
        headers.append(RANGE, "bytes=0-1".parse().unwrap());
        headers.append(RANGE, "bytes=2-3".parse().unwrap());
        assert!(parse(&headers).is_err());
    }
}
