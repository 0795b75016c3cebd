//! CloudWatch Embedded Metric Format: the recorder behind [`crate::metrics`], from the
//! `metrics_cloudwatch_embedded` crate. A flush prints one JSON document per line on stdout,
//! which Lambda ships to CloudWatch Logs with the function's other output; CloudWatch extracts
//! the metrics from it, so no API call, credentials or network route is needed for them.
//!
//! Only this module imports the EMF crate.

use std::io::Write;
use std::sync::OnceLock;

use metrics_cloudwatch_embedded::{Builder, Collector};

use crate::metrics::{Counter, DIMENSION, Distribution, NAMESPACE, Unit};

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

/// Installs the EMF recorder for this process, with `function` as the value of the
/// `function` dimension; once per cold start (a second call does nothing).
pub fn install(function: &str) -> anyhow::Result<()> {
    if COLLECTOR.get().is_some() {
        return Ok(());
    }
    let collector = Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension(DIMENSION, function.to_string())
        .init()
        .map_err(|e| anyhow::anyhow!("installing the EMF metrics recorder: {e}"))?;
    // Units are per name: declared once, they go with every document.
    for counter in Counter::ALL {
        metrics::describe_counter!(counter.name(), metrics::Unit::Count, "");
    }
    for distribution in Distribution::ALL {
        let unit = match distribution.unit() {
            Unit::Count => metrics::Unit::Count,
            Unit::Milliseconds => metrics::Unit::Milliseconds,
        };
        metrics::describe_histogram!(distribution.name(), unit, "");
    }
    let _ = COLLECTOR.set(collector);
    crate::metrics::set_flush(flush);
    Ok(())
}

/// Prints what was recorded since the last flush on stdout.
fn flush() {
    let mut lines = Vec::new();
    flush_into(&mut lines);
    if lines.is_empty() {
        return;
    }
    // One write under the lock: a log line written meanwhile by another thread cannot land in
    // the middle of a document (the collector itself writes in many small pieces).
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_all(&lines).and_then(|()| stdout.flush()) {
        tracing::warn!(error = %error, "could not write the metrics");
    }
}

/// Appends the pending EMF documents, one per line, to `out`.
fn flush_into(out: &mut Vec<u8>) {
    let Some(collector) = COLLECTOR.get() else { return };
    if let Err(error) = collector.flush(&mut *out) {
        tracing::warn!(error = %error, "could not serialise the metrics");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::metrics::{increment, record};

    /// The only test in this crate that installs a recorder (there is one per process).
    #[test]
    fn every_metric_is_written_as_emf_in_the_favorites_namespace_with_the_function_dimension() {
        install("list-favorites").unwrap();
        for counter in Counter::ALL {
            increment(*counter);
        }
        for distribution in Distribution::ALL {
            record(*distribution, 7.0);
            record(*distribution, 0.0);
        }
        let mut out = Vec::new();
        flush_into(&mut out);
        let documents: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(documents.len(), 1, "one label set, one document: {documents:?}");
        let document = &documents[0];
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], serde_json::json!([[DIMENSION]]));
        assert_eq!(document[DIMENSION], "list-favorites");
        let declared: Vec<(&str, &str)> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["Name"].as_str().unwrap(), m["Unit"].as_str().unwrap_or("none")))
            .collect();
        for name in crate::metrics::names() {
            assert!(
                declared.iter().any(|(n, _)| *n == name),
                "{name} missing from {declared:?}"
            );
        }
        assert!(declared.contains(&("EnrichmentLatency", "Milliseconds")));
        assert!(declared.contains(&("ColdStart", "Count")));
        assert_eq!(document["ColdStart"], 1);
        // Other tests in this process may record lists too (`cargo test` runs them together).
        let streamed = document["StreamedItems"].as_array().unwrap();
        assert!(
            streamed.contains(&7.0.into()) && streamed.contains(&0.0.into()),
            "{streamed:?}"
        );

        let mut again = Vec::new();
        flush_into(&mut again);
        assert!(
            !String::from_utf8(again).unwrap().contains("ColdStart"),
            "a flush sends each value once"
        );
    }
}
