//! Runs the rules over a labelled corpus and prints messages per second and, per label,
//! how many messages got each symbol (the false positives on ham are what matters).
//!
//! `cargo run --release -p hameau-filter --example rules_corpus -- DIR…`: each DIR holds
//! one raw message a file (`*.txt` or `*.eml`); a DIR whose name contains "spam" is spam,
//! any other ham. The tenant is the rule tests' Saint-Martin.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hameau_filter::{Context, Limits, Person, analyse};

fn main() {
    let own_domains = vec!["saint-martin.fr".to_owned()];
    let people = vec![
        Person { name: "Mairie".into(), address: "mairie@saint-martin.fr".into() },
        Person { name: "Jean-Pierre Dupont".into(), address: "maire@saint-martin.fr".into() },
        Person { name: "Élodie Lefèvre".into(), address: "secretariat@saint-martin.fr".into() },
    ];
    let mut known_domains = vec!["fournisseur-bureau.fr".to_owned(), "cdg35.fr".to_owned()];
    // KNOWN=5000: as many more known domains, to see what a large tenant's list costs.
    let n_known: usize = std::env::var("KNOWN").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    known_domains
        .extend((0..n_known).map(|i| format!("{}correspondant{i}.fr", &"abcdefghijklmnopqrstuvwxyz"[i % 26..])));
    // Sorted, as the MX should give them (binary search instead of a scan).
    if std::env::var_os("UNSORTED").is_none() {
        known_domains.sort();
    }
    let limits = Limits::default();
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    let mut flagged: BTreeMap<&str, usize> = BTreeMap::new();
    let mut warned: BTreeMap<&str, usize> = BTreeMap::new();
    let mut elapsed = Duration::ZERO;
    let mut n_bytes = 0usize;
    for directory in std::env::args().skip(1) {
        let label = if directory.contains("spam") { "spam" } else { "ham" };
        let Ok(entries) = std::fs::read_dir(&directory) else {
            eprintln!("cannot read {directory}");
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.extension().is_some_and(|extension| extension == "txt" || extension == "eml") {
                continue;
            }
            let Ok(raw) = std::fs::read(&path) else { continue };
            let mail_from = "";
            let context =
                Context { own_domains: &own_domains, people: &people, known_domains: &known_domains, mail_from };
            let start = Instant::now();
            let analysis = analyse(&raw, &context, &limits);
            elapsed += start.elapsed();
            n_bytes += raw.len();
            *totals.entry(label).or_default() += 1;
            if analysis.symbols.iter().any(|symbol| symbol.name != "FILTER_LIMIT") {
                *flagged.entry(label).or_default() += 1;
            }
            let score: f64 = analysis.symbols.iter().map(|symbol| symbol.score).sum();
            if score >= hameau_filter::Thresholds::default().warn_score
                || analysis.at_least > hameau_filter::Action::Deliver
            {
                *warned.entry(label).or_default() += 1;
            }
            for symbol in &analysis.symbols {
                *counts.entry((label, symbol.name)).or_default() += 1;
                if label == "ham" && std::env::var_os("SHOW_HAM").is_some() {
                    println!("ham {}: {} {}", path.display(), symbol.name, symbol.detail);
                }
            }
        }
    }
    let n_messages: usize = totals.values().sum();
    println!(
        "{n_messages} messages, {:.1} MiB, in {elapsed:?}: {:.0} messages/s, {:.1} µs a message",
        n_bytes as f64 / (1 << 20) as f64,
        n_messages as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / n_messages.max(1) as f64
    );
    for (label, total) in &totals {
        let with_symbol = flagged.get(label).copied().unwrap_or(0);
        let at_warn = warned.get(label).copied().unwrap_or(0);
        println!(
            "{label}: {total} messages, {with_symbol} with a symbol, {at_warn} at the warn score or above by the rules alone"
        );
    }
    for ((label, name), count) in &counts {
        println!("  {label:4} {name:22} {count}");
    }
}
