//! Runs an [`ApiCall`]: in-process on the local data directory, or over HTTPS against a
//! running server. Prints the response body (JSON) on success; on failure, one line with
//! the status and the problem's detail, and a non-zero exit.

use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::admin::{ApiCall, Target};

/// Runs the call and prints its outcome.
pub fn run(target: &Target, call: ApiCall) -> anyhow::Result<()> {
    if let Some(value) = call_json(target, call)? {
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}

/// `hameau dns records`: the zone-file lines, or the JSON answer.
pub fn run_dns_records(target: &Target, domain: &str, json: bool) -> anyhow::Result<()> {
    let value = call_json(target, crate::admin::dns_records_call(domain))?.context("an empty answer")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let zone: hameau_directory::dns::DnsZone = serde_json::from_value(value).context("the server's zone")?;
    print!("{}", hameau_directory::dns::zone_file(&zone));
    println!("; MTA-STS policy, served at https://mta-sts.{}/.well-known/mta-sts.txt:", zone.domain);
    for line in zone.mta_sts_policy.lines() {
        println!(";   {line}");
    }
    Ok(())
}

/// `hameau dns check`: the expected zone from the API, then the DNS.
pub fn run_dns_check(target: &Target, domain: &str, resolvers: Vec<std::net::SocketAddr>) -> anyhow::Result<()> {
    let value = call_json(target, crate::admin::dns_records_call(domain))?.context("an empty answer")?;
    let zone: hameau_directory::dns::DnsZone = serde_json::from_value(value).context("the server's zone")?;
    let config = match (&target.url, &target.config) {
        (None, path) => crate::load_config(path.as_deref())?,
        (Some(_), Some(path)) => hameau_config::Config::load(path)?,
        (Some(_), None) => hameau_config::Config::builtin(),
    };
    let resolvers = if resolvers.is_empty() { config.dns.resolvers.clone() } else { resolvers };
    let timeout = config.dns.timeout();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let conforming = runtime.block_on(crate::dnscheck::check(&zone, &resolvers, timeout))?;
    anyhow::ensure!(conforming, "{domain}: the published records are not all right (see above)");
    Ok(())
}

/// `hameau quarantine …`: the JSON answer; `show --raw` writes the message itself, and
/// `release` says in words, French then English, who received it.
pub fn run_quarantine(target: &Target, command: crate::admin::QuarantineCommand) -> anyhow::Result<()> {
    use std::io::Write as _;
    let raw = matches!(command, crate::admin::QuarantineCommand::Show { raw: true, .. });
    let release = matches!(command, crate::admin::QuarantineCommand::Release { .. });
    let call = crate::admin::quarantine_call(command);
    if raw {
        std::io::stdout().write_all(&call_bytes(target, call)?)?;
        return Ok(());
    }
    let Some(value) = call_json(target, call)? else { return Ok(()) };
    println!("{}", serde_json::to_string_pretty(&value)?);
    if release {
        let list = |key: &str| {
            let addresses: Vec<&str> = value[key].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
            addresses.join(", ")
        };
        let (delivered, skipped) = (list("delivered"), list("skipped"));
        if !delivered.is_empty() {
            eprintln!("Message libéré, remis à : {delivered} / Message released, delivered to: {delivered}");
        }
        if !skipped.is_empty() {
            eprintln!(
                "Non remis (compte supprimé depuis) : {skipped} / Not delivered (account deleted since): {skipped}"
            );
        }
    }
    Ok(())
}

/// Runs the call; the JSON answer, if any, or the problem as an error.
pub(crate) fn call_json(target: &Target, call: ApiCall) -> anyhow::Result<Option<serde_json::Value>> {
    let body = call_bytes(target, call)?;
    if body.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&body).context("the server's answer is not JSON")?))
}

/// Runs the call; the answer's body, or the problem as an error.
fn call_bytes(target: &Target, call: ApiCall) -> anyhow::Result<Vec<u8>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (status, body) = runtime.block_on(async {
        match &target.url {
            Some(url) => remote(target, url, call).await,
            None => local(target, call).await,
        }
    })?;
    if status < 400 {
        return Ok(body);
    }
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|problem| problem["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    anyhow::bail!("{status}: {detail}")
}

/// The same handlers as the server's, in this process, as the operator.
async fn local(target: &Target, call: ApiCall) -> anyhow::Result<(u16, Vec<u8>)> {
    let config = crate::load_config(target.config.as_deref())?;
    let store = hameau_store::Store::open(&config.store).await.context("opening the store")?;
    let registry = Arc::new(hameau_telemetry::Registry::new());
    let directory = hameau_directory::Directory::new(store.clone(), config.directory.clone());
    let mail = crate::cluster::mail(&config, &store, &directory).await?;
    let router = hameau_http::router(crate::serve::app_state(&config, &store, &directory, &mail, &registry));
    let body = match &call.body {
        Some(value) => Body::from(serde_json::to_vec(value)?),
        None => Body::empty(),
    };
    let request = axum::http::Request::builder()
        .method(call.method)
        .uri(&call.path)
        .header("content-type", "application/json")
        .extension(hameau_http::api::LocalOperator)
        .body(body)?;
    let response = router.oneshot(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes().to_vec();
    store.close().await.context("closing the store")?;
    Ok((status, bytes))
}

/// The call over HTTPS, HTTP/1.1, one request on one connection.
async fn remote(target: &Target, url: &str, call: ApiCall) -> anyhow::Result<(u16, Vec<u8>)> {
    let api_key = target.api_key.as_deref().context("--url needs --api-key (or HAMEAU_API_KEY)")?;
    let authority = url.strip_prefix("https://").context("--url must start with https://")?.trim_end_matches('/');
    anyhow::ensure!(!authority.contains('/'), "--url is the server's base URL, without a path");
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            (host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse::<u16>().context("--url port")?)
        }
        _ => (authority.to_string(), 443),
    };
    let tls = crate::tls::client_config(target.ca_file.as_deref())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone()).context("--url host name")?;
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.context("TLS handshake")?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let body = match &call.body {
        Some(value) => http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(value)?)),
        None => http_body_util::Full::new(bytes::Bytes::new()),
    };
    let request = hyper::Request::builder()
        .method(call.method)
        .uri(&call.path)
        .header("host", authority)
        .header("authorization", format!("Bearer {api_key}"))
        .header("content-type", "application/json")
        .body(body)?;
    let response = sender.send_request(request).await.context("sending the request")?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes().to_vec();
    Ok((status, bytes))
}
