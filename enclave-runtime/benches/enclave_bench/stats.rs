//! Order statistics of repeated measurements: medians and a p10–p90 spread, because the
//! machines this runs on are shared and noisy (means would follow the outliers).

/// Summary of one series of samples (any unit).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// 10th percentile (nearest rank, rounded).
    pub p10: f64,
    /// 90th percentile (nearest rank, rounded).
    pub p90: f64,
    /// Number of samples.
    pub runs: usize,
}

/// Summarizes `samples`; `None` when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let rank = |percent: usize| sorted[((n - 1) * percent + 50) / 100];
    Some(Summary {
        median,
        p10: rank(10),
        p90: rank(90),
        runs: n,
    })
}

/// Prints one `SERIES {json}` line with every sample of a measurement (or why it is missing),
/// for `scripts/bench_report.py` to collect.
pub fn print_series(id: &str, label: &str, unit: &str, samples: Result<&[f64], &String>) {
    let line = match samples {
        Ok(samples) => serde_json::json!({
            "id": id, "label": label, "unit": unit, "samples": samples,
        }),
        Err(why) => serde_json::json!({
            "id": id, "label": label, "unit": unit, "unavailable": why,
        }),
    };
    println!("SERIES {line}");
}
