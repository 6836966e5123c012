//! SMTP TLS Reporting (RFC 8460): what the delivery worker saw of each domain's TLS, counted
//! per policy over a period (a day by default), and the report a domain asks for in its
//! `_smtp._tls` TXT record, sent by mail (`rua=mailto:`).
//!
//! Counting is in memory, per node, bounded by [`Aggregator`]'s `policies_max`: a restart
//! loses the counts of the period under way, which only makes that day's report short
//! (reports are statistics for the receiver's operator, not mail anyone waits for).
//! Reports go only to `mailto:` addresses; an `https:` one (RFC 8460 §3) is logged and
//! skipped.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use hickory_resolver::TokioResolver;

use crate::mta_sts;
use crate::outbound::Session;

/// RFC 8460 §4.3 `policy-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyType {
    Sts,
    Tlsa,
    NoPolicyFound,
}

impl PolicyType {
    fn name(self) -> &'static str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::Tlsa => "tlsa",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }
}

/// The policy a session was held under, as a report names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    pub kind: PolicyType,
    /// The recipient domain.
    pub domain: String,
    /// `policy-string`: the MTA-STS policy's lines, or the TLSA records.
    pub strings: Vec<String>,
    /// `mx-host`: the policy's MX patterns, or the MX host of the TLSA records.
    pub mx_host: Vec<String>,
}

impl Policy {
    pub fn none(domain: &str) -> Policy {
        Policy { kind: PolicyType::NoPolicyFound, domain: domain.to_string(), strings: Vec::new(), mx_host: Vec::new() }
    }

    pub fn sts(domain: &str, policy: &mta_sts::Policy) -> Policy {
        let mode = match policy.mode {
            mta_sts::Mode::Enforce => "enforce",
            mta_sts::Mode::Testing => "testing",
            mta_sts::Mode::None => "none",
        };
        let mut strings = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
        strings.extend(policy.mx.iter().map(|mx| format!("mx: {mx}")));
        strings.push(format!("max_age: {}", policy.max_age_s));
        Policy { kind: PolicyType::Sts, domain: domain.to_string(), strings, mx_host: policy.mx.clone() }
    }

    pub fn tlsa(domain: &str, mx_host: &str, records: &[crate::dane::Tlsa]) -> Policy {
        let strings = records
            .iter()
            .map(|r| format!("{} {} {} {}", r.usage, r.selector, r.matching, hex::encode(&r.data)))
            .collect();
        Policy { kind: PolicyType::Tlsa, domain: domain.to_string(), strings, mx_host: vec![mx_host.to_string()] }
    }
}

/// One kind of failure under one policy: RFC 8460 §4.3 `failure-details`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FailureKey {
    result_type: &'static str,
    mx_host: String,
    address: Option<IpAddr>,
}

/// A policy's counts over the period.
#[derive(Debug, Default)]
struct Counts {
    successes: u64,
    /// Per kind: sessions, and the last reason seen (`failure-reason-code`).
    failures: HashMap<FailureKey, (u64, String)>,
}

/// Failure kinds kept per policy: a receiver failing on many addresses still gives a
/// bounded report.
const FAILURE_KINDS_MAX: usize = 100;

/// The counts of the period under way, for every policy seen.
#[derive(Debug)]
pub struct Aggregator {
    period: Mutex<Period>,
    /// Policies counted per period: the memory bound (each is a few hundred bytes).
    policies_max: usize,
}

#[derive(Debug, Default)]
struct Period {
    start_s: u64,
    policies: HashMap<Arc<Policy>, Counts>,
    /// Sessions not counted because `policies_max` was reached.
    dropped: u64,
}

/// What a period gave for one domain: its policies and their counts.
#[derive(Debug)]
pub struct DomainReport {
    pub domain: String,
    pub start_s: u64,
    pub end_s: u64,
    entries: Vec<(Arc<Policy>, Counts)>,
}

impl Aggregator {
    pub fn new(policies_max: usize, now_s: u64) -> Aggregator {
        Aggregator { period: Mutex::new(Period { start_s: now_s, ..Period::default() }), policies_max }
    }

