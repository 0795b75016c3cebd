//! The benchmarks' statistics, computed here and nowhere else: percentiles by nearest rank (no
//! interpolation: every figure reported is a time that was measured), the median as the 50th of
//! them, means, maxima, shares and ratios.

/// The samples of one measurement, sorted once.
#[derive(Clone, Debug)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Panics on no samples or a NaN: a benchmark that measured nothing has a bug.
    pub fn new(mut values: Vec<f64>) -> Self {
        assert!(!values.is_empty(), "statistics of no samples");
        values.sort_by(|a, b| a.partial_cmp(b).expect("a NaN among the samples"));
        Self(values)
    }

    /// The nearest-rank percentile: the smallest sample with at least `p` percent of the
    /// samples at or below it (`p` in 0..=100).
    pub fn percentile(&self, p: f64) -> f64 {
        let rank = (p / 100.0 * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    /// The 50th percentile by nearest rank: for an even count, the lower of the two middle
    /// samples.
    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    pub fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }

    pub fn max(&self) -> f64 {
        self.0[self.0.len() - 1]
    }

    /// The share (0..=1) of samples at or above `threshold`.
    pub fn share_at_least(&self, threshold: f64) -> f64 {
        self.0.iter().filter(|v| **v >= threshold).count() as f64 / self.0.len() as f64
    }

    /// How many samples are at or above `threshold`.
    pub fn count_at_least(&self, threshold: f64) -> usize {
        self.0.iter().filter(|v| **v >= threshold).count()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `value ÷ baseline`.
pub fn ratio(value: f64, baseline: f64) -> f64 {
    value / baseline
}

/// A whole number with its thousands separated by spaces: `1 000 000`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Bytes in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_samples() {
        // The worked example of the nearest-rank method.
        let samples = Samples::new(vec![50.0, 15.0, 40.0, 20.0, 35.0]);
        assert_eq!(samples.percentile(5.0), 15.0);
        assert_eq!(samples.percentile(30.0), 20.0);
        assert_eq!(samples.percentile(40.0), 20.0);
        assert_eq!(samples.percentile(50.0), 35.0);
        assert_eq!(samples.percentile(100.0), 50.0);
        assert_eq!(samples.percentile(0.0), 15.0);
    }

    #[test]
    fn p99_of_a_hundred_is_the_second_largest() {
        let samples = Samples::new((1..=100).map(f64::from).collect());
        assert_eq!(samples.percentile(99.0), 99.0);
        assert_eq!(samples.percentile(90.0), 90.0);
        assert_eq!(samples.max(), 100.0);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_lower_middle() {
        assert_eq!(Samples::new(vec![4.0, 1.0, 3.0, 2.0]).median(), 2.0);
        assert_eq!(Samples::new(vec![3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(Samples::new(vec![7.0]).median(), 7.0);
    }

    #[test]
    fn mean_share_and_ratio() {
        let samples = Samples::new(vec![1.0, 2.0, 3.0, 40.0]);
        assert_eq!(samples.mean(), 11.5);
        assert_eq!(samples.share_at_least(3.0), 0.5);
        assert_eq!(samples.count_at_least(3.0), 2);
        assert_eq!(ratio(3.0, 2.0), 1.5);
    }

    #[test]
    fn thousands_are_grouped_by_spaces() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1 000");
        assert_eq!(group(1_000_000), "1 000 000");
        assert_eq!(group(81_077), "81 077");
    }
}
