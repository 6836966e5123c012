use hameau_smtp_session::header::strip_results;

fn check(raw: &str, expect: &str) {
    let got = strip_results(raw.as_bytes(), "mx.hameau.test");
    assert_eq!(String::from_utf8(got).unwrap(), expect);
}

#[test]
fn forged_results_claiming_our_name_are_removed() {
    check(
        "Authentication-Results: mx.hameau.test; dkim=pass\r\nSubject: x\r\n\r\nbody\r\n",
        "Subject: x\r\n\r\nbody\r\n",
    );
    // Folded, other case, other spacing.
    check(
        "authentication-results:  MX.Hameau.Test;\r\n\tspf=pass\r\n smtp.mailfrom=a@b\r\nSubject: x\r\n\r\nbody\r\n",
        "Subject: x\r\n\r\nbody\r\n",
    );
    // Another server's results are kept, and so is anything in the body.
    check(
        "Authentication-Results: mx.elsewhere.test; dkim=pass\r\n\r\nAuthentication-Results: mx.hameau.test; x\r\n",
        "Authentication-Results: mx.elsewhere.test; dkim=pass\r\n\r\nAuthentication-Results: mx.hameau.test; x\r\n",
    );
    // A name that merely starts like ours is not ours.
    check(
        "Authentication-Results: mx.hameau.test.evil; dkim=pass\r\n\r\n",
        "Authentication-Results: mx.hameau.test.evil; dkim=pass\r\n\r\n",
    );
    // No body at all.
    check("Authentication-Results: mx.hameau.test; none\r\nSubject: y\r\n", "Subject: y\r\n");
}

#[test]
fn census_counts_what_authentication_needs() {
    use crate::inbound::Census;
    let raw = b"From: a@b.test\r\nDKIM-Signature: 1\r\ndkim-signature : 2\r\n\tfolded\r\nARC-Seal: i=1\r\n\
                ARC-Message-Signature: i=1\r\nARC-Message-Signature: i=2\r\nFrom: c@d.test\r\n\r\n\
                From: in the body\r\n";
    assert_eq!(Census::of(raw), Census { n_fields: 7, n_from: 2, n_dkim: 2, n_arc: 2 });
    let census = Census::of(raw);
    let trimmed = census.trimmed(raw, 1, false);
    assert_eq!(
        String::from_utf8(trimmed).unwrap(),
        "From: a@b.test\r\nDKIM-Signature: 1\r\nARC-Seal: i=1\r\nARC-Message-Signature: i=1\r\n\
         ARC-Message-Signature: i=2\r\nFrom: c@d.test\r\n\r\nFrom: in the body\r\n"
    );
    let trimmed = census.trimmed(raw, 5, true);
    assert_eq!(
        String::from_utf8(trimmed).unwrap(),
        "From: a@b.test\r\nDKIM-Signature: 1\r\ndkim-signature : 2\r\n\tfolded\r\nFrom: c@d.test\r\n\r\n\
         From: in the body\r\n"
    );
}

#[test]
fn authors_of_one_domain_only() {
    use crate::inbound::check_authors;
    let check = |froms: &[&str]| {
        let froms: Vec<String> = froms.iter().map(|from| from.to_string()).collect();
        check_authors(&froms).map_err(|reply| reply.to_string())
    };
    assert_eq!(check(&["maire@a.test"]), Ok(()));
    assert_eq!(check(&["maire@a.test", "adjoint@a.test"]), Ok(()));
    let several = Err("550 5.7.1 the From field names authors of several domains (RFC 7489 §6.6.1)".to_string());
    assert_eq!(check(&["maire@a.test", "x@evil.test"]), several);
    assert_eq!(check(&["x@evil.test", "maire@a.test"]), several);
    assert_eq!(check(&["maire@a.test", "nodomain"]), several);
    let none = Err("550 5.7.1 the From field has no address with a domain (RFC 7489 §6.6.1)".to_string());
    assert_eq!(check(&[]), none);
    assert_eq!(check(&["nodomain"]), none);
    assert_eq!(check(&["empty@"]), none);
}

