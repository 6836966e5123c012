//! Counters that every service increments, rendered in the Prometheus text exposition
//! format (version 0.0.4). Counters are named once, with their help text, when the
//! registry is built; a service holds the [`Counter`]s it increments, so incrementing is
//! one atomic add.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One monotonic counter with fixed labels.
#[derive(Clone, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Family {
    name: &'static str,
    help: &'static str,
    series: Vec<(Vec<(&'static str, String)>, Counter)>,
}

/// All counters of the process.
#[derive(Default)]
pub struct Registry {
    families: std::sync::Mutex<Vec<Family>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The counter `name{labels}`, made on first use. `name` should end in `_total`.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        let labels: Vec<(&'static str, String)> = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut families = self.families.lock().expect("metrics lock");
        let family = match families.iter_mut().position(|family| family.name == name) {
            Some(at) => &mut families[at],
            None => {
                families.push(Family { name, help, series: Vec::new() });
                families.last_mut().expect("just pushed")
            }
        };
        if let Some((_, counter)) = family.series.iter().find(|(series_labels, _)| *series_labels == labels) {
            return counter.clone();
        }
        let counter = Counter(Arc::new(AtomicU64::new(0)));
        family.series.push((labels, counter.clone()));
        counter
    }

    /// Every counter in the Prometheus text format.
    pub fn render(&self) -> String {
        let families = self.families.lock().expect("metrics lock");
        let mut out = String::new();
        for family in families.iter() {
            out.push_str(&format!("# HELP {} {}\n# TYPE {} counter\n", family.name, family.help, family.name));
            for (labels, counter) in &family.series {
                let labels: Vec<String> =
                    labels.iter().map(|(key, value)| format!("{key}=\"{}\"", escape(value))).collect();
                if labels.is_empty() {
                    out.push_str(&format!("{} {}\n", family.name, counter.get()));
                } else {
                    out.push_str(&format!("{}{{{}}} {}\n", family.name, labels.join(","), counter.get()));
                }
            }
        }
        out
    }
}

/// The counters every service that accepts connections and authenticates clients keeps,
/// labelled with its protocol (`https`, `imap`, …).
#[derive(Clone, Debug)]
pub struct ServiceMetrics {
    pub connections: Counter,
    /// HTTPS requests, IMAP commands.
    pub requests: Counter,
    pub auth_failures: Counter,
    /// Authentications refused without checking, after too many failures.
    pub auth_refused: Counter,
}

impl ServiceMetrics {
    pub fn new(registry: &Registry, protocol: &str) -> ServiceMetrics {
        let labels = [("protocol", protocol)];
        ServiceMetrics {
            connections: registry.counter("hameau_connections_total", "Connections accepted.", &labels),
            requests: registry.counter("hameau_requests_total", "Requests or commands received.", &labels),
            auth_failures: registry.counter("hameau_auth_failures_total", "Failed authentications.", &labels),
            auth_refused: registry.counter(
                "hameau_auth_refused_total",
                "Authentications refused without checking, after too many failures.",
                &labels,
            ),
        }
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::Registry;

    #[test]
    fn renders_the_text_format() {
        let registry = Registry::new();
        let https = registry.counter("hameau_connections_total", "Connections accepted.", &[("protocol", "https")]);
        https.inc();
        https.add(2);
        registry.counter("hameau_connections_total", "Connections accepted.", &[("protocol", "smtp")]);
        registry.counter("hameau_refused_total", "Refused.", &[("protocol", "smtp"), ("reason", "a\"b\\c\nd")]).inc();
        assert_eq!(
            registry.render(),
            "# HELP hameau_connections_total Connections accepted.\n# TYPE hameau_connections_total counter\n\
             hameau_connections_total{protocol=\"https\"} 3\nhameau_connections_total{protocol=\"smtp\"} 0\n\
             # HELP hameau_refused_total Refused.\n# TYPE hameau_refused_total counter\n\
             hameau_refused_total{protocol=\"smtp\",reason=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
        // The same name and labels give the same counter.
        registry.counter("hameau_connections_total", "Connections accepted.", &[("protocol", "https")]).inc();
        assert_eq!(https.get(), 4);
    }
}
