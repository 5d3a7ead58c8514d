//! `tollgate report`: the access review from audit records. [`read`] streams records into a
//! mergeable [`Summary`]; [`review`] holds it against the estate (what the policies grant,
//! computed by Cedar in [`granted`]); [`render`] shows it; a [`Baseline`] is what each
//! identity was seen to use, for the team to review and commit.

pub mod fast;
pub mod granted;
pub mod read;
pub mod render;
pub mod review;

use serde::{Deserialize, Serialize};

use crate::inventory::{MIN_BUCKET_MS, Summary};

/// A summary saved for `tollgate report merge`: one node's (or one day's) records reduced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSummary {
    /// Format marker and version.
    pub tollgate_summary: u32,
    /// The window it was read with, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// See `since_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// Corrupt lines located while reading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt_at: Vec<String>,
    /// The reduction.
    pub summary: Summary,
}

impl SavedSummary {
    /// Adds `other` (another node's, or another day's).
    pub fn merge(&mut self, other: &Self) -> Result<(), String> {
        let width = other.summary.bucket_ms;
        if width < MIN_BUCKET_MS
            || !width.is_multiple_of(MIN_BUCKET_MS)
            || !(width / MIN_BUCKET_MS).is_power_of_two()
        {
            return Err(format!(
                "bucket_ms {width} is not a minute times a power of two: not written by Tollgate"
            ));
        }
        self.summary.merge(&other.summary);
        // An open end stays open.
        self.since_ms = self.since_ms.zip(other.since_ms).map(|(a, b)| a.min(b));
        self.until_ms = self.until_ms.zip(other.until_ms).map(|(a, b)| a.max(b));
        self.corrupt_at.extend(other.corrupt_at.iter().cloned());
        self.corrupt_at.truncate(10);
        Ok(())
    }
}

/// Version of [`SavedSummary`] written.
pub const SUMMARY_VERSION: u32 = 1;

pub use crate::inventory::Baseline;

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding: an open window merged with a bounded one came out bounded, and a saved
    /// bucket width of 0 divided by zero.
    #[test]
    fn merged_windows_stay_open_and_bad_summaries_are_refused() {
        let mut open = SavedSummary {
            tollgate_summary: SUMMARY_VERSION,
            ..SavedSummary::default()
        };
        let bounded = SavedSummary {
            since_ms: Some(3),
            until_ms: Some(5),
            ..open.clone()
        };
        open.merge(&bounded).unwrap();
        assert_eq!((open.since_ms, open.until_ms), (None, None));
        let mut broken = bounded.clone();
        broken.summary.bucket_ms = 0;
        assert!(open.merge(&broken).is_err());
        broken.summary.bucket_ms = 90_000;
        assert!(open.merge(&broken).is_err());
    }
}
