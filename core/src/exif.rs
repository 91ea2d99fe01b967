//! EXIF metadata and orientation, read with `kamadak-exif`.
//!
//! Malformed or missing EXIF never fails an image: [`read_exif`] returns the fields it could
//! read and leaves the rest `None`.

use std::io::Cursor;
use std::ops::RangeInclusive;

use chrono::{NaiveDate, NaiveDateTime};
use exif::{In, Tag, Value};
use image::RgbImage;
use image::imageops;
use serde::{Deserialize, Serialize};

/// EXIF `Orientation` (tag 0x0112), TIFF 6.0 §"Orientation" / EXIF 2.32 §4.6.4.
///
/// The value says where the stored image's 0th row and 0th column lie when viewed upright.
/// [`Orientation::apply`] turns stored pixels into the upright image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
pub enum Orientation {
    /// 1: stored upright.
    #[default]
    Normal,
    /// 2: mirrored left–right.
    FlipHorizontal,
    /// 3: rotated 180°.
    Rotate180,
    /// 4: mirrored top–bottom.
    FlipVertical,
    /// 5: mirrored along the main diagonal (transpose).
    Transpose,
    /// 6: needs a 90° clockwise turn to be upright.
    Rotate90Cw,
    /// 7: mirrored along the anti-diagonal (transverse).
    Transverse,
    /// 8: needs a 90° counter-clockwise turn to be upright.
    Rotate90Ccw,
}

impl Orientation {
    /// The orientation for an EXIF value 1–8; `None` for anything else.
    #[must_use]
    pub const fn from_exif(value: u16) -> Option<Self> {
        Some(match value {
            1 => Self::Normal,
            2 => Self::FlipHorizontal,
            3 => Self::Rotate180,
            4 => Self::FlipVertical,
            5 => Self::Transpose,
            6 => Self::Rotate90Cw,
            7 => Self::Transverse,
            8 => Self::Rotate90Ccw,
            _ => return None,
        })
    }

    /// The EXIF value, 1–8.
    #[must_use]
    pub const fn to_exif(self) -> u16 {
        match self {
            Self::Normal => 1,
            Self::FlipHorizontal => 2,
            Self::Rotate180 => 3,
            Self::FlipVertical => 4,
            Self::Transpose => 5,
            Self::Rotate90Cw => 6,
            Self::Transverse => 7,
            Self::Rotate90Ccw => 8,
        }
    }

    /// Whether the upright image has width and height swapped relative to the stored one.
    #[must_use]
    pub const fn swaps_axes(self) -> bool {
        matches!(
            self,
            Self::Transpose | Self::Rotate90Cw | Self::Transverse | Self::Rotate90Ccw
        )
    }

    /// Turns stored pixels into the upright image. Width and height swap for 5–8.
    #[must_use]
    pub fn apply(self, stored: RgbImage) -> RgbImage {
        match self {
            Self::Normal => stored,
            Self::FlipHorizontal => imageops::flip_horizontal(&stored),
            Self::Rotate180 => imageops::rotate180(&stored),
            Self::FlipVertical => imageops::flip_vertical(&stored),
            Self::Transpose => imageops::flip_horizontal(&imageops::rotate90(&stored)),
            Self::Rotate90Cw => imageops::rotate90(&stored),
            Self::Transverse => imageops::flip_horizontal(&imageops::rotate270(&stored)),
            Self::Rotate90Ccw => imageops::rotate270(&stored),
        }
    }
}

impl From<Orientation> for u16 {
    fn from(value: Orientation) -> Self {
        value.to_exif()
    }
}

impl TryFrom<u64> for Orientation {
    type Error = String;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        u16::try_from(value)
            .ok()
            .and_then(Self::from_exif)
            .ok_or_else(|| format!("EXIF orientation {value} is not 1–8"))
    }
}

impl TryFrom<u16> for Orientation {
    type Error = String;
    fn try_from(value: u16) -> Result<Self, Self::Error> {
        Self::from_exif(value).ok_or_else(|| format!("EXIF orientation {value} is not 1–8"))
    }
}

