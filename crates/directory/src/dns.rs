//! The DNS records a domain needs, for its owner to publish: MX, SPF, DKIM (RFC 6376),
//! DMARC (RFC 7489), MTA-STS (RFC 8461), TLS-RPT (RFC 8460), and the SRV records and
//! names by which mail clients find the server (RFC 6186, RFC 8314, RFC 8620 §2.2).

use serde::{Deserialize, Serialize};

use crate::Domain;

/// What the records point to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsOptions {
    /// The mail server's host name (MX target, client SRV targets).
    pub mx_host: String,
}

/// One record to publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsRecord {
    /// Owner name, absolute, without the final dot.
    pub name: String,
    /// MX, TXT, CNAME or SRV.
    #[serde(rename = "type")]
    pub kind: String,
    /// The record's data as in a zone file (TXT data unquoted and unsplit).
    pub value: String,
    /// Whether the RCPNT referential for communes requires it.
    pub required: bool,
    /// What it is for.
    pub purpose: String,
}

/// The records of `domain`, and the MTA-STS policy to serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DnsZone {
    pub domain: String,
    pub records: Vec<DnsRecord>,
    /// Served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
    pub mta_sts_policy: String,
}

pub fn zone(domain: &Domain, options: &DnsOptions) -> DnsZone {
    let d = &domain.name;
    let host = &options.mx_host;
    let record = |name: String, kind: &str, value: String, required: bool, purpose: &str| DnsRecord {
        name,
        kind: kind.into(),
        value,
        required,
        purpose: purpose.into(),
    };
    let mut records = vec![
        record(d.clone(), "MX", format!("10 {host}."), true, "mail for the domain goes to Hameau"),
        record(d.clone(), "TXT", "v=spf1 mx -all".into(), true, "SPF: only the domain's MX sends its mail"),
    ];
    for key in &domain.dkim {
        records.push(record(
            format!("{}._domainkey.{d}", key.selector),
            "TXT",
            format!("v=DKIM1; k={}; p={}", key.algorithm, key.public_key),
            false,
            "DKIM: the public key that checks Hameau's signatures",
        ));
    }
    records.extend([
        record(
            format!("_dmarc.{d}"),
            "TXT",
            format!("v=DMARC1; p=reject; pct=100; rua=mailto:postmaster@{d}"),
            true,
            "DMARC: receivers refuse mail that fails SPF and DKIM alignment, and report",
        ),
        record(
            format!("_mta-sts.{d}"),
            "TXT",
            format!("v=STSv1; id={}", domain.created_at),
            false,
            "MTA-STS: senders must use TLS to reach the MX (policy at mta-sts.{d})",
        ),
        record(format!("mta-sts.{d}"), "CNAME", format!("{host}."), false, "MTA-STS: where the policy is served"),
        record(
            format!("_smtp._tls.{d}"),
            "TXT",
            format!("v=TLSRPTv1; rua=mailto:postmaster@{d}"),
            false,
            "TLS-RPT: reports of TLS failures",
        ),
        record(
            format!("_submissions._tcp.{d}"),
            "SRV",
            format!("0 1 465 {host}."),
            false,
            "clients find submission over TLS (RFC 8314)",
        ),
        record(
            format!("_submission._tcp.{d}"),
            "SRV",
            format!("0 1 587 {host}."),
            false,
            "clients find submission with STARTTLS (RFC 6186)",
        ),
        record(
            format!("_imaps._tcp.{d}"),
            "SRV",
            format!("0 1 993 {host}."),
            false,
            "clients find IMAP over TLS (RFC 6186)",
        ),
        record(
            format!("_imap._tcp.{d}"),
            "SRV",
            format!("0 1 143 {host}."),
            false,
            "clients find IMAP with STARTTLS (RFC 6186)",
        ),
        record(format!("_jmap._tcp.{d}"), "SRV", format!("0 1 443 {host}."), false, "clients find JMAP (RFC 8620)"),
        record(format!("autoconfig.{d}"), "CNAME", format!("{host}."), false, "Thunderbird's autoconfiguration"),
        record(format!("autodiscover.{d}"), "CNAME", format!("{host}."), false, "Outlook's autodiscover"),
    ]);
    let mta_sts_policy = format!("version: STSv1\nmode: enforce\nmx: {host}\nmax_age: 604800\n");
    DnsZone { domain: d.clone(), records, mta_sts_policy }
}

/// The zone as zone-file lines; TXT data longer than 255 bytes is split into strings.
pub fn zone_file(zone: &DnsZone) -> String {
    let mut out = String::new();
    for record in &zone.records {
        let value = match record.kind.as_str() {
            "TXT" => record
                .value
                .as_bytes()
                .chunks(255)
                .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
                .collect::<Vec<_>>()
                .join(" "),
            _ => record.value.clone(),
        };
        out.push_str(&format!("{}. 3600 IN {} {}\n", record.name, record.kind, value));
    }
    out
}
