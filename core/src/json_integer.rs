//! Reading JSON Schema integers. JSON Schema counts any number with a zero fractional part as
//! an `integer` (2020-12 Validation §6.1.1: `1.0` is an integer), while serde reads `1.0` only
//! into floats. The fields of API requests that the OpenAPI document types `integer` are read
//! with these functions, so that the server accepts exactly what the document describes.

use serde::de::{self, Deserializer, Visitor};

/// Reads an integer, written `7` or `7.0`, into any type with `TryFrom<u64>`.
///
/// # Errors
/// A negative number, a fraction, a non-number, or a value `T` refuses.
pub(crate) fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let value = deserializer.deserialize_any(Unsigned)?;
    T::try_from(value).map_err(|_| de::Error::custom(format!("{value} is out of range")))
}

/// [`integer`], or `null`.
///
/// # Errors
/// As [`integer`].
pub(crate) fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_option(Optional(std::marker::PhantomData))
}

struct Unsigned;

impl Visitor<'_> for Unsigned {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        // 2^64 is the first float above u64::MAX.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(v as u64)
        } else {
            Err(E::custom(format!("{v} is not a non-negative integer")))
        }
    }
}

struct Optional<T>(std::marker::PhantomData<T>);

impl<'de, T: TryFrom<u64>> Visitor<'de> for Optional<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a non-negative integer or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        integer(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Sample {
        #[serde(deserialize_with = "super::integer")]
        size: u32,
        #[serde(default, deserialize_with = "super::optional_integer")]
        orientation: Option<u16>,
    }

    fn read(json: &str) -> Option<(u32, Option<u16>)> {
        serde_json::from_str::<Sample>(json)
            .ok()
            .map(|s| (s.size, s.orientation))
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        assert_eq!(read(r#"{"size": 7}"#), Some((7, None)));
        assert_eq!(
            read(r#"{"size": 7.0, "orientation": 3.0}"#),
            Some((7, Some(3)))
        );
        assert_eq!(
            read(r#"{"size": 7e2, "orientation": null}"#),
            Some((700, None))
        );
        for bad in [
            r#"{"size": 7.5}"#,
            r#"{"size": -1}"#,
            r#"{"size": -1.0}"#,
            r#"{"size": 4294967296}"#,
            r#"{"size": "7"}"#,
            r#"{"size": 1e300}"#,
            r#"{"size": 1, "orientation": 65536}"#,
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }
}
