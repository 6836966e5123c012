//! Several `hameau` nodes on one PostgreSQL database (issue 16): each test starts two
//! servers on the same configuration (the same database, listeners on ports of their own),
//! whatever store the rest of the run is on.

use std::time::{Duration, Instant};

use crate::imap::{Raw, deliver, imap_account, quick_dns};
use crate::support::{config_path, init_on_postgresql, set_config, start_server};

/// A message delivered by node A's MX reaches an IMAP session sitting in IDLE on node B
/// within a second: A's commit is notified by PostgreSQL to B's store, which wakes the
/// session as its own commits would.
#[test]
fn a_delivery_on_one_node_wakes_idle_on_the_other() {
    let (dir, _) = init_on_postgresql();
    let config = config_path(dir.path());
    imap_account(&config);
    set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let _dns = quick_dns(&config);
    let a = start_server(&config);
    let b = start_server(&config);
    assert_ne!(a.smtp, b.smtp, "two nodes, each with its own listeners");
    let smtp_a = a.smtp[0].port();
    deliver(smtp_a, "premier", "un");

    let stream = std::net::TcpStream::connect(b.imap[0]).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut idler = Raw { reader: std::io::BufReader::new(stream.try_clone().unwrap()), writer: stream };
    idler.until("* OK");
    idler.command("a LOGIN user@a.test \"correct horse battery staple\"", "a OK");
    let selected = idler.command("b SELECT INBOX", "b OK");
    assert!(selected.contains("* 1 EXISTS"), "node B sees what node A delivered: {selected}");
    idler.send("c IDLE");
    idler.until("+ idling");
    for n in 2..=4 {
        let sender = std::thread::spawn(move || {
            deliver(smtp_a, "suivant", "encore");
            Instant::now()
        });
        let seen = idler.until(&format!("* {n} EXISTS"));
        let arrived = Instant::now();
        let delivered = sender.join().unwrap();
        assert!(seen.contains(&format!("* {n} EXISTS")), "{seen}");
        assert!(arrived <= delivered + Duration::from_secs(1), "heard {:?} after the 250", arrived - delivered);
    }
    idler.send("DONE");
    idler.until("c OK");
    for server in [&a, &b] {
        assert!(!server.log().join("\n").contains("panicked"));
    }
}
