//! Image search: the parameters of `GET /v1/images`, parsed into types, the keyset cursor
//! that continues a page and how a page is cut, and how long the download URLs of a record
//! stay valid.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::exif::{is_date_shaped, parse_date};
use crate::keys::{ImageId, Project};
use crate::manifest::Manifest;

/// Validity of the presigned GET URLs in one image's record (`GET /v1/images/{id}`): 5
/// minutes, long enough to show or download the images, short enough that a shared link dies
/// soon.
pub const DOWNLOAD_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// A WGS 84 longitude/latitude box, degrees, edges inclusive. `min_lon > max_lon` is a box
/// that crosses the antimeridian (e.g. 170,−10,−170,10); `min_lat > max_lat` holds no point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// West edge, −180 to 180.
    pub min_lon: f64,
    /// South edge, −90 to 90.
    pub min_lat: f64,
    /// East edge, −180 to 180.
    pub max_lon: f64,
    /// North edge, −90 to 90.
    pub max_lat: f64,
}

impl BoundingBox {
    /// Whether the box holds the point.
    #[must_use]
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let in_lon = if self.min_lon <= self.max_lon {
            (self.min_lon..=self.max_lon).contains(&lon)
        } else {
            lon >= self.min_lon || lon <= self.max_lon
        };
        in_lon && (self.min_lat..=self.max_lat).contains(&lat)
    }
}

/// Where the previous page of a search ended: records sort by (date, image id), ascending.
/// Written `YYYY-MM-DD~{image_id}` ([`SearchCursor::PATTERN`]). The date is a text key
/// compared as the stores compare dates, so any eight digits in that shape position a page;
/// only the shape is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchCursor {
    /// The last record's acquisition date, `YYYY-MM-DD`.
    pub date: String,
    /// The last record's id.
    pub image_id: ImageId,
}

impl SearchCursor {
    /// Every string [`SearchCursor::decode`] accepts, as a regular expression (for the
    /// OpenAPI document).
    pub const PATTERN: &'static str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}~[a-z0-9][a-z0-9-]{0,63}$";

    /// The cursor after record `manifest`.
    #[must_use]
    pub fn after(manifest: &Manifest) -> Self {
        Self {
            date: manifest.date.to_string(),
            image_id: manifest.image_id.clone(),
        }
    }

    /// The written form.
    #[must_use]
    pub fn encode(&self) -> String {
        format!("{}~{}", self.date, self.image_id)
    }

    /// Parses the written form; `None` for anything not matching [`SearchCursor::PATTERN`].
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        let (date, id) = text.split_once('~')?;
        if !is_date_shaped(date) {
            return None;
        }
        Some(Self {
            date: date.to_owned(),
            image_id: ImageId::new(id).ok()?,
        })
    }
}

/// `GET /v1/images` parameters, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageQuery {
    /// Only this project's images.
    pub project: Option<Project>,
    /// Acquisition date on or after.
    pub from: Option<NaiveDate>,
    /// Acquisition date on or before.
    pub to: Option<NaiveDate>,
    /// Only images with GPS inside.
    pub bbox: Option<BoundingBox>,
    /// Page size, 1 to [`ImageQuery::MAX_LIMIT`]; default [`ImageQuery::DEFAULT_LIMIT`].
    pub limit: u32,
    /// Continue after this record.
    pub cursor: Option<SearchCursor>,
}

impl ImageQuery {
    /// Page size when none is given.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// Largest page.
    pub const MAX_LIMIT: u32 = 200;
}

/// Cuts one page from `rows`, which the store fetched in (date, id) order with
/// `LIMIT limit + 1`: the first `limit` rows, and the cursor after the last of them when a
/// further row shows that there is a next page.
#[must_use]
pub fn cut_page(mut rows: Vec<Manifest>, limit: u32) -> (Vec<Manifest>, Option<SearchCursor>) {
    let limit = limit as usize;
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let cursor = rows.last().map(SearchCursor::after);
    (rows, cursor)
}

/// One search over several projects from one search per project: `pages`, each fetched in
/// (date, id) order with `LIMIT limit + 1` and the same cursor, merged in that order and cut
/// to `limit + 1` rows, as one search over all of them would have fetched ([`cut_page`] then
/// makes the page). Image ids are unique, so no row is in two pages.
#[must_use]
pub fn merge_pages(pages: Vec<Vec<Manifest>>, limit: u32) -> Vec<Manifest> {
    let mut rows: Vec<Manifest> = pages.into_iter().flatten().collect();
    rows.sort_by(|a, b| (a.date, a.image_id.as_str()).cmp(&(b.date, b.image_id.as_str())));
    rows.truncate(limit as usize + 1);
    rows
}

