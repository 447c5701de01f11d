//! GeoIP: the client's country from a MaxMind database (GeoLite2/GeoIP2
//! City or Country, or any `.mmdb` with `country.iso_code`), for records
//! ("where") and for country allow/deny lists, enforced before anything of
//! the request is read.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `geoip` from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoConfig {
    pub database: PathBuf,
    /// ISO 3166-1 alpha-2, upper case.
    pub deny_countries: Vec<String>,
    /// When not empty, every other country (and an unknown one) is refused.
    pub allow_countries: Vec<String>,
}

pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
    deny: Vec<String>,
    allow: Vec<String>,
}

#[derive(Deserialize)]
struct Rec<'a> {
    #[serde(borrow)]
    country: Option<Country<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

/// Opens a database, for config checks and loading.
pub fn open_reader(path: &Path) -> Result<maxminddb::Reader<Vec<u8>>, String> {
    maxminddb::Reader::open_readfile(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl GeoDb {
    pub fn open(cfg: &GeoConfig) -> Result<GeoDb, String> {
        Ok(GeoDb {
            reader: open_reader(&cfg.database)?,
            deny: cfg.deny_countries.clone(),
            allow: cfg.allow_countries.clone(),
        })
    }

    /// The country of `ip` (`None`: not in the database, or no country).
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let rec: Rec<'_> = self.reader.lookup(ip.to_canonical()).ok().flatten()?;
        rec.country?.iso_code.map(str::to_owned)
    }

    /// Whether a request from `country` is refused.
    pub fn refuses(&self, country: Option<&str>) -> bool {
        if !self.allow.is_empty() {
            return !country.is_some_and(|c| self.allow.iter().any(|a| a == c));
        }
        country.is_some_and(|c| self.deny.iter().any(|d| d == c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> PathBuf {
        #[derive(serde::Serialize)]
        struct C {
            iso_code: &'static str,
        }
        #[derive(serde::Serialize)]
        struct R {
            country: C,
        }
        let mut w = mmdb_writer::Writer::new("Test-Country");
        w.insert(
            "203.0.113.0/24".parse::<ipnet::IpNet>().unwrap(),
            &R {
                country: C { iso_code: "FR" },
            },
        )
        .unwrap();
        w.insert(
            "2001:db8::/32".parse::<ipnet::IpNet>().unwrap(),
            &R {
                country: C { iso_code: "DE" },
            },
        )
        .unwrap();
        let p = dir.join("t.mmdb");
        std::fs::write(&p, w.to_bytes().unwrap()).unwrap();
        p
    }

    #[test]
    fn countries_and_lists() {
        let dir = crate::store::tempdir::Dir::new("geo");
        let cfg = GeoConfig {
            database: db(dir.path()),
            deny_countries: vec!["FR".into()],
            allow_countries: vec![],
        };
        let g = GeoDb::open(&cfg).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(g.country(ip("203.0.113.9")).as_deref(), Some("FR"));
        assert_eq!(g.country(ip("::ffff:203.0.113.9")).as_deref(), Some("FR"));
        assert_eq!(g.country(ip("2001:db8::1")).as_deref(), Some("DE"));
        assert_eq!(g.country(ip("192.0.2.1")), None);
        assert!(g.refuses(Some("FR")) && !g.refuses(Some("DE")) && !g.refuses(None));
        let allow = GeoDb::open(&GeoConfig {
            allow_countries: vec!["DE".into()],
            deny_countries: vec![],
            ..cfg
        })
        .unwrap();
        assert!(!allow.refuses(Some("DE")) && allow.refuses(Some("FR")) && allow.refuses(None));
        assert!(open_reader(&dir.path().join("missing.mmdb")).is_err());
    }
}
