//! TLS: the server certificates from PEM files (reloaded on SIGHUP), and the self-signed certificate that
//! `hameau init` makes for first use.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use hameau_config::Config;
use hameau_net::Certificates;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::CertifiedKey;

/// The certificate table every TLS listener serves from: `[tls]`'s certificate for every
/// name, and each `[tls] sni` certificate for its names. When neither file of `[tls]`
/// exists (first start without `hameau init`), a self-signed certificate for
/// `server.hostname` is made there first, so that TLS works from the start.
pub fn certificates(config: &Config) -> anyhow::Result<Arc<Certificates>> {
    let cert_path = config.certificate_path();
    let key_path = config.private_key_path();
    if !cert_path.exists() && !key_path.exists() {
        tracing::warn!(
            certificate = %cert_path.display(),
            "no TLS certificate: made a self-signed one for first use; replace it with a real one \
             (files in [tls] or ACME in [acme]: docs/certificates.md)"
        );
        write_self_signed(&config.server.hostname, &cert_path, &key_path)
            .map_err(|e| config.error("tls.certificate", format!("{e:#}")))?;
    }
    let (fallback, named) = read_files(config)?;
    let certificates = Certificates::new(fallback);
    for (names, key) in named {
        certificates.install(&names, key);
    }
    Ok(certificates)
}

/// Reads every certificate file of `config` again into `certificates` (SIGHUP): a file
/// changed on disk is served from the next handshake on; names `previous` had from files
/// and `config` no longer lists fall back. Nothing changes if any file is unusable.
pub fn reload_certificates(config: &Config, previous: &Config, certificates: &Certificates) -> anyhow::Result<()> {
    let (fallback, named) = read_files(config)?;
    let listed: Vec<String> = named.iter().flat_map(|(names, _)| names.iter().cloned()).collect();
    let dropped: Vec<String> = previous
        .tls
        .sni
        .iter()
        .flat_map(|entry| entry.names.iter().cloned())
        .filter(|name| !listed.iter().any(|listed| listed.eq_ignore_ascii_case(name)))
        .collect();
    certificates.remove(&dropped);
    certificates.set_fallback(fallback);
    for (names, key) in named {
        certificates.install(&names, key);
    }
    Ok(())
}

/// `[tls]`'s certificate and each `[tls] sni` one with its names, each checked against its key.
type CertificateFiles = (Arc<CertifiedKey>, Vec<(Vec<String>, Arc<CertifiedKey>)>);

fn read_files(config: &Config) -> anyhow::Result<CertificateFiles> {
    // `[tls]`'s errors name the key of the file at fault; `[tls] sni`'s name the list.
    let read = |keys: [&str; 2], cert: &Path, private: &Path| -> anyhow::Result<Arc<CertifiedKey>> {
        let chain =
            std::fs::read(cert).map_err(|e| config.error(keys[0], format!("cannot read {}: {e}", cert.display())))?;
        let secret = std::fs::read(private)
            .map_err(|e| config.error(keys[1], format!("cannot read {}: {e}", private.display())))?;
        hameau_net::certs::certified_key(&chain, &secret).map_err(|e| {
            let key = if matches!(e, hameau_net::certs::CertError::Chain(_)) { keys[0] } else { keys[1] };
            config.error(key, format!("{} and {}: {e}", cert.display(), private.display())).into()
        })
    };
    let fallback =
        read(["tls.certificate", "tls.private_key"], &config.certificate_path(), &config.private_key_path())?;
    let mut named = Vec::new();
    for (names, cert, private) in config.sni_paths() {
        named.push((names, read(["tls.sni", "tls.sni"], &cert, &private)?));
    }
    Ok((fallback, named))
}

/// The server configuration of a listener: certificates from the table, `alpn` offered.
pub fn server_config(certificates: &Arc<Certificates>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    hameau_net::certs::server_config(certificates.clone(), alpn.iter().map(|protocol| protocol.to_vec()).collect())
}

/// Writes a self-signed certificate for `hostname` (and localhost) and its key.
pub fn write_self_signed(hostname: &str, cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|name| name == extra) {
            names.push(extra.to_string());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names).context("generating a self-signed certificate")?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // The key first, then the certificate, each replaced whole: a certificate on disk
    // always has its key beside it, and a run cut short in between is redone whole.
    write_atomic(key_path, certified.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(cert_path, certified.cert.pem().as_bytes(), 0o644)
}

/// Writes `content` to `path` whole or not at all: into a temporary file beside it (with
/// `mode` from the start, so a secret is never readable by others), synced, then renamed
/// over `path`, and the directory synced so that the rename survives a crash.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let temp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    // A leftover of an earlier run of this same process id would block `create_new`.
    let _ = std::fs::remove_file(&temp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .and_then(|mut file| file.write_all(content).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).with_context(|| format!("syncing {}", dir.display()))
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))
}

/// The system's trust anchors and, if given, those of a PEM file.
pub fn roots(ca_file: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        anyhow::ensure!(!certs.is_empty(), "{}: no certificate in it", path.display());
        for cert in certs {
            roots.add(cert).with_context(|| format!("{}", path.display()))?;
        }
    }
    Ok(roots)
}

/// A TLS client configuration trusting the system's roots and, if given, a PEM file.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let roots = roots(ca_file).context("--ca-file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
