//! Severity of events and incidents, on the seeds' numeric scale (1–4).
//!
//! Distinct from the rule schema's severity ([`crate::rules::schema`]), which
//! also has `info` (score 0): an `info` rule never raises an incident.

use std::fmt;

/// Severity of events and incidents: the seeds' numeric scale.
///
/// Ordered, so thresholds read naturally (`sev >= Severity::High`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// `"low"` .. `"critical"` (config files, JSON bodies).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// `"LOW"` .. `"CRITICAL"`: the level names of the JSON security log.
    pub fn level_name(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    pub fn from_number(n: u8) -> Option<Severity> {
        Some(match n {
            1 => Severity::Low,
            2 => Severity::Medium,
            3 => Severity::High,
            4 => Severity::Critical,
            _ => return None,
        })
    }

    /// Accepts the names case-insensitively and the numbers `"1"`..`"4"`.
    pub fn parse(s: &str) -> Option<Severity> {
        // One digit exactly: "+1" or "01" are not severities.
        if let [d @ b'0'..=b'9'] = s.as_bytes() {
            return Severity::from_number(d - b'0');
        }
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    pub fn number(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for s in Severity::ALL {
            assert_eq!(Severity::from_number(s.number()), Some(s));
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(Severity::parse(s.level_name()), Some(s));
            assert_eq!(Severity::parse(&s.number().to_string()), Some(s));
            assert_eq!(s.level_name(), s.as_str().to_ascii_uppercase());
        }
        assert_eq!(Severity::Critical.number(), 4);
        assert_eq!(Severity::parse("High"), Some(Severity::High));
    }

    #[test]
    fn rejects_out_of_scale() {
        for bad in [
            "",
            "0",
            "5",
            "255",
            "256",
            "-1",
            "+1",
            "01",
            "info",
            "hi",
            " low",
            "critical!",
        ] {
            assert_eq!(Severity::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Severity::from_number(0), None);
        assert_eq!(Severity::from_number(5), None);
    }

    #[test]
    fn ordered_by_number() {
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::High < Severity::Critical);
        let mut v = vec![Severity::High, Severity::Low, Severity::Critical];
        v.sort();
        assert_eq!(v, [Severity::Low, Severity::High, Severity::Critical]);
    }

    #[test]
    fn serde_uses_lowercase_names() {
        assert_eq!(
            serde_json::to_string(&Severity::Medium).ok().as_deref(),
            Some("\"medium\"")
        );
        let s: Severity = serde_json::from_str("\"critical\"").unwrap();
        assert_eq!(s, Severity::Critical);
        assert!(serde_json::from_str::<Severity>("\"CRITICAL\"").is_err());
    }
}
