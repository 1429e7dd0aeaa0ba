//! Fields of JSON bodies as clients write them and the API document describes them: a whole number
//! may arrive as `125.0` (JavaScript and Python float arithmetic; JSON Schema's `integer` admits it
//! too), and a field that may be left out is still never `null` unless the document says so.

use serde::{Deserialize, Deserializer, de::Error as _};

/// A whole number, written `125` or `125.0`, that fits `T`.
pub fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    let value = match (number.as_i64(), number.as_f64()) {
        (Some(value), _) => value,
        // Every whole number up to 2^53 is exact as a float; past it, `125.0`-style spelling is not.
        (None, Some(float)) if float.fract() == 0.0 && float.abs() <= 9_007_199_254_740_991.0 => float as i64,
        _ => return Err(D::Error::custom(format!("expected a whole number, not {number}"))),
    };
    T::try_from(value).map_err(|_| D::Error::custom(format!("{value} is out of range")))
}

/// A string field that may be left out (with `#[serde(default)]`) but is never `null`: a client
/// that sends null meant something it did not say.
pub fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
}

/// [`whole`] for a field that may be left out (with `#[serde(default)]`) but is never `null`.
pub fn some_whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    whole(deserializer).map(Some)
}

/// [`whole`] for a field that may be null or left out (with `#[serde(default)]`).
pub fn whole_or_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => whole(serde_json::Value::Number(number)).map(Some).map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::whole_or_null")]
        price: Option<i64>,
        #[serde(deserialize_with = "super::whole")]
        days: u32,
        #[serde(default, deserialize_with = "super::present")]
        reason: Option<String>,
    }

    #[test]
    fn whole_numbers_may_be_written_as_floats_and_nothing_else() {
        let read = |text: &str| serde_json::from_str::<Body>(text).map(|body| (body.price, body.days));
        assert_eq!(read(r#"{"price": 125.0, "days": 30}"#).unwrap(), (Some(125), 30));
        assert_eq!(read(r#"{"price": null, "days": 30.0}"#).unwrap(), (None, 30));
        assert_eq!(read(r#"{"days": 7}"#).unwrap(), (None, 7));
        assert!(read(r#"{"price": 125.5, "days": 30}"#).is_err());
        assert!(read(r#"{"days": -1}"#).is_err());
        assert!(read(r#"{"days": "30"}"#).is_err());
        let reason = |text: &str| serde_json::from_str::<Body>(text).map(|body| body.reason);
        assert_eq!(reason(r#"{"days": 1}"#).unwrap(), None);
        assert_eq!(reason(r#"{"days": 1, "reason": "late"}"#).unwrap().as_deref(), Some("late"));
        assert!(reason(r#"{"days": 1, "reason": null}"#).is_err());
    }
}
