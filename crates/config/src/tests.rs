use std::path::Path;

use crate::{Config, LogFormat};

/// Parses `text` as `/etc/hameau/hameau.toml` and returns the error line, or "ok".
fn check(text: &str, expect: &str) {
    let got = match Config::parse(Path::new("/etc/hameau/hameau.toml"), text) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expect, "for {text:?}");
    assert!(!got.contains('\n'), "one line: {got}");
}

#[test]
fn accepted() {
    check("", "ok");
    check("[server]\nhostname = \"mx.mairie-exemple.fr\"\n", "ok");
    check("[store]\nblob_chunk_bytes = 65536\n", "ok");
    check("[http]\nlisten = [\"127.0.0.1:0\", \"[::1]:8443\"]\n", "ok");
    check("[log]\nformat = \"json\"\nlevel = \"debug\"\n", "ok");
}

#[test]
fn unknown_keys() {
    check(
        "[server]\nhostnme = \"x\"\n",
        "/etc/hameau/hameau.toml:2: server.hostnme: unknown key `hostnme` (known keys: `hostname`, `data_dir`, `shutdown_grace_s`, `release_start_code`)",
    );
    check(
        "[servr]\n",
        "/etc/hameau/hameau.toml:1: servr: unknown key `servr` (known keys: `server`, `log`, `tls`, `store`, `mail`, `directory`, `auth`, `http`, `smtp`, `submission`, `queue`, `outbound`, `imap`, `dns`, `acme`, `migrate`, `backup`, `filter`, `jmap`)",
    );
    check(
        "\n\n[store]\ncache_bytes = 2097152\nfoo = 1\n",
        "/etc/hameau/hameau.toml:5: store.foo: unknown key `foo` (known keys: `backend`, `cache_bytes`, `url`, `schema`, `pool_connections`, `move_wait_ms`, `clusters`, `key_bytes_max`, `value_bytes_max`, `batch_ops_max`, `blob_chunk_bytes`, `blob_bytes_max`, `commit_group_max`, `commit_queue_max`)",
    );
}

#[test]
fn wrong_types() {
    check(
        "[server]\nshutdown_grace_s = \"thirty\"\n",
        "/etc/hameau/hameau.toml:2: server.shutdown_grace_s: invalid type: string \"thirty\", expected a non-negative integer",
    );
    check(
        "[store]\ncache_bytes = -1\n",
        "/etc/hameau/hameau.toml:2: store.cache_bytes: invalid value: integer `-1`, expected a non-negative integer",
    );
    check(
        "[log]\nlevel = \"verbose\"\n",
        "/etc/hameau/hameau.toml:2: log.level: unknown variant `verbose`, expected one of `error`, `warn`, `info`, `debug`, `trace`",
    );
    check(
        "[http]\nlisten = [\"localhost\"]\n",
        "/etc/hameau/hameau.toml:2: http.listen: invalid socket address syntax",
    );
    check("server = 3\n", "/etc/hameau/hameau.toml:1: server: invalid type: integer `3`, expected a table");
}

#[test]
fn syntax_errors() {
    check("[server\n", "/etc/hameau/hameau.toml:1: unclosed table, expected `]`");
    check("a = \n", "/etc/hameau/hameau.toml:1: string values must be quoted, expected literal string");
}

#[test]
fn limits_out_of_range() {
    check(
        "[store]\nblob_chunk_bytes = 100\n",
        "/etc/hameau/hameau.toml:2: store.blob_chunk_bytes: 100 is out of range: it must be between 4096 and 67108864",
    );
    check(
        "[server]\nshutdown_grace_s = 0\n",
        "/etc/hameau/hameau.toml:2: server.shutdown_grace_s: 0 is out of range: it must be between 1 and 3600",
    );
    check(
        "[http]\nconnections_max = 0\n",
        "/etc/hameau/hameau.toml:2: http.connections_max: 0 is out of range: it must be between 1 and 1000000",
    );
    check(
        "[backup]\nchain_backups_max = 0\n",
        "/etc/hameau/hameau.toml:2: backup.chain_backups_max: 0 is out of range: it must be between 1 and 100000",
    );
}

#[test]
fn relationships_between_limits() {
    check(
        "[store]\nvalue_bytes_max = 65536\nblob_chunk_bytes = 131072\n",
        "/etc/hameau/hameau.toml:3: store.blob_chunk_bytes: 131072 is larger than store.value_bytes_max (65536): a chunk is stored as one value",
    );
    // The limit broken by a default still names the key, without a line.
    check(
        "[store]\ncommit_queue_max = 10\n",
        "/etc/hameau/hameau.toml: store.commit_group_max: 1024 is larger than store.commit_queue_max (10): a group is taken from the queue",
    );
    check(
        "[backup]\nline_bytes_max = 65536\n",
        "/etc/hameau/hameau.toml:2: backup.line_bytes_max: 65536 is smaller than a record line of store.key_bytes_max and store.value_bytes_max in base64 (1403560)",
    );
}

