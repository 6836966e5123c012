//! `hameau dns check DOMAIN`: resolves each record the domain needs and says whether it is
//! present and right, present and wrong (and what differs), or missing; then a verdict
//! against the RCPNT referential for communes (MX and SPF present, DMARC at `quarantine`
//! or `reject` with `pct=100`). Exits non-zero when a required record is not right or the
//! verdict is negative, so that scripts can use it.

use std::net::SocketAddr;
use std::time::Duration;

use hameau_directory::dns::{DnsRecord, DnsZone};
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};

/// What was found of one expected record.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Right,
    Wrong { found: Vec<String> },
    Missing,
}

pub async fn check(zone: &DnsZone, resolvers: &[SocketAddr], timeout: Duration) -> anyhow::Result<bool> {
    let resolver = resolver(resolvers, timeout)?;
    let mut required_ok = true;
    let mut dmarc_found = Vec::new();
    let mut spf_found = false;
    let mut mx_found = false;
    for record in &zone.records {
        let found = lookup(&resolver, record).await?;
        let status = compare(record, &found);
        let label = match &status {
            Status::Right => "OK",
            Status::Wrong { .. } => "WRONG",
            Status::Missing => "MISSING",
        };
        match &status {
            Status::Wrong { found } => println!(
                "{label:<8} {:<5} {}: found {} (expected {})",
                record.kind,
                record.name,
                found.join(" | "),
                record.value
            ),
            _ => println!("{label:<8} {:<5} {}: {}", record.kind, record.name, record.value),
        }
        if record.required && status != Status::Right {
            required_ok = false;
        }
        let relevant = relevant(record, &found);
        match (record.kind.as_str(), record.value.split(';').next()) {
            ("MX", _) => mx_found = !found.is_empty(),
            ("TXT", Some("v=spf1 mx -all")) => spf_found = !relevant.is_empty(),
            ("TXT", Some("v=DMARC1")) => dmarc_found = relevant,
            _ => {}
        }
    }
    let mut problems = Vec::new();
    if !mx_found {
        problems.push("no MX record".to_string());
    }
    if !spf_found {
        problems.push("no SPF record".to_string());
    }
    match dmarc_found.first() {
        None => problems.push("no DMARC record".to_string()),
        Some(dmarc) => {
            let policy = tag(dmarc, "p").unwrap_or_default().to_ascii_lowercase();
            let pct = tag(dmarc, "pct").unwrap_or("100".into());
            if policy != "quarantine" && policy != "reject" {
                problems.push(format!("DMARC p={policy} (quarantine or reject needed)"));
            }
            if pct != "100" {
                problems.push(format!("DMARC pct={pct} (100 needed)"));
            }
        }
    }
    if problems.is_empty() {
        println!("RCPNT: conforming (MX, SPF, DMARC p=quarantine|reject with pct=100)");
    } else {
        println!("RCPNT: not conforming: {}", problems.join("; "));
    }
    Ok(required_ok && problems.is_empty())
}

fn resolver(resolvers: &[SocketAddr], timeout: Duration) -> anyhow::Result<TokioResolver> {
    hameau_smtp::dns::resolver(resolvers, timeout, hameau_smtp::dns::Cache::NONE).map_err(anyhow::Error::msg)
}

/// The data of the records of the expected record's name and type, as text.
async fn lookup(resolver: &TokioResolver, record: &DnsRecord) -> anyhow::Result<Vec<String>> {
    let kind = match record.kind.as_str() {
        "MX" => RecordType::MX,
        "TXT" => RecordType::TXT,
        "CNAME" => RecordType::CNAME,
        "SRV" => RecordType::SRV,
        other => anyhow::bail!("unexpected record type {other}"),
    };
    let name = format!("{}.", record.name);
    let lookup = match resolver.lookup(name.as_str(), kind).await {
        Ok(lookup) => lookup,
        // No such name or no record of that type: missing, not an error of the check.
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("looking up {name} {kind}: {e}")),
    };
    Ok(lookup
        .answers()
        .iter()
        .filter(|answer| answer.record_type() == kind)
        .map(|answer| match &answer.data {
            RData::TXT(txt) => txt.txt_data.iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect(),
            other => other.to_string(),
        })
        .collect())
}

/// The found records that are of the same kind as the expected one: for TXT, those with
/// the same `v=` tag (a domain has many TXT records).
fn relevant(expected: &DnsRecord, found: &[String]) -> Vec<String> {
    if expected.kind != "TXT" {
        return found.to_vec();
    }
    let version =
        |text: &str| text.split(';').next().unwrap_or("").split_whitespace().next().unwrap_or("").to_ascii_lowercase();
    let wanted = version(&expected.value);
    found.iter().filter(|text| version(text) == wanted).cloned().collect()
}

pub fn compare(expected: &DnsRecord, found: &[String]) -> Status {
    let relevant = relevant(expected, found);
    if relevant.is_empty() {
        return Status::Missing;
    }
    let normalize = |text: &str| -> String {
        let text = text.trim().to_ascii_lowercase();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        text.replace("; ", ";").trim_end_matches(';').to_string()
    };
    let right = match expected.kind.as_str() {
        // The preference does not matter as long as the MX is ours.
        "MX" => {
            let host =
                |text: &str| text.split_whitespace().last().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
            relevant.iter().any(|text| host(text) == host(&expected.value))
        }
        // For DKIM, what matters is the key.
        "TXT" if expected.value.starts_with("v=DKIM1") => {
            let key = |text: &str| tag(text, "p").map(|key| key.replace(' ', ""));
            relevant.iter().any(|text| key(text) == key(&expected.value))
        }
        _ => relevant.iter().any(|text| normalize(text) == normalize(&expected.value)),
    };
    if right { Status::Right } else { Status::Wrong { found: relevant } }
}

/// The value of `tag=` in a `tag=value; …` record.
fn tag(text: &str, name: &str) -> Option<String> {
    text.split(';').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
    })
}
