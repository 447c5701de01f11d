//! Severity of events and incidents: the seeds' numeric scale.
//! (Placeholder until the notifier branch lands its fuller version.)

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
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    pub fn level_name(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
    pub fn from_number(n: u8) -> Option<Severity> {
        match n {
            1 => Some(Severity::Low),
            2 => Some(Severity::Medium),
            3 => Some(Severity::High),
            4 => Some(Severity::Critical),
            _ => None,
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "low" | "1" => Some(Severity::Low),
            "medium" | "2" => Some(Severity::Medium),
            "high" | "3" => Some(Severity::High),
            "critical" | "4" => Some(Severity::Critical),
            _ => None,
        }
    }
    pub fn number(self) -> u8 {
        self as u8
    }
}