/// `[migrate.files]` is `hameau_mailfile::Limits`, checked under its dotted name.
#[test]
fn migrate_files_limits() {
    check(
        "[migrate.files]\nline_bytes_max = 2000000\nmessage_bytes_max = 1048576\n",
        "/etc/hameau/hameau.toml:2: migrate.files.line_bytes_max: must not exceed message_bytes_max",
    );
    check(
        "[migrate]\nverify_contents = true\n[migrate.files]\ndepth_max = 0\n",
        "/etc/hameau/hameau.toml:4: migrate.files.depth_max: 0 is out of range: it must be between 1 and 1000",
    );
    check(
        "[migrate.files]\ndepht_max = 3\n",
        "/etc/hameau/hameau.toml:2: migrate.files.depht_max: unknown key `depht_max` (known keys: `message_bytes_max`, `line_bytes_max`, `folders_max`, `depth_max`, `messages_max`, `keywords_max`)",
    );
    let config = Config::parse(Path::new("/x.toml"), "[migrate.files]\nmessages_max = 5\n").unwrap();
    assert_eq!(config.migrate.files.messages_max, 5);
    assert_eq!(config.migrate.files.depth_max, 32);
}

#[test]
fn trusted_arc_sealers_are_domain_names() {
    check(
        "[smtp]\narc_trusted_sealers = [\"listes.example.fr\", \"Lists.Example.org\"]\n",
        "/etc/hameau/hameau.toml:2: smtp.arc_trusted_sealers: \"Lists.Example.org\" is not a lower-case domain name such as \"listes.example.fr\"",
    );
    check(
        "[smtp]\narc_trusted_sealers = [\"localhost\"]\n",
        "/etc/hameau/hameau.toml:2: smtp.arc_trusted_sealers: \"localhost\" is not a lower-case domain name such as \"listes.example.fr\"",
    );
}

#[test]
fn clusters_need_postgresql_names_and_urls() {
    let pg = "[store]\nbackend = \"postgresql\"\nurl = \"postgresql://hameau@127.0.0.1/hameau\"\n";
    check(&format!("{pg}[store.clusters.b]\nurl = \"postgresql://hameau@127.0.0.2/hameau\"\n"), "ok");
    check(
        "[store.clusters.b]\nurl = \"postgresql://hameau@127.0.0.2/hameau\"\n",
        "/etc/hameau/hameau.toml:1: store.clusters: tenants over several clusters need store.backend = \"postgresql\": with RocksDB, one machine holds everything",
    );
    check(
        &format!("{pg}[store.clusters.main]\nurl = \"postgresql://hameau@127.0.0.2/hameau\"\n"),
        "/etc/hameau/hameau.toml:4: store.clusters: \"main\" cannot name a cluster: 1 to 32 of a-z, 0-9, '_' and '-', and not \"main\" (this store)",
    );
    check(
        &format!("{pg}[store.clusters.b]\nschema = \"b\"\n"),
        "/etc/hameau/hameau.toml: store.clusters.b.url: is needed with store.backend = \"postgresql\"",
    );
    check(
        &format!("{pg}[store]\nmove_wait_ms = 70000\n").replacen("[store]\nmove", "move", 1),
        "/etc/hameau/hameau.toml:4: store.move_wait_ms: 70000 is out of range: it must be between 0 and 60000",
    );
}

#[test]
fn features_not_there_say_so() {
    check(
        "[store]\nbackend = \"postgresql\"\n",
        "/etc/hameau/hameau.toml: store.url: is needed with store.backend = \"postgresql\"",
    );
    check(
        "[server]\nhostname = \"bad name\"\n",
        "/etc/hameau/hameau.toml:2: server.hostname: \"bad name\" is not a valid host name (letters, digits, '-' and '.')",
    );
}

#[test]
fn relative_data_dir_is_taken_from_the_file() {
    let config = Config::parse(Path::new("/srv/hameau/hameau.toml"), "[server]\ndata_dir = \"data\"\n").unwrap();
    assert_eq!(config.server.data_dir, Path::new("/srv/hameau/data"));
    assert_eq!(config.store_path(), Path::new("/srv/hameau/data/store"));
    assert_eq!(config.certificate_path(), Path::new("/srv/hameau/data/tls/cert.pem"));
}

#[test]
fn shipped_file_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/hameau.toml");
    let mut config = Config::load(&path).unwrap();
    config.source = None;
    assert_eq!(config, Config::builtin());
    assert_eq!(config.log.format, LogFormat::Auto);
}

/// Every key the crates declare is shown in the shipped file, in its section, and the file
/// shows no other; no key is declared twice in one section.
#[test]
fn shipped_file_shows_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/hameau.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let document = toml::de::DeTable::parse(&text).unwrap().into_inner();
    let mut shipped: Vec<String> = Vec::new();
    for (section, value) in document.iter() {
        let toml::de::DeValue::Table(table) = value.get_ref() else { panic!("{} is not a table", section.get_ref()) };
        shipped.extend(table.iter().map(|(key, _)| format!("{}.{}", section.get_ref(), key.get_ref())));
    }
    let mut declared: Vec<String> = Vec::new();
    for (section, keys) in Config::keys() {
        declared.extend(keys.iter().map(|key| format!("{section}.{key}")));
    }
    let n_declared = declared.len();
    declared.sort();
    declared.dedup();
    assert_eq!(declared.len(), n_declared, "a key is declared twice in one section");
    shipped.sort();
    assert_eq!(shipped, declared);
}

