//! The files a detection run publishes: COCO JSON for machine-learning tools, GeoJSON for GIS
//! tools, and a STAC Item that catalogues them with the rasters. All are built here from plain
//! numbers; the adapter reprojects coordinates to WGS 84 (GDAL's OSR/PROJ) before handing them
//! over.

use serde_json::{Value, json};

use crate::mosaic::GeoTransform;

/// One image of a COCO file.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoImage {
    /// Its file name (object key or path).
    pub file_name: String,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Its CRS id (`EPSG:32617`), when georeferenced.
    pub crs: Option<String>,
    /// Its geotransform, GDAL order, when georeferenced.
    pub geotransform: Option<GeoTransform>,
}

/// One detection of a COCO file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CocoDetection {
    /// Index into the images.
    pub image: usize,
    /// `[x1, y1, x2, y2]` in the image's pixels.
    pub bbox: [f64; 4],
    /// Confidence.
    pub score: f32,
    /// Index into the class names.
    pub class: usize,
}

/// A COCO detection file (<https://cocodataset.org/#format-data>): `images` (ids from 1, with
/// `tessera:crs` and `tessera:geo_transform` so the file stands alone), `annotations` (ids
/// from 1, `bbox` as `[x, y, width, height]` in pixels, `area`, `iscrowd` 0, `score`) and
/// `categories` (ids from 1). pycocotools loads it as a ground truth or, through its
/// `annotations`, as results.
#[must_use]
pub fn coco(images: &[CocoImage], detections: &[CocoDetection], classes: &[String]) -> Value {
    let images: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, im)| {
            let mut v = json!({
                "id": i + 1,
                "file_name": im.file_name,
                "width": im.width,
                "height": im.height,
            });
            if let (Some(crs), Some(gt)) = (&im.crs, im.geotransform) {
                v["tessera:crs"] = json!(crs);
                v["tessera:geo_transform"] = json!(gt.0);
            }
            v
        })
        .collect();
    let annotations: Vec<Value> = detections
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let [x1, y1, x2, y2] = d.bbox;
            json!({
                "id": i + 1,
                "image_id": d.image + 1,
                "category_id": d.class + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
                "score": d.score,
            })
        })
        .collect();
    let categories: Vec<Value> = classes
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"id": i + 1, "name": name}))
        .collect();
    json!({"images": images, "annotations": annotations, "categories": categories})
}

/// One GeoJSON feature: a detection's box as a polygon in WGS 84.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoFeature {
    /// The box's corners (top-left, top-right, bottom-right, bottom-left in the image), as
    /// longitude and latitude in degrees.
    pub corners: [(f64, f64); 4],
    /// Confidence.
    pub score: f32,
    /// Class name.
    pub class: String,
    /// The source file.
    pub source: String,
    /// `[x1, y1, x2, y2]` in the source's pixels.
    pub pixel_bbox: [f64; 4],
}