/// The acquisition dates Tessera records and searches: 1826-01-01 (the year of Niépce's *View
/// from the Window at Le Gras*, the oldest surviving camera photograph) to 2199-12-31. Dates
/// outside it are camera-clock garbage, and years outside 0001–9999 would also break the
/// text order that the stores sort and filter by (`+10000-01-01` sorts before `2024-…`).
pub const ACQUISITION_DATES: RangeInclusive<NaiveDate> = RangeInclusive::new(
    NaiveDate::from_ymd_opt(1826, 1, 1).expect("a date"),
    NaiveDate::from_ymd_opt(2199, 12, 31).expect("a date"),
);

/// Parses `YYYY-MM-DD` exactly (RFC 3339 `full-date`: four, two and two digits), a real
/// calendar date within [`ACQUISITION_DATES`]; the shape [`DATE_PATTERN`] describes.
#[must_use]
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    if !is_date_shaped(text) {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|d| ACQUISITION_DATES.contains(d))
}

/// Whether `text` is four digits, `-`, two digits, `-`, two digits.
pub(crate) fn is_date_shaped(text: &str) -> bool {
    text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// Every string [`parse_date`] accepts, as a regular expression: a Gregorian calendar date from
/// 1826-01-01 to 2199-12-31 (29 February in leap years only: every fourth year but 1900 and
/// 2100). The OpenAPI document gives it for `from`, `to` and the date of `taken_at`.
pub const DATE_PATTERN: &str = concat!(
    "(?:(?:182[6-9]|18[3-9][0-9]|19[0-9]{2}|2[01][0-9]{2})-",
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)",
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))",
    "|(?:18(?:28|[3579][26]|[468][048])|19(?:[02468][48]|[13579][26]|[2468]0)",
    "|20(?:[02468][048]|[13579][26])|21(?:[02468][48]|[13579][26]|[2468]0))-02-29)"
);