#[test]
fn a_panicking_future_is_caught() {
    let future = crate::inbound::CatchUnwind(Box::pin(async {
        if std::hint::black_box(true) {
            panic!("a dependency panicked");
        }
        1
    }));
    let caught = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future);
    assert!(caught.is_err());
}

mod delivery {
    use std::time::Duration;

    use hameau_directory::{
        AccountRole, AccountUpdate, Directory, NewAccount, NewAlias, NewDomain, NewTenant, Options, Principal,
    };
    use hameau_mailbox::{Mail, Role};
    use hameau_store::Store;
    use mail_auth::MessageAuthenticator;

    use crate::{Envelope, Inbound, InboundOptions, RcptVerdict};

    const NOW: u64 = 1_795_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        inbound: Inbound,
        directory: Directory,
        mail: Mail,
    }

    /// A directory with tenant `a` (domain a.test, accounts user@ and other@, alias
    /// mairie@ to both), and a resolver that answers nothing (a closed local port): every
    /// check is a temporary error, which must not block delivery.
    async fn fixture() -> Fixture {
        fixture_with(None).await
    }

    async fn fixture_with(postmaster: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&hameau_store::Options::rocksdb(dir.path())).await.unwrap();
        let directory = Directory::new(store.clone(), Options::default());
        let op = Principal::Operator;
        let tenant = NewTenant {
            id: "a".into(),
            name: "A".into(),
            siren: None,
            insee: None,
            quota_bytes: None,
            accounts_max: None,
        };
        directory.create_tenant(&op, tenant, NOW).await.unwrap();
        directory.create_domain(&op, NewDomain { name: "a.test".into(), tenant: "a".into() }, NOW).await.unwrap();
        for address in ["user@a.test", "other@a.test"] {
            let account = NewAccount {
                address: address.into(),
                display_name: String::new(),
                password: None,
                quota_bytes: None,
                enabled: true,
                role: AccountRole::User,
            };
            directory.create_account(&op, account, NOW).await.unwrap();
        }
        let alias =
            NewAlias { address: "mairie@a.test".into(), targets: vec!["user@a.test".into(), "other@a.test".into()] };
        directory.create_alias(&op, alias, NOW).await.unwrap();
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let resolver = crate::dns::resolver(&[closed], Duration::from_millis(200), crate::dns::Cache::NONE).unwrap();
        let mail = Mail::new(store);
        let options = InboundOptions {
            hostname: "mx.hameau.test".into(),
            arc_trusted_sealers: Vec::new(),
            dkim_signatures_max: 5,
            arc_sets_max: 10,
            verifications_max: 2,
            postmaster: postmaster.map(str::to_string),
        };
        let inbound = Inbound::new(directory.clone(), mail.clone(), MessageAuthenticator(resolver), options);
        Fixture { _dir: dir, inbound, directory, mail }
    }

    fn refused(verdict: RcptVerdict) -> String {
        match verdict {
            RcptVerdict::Refuse(reply) => reply.to_string(),
            RcptVerdict::Accept(recipient) => panic!("accepted {recipient:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recipients() {
        let f = fixture().await;
        assert_eq!(refused(f.inbound.check_recipient("someone@elsewhere.test").await), "554 5.7.1 relay access denied");
        assert_eq!(
            refused(f.inbound.check_recipient("user%elsewhere.test@a.test").await),
            "550 5.1.1 no such user here"
        );
        assert_eq!(refused(f.inbound.check_recipient("nobody@a.test").await), "550 5.1.1 no such user here");
        assert_eq!(refused(f.inbound.check_recipient("not-an-address").await), "550 5.1.3 that is not an address");
        let RcptVerdict::Accept(alias) = f.inbound.check_recipient("Mairie@A.test").await else { panic!() };
        assert_eq!(alias.accounts.len(), 2);
        // Over quota: 452 at RCPT.
        let full = AccountUpdate { quota_bytes: Some(Some(0)), ..AccountUpdate::default() };
        f.directory.update_account(&Principal::Operator, "other@a.test", full).await.unwrap();
        assert_eq!(refused(f.inbound.check_recipient("other@a.test").await), "452 4.2.2 mailbox full, try again later");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivery_adds_headers_and_stores_once_per_account() {
        let f = fixture().await;
        let mut recipients = Vec::new();
        for address in ["mairie@a.test", "user@a.test"] {
            let RcptVerdict::Accept(recipient) = f.inbound.check_recipient(address).await else { panic!() };
            recipients.push(*recipient);
        }
        let envelope = Envelope {
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "sender.example".into(),
            mail_from: "jean@sender.example".into(),
            recipients,
            tls: true,
            received_at: NOW,
            id: "abc123".into(),
        };
        let raw = b"Authentication-Results: mx.hameau.test; dmarc=pass\r\nFrom: jean@sender.example\r\n\
                    To: mairie@a.test\r\nSubject: test\r\n\r\nBonjour\r\n";
        let reply = f.inbound.deliver(&envelope, raw).await;
        assert_eq!(reply.to_string(), "250 2.0.0 message accepted, id abc123");
        for account in ["user@a.test", "other@a.test"] {
            let recipient = f.directory.resolve_recipient(account).await.unwrap().unwrap();
            let id = recipient.accounts[0].id;
            let inbox = f.mail.mailbox_by_role(id, Role::Inbox).await.unwrap().unwrap();
            let entries = f.mail.uids(id, inbox.id).await.unwrap();
            // user@ is reached twice (directly and through the alias): one copy.
            assert_eq!(entries.len(), 1, "{account}");
            let stored = String::from_utf8(f.mail.raw(id, entries[0].email).await.unwrap()).unwrap();
            assert!(stored.starts_with("Authentication-Results: mx.hameau.test;"), "{stored}");
            assert!(stored.contains("\r\nReceived: from sender.example ([192.0.2.1])\r\n\tby mx.hameau.test (Hameau) with ESMTPS id abc123;\r\n\t"), "{stored}");
            assert!(!stored.contains("dmarc=pass"), "the forged result is gone: {stored}");
            assert!(
                stored.ends_with("From: jean@sender.example\r\nTo: mairie@a.test\r\nSubject: test\r\n\r\nBonjour\r\n")
            );
        }
        // A message without a header section is refused.
        let reply = f.inbound.deliver(&envelope, b"").await;
        assert_eq!(reply.code(), 554);
    }

    fn envelope(recipients: Vec<hameau_directory::Recipient>) -> Envelope {
        Envelope {
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "sender.example".into(),
            mail_from: "jean@sender.example".into(),
            recipients,
            tls: false,
            received_at: NOW,
            id: "abc123".into(),
        }
    }

    /// The INBOX of user@a.test, raw.
    async fn user_inbox(f: &Fixture) -> Vec<String> {
        let id = f.directory.resolve_recipient("user@a.test").await.unwrap().unwrap().accounts[0].id;
        let Some(inbox) = f.mail.mailbox_by_role(id, Role::Inbox).await.unwrap() else { return Vec::new() };
        let mut messages = Vec::new();
        for entry in f.mail.uids(id, inbox.id).await.unwrap() {
            messages.push(String::from_utf8(f.mail.raw(id, entry.email).await.unwrap()).unwrap());
        }
        messages
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_authors_are_refused() {
        let f = fixture().await;
        let RcptVerdict::Accept(user) = f.inbound.check_recipient("user@a.test").await else { panic!() };
        let envelope = envelope(vec![*user]);
        for (headers, reply) in [
            ("From: maire@a.test, x@evil.example\r\n", "550 5.7.1 the From field names authors of several domains"),
            ("From: maire@a.test\r\nFROM : x@evil.example\r\n", "550 5.7.1 the message has several From fields"),
            ("Subject: no author\r\n", "550 5.7.1 the message has no From field"),
            ("From: Le Maire\r\n", "550 5.7.1 the From field has no address with a domain"),
            ("From: maire@a.test, adjoint@A.test\r\n", "250 2.0.0"),
        ] {
            let raw = format!("{headers}To: user@a.test\r\n\r\nBonjour\r\n");
            let got = f.inbound.deliver(&envelope, raw.as_bytes()).await.to_string();
            assert!(got.starts_with(reply), "{headers:?}: {got}");
        }
        assert_eq!(user_inbox(&f).await.len(), 1);
    }

    /// Signatures past `dkim_signatures_max` are reported, not verified; a heavy message
    /// (over `HEAVY_MESSAGE_BYTES`) is authenticated off the async workers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signatures_over_the_limit_are_not_verified() {
        let f = fixture().await;
        let RcptVerdict::Accept(user) = f.inbound.check_recipient("user@a.test").await else { panic!() };
        let envelope = envelope(vec![*user]);
        let signature = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.example; s=sel;\r\n\
                         \th=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==\r\n";
        let body = "x".repeat(crate::inbound::HEAVY_MESSAGE_BYTES);
        let raw = format!("{}From: jean@sender.example\r\n\r\n{body}\r\n", signature.repeat(7));
        let reply = f.inbound.deliver(&envelope, raw.as_bytes()).await;
        assert_eq!(reply.code(), 250, "{reply}");
        let stored = user_inbox(&f).await.remove(0);
        let results = stored.split("\r\nReceived:").next().unwrap();
        assert_eq!(results.matches("\tdkim=").count(), 6, "{results}");
        assert!(
            results.contains(";\r\n\tdkim=permerror (2 more signatures not verified: over the limit of 5);\r\n\tspf="),
            "{results}"
        );
        assert_eq!(stored.matches("DKIM-Signature:").count(), 7, "the message is stored whole");
    }

    /// The MX through the driver's seam: the transaction's state lives in its session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mx_is_a_pipeline() {
        use hameau_smtp_session::{Credentials, Decision, MailParams, Mechanism};

        use crate::{Message, Pipeline};

        let f = fixture().await;
        assert!(f.inbound.auth_mechanisms().is_empty(), "no AUTH on the MX");
        let mut session = f.inbound.session("192.0.2.1:25000".parse().unwrap());
        assert_eq!(f.inbound.helo(&mut session, "sender.example").await, Decision::Accept);
        let params = MailParams::default();
        assert_eq!(f.inbound.mail_from(&mut session, "jean@sender.example", &params).await, Decision::Accept);
        let refused = |decision: Decision| match decision {
            Decision::Reject(reply) => reply.to_string(),
            Decision::Accept => panic!("accepted"),
        };
        assert_eq!(refused(f.inbound.rcpt_to(&mut session, "x@elsewhere.test").await), "554 5.7.1 relay access denied");
        assert_eq!(f.inbound.rcpt_to(&mut session, "user@a.test").await, Decision::Accept);
        let recipients = vec!["user@a.test".to_string()];
        let message = Message {
            mail_from: "jean@sender.example",
            recipients: &recipients,
            params: &params,
            data: b"From: jean@sender.example\r\nSubject: test\r\n\r\nBonjour\r\n",
            tls: false,
            received_at: NOW,
            id: "abc.1",
        };
        let reply = f.inbound.message(&mut session, message).await;
        assert_eq!(reply.to_string(), "250 2.0.0 message accepted, id abc.1");
        let stored = user_inbox(&f).await.remove(0);
        assert!(stored.contains("Received: from sender.example ([192.0.2.1])\r\n\tby mx.hameau.test (Hameau) with ESMTP id abc.1\r\n\tfor <user@a.test>;"), "{stored}");
        // A new transaction forgets the recipients of the last one: nothing is stored.
        f.inbound.mail_from(&mut session, "jean@sender.example", &params).await;
        f.inbound.message(&mut session, Message { id: "abc.2", ..message }).await;
        assert_eq!(user_inbox(&f).await.len(), 1);
        let credentials =
            Credentials { mechanism: Mechanism::Plain, authzid: None, username: "u".into(), password: "p".into() };
        assert_eq!(refused(f.inbound.auth(&mut session, credentials).await), "503 5.5.1 Authentication not enabled");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postmaster() {
        let f = fixture().await;
        // Neither postmaster@mx.hameau.test nor postmaster@hameau.test exists.
        assert_eq!(
            refused(f.inbound.check_recipient("postmaster").await),
            "550 5.1.1 no postmaster mailbox is set up here"
        );
        assert_eq!(
            refused(f.inbound.check_recipient("Postmaster@a.test").await),
            "550 5.1.1 no postmaster mailbox is set up here"
        );
        let f = fixture_with(Some("user@a.test")).await;
        for address in ["postmaster", "POSTMASTER", "PostMaster@A.test"] {
            let RcptVerdict::Accept(recipient) = f.inbound.check_recipient(address).await else { panic!("{address}") };
            assert_eq!(recipient.address, "user@a.test", "{address}");
        }
        // A domain's own postmaster address wins.
        let alias = NewAlias { address: "postmaster@a.test".into(), targets: vec!["other@a.test".into()] };
        f.directory.create_alias(&Principal::Operator, alias, NOW).await.unwrap();
        let RcptVerdict::Accept(recipient) = f.inbound.check_recipient("postmaster@a.test").await else { panic!() };
        assert_eq!(recipient.address, "postmaster@a.test");
        assert_eq!(
            refused(f.inbound.check_recipient("postmaster@elsewhere.test").await),
            "554 5.7.1 relay access denied"
        );
    }
}

/// The driver over real sockets with a pipeline of its own: it asks the pipeline about
/// every event, offers AUTH only when the pipeline does (and only over TLS), and answers a
/// panicking delivery `451 4.3.0`.
mod driver {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use hameau_smtp_session::{Credentials, Decision, MailParams, Mechanism, Reply};
    use hameau_testkit::tls_pair;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    use crate::server::{Context, Metrics, Options, run};
    use crate::{Message, Pipeline};

    /// Records what it is asked, as lines.
    struct Recorder {
        log: Arc<Mutex<Vec<String>>>,
    }

    struct RecorderSession {
        peer: SocketAddr,
        user: Option<String>,
    }

    impl Pipeline for Recorder {
        type Session = RecorderSession;

        fn auth_mechanisms(&self) -> &[Mechanism] {
            &[Mechanism::Plain]
        }

        fn session(&self, peer: SocketAddr) -> RecorderSession {
            RecorderSession { peer, user: None }
        }

        async fn helo(&self, session: &mut RecorderSession, host: &str) -> Decision {
            self.log.lock().unwrap().push(format!("helo {host} from {}", session.peer.ip()));
            Decision::Accept
        }

        async fn mail_from(&self, session: &mut RecorderSession, address: &str, _: &MailParams) -> Decision {
            self.log.lock().unwrap().push(format!("mail {address} by {:?}", session.user));
            Decision::Accept
        }

        async fn rcpt_to(&self, _: &mut RecorderSession, address: &str) -> Decision {
            self.log.lock().unwrap().push(format!("rcpt {address}"));
            match address.starts_with("nobody@") {
                true => Decision::Reject(Reply::new(550, "5.1.1", "no such user here")),
                false => Decision::Accept,
            }
        }

        async fn message(&self, _: &mut RecorderSession, message: Message<'_>) -> Reply {
            let text = String::from_utf8_lossy(message.data).into_owned();
            self.log.lock().unwrap().push(format!("message {:?} tls={} {text:?}", message.recipients, message.tls));
            if text.contains("PANIC") {
                panic!("the pipeline panicked");
            }
            Reply::new(250, "2.0.0", format!("accepted, id {}", message.id))
        }

        async fn auth(&self, session: &mut RecorderSession, credentials: Credentials) -> Decision {
            self.log.lock().unwrap().push(format!("auth {}", credentials.username));
            if (credentials.username.as_str(), credentials.password.as_str()) == ("alice", "secret") {
                session.user = Some(credentials.username);
                Decision::Accept
            } else {
                Decision::Reject(Reply::new(535, "5.7.8", "Authentication credentials invalid"))
            }
        }
    }

    /// Sends `command` (unless empty) and reads one whole reply, its lines joined by `|`.
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut BufReader<S>, command: &str) -> String {
        if !command.is_empty() {
            stream.get_mut().write_all(format!("{command}\r\n").as_bytes()).await.unwrap();
        }
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(stream.read_line(&mut line).await.unwrap() > 0, "closed after {lines:?}");
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("|");
            }
        }
    }

    #[tokio::test]
    async fn the_driver_asks_the_pipeline() {
        let (tls, connector) = tls_pair();
        let log = Arc::new(Mutex::new(Vec::new()));
        let context = Arc::new(Context {
            pipeline: Recorder { log: log.clone() },
            gate: hameau_net::Gate::new(10, 10),
            tls: Some(tls),
            options: Options {
                session: hameau_smtp_session::Options {
                    starttls_available: true,
                    ..hameau_smtp_session::Options::default()
                },
                hostname: "mx.test".into(),
                tls_handshake_timeout: Duration::from_secs(5),
                write_timeout: Duration::from_secs(5),
            },
            now_s: Arc::new(|| 1_795_000_000),
            sessions: std::sync::atomic::AtomicU64::new(0),
            metrics: Metrics::new(&hameau_telemetry::Registry::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(run(listener, context, shutdown));

        let mut plain = BufReader::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(exchange(&mut plain, "").await, "220 mx.test ESMTP Hameau");
        let ehlo = exchange(&mut plain, "EHLO client.test").await;
        assert!(ehlo.ends_with("|250 STARTTLS"), "no AUTH in clear: {ehlo}");
        assert_eq!(
            exchange(&mut plain, "AUTH PLAIN AGFsaWNlAHNlY3JldA==").await,
            "538 5.7.11 Encryption required for requested authentication mechanism"
        );
        assert_eq!(exchange(&mut plain, "STARTTLS").await, "220 2.0.0 Ready to start TLS");
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, plain.into_inner()).await.unwrap();
        let mut tls = BufReader::new(tls);
        let ehlo = exchange(&mut tls, "EHLO client.test").await;
        assert!(ehlo.ends_with("|250-CHUNKING|250 AUTH PLAIN"), "{ehlo}");
        // `\0alice\0wrong`, then `\0alice\0secret`.
        assert_eq!(
            exchange(&mut tls, "AUTH PLAIN AGFsaWNlAHdyb25n").await,
            "535 5.7.8 Authentication credentials invalid"
        );
        assert_eq!(exchange(&mut tls, "AUTH PLAIN AGFsaWNlAHNlY3JldA==").await, "235 2.7.0 Authentication successful");
        assert_eq!(exchange(&mut tls, "MAIL FROM:<alice@a.test>").await, "250 2.1.0 Ok");
        assert_eq!(exchange(&mut tls, "RCPT TO:<nobody@b.test>").await, "550 5.1.1 no such user here");
        assert_eq!(exchange(&mut tls, "RCPT TO:<bob@b.test>").await, "250 2.1.5 Ok");
        assert_eq!(exchange(&mut tls, "DATA").await, "354 End data with <CR><LF>.<CR><LF>");
        assert_eq!(exchange(&mut tls, "Subject: hi\r\n\r\nhello\r\n.").await, "250 2.0.0 Ok: queued");
        assert_eq!(exchange(&mut tls, "MAIL FROM:<alice@a.test>").await, "250 2.1.0 Ok");
        assert_eq!(exchange(&mut tls, "RCPT TO:<bob@b.test>").await, "250 2.1.5 Ok");
        // BDAT has no reply before its chunk.
        tls.get_mut().write_all(b"BDAT 7 LAST\r\nPANIC\r\n").await.unwrap();
        assert_eq!(exchange(&mut tls, "").await, "451 4.3.0 local error, try again later");
        assert_eq!(exchange(&mut tls, "QUIT").await, "221 2.0.0 Bye");

        let log = log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "helo client.test from 127.0.0.1",
                "helo client.test from 127.0.0.1",
                "auth alice",
                "auth alice",
                "mail alice@a.test by Some(\"alice\")",
                "rcpt nobody@b.test",
                "rcpt bob@b.test",
                "message [\"bob@b.test\"] tls=true \"Subject: hi\\r\\n\\r\\nhello\\r\\n\"",
                "mail alice@a.test by Some(\"alice\")",
                "rcpt bob@b.test",
                "message [\"bob@b.test\"] tls=true \"PANIC\\r\\n\"",
            ]
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }
}

#[test]
fn dnsbl_names_reverse_the_address() {
    use crate::dnsbl::reversed;
    assert_eq!(reversed("192.0.2.99".parse().unwrap()), "99.2.0.192");
    assert_eq!(reversed("::ffff:192.0.2.99".parse().unwrap()), "99.2.0.192");
    // RFC 5782 §2.4's example.
    assert_eq!(
        reversed("2001:db8:1:2:3:4:567:89ab".parse().unwrap()),
        "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
    );
}
