//! The database's hosts: one, or several of which Hameau always uses the primary, the one
//! that accepts writes, so that after a failover (a standby promoted) every node follows
//! it by itself.
//!
//! `store.url` names several hosts as libpq does: `postgresql://user@db1:5432,db2:5432/hameau`,
//! or `?host=db1,db2&port=5432,5432`. `target_session_attrs` may say `read-write` or
//! `primary`, which is what Hameau does anyway with several hosts; any other value is
//! refused (Hameau writes). sqlx connects to one host: each connection Hameau opens goes
//! through [`Hosts::connect`], which tries the host that was the primary last, then the
//! others in order, and keeps the first that is not in recovery. When the primary moved,
//! the pool is told, so that its next connections go there too.

use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection};

use crate::Error;

/// How long one host is given to accept a connection before the next is tried: a host
/// that died without closing its sockets would otherwise hold every reconnection up for
/// the system's TCP timeout (minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most hosts in `store.url`: a primary and its standbys.
const HOSTS_MAX: usize = 16;

pub(crate) struct Hosts {
    /// The options of each host, in the URL's order.
    candidates: Vec<PgConnectOptions>,
    /// The host that was the primary at the last connection.
    current: AtomicUsize,
    /// The pool, told when the primary moved.
    pool: OnceLock<PgPool>,
}

impl Hosts {
    /// The hosts of `url`, each connection in `schema` (none when empty). Errors never
    /// repeat the URL (it may hold a password).
    pub(crate) fn parse(url: &str, schema: &str) -> Result<Hosts, Error> {
        let urls = split_hosts(url)?;
        let mut candidates = Vec::with_capacity(urls.len());
        for url in urls {
            let connect = PgConnectOptions::from_str(&url).map_err(|e| {
                Error::InvalidOptions(format!("store.url is not a PostgreSQL URL: {}", without_url(&e)))
            })?;
            let connect = connect.application_name("hameau");
            candidates.push(if schema.is_empty() { connect } else { connect.options([("search_path", schema)]) });
        }
        Ok(Hosts { candidates, current: AtomicUsize::new(0), pool: OnceLock::new() })
    }

    /// The options of the host that was the primary last.
    pub(crate) fn current(&self) -> PgConnectOptions {
        self.candidates[self.current.load(Ordering::Relaxed)].clone()
    }

    /// Tells `pool` of the primary's moves from now on.
    pub(crate) fn follow_with(&self, pool: &PgPool) {
        let _ = self.pool.set(pool.clone());
    }

    /// A connection to the primary: the host that was the primary last first, then the
    /// others in order; with several hosts, one in recovery (a standby) is passed over.
    pub(crate) async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let n = self.candidates.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        for step in 0..n {
            let index = (start + step) % n;
            let connecting = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.candidates[index]));
            let mut connection = match connecting.await {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) => {
                    last_error = Some(e);
                    continue;
                }
                Err(_) => {
                    let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out");
                    last_error = Some(sqlx::Error::Io(timed_out));
                    continue;
                }
            };
            if n > 1 {
                match sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&mut connection).await {
                    Ok(false) => {}
                    Ok(true) => {
                        let _ = connection.close().await;
                        last_error =
                            Some(sqlx::Error::Protocol(format!("host {} of store.url is a standby", index + 1)));
                        continue;
                    }
                    Err(e) => {
                        last_error = Some(e);
                        continue;
                    }
                }
            }
            if index != start
                && self.current.compare_exchange(start, index, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                tracing::warn!(
                    host = index + 1,
                    "store: the primary is now host {} of store.url; following it",
                    index + 1
                );
                if let Some(pool) = self.pool.get() {
                    pool.set_connect_options(self.candidates[index].clone());
                }
            }
            return Ok(connection);
        }
        Err(last_error.unwrap_or_else(|| sqlx::Error::Protocol("store.url names no host".into())))
    }
}