/// Every `taken_at` that [`ExifMetadata`] reads and [`ExifMetadata::check`] passes, as a regular
/// expression: a [`DATE_PATTERN`] date, `T`, a time of day `HH:MM:SS` (no leap second) with an
/// optional fraction of 1 to 9 digits, no zone.
#[must_use]
pub fn taken_at_pattern() -> String {
    format!("^{DATE_PATTERN}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{{1,9}})?$")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fffffffff]` exactly: the digits and separators in place, a real
/// calendar date (any year; the window is [`ExifMetadata::check`]'s), no leap second.
#[must_use]
pub fn parse_taken_at(text: &str) -> Option<NaiveDateTime> {
    let bytes = text.as_bytes();
    let fraction_ok = match bytes.len() {
        19 => true,
        21..=29 => bytes[19] == b'.' && bytes[20..].iter().all(u8::is_ascii_digit),
        _ => false,
    };
    let shape = fraction_ok
        && bytes[..19].iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape || &text[17..19] >= "60" {
        return None;
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

fn deserialize_taken_at<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<NaiveDateTime>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    parse_taken_at(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "taken_at {text:?} is not a local date-time YYYY-MM-DDTHH:MM:SS with an optional fraction and no zone"
        ))
    })
}

/// The GPS altitudes Tessera records, in metres: −11,000 (below the Challenger Deep, −10,935 m)
/// to 100,000 (the Kármán line; stratospheric balloons reach about 50 km).
pub const ALTITUDE_M: RangeInclusive<f64> = -11_000.0..=100_000.0;

/// A GPS position in WGS 84 decimal degrees, as recorded by the camera.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpsPosition {
    /// Latitude in decimal degrees, −90 to 90, negative south (from `GPSLatitudeRef` = `S`).
    #[cfg_attr(feature = "openapi", schema(minimum = -90.0, maximum = 90.0))]
    pub latitude: f64,
    /// Longitude in decimal degrees, −180 to 180, negative west (from `GPSLongitudeRef` = `W`).
    #[cfg_attr(feature = "openapi", schema(minimum = -180.0, maximum = 180.0))]
    pub longitude: f64,
    /// Altitude in metres above sea level, negative below (`GPSAltitudeRef` = 1), −11,000 to
    /// 100,000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = -11_000.0, maximum = 100_000.0))]
    pub altitude_m: Option<f64>,
}

/// The EXIF fields Tessera records. Every field is optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExifMetadata {
    /// `DateTimeOriginal` (0x9003): the camera's local wall-clock time of capture. EXIF
    /// records no zone here, so neither does Tessera: `2024-03-09T10:00:00`, an RFC 3339
    /// `partial-time` after a `full-date` with no offset, on a date from 1826-01-01 to
    /// 2199-12-31.
    // The window is ACQUISITION_DATES, the shape taken_at_pattern() (field docs are the API's
    // descriptions, so they name no Rust items).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_taken_at"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "2024-03-09T10:00:00"))]
    pub taken_at: Option<NaiveDateTime>,
    /// `GPSLatitude`/`GPSLongitude`/`GPSAltitude` with their reference tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gps: Option<GpsPosition>,
    /// `Make` (0x010F), trimmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_make: Option<String>,
    /// `Model` (0x0110), trimmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_model: Option<String>,
    /// `Orientation` (0x0112) when present and valid.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_integer::optional_integer"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u16>, minimum = 1, maximum = 8))]
    pub orientation: Option<Orientation>,
}

impl ExifMetadata {
    /// The acquisition date, from `taken_at`.
    #[must_use]
    pub fn acquisition_date(&self) -> Option<NaiveDate> {
        self.taken_at.map(|t| t.date())
    }

    /// Checks declared metadata against what a camera can record: `taken_at` within
    /// [`ACQUISITION_DATES`], latitude within ±90°, longitude within ±180°, altitude within
    /// [`ALTITUDE_M`], every number finite. [`read_exif`] only returns metadata that passes.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn check(&self) -> Result<(), MetadataProblem> {
        if let Some(taken_at) = self.taken_at
            && !ACQUISITION_DATES.contains(&taken_at.date())
        {
            return Err(MetadataProblem::TakenAt(taken_at));
        }
        if let Some(gps) = self.gps {
            if !(-90.0..=90.0).contains(&gps.latitude) {
                return Err(MetadataProblem::Latitude(gps.latitude));
            }
            if !(-180.0..=180.0).contains(&gps.longitude) {
                return Err(MetadataProblem::Longitude(gps.longitude));
            }
            if let Some(altitude) = gps.altitude_m
                && !ALTITUDE_M.contains(&altitude)
            {
                return Err(MetadataProblem::Altitude(altitude));
            }
        }
        Ok(())
    }
}

/// A declared metadata field outside what a camera can record ([`ExifMetadata::check`]).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataProblem {
    /// `taken_at` outside [`ACQUISITION_DATES`].
    #[error("taken_at {0} is outside {start} to {end}", start = ACQUISITION_DATES.start(), end = ACQUISITION_DATES.end())]
    TakenAt(NaiveDateTime),
    /// A latitude outside −90 to 90 or not finite.
    #[error("GPS latitude {0} is outside -90 to 90 degrees")]
    Latitude(f64),
    /// A longitude outside −180 to 180 or not finite.
    #[error("GPS longitude {0} is outside -180 to 180 degrees")]
    Longitude(f64),
    /// An altitude outside [`ALTITUDE_M`] or not finite.
    #[error("GPS altitude {0} m is outside {min} to {max} m", min = ALTITUDE_M.start(), max = ALTITUDE_M.end())]
    Altitude(f64),
}

/// Reads EXIF from a JPEG (APP1), PNG (`eXIf`) or TIFF (IFD0) file.
///
/// Returns all-`None` metadata when the file has no EXIF or it cannot be parsed; a single bad
/// field (a GPS rational with a zero denominator, a date that is not a date) is dropped alone.
#[must_use]
pub fn read_exif(bytes: &[u8]) -> ExifMetadata {
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return ExifMetadata::default();
    };
    let field = |tag| exif.get_field(tag, In::PRIMARY).map(|f| &f.value);
    let ascii = |tag| match field(tag) {
        Some(Value::Ascii(parts)) => parts.first().and_then(|p| {
            let text = String::from_utf8_lossy(p)
                .trim_matches(['\0', ' '])
                .to_owned();
            (!text.is_empty()).then_some(text)
        }),
        _ => None,
    };
    let taken_at = match field(Tag::DateTimeOriginal) {
        Some(Value::Ascii(parts)) => parts.first().and_then(|p| parse_exif_datetime(p)),
        _ => None,
    };
    let orientation = field(Tag::Orientation)
        .and_then(|v| v.get_uint(0))
        .and_then(|v| u16::try_from(v).ok())
        .and_then(Orientation::from_exif);
    let gps = (|| {
        let latitude = degrees(field(Tag::GPSLatitude)?)?
            * hemisphere_sign(field(Tag::GPSLatitudeRef)?, b'S')?;
        let longitude = degrees(field(Tag::GPSLongitude)?)?
            * hemisphere_sign(field(Tag::GPSLongitudeRef)?, b'W')?;
        if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
            return None;
        }
        let below_sea = field(Tag::GPSAltitudeRef).and_then(|v| v.get_uint(0)) == Some(1);
        let altitude_m = match field(Tag::GPSAltitude) {
            Some(Value::Rational(r)) => r
                .first()
                .map(exif::Rational::to_f64)
                .filter(|a| a.is_finite())
                .map(|a| if below_sea { -a } else { a }),
            _ => None,
        }
        .filter(|a| ALTITUDE_M.contains(a));
        Some(GpsPosition {
            latitude,
            longitude,
            altitude_m,
        })
    })();
    ExifMetadata {
        taken_at,
        gps,
        camera_make: ascii(Tag::Make),
        camera_model: ascii(Tag::Model),
        orientation,
    }
}

/// Parses EXIF's `YYYY:MM:DD HH:MM:SS` (EXIF 2.32 §4.6.4, TIFF 6.0's `DateTime` tag too);
/// `None` for blanks (`    :  :     :  :  `), impossible dates and dates outside
/// [`ACQUISITION_DATES`].
#[must_use]
pub fn parse_exif_datetime(ascii: &[u8]) -> Option<NaiveDateTime> {
    let text = std::str::from_utf8(ascii).ok()?.trim_matches(['\0', ' ']);
    NaiveDateTime::parse_from_str(text, "%Y:%m:%d %H:%M:%S")
        .ok()
        .filter(|t| ACQUISITION_DATES.contains(&t.date()))
}

/// Degrees + minutes/60 + seconds/3600 from three EXIF rationals (EXIF 2.32 §4.6.6).
fn degrees(value: &Value) -> Option<f64> {
    let Value::Rational(dms) = value else {
        return None;
    };
    let [d, m, s] = dms.get(..3)? else {
        return None;
    };
    let total = d.to_f64() + m.to_f64() / 60.0 + s.to_f64() / 3600.0;
    total.is_finite().then_some(total)
}

/// `+1.0` for N/E, `-1.0` for the `negative` letter (S/W), `None` otherwise.
fn hemisphere_sign(value: &Value, negative: u8) -> Option<f64> {
    let Value::Ascii(parts) = value else {
        return None;
    };
    match parts.first()?.first()?.to_ascii_uppercase() {
        b if b == negative => Some(-1.0),
        b'N' | b'E' => Some(1.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exif_datetimes_and_rejects_blanks() {
        assert_eq!(
            parse_exif_datetime(b"2014:04:18 20:33:53")
                .unwrap()
                .to_string(),
            "2014-04-18 20:33:53"
        );
        assert_eq!(parse_exif_datetime(b"    :  :     :  :  "), None);
        assert_eq!(parse_exif_datetime(b"2014:02:30 00:00:00"), None);
        assert_eq!(parse_exif_datetime(b"1601:01:01 00:00:00"), None);
    }

    #[test]
    fn metadata_outside_what_a_camera_records_is_named() {
        let at = |y, m, d| {
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
        };
        let gps = |latitude, longitude, altitude_m| {
            Some(GpsPosition {
                latitude,
                longitude,
                altitude_m,
            })
        };
        let problem = |taken_at, gps| {
            ExifMetadata {
                taken_at,
                gps,
                ..ExifMetadata::default()
            }
            .check()
        };
        assert_eq!(
            problem(at(1826, 1, 1), gps(-90.0, 180.0, Some(-11_000.0))),
            Ok(())
        );
        assert_eq!(
            problem(at(2199, 12, 31), gps(90.0, -180.0, Some(100_000.0))),
            Ok(())
        );
        for (taken_at, expected) in [
            (at(10_000, 1, 1), "+10000-01-01"),
            (at(-1, 12, 31), "-0001-12-31"),
            (at(1825, 12, 31), "1825-12-31"),
        ] {
            let error = problem(taken_at, None).unwrap_err();
            assert!(matches!(error, MetadataProblem::TakenAt(_)), "{error}");
            assert!(error.to_string().contains(expected), "{error}");
        }
        assert!(matches!(
            problem(None, gps(1000.0, 0.0, None)),
            Err(MetadataProblem::Latitude(_))
        ));
        assert!(matches!(
            problem(None, gps(f64::NAN, 0.0, None)),
            Err(MetadataProblem::Latitude(_))
        ));
        assert!(matches!(
            problem(None, gps(0.0, 1e308, None)),
            Err(MetadataProblem::Longitude(_))
        ));
        assert!(matches!(
            problem(None, gps(0.0, 0.0, Some(f64::INFINITY))),
            Err(MetadataProblem::Altitude(_))
        ));
        assert!(matches!(
            problem(None, gps(0.0, 0.0, Some(-20_000.0))),
            Err(MetadataProblem::Altitude(_))
        ));
    }

    /// [`DATE_PATTERN`] matches exactly what [`parse_date`] accepts, over every day from
    /// 1800 to 2299 and the shapes around it.
    #[test]
    fn the_date_pattern_is_the_parser() {
        let pattern = regex::Regex::new(&format!("^{DATE_PATTERN}$")).unwrap();
        for year in 1800..2300 {
            for month in 0..=13 {
                for day in 0..=32 {
                    let text = format!("{year:04}-{month:02}-{day:02}");
                    assert_eq!(
                        pattern.is_match(&text),
                        parse_date(&text).is_some(),
                        "{text}"
                    );
                }
            }
        }
        for text in [
            "2024-1-05",
            "+2024-01-05",
            "2024-01-05 ",
            "20240105",
            "2024/01/05",
        ] {
            assert!(
                !pattern.is_match(text) && parse_date(text).is_none(),
                "{text}"
            );
        }
    }

    /// [`taken_at_pattern`] matches what [`parse_taken_at`] reads and the window admits.
    #[test]
    fn the_taken_at_pattern_is_the_parser() {
        let pattern = regex::Regex::new(&taken_at_pattern()).unwrap();
        let accepted = |text: &str| {
            parse_taken_at(text).is_some_and(|t| ACQUISITION_DATES.contains(&t.date()))
        };
        for text in [
            "2024-03-09T10:00:00",
            "2024-03-09T23:59:59.5",
            "2024-03-09T23:59:59.123456789",
            "2024-02-29T00:00:00",
            "2023-02-29T00:00:00",
            "2024-03-09T23:59:60",
            "2024-03-09T24:00:00",
            "2024-03-09 10:00:00",
            "2024-03-09T10:00:00Z",
            "2024-03-09T10:00:00+02:00",
            "2024-03-09T10:00:00.",
            "2024-03-09T10:00:00.1234567890",
            "1825-12-31T10:00:00",
            "+10000-01-01T00:00:00",
            "2024-3-09T10:00:00",
        ] {
            assert_eq!(pattern.is_match(text), accepted(text), "{text}");
        }
        let json = serde_json::json!({"taken_at": "2024-03-09T10:00:00+02:00"});
        assert!(serde_json::from_value::<ExifMetadata>(json).is_err());
        let json = serde_json::json!({"taken_at": null});
        assert_eq!(
            serde_json::from_value::<ExifMetadata>(json).unwrap(),
            ExifMetadata::default()
        );
    }

    #[test]
    fn orientation_round_trips_and_swaps_axes_for_5_to_8() {
        for value in 1..=8 {
            let o = Orientation::from_exif(value).unwrap();
            assert_eq!(o.to_exif(), value);
            assert_eq!(o.swaps_axes(), value >= 5);
        }
        assert_eq!(Orientation::from_exif(0), None);
        assert_eq!(Orientation::from_exif(9), None);
    }

    #[test]
    fn garbage_has_no_exif() {
        assert_eq!(
            read_exif(b"\xFF\xD8\xFF\xE1\0\x10Exif\0\0garbage"),
            ExifMetadata::default()
        );
    }
}