    /// Counts `sessions`.
    pub fn record(&self, sessions: &[Session]) {
        let mut period = self.period.lock().expect("TLS-RPT lock");
        for session in sessions {
            let known = period.policies.len();
            let counts = match period.policies.get_mut(&session.policy) {
                Some(counts) => counts,
                None if known >= self.policies_max => {
                    period.dropped += 1;
                    continue;
                }
                None => period.policies.entry(session.policy.clone()).or_default(),
            };
            match &session.failure {
                None => counts.successes += 1,
                Some(failure) => {
                    let key = FailureKey {
                        result_type: failure.result_type,
                        mx_host: session.mx_host.clone(),
                        address: session.address,
                    };
                    let kinds = counts.failures.len();
                    match counts.failures.get_mut(&key) {
                        Some((n, why)) => {
                            *n += 1;
                            why.clone_from(&failure.why);
                        }
                        None if kinds < FAILURE_KINDS_MAX => {
                            counts.failures.insert(key, (1, failure.why.clone()));
                        }
                        // Counted as a failure all the same, under the first kind.
                        None => {
                            if let Some((n, _)) = counts.failures.values_mut().next() {
                                *n += 1;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Ends the period at `now_s`: its reports, one per domain, and a new period begins.
    pub fn take(&self, now_s: u64) -> Vec<DomainReport> {
        let period = {
            let mut period = self.period.lock().expect("TLS-RPT lock");
            std::mem::replace(&mut *period, Period { start_s: now_s, ..Period::default() })
        };
        if period.dropped > 0 {
            tracing::warn!(
                sessions = period.dropped,
                policies_max = self.policies_max,
                "TLS-RPT: sessions not counted, too many policies in one period"
            );
        }
        let mut by_domain: HashMap<String, Vec<(Arc<Policy>, Counts)>> = HashMap::new();
        for (policy, counts) in period.policies {
            by_domain.entry(policy.domain.clone()).or_default().push((policy, counts));
        }
        let mut reports: Vec<DomainReport> = by_domain
            .into_iter()
            .map(|(domain, entries)| DomainReport { domain, start_s: period.start_s, end_s: now_s, entries })
            .collect();
        reports.sort_by(|a, b| a.domain.cmp(&b.domain));
        reports
    }
}

impl DomainReport {
    /// The report's JSON (RFC 8460 §4.4).
    pub fn json(&self, organization: &str, contact: &str, report_id: &str) -> serde_json::Value {
        let date = |s: u64| mail_parser::DateTime::from_timestamp(s as i64).to_rfc3339();
        let mut entries: Vec<&(Arc<Policy>, Counts)> = self.entries.iter().collect();
        entries.sort_by(|a, b| (a.0.kind.name(), &a.0.strings).cmp(&(b.0.kind.name(), &b.0.strings)));
        let policies: Vec<serde_json::Value> = entries
            .into_iter()
            .map(|(policy, counts)| {
                let mut failures: Vec<(&FailureKey, &(u64, String))> = counts.failures.iter().collect();
                failures.sort_by(|a, b| a.0.cmp(b.0));
                let failed: u64 = failures.iter().map(|(_, (n, _))| n).sum();
                let details: Vec<serde_json::Value> = failures
                    .into_iter()
                    .map(|(key, (n, why))| {
                        let mut detail = serde_json::json!({
                            "result-type": key.result_type,
                            "failed-session-count": n,
                            "failure-reason-code": why,
                        });
                        if !key.mx_host.is_empty() {
                            detail["receiving-mx-hostname"] = key.mx_host.clone().into();
                        }
                        if let Some(address) = key.address {
                            detail["receiving-ip"] = address.to_string().into();
                        }
                        detail
                    })
                    .collect();
                let mut described = serde_json::json!({
                    "policy-type": policy.kind.name(),
                    "policy-domain": policy.domain,
                });
                if !policy.strings.is_empty() {
                    described["policy-string"] = policy.strings.clone().into();
                }
                if !policy.mx_host.is_empty() {
                    described["mx-host"] = policy.mx_host.clone().into();
                }
                serde_json::json!({
                    "policy": described,
                    "summary": {
                        "total-successful-session-count": counts.successes,
                        "total-failure-session-count": failed,
                    },
                    "failure-details": details,
                })
            })
            .collect();
        serde_json::json!({
            "organization-name": organization,
            "date-range": { "start-datetime": date(self.start_s), "end-datetime": date(self.end_s) },
            "contact-info": contact,
            "report-id": report_id,
            "policies": policies,
        })
    }

    /// The report as a message (RFC 8460 §5.3): `multipart/report; report-type="tlsrpt"`, a
    /// short text part, and the JSON gzipped (`application/tlsrpt+gzip`). Unsigned; the
    /// caller signs it.
    pub fn message(&self, from: &str, to: &[String], hostname: &str, report_id: &str, now_s: u64) -> Vec<u8> {
        let json = self.json(hostname, from, report_id).to_string();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(json.as_bytes()).expect("writing to memory");
        let gzipped = gzip.finish().expect("writing to memory");
        let start = mail_parser::DateTime::from_timestamp(self.start_s as i64).to_rfc3339();
        let end = mail_parser::DateTime::from_timestamp(self.end_s as i64).to_rfc3339();
        let file = format!("{hostname}!{}!{}!{}.json.gz", self.domain, self.start_s, self.end_s);
        let text = format!(
            "Rapport TLS (RFC 8460) de {hostname} pour {domain}, du {start} au {end}.\r\n\
             TLS report (RFC 8460) from {hostname} for {domain}, from {start} to {end}.\r\n",
            domain = self.domain
        );
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&gzipped);
        let mut body = String::new();
        for line in encoded.as_bytes().chunks(76) {
            body.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            body.push_str("\r\n");
        }
        let boundary = format!("tlsrpt-{report_id}");
        let date = mail_parser::DateTime::from_timestamp(now_s as i64).to_rfc822();
        format!(
            "From: {from}\r\nTo: {to}\r\nDate: {date}\r\nMessage-ID: <{report_id}@{hostname}>\r\n\
             Subject: Report Domain: {domain} Submitter: {hostname} Report-ID: <{report_id}@{hostname}>\r\n\
             TLS-Report-Domain: {domain}\r\nTLS-Report-Submitter: {hostname}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n\
             --{boundary}\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"{file}\"\r\n\r\n{body}\r\n--{boundary}--\r\n",
            to = to.join(", "),
            domain = self.domain,
        )
        .into_bytes()
    }
}

/// The `mailto:` addresses of `domain`'s TLS-RPT record (`_smtp._tls.<domain>`, RFC 8460
/// §3); none when it publishes none.
pub async fn rua(resolver: &TokioResolver, domain: &str) -> Result<Vec<String>, String> {
    let name = format!("_smtp._tls.{}.", domain.trim_end_matches('.'));
    let lookup = match resolver.txt_lookup(name.as_str()).await {
        Ok(lookup) => lookup,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
        Err(e) => return Err(format!("looking up {name}: {e}")),
    };
    let records: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            hickory_resolver::proto::rr::RData::TXT(txt) => {
                Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>())
            }
            _ => None,
        })
        .filter(|text| text.starts_with("v=TLSRPTv1"))
        .collect();
    // RFC 8460 §3: more than one record is as none.
    let [record] = records.as_slice() else { return Ok(Vec::new()) };
    Ok(parse_rua(record))
}

/// The `mailto:` addresses of a TLS-RPT record's `rua` field, at most ten (RFC 8460 §3
/// puts no bound on them; ten is ample for a domain's reporting addresses).
pub fn parse_rua(record: &str) -> Vec<String> {
    let mut found = Vec::new();
    for field in record.split(';') {
        let Some((key, value)) = field.split_once('=') else { continue };
        if key.trim() != "rua" {
            continue;
        }
        for uri in value.split(',') {
            let uri = uri.trim();
            match uri.strip_prefix("mailto:") {
                // Percent-encoded characters are rare in these addresses; an address with
                // one, or with anything an envelope cannot carry, is skipped.
                Some(address)
                    if address.contains('@')
                        && !address.contains('%')
                        && address.chars().all(|c| c.is_ascii_graphic() && c != '<' && c != '>') =>
                {
                    found.push(address.to_string())
                }
                Some(_) => tracing::info!(uri, "TLS-RPT: a reporting address that cannot be used"),
                None => tracing::info!(uri, "TLS-RPT: only mailto: reporting is supported; skipped"),
            }
        }
    }
    found.truncate(10);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::Failure;

    fn session(policy: &Arc<Policy>, failure: Option<&'static str>) -> Session {
        Session {
            policy: policy.clone(),
            mx_host: "mx.remote.test".into(),
            address: Some("127.0.0.1".parse().unwrap()),
            failure: failure.map(|kind| Failure::new(kind, "why")),
        }
    }

    #[test]
    fn counts_sessions_per_policy_and_reports_them() {
        let aggregator = Aggregator::new(10, 1_000);
        let sts = Arc::new(Policy {
            kind: PolicyType::Sts,
            domain: "remote.test".into(),
            strings: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx_host: vec!["mx.remote.test".into()],
        });
        let none = Arc::new(Policy::none("other.test"));
        aggregator.record(&[
            session(&sts, None),
            session(&sts, None),
            session(&sts, Some("certificate-host-mismatch")),
            session(&none, None),
        ]);
        let reports = aggregator.take(87_400);
        assert_eq!(reports.iter().map(|r| r.domain.as_str()).collect::<Vec<_>>(), ["other.test", "remote.test"]);
        let json = reports[1].json("mx.hameau.test", "postmaster@hameau.test", "r1");
        let policy = &json["policies"][0];
        assert_eq!(policy["policy"]["policy-type"], "sts");
        assert_eq!(policy["summary"]["total-successful-session-count"], 2);
        assert_eq!(policy["summary"]["total-failure-session-count"], 1);
        assert_eq!(policy["failure-details"][0]["result-type"], "certificate-host-mismatch");
        assert_eq!(policy["failure-details"][0]["receiving-ip"], "127.0.0.1");
        assert_eq!(json["date-range"]["start-datetime"], "1970-01-01T00:16:40Z");
        // A new period starts empty.
        assert!(aggregator.take(90_000).is_empty());
        // The message carries the gzipped JSON.
        let message = reports[1].message("tls@hameau.test", &["rua@remote.test".into()], "hameau.test", "r1", 87_400);
        let text = String::from_utf8(message).unwrap();
        assert!(text.contains("report-type=\"tlsrpt\"") && text.contains("application/tlsrpt+gzip"), "{text}");
        assert!(text.contains("TLS-Report-Domain: remote.test"), "{text}");
    }

    #[test]
    fn memory_is_bounded() {
        let aggregator = Aggregator::new(2, 0);
        for n in 0..5 {
            aggregator.record(&[session(&Arc::new(Policy::none(&format!("d{n}.test"))), None)]);
        }
        assert_eq!(aggregator.take(1).len(), 2);
        let policy = Arc::new(Policy::none("x.test"));
        for n in 0..(FAILURE_KINDS_MAX + 10) {
            let mut s = session(&policy, Some("validation-failure"));
            s.mx_host = format!("mx{n}.x.test");
            aggregator.record(&[s]);
        }
        let json = aggregator.take(2)[0].json("h", "c", "r");
        assert_eq!(json["policies"][0]["failure-details"].as_array().unwrap().len(), FAILURE_KINDS_MAX);
        assert_eq!(json["policies"][0]["summary"]["total-failure-session-count"], FAILURE_KINDS_MAX as u64 + 10);
    }

    #[test]
    fn rua_field() {
        assert_eq!(
            parse_rua("v=TLSRPTv1; rua=mailto:tls@remote.test, https://r.test/x ,mailto:bad<@x"),
            vec!["tls@remote.test".to_string()]
        );
        assert!(parse_rua("v=TLSRPTv1;").is_empty());
    }
}
