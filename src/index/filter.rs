//! Filters on what the catalog knows about a file: when it was taken, by which camera, where,
//! and in which folder. They narrow any search (by image, by words, or both): the catalog
//! answers which items pass, and the search looks among those only.

use std::str::FromStr;

use rusqlite::types::Value;

use super::error::IndexError;
use super::types::ItemId;
use super::Index;

/// Mean Earth radius (km), for great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Which files a search may answer with; every condition given must hold. `Default` lets
/// everything through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Taken within this range (files whose metadata gives no date never pass).
    pub taken: Option<TakenRange>,
    /// The camera's make or model contains this text (case-insensitive).
    pub camera: Option<String>,
    /// Taken within this distance of a place (files without a position never pass).
    pub near: Option<Near>,
    /// Under one of these folders (paths as indexed, i.e. absolute).
    pub under: Vec<String>,
    /// Labelled with each of these (e.g. the classes the words of a query name).
    pub labels: Vec<LabelTerm>,
}

/// Items whose labels among `classes` add up to at least `min_score` (see
/// [`Index::class_scores`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelTerm {
    pub classes: Vec<u16>,
    pub min_score: f32,
}

impl Filter {
    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.taken.is_none()
            && self.camera.is_none()
            && self.near.is_none()
            && self.under.is_empty()
            && self.labels.is_empty()
    }

    /// Whether a condition on the files' facts or folders is set (labels aside).
    fn on_files(&self) -> bool {
        self.taken.is_some()
            || self.camera.is_some()
            || self.near.is_some()
            || !self.under.is_empty()
    }
}