/// A refused search parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter this API does not have, and those it has.
    #[error("unknown parameter {0:?}; use {1}")]
    Unknown(String, &'static str),
    /// A parameter given twice.
    #[error("parameter {0:?} given more than once")]
    Repeated(String),
    /// A value that does not parse or is out of range.
    #[error("{parameter}={value:?} is invalid: expected {expected}")]
    Invalid {
        /// The parameter.
        parameter: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

impl QueryError {
    /// The stable code ([`ErrorCode`]).
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Unknown(..) => ErrorCode::UnknownParameter,
            Self::Repeated(_) => ErrorCode::RepeatedParameter,
            Self::Invalid { .. } => ErrorCode::InvalidParameter,
        }
    }
}

/// Parses decoded query pairs (e.g. from `form_urlencoded::parse`) into an [`ImageQuery`].
///
/// # Errors
/// [`QueryError`] naming the parameter, the value and what is expected. Values are parsed
/// into typed fields here, so nothing a client sends reaches SQL as text. Ranges that hold
/// nothing (`from` after `to`, `minLat` above `maxLat`) are valid and find nothing, so every
/// request the OpenAPI document describes is answered 200.
pub fn parse_image_query<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<ImageQuery, QueryError> {
    let mut query = ImageQuery {
        project: None,
        from: None,
        to: None,
        bbox: None,
        limit: ImageQuery::DEFAULT_LIMIT,
        cursor: None,
    };
    let mut seen = BTreeSet::new();
    for (name, value) in pairs {
        let (name, value) = (name.as_ref(), value.as_ref());
        let invalid = |parameter, expected| QueryError::Invalid {
            parameter,
            value: value.to_owned(),
            expected,
        };
        if !seen.insert(name.to_owned()) {
            return Err(QueryError::Repeated(name.to_owned()));
        }
        let date = |p| {
            parse_date(value)
                .ok_or_else(|| invalid(p, "a date YYYY-MM-DD from 1826-01-01 to 2199-12-31"))
        };
        match name {
            "project" => {
                query.project =
                    Some(Project::new(value).map_err(|_| invalid("project", "a project name"))?);
            }
            "from" => query.from = Some(date("from")?),
            "to" => query.to = Some(date("to")?),
            "limit" => {
                query.limit = Some(value)
                    .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse().ok())
                    .filter(|l| (1..=ImageQuery::MAX_LIMIT).contains(l))
                    .ok_or_else(|| invalid("limit", "an integer 1 to 200"))?;
            }
            "cursor" => {
                query.cursor = Some(
                    SearchCursor::decode(value)
                        .ok_or_else(|| invalid("cursor", "a cursor from a previous page"))?,
                );
            }
            "bbox" => {
                let expected = "minLon,minLat,maxLon,maxLat: four JSON numbers, longitudes -180 to 180, latitudes -90 to 90";
                let v: Vec<f64> = value
                    .split(',')
                    .map(|p| match p.bytes().any(|b| b.is_ascii_whitespace()) {
                        true => Err(()),
                        false => serde_json::from_str::<f64>(p).map_err(drop),
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|_| invalid("bbox", expected))?;
                let [min_lon, min_lat, max_lon, max_lat] = v[..] else {
                    return Err(invalid("bbox", expected));
                };
                let lon_ok = |x: f64| (-180.0..=180.0).contains(&x);
                let lat_ok = |y: f64| (-90.0..=90.0).contains(&y);
                if !(lon_ok(min_lon) && lon_ok(max_lon) && lat_ok(min_lat) && lat_ok(max_lat)) {
                    return Err(invalid("bbox", expected));
                }
                query.bbox = Some(BoundingBox {
                    min_lon,
                    min_lat,
                    max_lon,
                    max_lat,
                });
            }
            other => {
                return Err(QueryError::Unknown(
                    other.to_owned(),
                    "project, from, to, bbox, limit, cursor",
                ));
            }
        }
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_parameters_parse_into_types() {
        let q = parse_image_query([
            ("project", "palms"),
            ("from", "2024-01-01"),
            ("to", "2024-12-31"),
            ("bbox", "-1,5,0.5,6"),
            ("limit", "10"),
        ])
        .unwrap();
        assert_eq!(q.project.unwrap().as_str(), "palms");
        assert_eq!(q.limit, 10);
        assert!(q.bbox.unwrap().contains(-0.2, 5.5));
        assert!(!q.bbox.unwrap().contains(1.0, 5.5));
        let default = parse_image_query(std::iter::empty::<(&str, &str)>()).unwrap();
        assert_eq!(default.limit, ImageQuery::DEFAULT_LIMIT);

        let code =
            |pairs: &[(&str, &str)]| parse_image_query(pairs.iter().copied()).unwrap_err().code();
        assert_eq!(
            code(&[("from", "2024-01-01' OR 1=1 --")]),
            ErrorCode::InvalidParameter
        );
        for outside in ["+10000-01-01", "-0001-12-31", "1825-12-31", "2200-01-01"] {
            assert_eq!(
                code(&[("to", outside)]),
                ErrorCode::InvalidParameter,
                "{outside}"
            );
        }
        assert_eq!(
            code(&[("project", "x'; DROP TABLE images; --")]),
            ErrorCode::InvalidParameter
        );
        assert_eq!(code(&[("bbox", "1,2,3")]), ErrorCode::InvalidParameter);
        assert_eq!(code(&[("bbox", " 0,0,1,1")]), ErrorCode::InvalidParameter);
        assert_eq!(code(&[("bbox", "+1,0,1,1")]), ErrorCode::InvalidParameter);
        assert_eq!(code(&[("bbox", "0,0,181,1")]), ErrorCode::InvalidParameter);
        assert_eq!(code(&[("bbox", "NaN,0,1,1")]), ErrorCode::InvalidParameter);
        assert_eq!(code(&[("limit", "0")]), ErrorCode::InvalidParameter);
        assert_eq!(code(&[("limit", "201")]), ErrorCode::InvalidParameter);
        assert_eq!(
            code(&[("cursor", "bm90LWEtY3Vyc29y")]),
            ErrorCode::InvalidParameter
        );
        assert_eq!(code(&[("limit", "+5")]), ErrorCode::InvalidParameter);
        // Empty ranges are valid and find nothing.
        let empty = parse_image_query([
            ("from", "2024-02-01"),
            ("to", "2024-01-01"),
            ("bbox", "0,10,1,5"),
        ]);
        assert!(empty.is_ok());
        assert_eq!(
            code(&[("limit", "1"), ("limit", "2")]),
            ErrorCode::RepeatedParameter
        );
        assert_eq!(code(&[("sort", "date")]), ErrorCode::UnknownParameter);
    }

    #[test]
    fn antimeridian_boxes_wrap() {
        let b = BoundingBox {
            min_lon: 170.0,
            min_lat: -10.0,
            max_lon: -170.0,
            max_lat: 10.0,
        };
        assert!(b.contains(175.0, 0.0) && b.contains(-175.0, 0.0));
        assert!(!b.contains(0.0, 0.0));
    }

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let c = SearchCursor {
            date: "2026-11-21".into(),
            image_id: ImageId::new("abc").unwrap(),
        };
        assert_eq!(c.encode(), "2026-11-21~abc");
        assert_eq!(SearchCursor::decode(&c.encode()), Some(c));
        // The date is a text key: any digits in the shape position a page.
        assert!(SearchCursor::decode("2026-02-31~abc").is_some());
        for forged in [
            "!!",
            "2024-01-01~../x",
            "2024-1-01~a",
            "2024-01-01",
            "2024-01-01~",
            "+202-01-01~a",
        ] {
            assert_eq!(SearchCursor::decode(forged), None, "{forged}");
        }
    }

    #[test]
    fn a_page_is_cut_after_limit_rows_with_the_last_rows_cursor() {
        let manifest = |day: u32, id: &str| {
            let mut m: Manifest = serde_json::from_value(serde_json::json!({
                "image_id": id, "project": "p", "file_name": "a.jpg",
                "date": "2026-01-01", "date_source": "exif", "width": 1, "height": 1,
                "format": "jpeg", "exif": {}, "metadata_key": "metadata/p/a.json",
                "objects": []
            }))
            .unwrap();
            m.date = NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
            m
        };
        let rows = vec![manifest(1, "a"), manifest(2, "b"), manifest(2, "c")];
        let (page, cursor) = cut_page(rows.clone(), 2);
        assert_eq!(page, rows[..2]);
        let cursor = cursor.unwrap();
        assert_eq!(
            (cursor.date, cursor.image_id.as_str()),
            (rows[1].date.to_string(), "b")
        );
        // A full last page has no cursor: the store fetched limit + 1 and got no more.
        assert_eq!(cut_page(rows.clone(), 3), (rows.clone(), None));
        assert_eq!(cut_page(Vec::new(), 50), (Vec::new(), None));
    }
}
