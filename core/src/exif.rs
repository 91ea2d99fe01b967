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
    /// Altitude in metres above sea level, negative below (`GPSAltitudeRef` = 1); within
    /// [`ALTITUDE_M`].
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
    /// `partial-time` after a `full-date` with no offset; within [`ACQUISITION_DATES`].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(
        value_type = Option<String>,
        pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?$",
        example = "2024-03-09T10:00:00"
    ))]
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
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// Parses EXIF's `YYYY:MM:DD HH:MM:SS`; `None` for blanks (`    :  :     :  :  `),
/// impossible dates and dates outside [`ACQUISITION_DATES`].
fn parse_exif_datetime(ascii: &[u8]) -> Option<NaiveDateTime> {
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