/// A range of dates, each end a year, a month or a day ("2019", "2019-06", "2019-06-30"),
/// both ends included: "2019..2021" is the three years, "..2018" everything until the end of
/// 2018, "2020-06" alone the month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenRange {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl FromStr for TakenRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (from, to) = match s.split_once("..") {
            Some((from, to)) => (from.trim(), to.trim()),
            None => (s, s),
        };
        let bound = |b: &str| -> Result<Option<String>, String> {
            if b.is_empty() {
                Ok(None)
            } else {
                date_prefix(b).map(Some)
            }
        };
        let range = TakenRange {
            from: bound(from)?,
            to: bound(to)?,
        };
        match (&range.from, &range.to) {
            (None, None) => Err(format!(
                "{s:?} gives no date: write e.g. 2019..2021, 2020-06, ..2018"
            )),
            // "2021-03" is within the year "2021": compare what both ends spell out.
            (Some(from), Some(to))
                if from.as_str() > to.as_str() && !from.starts_with(to.as_str()) =>
            {
                Err(format!("{s:?} ends before it starts"))
            }
            _ => Ok(range),
        }
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, checked, as written (text that prefixes a stored date).
fn date_prefix(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not a date: write YYYY, YYYY-MM or YYYY-MM-DD");
    let parts: Vec<&str> = s.split('-').collect();
    let widths = [4, 2, 2];
    if parts.len() > 3
        || parts
            .iter()
            .zip(widths)
            .any(|(p, w)| p.len() != w || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let number = |i: usize| parts.get(i).and_then(|p| p.parse::<u32>().ok());
    if number(1).is_some_and(|m| !(1..=12).contains(&m))
        || number(2).is_some_and(|d| !(1..=31).contains(&d))
    {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// A circle on the map: `LAT,LON,KM` (degrees north and east, radius in kilometres).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub latitude: f64,
    pub longitude: f64,
    pub km: f64,
}

impl FromStr for Near {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let numbers: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{s:?} is not LAT,LON,KM (e.g. 48.8584,2.2945,5)"))?;
        let [latitude, longitude, km] = numbers[..] else {
            return Err(format!("{s:?} is not LAT,LON,KM (e.g. 48.8584,2.2945,5)"));
        };
        let valid = (-90.0..=90.0).contains(&latitude)
            && (-180.0..=180.0).contains(&longitude)
            && km > 0.0
            && km.is_finite();
        if !valid {
            return Err(format!(
                "{s:?}: latitude is -90..90, longitude -180..180, the radius above 0 km"
            ));
        }
        Ok(Near {
            latitude,
            longitude,
            km,
        })
    }
}

impl Near {
    /// Great-circle distance (haversine) from the centre, in km.
    pub fn distance_km(&self, latitude: f64, longitude: f64) -> f64 {
        let (p1, p2) = (self.latitude.to_radians(), latitude.to_radians());
        let dp = p2 - p1;
        let dl = (longitude - self.longitude).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }

    /// A latitude band (degrees) that holds the circle: a cheap first cut in SQL.
    fn latitude_band(&self) -> (f64, f64) {
        let degrees = self.km / (EARTH_RADIUS_KM * std::f64::consts::PI / 180.0);
        (self.latitude - degrees, self.latitude + degrees)
    }
}

/// The items a filter lets through, in id order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemSet(Vec<ItemId>);

impl ItemSet {
    pub fn contains(&self, id: ItemId) -> bool {
        self.0.binary_search(&id).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ids(&self) -> &[ItemId] {
        &self.0
    }
}

impl FromIterator<ItemId> for ItemSet {
    fn from_iter<I: IntoIterator<Item = ItemId>>(iter: I) -> Self {
        let mut ids: Vec<ItemId> = iter.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        ItemSet(ids)
    }
}

impl Index {
    /// The items `filter` lets through; None when it lets everything through.
    pub fn matching_items(&self, filter: &Filter) -> Result<Option<ItemSet>, IndexError> {
        let mut set: Option<ItemSet> = match filter.on_files() {
            true => Some(self.items_by_file(filter)?),
            false => None,
        };
        for term in &filter.labels {
            let labelled = self.class_scores(&term.classes, term.min_score)?;
            set = Some(match set {
                None => labelled.into_iter().map(|(id, _)| id).collect(),
                Some(set) => labelled
                    .into_iter()
                    .map(|(id, _)| id)
                    .filter(|&id| set.contains(id))
                    .collect(),
            });
        }
        Ok(set)
    }

    /// The items whose files pass the filter's conditions on facts and folders.
    fn items_by_file(&self, filter: &Filter) -> Result<ItemSet, IndexError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut bind = |value: Value| {
            values.push(value);
            format!("?{}", values.len())
        };
        if let Some(range) = &filter.taken {
            if let Some(from) = &range.from {
                conditions.push(format!("f.taken >= {}", bind(Value::Text(from.clone()))));
            }
            if let Some(to) = &range.to {
                // Every date the bound prefixes sorts before the bound and '~' (which follows
                // every character of a date): "2021-12-31T23:59:59" < "2021~". A plain range,
                // so the index on `taken` serves both ends.
                conditions.push(format!("f.taken < {}", bind(Value::Text(format!("{to}~")))));
            }
            conditions.push("f.taken IS NOT NULL".into());
        }
        if let Some(camera) = &filter.camera {
            conditions.push(format!(
                "instr(lower(coalesce(f.camera_make, '') || ' ' || coalesce(f.camera_model, '')), \
                 {}) > 0",
                bind(Value::Text(camera.trim().to_lowercase()))
            ));
        }
        if let Some(near) = &filter.near {
            let (south, north) = near.latitude_band();
            conditions.push(format!(
                "f.latitude BETWEEN {} AND {} AND f.longitude IS NOT NULL",
                bind(Value::Real(south)),
                bind(Value::Real(north))
            ));
        }
        if !filter.under.is_empty() {
            // A folder's files sort between "dir/" and "dir0" ('0' follows '/'): a range of
            // the path index.
            let folders: Vec<String> = filter
                .under
                .iter()
                .map(|dir| {
                    let dir = dir.trim_end_matches('/');
                    format!(
                        "(f.path > {} AND f.path < {})",
                        bind(Value::Text(format!("{dir}/"))),
                        bind(Value::Text(format!("{dir}0")))
                    )
                })
                .collect();
            conditions.push(format!("({})", folders.join(" OR ")));
        }
        let sql = format!(
            "SELECT i.id, f.latitude, f.longitude FROM items i JOIN files f ON f.id = i.file_id
             WHERE {}",
            conditions.join(" AND ")
        );
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
        let mut ids = Vec::new();
        while let Some(row) = rows.next()? {
            if let Some(near) = &filter.near {
                let (Some(latitude), Some(longitude)) =
                    (row.get::<_, Option<f64>>(1)?, row.get::<_, Option<f64>>(2)?)
                else {
                    continue;
                };
                if near.distance_km(latitude, longitude) > near.km {
                    continue;
                }
            }
            ids.push(row.get(0)?);
        }
        Ok(ids.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_ranges_parse_and_bad_ones_say_why() {
        let range = |from: Option<&str>, to: Option<&str>| TakenRange {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        };
        assert_eq!("2019..2021".parse(), Ok(range(Some("2019"), Some("2021"))));
        assert_eq!(
            "2020-06".parse(),
            Ok(range(Some("2020-06"), Some("2020-06")))
        );
        assert_eq!("..2018".parse(), Ok(range(None, Some("2018"))));
        assert_eq!("2019-03-01..".parse(), Ok(range(Some("2019-03-01"), None)));
        assert_eq!(
            "2021-03..2021".parse(),
            Ok(range(Some("2021-03"), Some("2021")))
        );
        for bad in [
            "",
            "..",
            "2021..2019",
            "19..20",
            "2019-13",
            "2019-02-32",
            "yesterday",
            "2019/06",
        ] {
            assert!(bad.parse::<TakenRange>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn near_parses_and_measures_great_circles() {
        let paris: Near = "48.8566, 2.3522, 10".parse().unwrap();
        assert_eq!(
            (paris.latitude, paris.longitude, paris.km),
            (48.8566, 2.3522, 10.0)
        );
        for bad in [
            "48.8,2.3", "91,0,1", "0,181,1", "0,0,0", "0,0,-1", "a,b,c", "1,2,3,4",
        ] {
            assert!(bad.parse::<Near>().is_err(), "{bad:?} parsed");
        }
        // Paris to London: 343.5 km (the published great-circle distance, 344 km).
        let london = paris.distance_km(51.5074, -0.1278);
        assert!((london - 343.5).abs() < 1.0, "{london}");
        assert!(paris.distance_km(48.8566, 2.3522) < 1e-9);
        // One degree of latitude is 111.2 km on a sphere of the mean radius.
        let equator: Near = "0,0,1".parse().unwrap();
        assert!((equator.distance_km(1.0, 0.0) - 111.195).abs() < 0.01);
        let (south, north) = paris.latitude_band();
        assert!((north - south - 2.0 * 10.0 / 111.195).abs() < 1e-3);
    }

    #[test]
    fn item_sets_are_sorted_and_unique() {
        let set: ItemSet = [5, 1, 3, 5].into_iter().collect();
        assert_eq!(set.ids(), &[1, 3, 5]);
        assert!(set.contains(3) && !set.contains(4));
        assert_eq!(set.len(), 3);
        assert!(ItemSet::default().is_empty());
    }
}