#[test]
fn error_points_at_the_key() {
    let config = Config::parse(Path::new("/x.toml"), "# comment\n\n[server]\ndata_dir = \"/nowhere\"\n").unwrap();
    let err = config.error("server.data_dir", "/nowhere is not writable");
    assert_eq!(err.to_string(), "/x.toml:4: server.data_dir: /nowhere is not writable");
    let err = Config::builtin().error("server.data_dir", "not writable");
    assert_eq!(err.to_string(), "built-in configuration: server.data_dir: not writable");
}

#[test]
fn security_settings_only_go_up() {
    check(
        "[directory]\nargon2_memory_kib = 4096\n",
        "/etc/hameau/hameau.toml:2: directory.argon2_memory_kib: 4096 is out of range: it must be between 19456 and 4194304",
    );
    check(
        "[directory]\nargon2_iterations = 1\n",
        "/etc/hameau/hameau.toml:2: directory.argon2_iterations: 1 is out of range: it must be between 2 and 100",
    );
    check(
        "[auth]\nfailures_before_delay = 30\n",
        "/etc/hameau/hameau.toml:2: auth.failures_before_delay: 30 must be below auth.failures_max (20)",
    );
    check(
        "[http]\nmetrics_token = \"short\"\n",
        "/etc/hameau/hameau.toml:2: http.metrics_token: must be empty (disabled) or at least 16 visible ASCII characters",
    );
}

/// `[smtp]` and `[imap]` hold the keys of the server and of its sessions: each is read by
/// its owner, and errors still name the line and the key.
#[test]
fn sections_shared_by_two_crates() {
    let config = Config::parse(
        Path::new("/x.toml"),
        "[smtp]\nwrite_timeout_s = 61\nline_bytes_max = 2048\n[imap]\nplaintext_auth = true\nidle_timeout_s = 3600\n",
    )
    .unwrap();
    assert_eq!((config.smtp.write_timeout_s, config.smtp.limits.line_bytes_max), (61, 2048));
    assert_eq!((config.imap.plaintext_auth, config.imap.limits.idle_timeout_s), (true, 3600));
    check(
        "[smtp]\n\nline_bytes_max = \"long\"\n",
        "/etc/hameau/hameau.toml:3: smtp.line_bytes_max: invalid type: string \"long\", expected a non-negative integer",
    );
    check(
        "[imap]\nliteral_bytes_max = 1048576\nappend_bytes_max = 65536\n",
        "/etc/hameau/hameau.toml:2: imap.literal_bytes_max: 1048576 is larger than imap.append_bytes_max (65536)",
    );
    check(
        "[smtp]\nbdat_chunk_bytes_max = 50000000\n",
        "/etc/hameau/hameau.toml:2: smtp.bdat_chunk_bytes_max: 50000000 is larger than smtp.message_bytes_max (41943040)",
    );
    let unknown = Config::parse(Path::new("/x.toml"), "[smtp]\nlisten = []\nline_max = 1\n").unwrap_err();
    assert_eq!(unknown.line, Some(3));
    assert_eq!(unknown.key.as_deref(), Some("smtp.line_max"));
    assert!(unknown.problem.starts_with("unknown key `line_max` (known keys: `listen`, "), "{unknown}");
    assert!(
        unknown.problem.contains("`postmaster`, `vacation_period_s`, `vacation_senders_max`, `line_bytes_max`, "),
        "{unknown}"
    );
    // A message is stored as one blob, whichever way it comes.
    check(
        "[store]\nblob_bytes_max = 1048576\n",
        "/etc/hameau/hameau.toml: smtp.message_bytes_max: 41943040 is larger than store.blob_bytes_max (1048576): a message is stored as one blob",
    );
}

#[test]
fn sni_certificates_name_what_they_serve() {
    check(
        "[tls]\nsni = [{ names = [\"autoconfig.ville.fr\", \"*.ville.fr\"], certificate = \"a.pem\", private_key = \"a.key\" }]\n",
        "ok",
    );
    check(
        "[tls]\nsni = [{ names = [], certificate = \"a.pem\", private_key = \"a.key\" }]\n",
        "/etc/hameau/hameau.toml:2: tls.sni: each certificate must list the names it serves (names = [...])",
    );
    check(
        "[tls]\nsni = [{ names = [\"ville fr\"], certificate = \"a.pem\", private_key = \"a.key\" }]\n",
        "/etc/hameau/hameau.toml:2: tls.sni: \"ville fr\" is not a valid host name (letters, digits, '-' and '.')",
    );
}