/// A GeoJSON FeatureCollection (RFC 7946): one Polygon per detection, its exterior ring
/// counter-clockwise (§3.1.6) and closed, with `score`, `class`, `source` and `pixel_bbox`
/// properties.
#[must_use]
pub fn geojson(features: &[GeoFeature]) -> Value {
    let features: Vec<Value> = features
        .iter()
        .map(|f| {
            // Image corners in order TL, TR, BR, BL run clockwise on a north-up map; RFC 7946
            // wants exterior rings counter-clockwise: TL, BL, BR, TR. A ring's orientation is
            // checked by its signed area, so rotated or flipped rasters are handled too.
            let mut ring: Vec<(f64, f64)> = f.corners.to_vec();
            if signed_area(&ring) < 0.0 {
                ring.reverse();
            }
            ring.push(ring[0]);
            let ring: Vec<[f64; 2]> = ring.into_iter().map(|(x, y)| [x, y]).collect();
            json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "score": f.score,
                    "class": f.class,
                    "source": f.source,
                    "pixel_bbox": f.pixel_bbox,
                },
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// One raster of a STAC Item.
#[derive(Debug, Clone, PartialEq)]
pub struct StacRaster {
    /// Where the raster is (object key, URL or path).
    pub href: String,
    /// Its CRS id (`EPSG:32617`).
    pub crs: String,
    /// Width and height in pixels.
    pub size: (usize, usize),
    /// Its geotransform, GDAL order.
    pub geotransform: GeoTransform,
    /// Its corners in WGS 84 longitude and latitude.
    pub footprint: [(f64, f64); 4],
}

/// A STAC Item (STAC 1.1.0, <https://github.com/radiantearth/stac-spec>) with the projection
/// extension v2.0.0: geometry and `bbox` the WGS 84 bounds of the rasters, `datetime` as
/// given (RFC 3339), one `data` asset per raster carrying `proj:code`, `proj:shape`
/// (`[rows, cols]`) and `proj:transform` (the affine coefficients `[a, b, c, d, e, f]` of
/// `x = a·col + b·row + c`, `y = d·col + e·row + f`, i.e. GDAL's `[gt1, gt2, gt0, gt4, gt5,
/// gt3]`), the COCO and GeoJSON files as `metadata` assets, and the previews (PNG, detections
/// drawn) as `overview` assets.
#[must_use]
pub fn stac_item(
    id: &str,
    datetime: &str,
    rasters: &[StacRaster],
    coco: &str,
    geojson: &str,
    previews: &[String],
) -> Value {
    let corners = rasters.iter().flat_map(|r| r.footprint);
    let (mut w, mut s, mut e, mut n) = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    for (lon, lat) in corners {
        (w, s, e, n) = (w.min(lon), s.min(lat), e.max(lon), n.max(lat));
    }
    let mut assets = serde_json::Map::new();
    for (i, r) in rasters.iter().enumerate() {
        let [g0, g1, g2, g3, g4, g5] = r.geotransform.0;
        assets.insert(
            format!("raster-{}", i + 1),
            json!({
                "href": r.href,
                "type": "image/tiff; application=geotiff",
                "roles": ["data"],
                "proj:code": r.crs,
                "proj:shape": [r.size.1, r.size.0],
                "proj:transform": [g1, g2, g0, g4, g5, g3],
            }),
        );
    }
    assets.insert("coco".into(), json!({"href": coco, "type": "application/json", "roles": ["metadata"], "title": "Detections, COCO"}));
    assets.insert("geojson".into(), json!({"href": geojson, "type": "application/geo+json", "roles": ["metadata"], "title": "Detections, GeoJSON"}));
    for (i, href) in previews.iter().enumerate() {
        assets.insert(
            format!("preview-{}", i + 1),
            json!({"href": href, "type": "image/png", "roles": ["overview"], "title": "Detections drawn"}),
        );
    }
    json!({
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
        "id": id,
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "bbox": [w, s, e, n],
        "properties": {"datetime": datetime},
        "links": [],
        "assets": assets,
    })
}

/// The colour of detection outlines in previews: yellow, which stands out on vegetation,
/// soil and water alike.
pub const PREVIEW_BOX_RGB: [u8; 3] = [255, 221, 0];

/// Draws each box's outline, `thickness` pixels wide inside its edges, into `rgb`: 8-bit RGB,
/// row-major, `width × height × 3` (HWC). Boxes are `[x1, y1, x2, y2]` in the image's pixels
/// (corners at integers, as [`crate::detect`]'s); parts outside the image are skipped.
///
/// # Panics
/// When `rgb` is not `width × height × 3` long.
pub fn draw_boxes(
    rgb: &mut [u8],
    width: usize,
    height: usize,
    boxes: &[[f64; 4]],
    thickness: usize,
) {
    assert_eq!(rgb.len(), width * height * 3, "preview buffer");
    let clamp = |v: f64, max: usize| (v.max(0.0) as usize).min(max);
    for b in boxes {
        let (x1, y1) = (clamp(b[0].floor(), width), clamp(b[1].floor(), height));
        let (x2, y2) = (clamp(b[2].ceil(), width), clamp(b[3].ceil(), height));
        if x1 >= x2 || y1 >= y2 {
            continue;
        }
        let t = thickness.max(1);
        for y in y1..y2 {
            for x in x1..x2 {
                let edge = x < x1 + t || x + t >= x2 || y < y1 + t || y + t >= y2;
                if edge {
                    rgb[(y * width + x) * 3..][..3].copy_from_slice(&PREVIEW_BOX_RGB);
                }
            }
        }
    }
}

/// Twice the signed area of a ring (shoelace formula): positive when counter-clockwise.
fn signed_area(ring: &[(f64, f64)]) -> f64 {
    ring.iter()
        .zip(ring.iter().cycle().skip(1))
        .map(|(a, b)| a.0 * b.1 - b.0 * a.1)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_drawn_as_outlines_inside_their_edges_and_clipped() {
        let (w, h) = (8, 6);
        let mut rgb = vec![0u8; w * h * 3];
        draw_boxes(
            &mut rgb,
            w,
            h,
            &[[1.0, 1.0, 5.0, 4.0], [6.5, 4.0, 20.0, 9.0]],
            1,
        );
        let drawn: Vec<String> = (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| {
                        if rgb[(y * w + x) * 3] == 255 {
                            '#'
                        } else {
                            '.'
                        }
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            drawn,
            [
                "........", ".####...", ".#..#...", ".####...", "......##", "......##"
            ]
        );
    }

    #[test]
    fn coco_boxes_are_xywh_with_ids_from_one() {
        let images = [CocoImage {
            file_name: "a.tif".into(),
            width: 400,
            height: 300,
            crs: Some("EPSG:32617".into()),
            geotransform: Some(GeoTransform([1.0, 0.1, 0.0, 2.0, 0.0, -0.1])),
        }];
        let d = [CocoDetection {
            image: 0,
            bbox: [10.0, 20.0, 30.0, 60.0],
            score: 0.5,
            class: 0,
        }];
        let c = coco(&images, &d, &["crown".into()]);
        assert_eq!(c["annotations"][0]["bbox"], json!([10.0, 20.0, 20.0, 40.0]));
        assert_eq!(c["annotations"][0]["image_id"], 1);
        assert_eq!(
            c["images"][0]["tessera:geo_transform"],
            json!([1.0, 0.1, 0.0, 2.0, 0.0, -0.1])
        );
        assert_eq!(c["categories"][0], json!({"id": 1, "name": "crown"}));
    }

    #[test]
    fn stac_item_carries_the_projection_of_each_raster() {
        let r = StacRaster {
            href: "a.tif".into(),
            crs: "EPSG:32617".into(),
            size: (400, 300),
            geotransform: GeoTransform([404_211.9, 0.1, 0.0, 3_285_142.9, 0.0, -0.1]),
            footprint: [(-82.0, 29.7), (-81.9, 29.7), (-81.9, 29.6), (-82.0, 29.6)],
        };
        let item = stac_item(
            "run-1",
            "2026-12-01T00:00:00Z",
            &[r],
            "detections.coco.json",
            "detections.geojson",
            &["preview.png".into()],
        );
        assert_eq!(item["assets"]["preview-1"]["roles"], json!(["overview"]));
        let a = &item["assets"]["raster-1"];
        assert_eq!(a["proj:shape"], json!([300, 400]));
        assert_eq!(
            a["proj:transform"],
            json!([0.1, 0.0, 404_211.9, 0.0, -0.1, 3_285_142.9])
        );
        assert_eq!(item["bbox"], json!([-82.0, 29.6, -81.9, 29.7]));
        assert_eq!(item["assets"]["geojson"]["type"], "application/geo+json");
    }

    #[test]
    fn geojson_rings_are_closed_and_counter_clockwise() {
        let f = GeoFeature {
            corners: [(0.0, 1.0), (1.0, 1.0), (1.0, 0.0), (0.0, 0.0)],
            score: 0.9,
            class: "crown".into(),
            source: "a.tif".into(),
            pixel_bbox: [0.0, 0.0, 10.0, 10.0],
        };
        let g = geojson(&[f]);
        let ring = &g["features"][0]["geometry"]["coordinates"][0];
        assert_eq!(
            ring,
            &json!([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
        );
    }
}