/// One URL per host of `url` (itself when it names one). The hosts are the authority's
/// comma-separated list, or the `host` parameter's (with `port`'s, one for all or one
/// each); `target_session_attrs` is taken out.
fn split_hosts(url: &str) -> Result<Vec<String>, Error> {
    let invalid = |problem: &str| Error::InvalidOptions(format!("store.url: {problem}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("is not a postgresql:// URL"))?;
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(at) => before_query.split_at(at),
        None => (before_query, ""),
    };
    let (userinfo, host_list) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let mut params = Vec::new();
    let (mut query_hosts, mut query_ports) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "target_session_attrs" => {
                if !matches!(value, "read-write" | "primary" | "any") {
                    return Err(invalid(&format!(
                        "target_session_attrs={value} is not possible: Hameau writes, so it connects to the primary \
                         (read-write)"
                    )));
                }
            }
            "host" => query_hosts = Some(list(value)),
            "port" => query_ports = Some(list(value)),
            _ => params.push(pair),
        }
    }
    let hosts: Vec<String> = match &query_hosts {
        Some(hosts) => hosts.clone(),
        None => list(host_list),
    };
    if hosts.len() > HOSTS_MAX {
        return Err(invalid(&format!("{} hosts, over the most of {HOSTS_MAX}", hosts.len())));
    }
    if hosts.len() <= 1 && query_ports.as_ref().is_none_or(|ports| ports.len() <= 1) && query_hosts.is_none() {
        let mut single = format!("{scheme}://{authority}{path}");
        let mut pairs: Vec<String> = params.iter().map(|pair| pair.to_string()).collect();
        pairs.extend(query_ports.iter().flatten().map(|port| format!("port={port}")));
        if !pairs.is_empty() {
            single = format!("{single}?{}", pairs.join("&"));
        }
        return Ok(vec![single]);
    }
    let ports = query_ports.unwrap_or_default();
    if ports.len() > 1 && ports.len() != hosts.len() {
        return Err(invalid(&format!(
            "{} hosts but {} ports: give one port, or one per host",
            hosts.len(),
            ports.len()
        )));
    }
    let userinfo = userinfo.map_or(String::new(), |userinfo| format!("{userinfo}@"));
    let mut urls = Vec::with_capacity(hosts.len());
    for (index, host) in hosts.iter().enumerate() {
        let mut pairs: Vec<String> = params.iter().map(|pair| pair.to_string()).collect();
        // sqlx wants the host in the URL's authority; a socket directory stays a parameter.
        let authority_host = if host.starts_with('/') {
            pairs.push(format!("host={host}"));
            "localhost".to_string()
        } else if host.contains(':') && !host.starts_with('[') && query_hosts.is_some() {
            format!("[{host}]")
        } else {
            host.clone()
        };
        if let Some(port) = ports.get(if ports.len() == 1 { 0 } else { index }) {
            pairs.push(format!("port={port}"));
        }
        let mut one = format!("{scheme}://{userinfo}{authority_host}{path}");
        if !pairs.is_empty() {
            one = format!("{one}?{}", pairs.join("&"));
        }
        urls.push(one);
    }
    Ok(urls)
}

/// A comma-separated list (`,` or its escape `%2C`).
fn list(value: &str) -> Vec<String> {
    value
        .replace("%2C", ",")
        .replace("%2c", ",")
        .split(',')
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// sqlx's error about a URL, without the URL itself.
fn without_url(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::split_hosts;

    #[test]
    fn hosts_are_split_as_libpq_names_them() {
        let one = "postgresql://hameau:pw@db1:5432/hameau?sslmode=disable";
        assert_eq!(split_hosts(one).unwrap(), vec![one.to_string()]);
        assert_eq!(
            split_hosts(
                "postgresql://hameau:pw@db1:5432,db2:5433/hameau?sslmode=disable&target_session_attrs=read-write"
            )
            .unwrap(),
            vec![
                "postgresql://hameau:pw@db1:5432/hameau?sslmode=disable".to_string(),
                "postgresql://hameau:pw@db2:5433/hameau?sslmode=disable".to_string(),
            ]
        );
        assert_eq!(
            split_hosts("postgresql://hameau@/hameau?host=db1%2Cdb2&port=5432").unwrap(),
            vec![
                "postgresql://hameau@db1/hameau?port=5432".to_string(),
                "postgresql://hameau@db2/hameau?port=5432".to_string(),
            ]
        );
        assert_eq!(
            split_hosts("postgresql://hameau@/hameau?host=db1,/run/postgresql&port=1,2").unwrap()[1],
            "postgresql://hameau@localhost/hameau?host=/run/postgresql&port=2"
        );
        assert!(split_hosts("postgresql://h@a,b/d?port=1,2,3").unwrap_err().to_string().contains("3 ports"));
        let refused =
            split_hosts("postgresql://h:secret@a,b/d?target_session_attrs=read-only").unwrap_err().to_string();
        assert!(refused.contains("read-only") && !refused.contains("secret"), "{refused}");
        assert!(split_hosts("db1:5432").is_err());
        let many = format!("postgresql://h@{}/d", vec!["a"; 17].join(","));
        assert!(split_hosts(&many).unwrap_err().to_string().contains("17 hosts"));
    }
}
