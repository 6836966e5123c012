//! Counters that every service increments, and gauges it sets, rendered in the Prometheus
//! text exposition format (version 0.0.4). Series are named once, with their help text,
//! when the registry is built; a service holds the [`Counter`]s and [`Gauge`]s it updates,
//! so an update is one atomic operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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

/// One value that goes up and down (a queue's size), with fixed labels.
#[derive(Clone, Debug)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A series' value: a counter's or a gauge's.
#[derive(Clone, Debug)]
enum Value {
    Counter(Counter),
    Gauge(Gauge),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Counter(counter) => counter.get().to_string(),
            Value::Gauge(gauge) => gauge.get().to_string(),
        }
    }
}

struct Family {
    name: &'static str,
    help: &'static str,
    /// `counter` or `gauge`: every series of a family has the same type.
    kind: &'static str,
    series: Vec<(Vec<(&'static str, String)>, Value)>,
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
        let made = self.series(name, help, "counter", labels, || Value::Counter(Counter(Arc::new(AtomicU64::new(0)))));
        match made {
            Value::Counter(counter) => counter,
            Value::Gauge(_) => panic!("{name} is a gauge, not a counter"),
        }
    }

    /// The gauge `name{labels}`, made on first use (at 0).
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        match self.series(name, help, "gauge", labels, || Value::Gauge(Gauge(Arc::new(AtomicI64::new(0))))) {
            Value::Gauge(gauge) => gauge,
            Value::Counter(_) => panic!("{name} is a counter, not a gauge"),
        }
    }

    /// The series `name{labels}` of type `kind`, made by `make` on first use. Names are
    /// the program's own constants, so a name given two types is a programming error.
    fn series(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&'static str, &str)],
        make: impl FnOnce() -> Value,
    ) -> Value {
        let labels: Vec<(&'static str, String)> = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut families = self.families.lock().expect("metrics lock");
        let family = match families.iter_mut().position(|family| family.name == name) {
            Some(at) => &mut families[at],
            None => {
                families.push(Family { name, help, kind, series: Vec::new() });
                families.last_mut().expect("just pushed")
            }
        };
        assert_eq!(family.kind, kind, "{name} is a {}", family.kind);
        if let Some((_, value)) = family.series.iter().find(|(series_labels, _)| *series_labels == labels) {
            return value.clone();
        }
        let value = make();
        family.series.push((labels, value.clone()));
        value
    }

    /// Every series in the Prometheus text format.
    pub fn render(&self) -> String {
        let families = self.families.lock().expect("metrics lock");
        let mut out = String::new();
        for family in families.iter() {
            out.push_str(&format!("# HELP {} {}\n# TYPE {} {}\n", family.name, family.help, family.name, family.kind));
            for (labels, value) in &family.series {
                let labels: Vec<String> =
                    labels.iter().map(|(key, value)| format!("{key}=\"{}\"", escape(value))).collect();
                if labels.is_empty() {
                    out.push_str(&format!("{} {}\n", family.name, value.render()));
                } else {
                    out.push_str(&format!("{}{{{}}} {}\n", family.name, labels.join(","), value.render()));
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

    #[test]
    fn renders_gauges() {
        let registry = Registry::new();
        let size = registry.gauge("hameau_queue_messages", "Messages in the queue.", &[]);
        size.set(7);
        size.set(5);
        assert_eq!(
            registry.render(),
            "# HELP hameau_queue_messages Messages in the queue.\n# TYPE hameau_queue_messages gauge\nhameau_queue_messages 5\n"
        );
        assert_eq!(registry.gauge("hameau_queue_messages", "Messages in the queue.", &[]).get(), 5);
    }
}
