//! `hameau dns check` against a real authoritative DNS server (knotd) started on
//! 127.0.0.1: a correct zone, a zone with a wrong SPF, a zone without DMARC.

use crate::support::{config_path, init_with_token, run, start_knot};

#[test]
fn dns_check_against_a_real_authoritative_server() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    let c = config.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", c]);
        run(&all)
    };
    assert!(cli(&["tenant", "create", "a", "--name", "A"]).0.success());
    let mut zones = Vec::new();
    for (domain, edit) in [("good.test", None), ("badspf.test", Some("spf")), ("nodmarc.test", Some("dmarc"))] {
        assert!(cli(&["domain", "create", domain, "--tenant", "a"]).0.success());
        let (status, records, stderr) = cli(&["dns", "records", domain]);
        assert!(status.success(), "{stderr}");
        let records = match edit {
            None => records,
            Some("spf") => records.replace("\"v=spf1 mx -all\"", "\"v=spf1 a ~all\""),
            Some(_) => {
                records.lines().filter(|line| !line.starts_with("_dmarc.")).map(|line| format!("{line}\n")).collect()
            }
        };
        zones.push((domain, records));
    }
    let knot_dir = tempfile::tempdir().unwrap();
    let knot = start_knot(knot_dir.path(), &zones);
    let resolver = format!("127.0.0.1:{}", knot.port);
    let check = |domain: &str| cli(&["dns", "check", domain, "--resolver", &resolver]);

    let (status, stdout, stderr) = check("good.test");
    assert!(status.success(), "stdout: {stdout} stderr: {stderr}");
    assert!(stdout.lines().filter(|line| !line.starts_with("RCPNT")).all(|line| line.starts_with("OK ")), "{stdout}");
    assert!(stdout.contains("OK       MX    good.test: 10 localhost."), "{stdout}");
    assert!(stdout.ends_with("RCPNT: conforming (MX, SPF, DMARC p=quarantine|reject with pct=100)\n"), "{stdout}");

    let (status, stdout, stderr) = check("badspf.test");
    assert!(!status.success());
    assert!(stdout.contains("WRONG    TXT   badspf.test: found v=spf1 a ~all (expected v=spf1 mx -all)"), "{stdout}");
    assert!(stdout.contains("OK       TXT   _dmarc.badspf.test"), "{stdout}");
    assert_eq!(stderr.trim_end(), "hameau: error: badspf.test: the published records are not all right (see above)");

    let (status, stdout, _) = check("nodmarc.test");
    assert!(!status.success());
    assert!(stdout.contains("MISSING  TXT   _dmarc.nodmarc.test: v=DMARC1; p=reject; pct=100"), "{stdout}");
    assert!(stdout.contains("OK       TXT   nodmarc.test: v=spf1 mx -all"), "{stdout}");
    assert!(stdout.ends_with("RCPNT: not conforming: no DMARC record\n"), "{stdout}");

    // A domain the server does not serve: it refuses, and the check says so in one line
    // rather than calling every record missing.
    assert!(cli(&["domain", "create", "elsewhere.test", "--tenant", "a"]).0.success());
    let (status, stdout, stderr) = check("elsewhere.test");
    assert!(!status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.starts_with("hameau: error: looking up elsewhere.test. MX: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
