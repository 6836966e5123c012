//! `Email/query` on a real store: every filter condition, the sorts, threads collapsed,
//! paging, errors; and the time of the query on a big mailbox.

use hameau_mailbox::{Ingest, Keyword, Quota, Role};
use serde_json::{Value, json};

use crate::mail::tests::{ACCOUNT, Fixture, NOW};

fn message(n: u32, from: &str, subject: &str, extra: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: agent@mairie.test\r\nSubject: {subject}\r\nDate: Mon, 30 Nov 2026 10:00:{:02} +0000\r\n\
         Message-ID: <{n}@mairie.test>\r\n{extra}\r\n{body}\r\n",
        59 - n % 60
    )
}

async fn deliver(fixture: &Fixture, raw: String, role: Role, keywords: Vec<Keyword>, received_at: u64) -> String {
    let mailbox = fixture.services.mail.mailbox_by_role(ACCOUNT, role).await.unwrap().unwrap();
    let ingest = Ingest {
        raw: raw.into_bytes().into(),
        mailboxes: vec![mailbox.id],
        keywords,
        received_at,
        quota: Quota::default(),
    };
    format!("e{}", fixture.services.mail.ingest(ACCOUNT, ingest).await.unwrap().email)
}

async fn ids(fixture: &Fixture, arguments: Value) -> Vec<String> {
    let mut arguments = arguments;
    arguments["accountId"] = json!("a7");
    let got = fixture.one("Email/query", arguments).await;
    got["ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_string()).collect()
}

fn strs(ids: &[String]) -> Vec<&String> {
    ids.iter().collect()
}

async fn mailbox(fixture: &Fixture, role: Role) -> String {
    format!("m{}", fixture.services.mail.mailbox_by_role(ACCOUNT, role).await.unwrap().unwrap().id)
}

/// Five emails: three in the inbox (two in one thread), one in the archive, one in junk.
async fn five(fixture: &Fixture) -> [String; 5] {
    let seen = vec![Keyword::Seen];
    let a = deliver(
        fixture,
        message(1, "Maire <maire@mairie.test>", "Conseil", "", "ordre du jour"),
        Role::Inbox,
        seen.clone(),
        NOW,
    )
    .await;
    let b = deliver(
        fixture,
        message(
            2,
            "Zoé <zoe@village.test>",
            "Re: Conseil",
            "In-Reply-To: <1@mairie.test>\r\nX-Priorite: haute\r\n",
            "je viendrai au conseil",
        ),
        Role::Inbox,
        vec![],
        NOW + 10,
    )
    .await;
    let attachment = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n";
    let body = "--b\r\nContent-Type: text/plain\r\n\r\nvoir le plan\r\n--b\r\nContent-Type: application/pdf; name=p.pdf\r\nContent-Disposition: attachment\r\n\r\nxx\r\n--b--";
    let c = deliver(
        fixture,
        message(3, "Alain <alain@x.test>", "Plan local", attachment, body),
        Role::Inbox,
        seen.clone(),
        NOW + 5,
    )
    .await;
    let d =
        deliver(fixture, message(4, "Bea <bea@x.test>", "Archives 2025", "", "bilan"), Role::Archive, seen, NOW - 100)
            .await;
    let e = deliver(fixture, message(5, "spam@bad.test", "Gagnez", "", "cliquez"), Role::Junk, vec![], NOW + 20).await;
    [a, b, c, d, e]
}

#[tokio::test]
async fn every_condition_filters() {
    let fixture = Fixture::new().await;
    let [a, b, c, d, e] = five(&fixture).await;
    let inbox = mailbox(&fixture, Role::Inbox).await;
    let junk = mailbox(&fixture, Role::Junk).await;
    let cases: Vec<(Value, Vec<&String>)> = vec![
        (json!(null), vec![&d, &a, &c, &b, &e]),
        (json!({"inMailbox": inbox}), vec![&a, &c, &b]),
        (json!({"inMailbox": "m999"}), vec![]),
        (json!({"inMailboxOtherThan": [inbox, junk]}), vec![&d]),
        (json!({"operator": "OR", "conditions": [{"inMailbox": junk}, {"hasKeyword": "$seen"}]}), vec![&d, &a, &c, &e]),
        (json!({"before": "2026-09-21T14:13:25Z"}), vec![&d, &a]),
        (json!({"after": "2026-09-21T14:13:25Z"}), vec![&c, &b, &e]),
        (json!({"minSize": 300}), vec![&c]),
        (json!({"maxSize": 150}), vec![&d, &e]),
        (json!({"hasKeyword": "$seen"}), vec![&d, &a, &c]),
        (json!({"notKeyword": "$seen"}), vec![&b, &e]),
        (json!({"hasAttachment": true}), vec![&c]),
        (json!({"hasAttachment": false, "inMailbox": inbox}), vec![&a, &b]),
        (json!({"allInThreadHaveKeyword": "$seen"}), vec![&d, &c]),
        (json!({"someInThreadHaveKeyword": "$seen"}), vec![&d, &a, &c, &b]),
        (json!({"noneInThreadHaveKeyword": "$seen"}), vec![&e]),
        (json!({"text": "conseil"}), vec![&a, &b]),
        (json!({"text": "zoe@village"}), vec![&b]),
        // Accents ignored (jmap.fold_accents): in the needle and in the text.
        (json!({"text": "CONSÉIL"}), vec![&a, &b]),
        (json!({"from": "zoé"}), vec![&b]),
        (json!({"from": "maire"}), vec![&a]),
        (json!({"to": "agent@"}), vec![&d, &a, &c, &b, &e]),
        (json!({"cc": "x"}), vec![]),
        (json!({"bcc": "x"}), vec![]),
        (json!({"subject": "PLAN"}), vec![&c]),
        (json!({"body": "bilan"}), vec![&d]),
        (json!({"header": ["X-Priorite"]}), vec![&b]),
        (json!({"header": ["X-Priorite", "basse"]}), vec![]),
        (json!({"operator": "NOT", "conditions": [{"inMailbox": inbox}, {"inMailbox": junk}]}), vec![&d]),
        (
            json!({"operator": "AND", "conditions": [{"inMailbox": inbox}, {"operator": "NOT", "conditions": [{"text": "conseil"}]}]}),
            vec![&c],
        ),
    ];
    for (filter, expected) in cases {
        let got = ids(&fixture, json!({"filter": filter, "sort": [{"property": "receivedAt"}]})).await;
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(got, expected, "filter {filter}");
    }
    for (filter, error) in [
        (json!({"color": "red"}), "unsupportedFilter"),
        (json!({"minSize": "big"}), "invalidArguments"),
        (json!({"before": "yesterday"}), "invalidArguments"),
        (json!({"hasKeyword": "a b"}), "invalidArguments"),
        (json!({"header": []}), "invalidArguments"),
    ] {
        assert_eq!(fixture.error("Email/query", json!({"accountId": "a7", "filter": filter})).await, error, "{filter}");
    }
}

#[tokio::test]
async fn sorts_pages_and_threads() {
    let fixture = Fixture::new().await;
    let [a, b, c, d, e] = five(&fixture).await;
    let sorted = |sort: Value| {
        let fixture = &fixture;
        async move { ids(fixture, json!({"sort": sort})).await }
    };
    assert_eq!(strs(&sorted(json!([{"property": "receivedAt", "isAscending": false}])).await), [&e, &b, &c, &a, &d]);
    assert_eq!(strs(&sorted(json!([{"property": "from"}])).await), [&c, &d, &a, &e, &b]);
    assert_eq!(strs(&sorted(json!([{"property": "subject"}])).await), [&d, &a, &b, &e, &c], "Re: is not sorted on");
    assert_eq!(sorted(json!([{"property": "size"}])).await.last(), Some(&c));
    assert_eq!(strs(&sorted(json!([{"property": "sentAt"}])).await), [&e, &d, &c, &b, &a]);
    assert_eq!(strs(&sorted(json!([{"property": "hasKeyword", "keyword": "$seen", "isAscending": false}, {"property": "receivedAt"}])).await),
        [&d, &a, &c, &b, &e]
    );
    assert_eq!(
        strs(
            &sorted(json!([{"property": "someInThreadHaveKeyword", "keyword": "$seen"}, {"property": "receivedAt"}]))
                .await
        ),
        [&e, &d, &a, &c, &b]
    );
    assert_eq!(
        strs(
            &sorted(json!([{"property": "allInThreadHaveKeyword", "keyword": "$seen"}, {"property": "receivedAt"}]))
                .await
        ),
        [&a, &b, &e, &d, &c]
    );
    // Threads collapsed: the first of each in the order.
    let got =
        ids(&fixture, json!({"collapseThreads": true, "sort": [{"property": "receivedAt", "isAscending": false}]}))
            .await;
    assert_eq!(strs(&got), [&e, &b, &c, &d]);
    // Paging: position, negative position, anchor, limit, total.
    let page = fixture
        .one("Email/query", json!({"accountId": "a7", "position": 1, "limit": 2, "calculateTotal": true, "sort": [{"property": "receivedAt"}]}))
        .await;
    assert_eq!(
        (page["ids"].clone(), page["total"].clone(), page["position"].clone()),
        (json!([&a, &c]), json!(5), json!(1))
    );
    assert_eq!(page["canCalculateChanges"], true);
    assert!(page["queryState"].is_string());
    let page = fixture.one("Email/query", json!({"accountId": "a7", "position": -2})).await;
    assert_eq!(page["ids"], json!([&b, &e]));
    let page =
        fixture.one("Email/query", json!({"accountId": "a7", "anchor": &c, "anchorOffset": -1, "limit": 2})).await;
    assert_eq!((page["ids"].clone(), page["position"].clone()), (json!([&a, &c]), json!(1)));
    for (arguments, error) in [
        (json!({"anchor": "e999"}), "anchorNotFound"),
        (json!({"anchor": "x"}), "anchorNotFound"),
        (json!({"sort": [{"property": "color"}]}), "unsupportedSort"),
        (json!({"sort": [{"property": "subject", "collation": "i;ascii-casemap"}]}), "unsupportedSort"),
        (json!({"sort": [{"property": "hasKeyword"}]}), "invalidArguments"),
        (json!({"limit": -1}), "invalidArguments"),
    ] {
        let mut arguments = arguments;
        arguments["accountId"] = json!("a7");
        assert_eq!(fixture.error("Email/query", arguments.clone()).await, error, "{arguments}");
    }
    assert_eq!(fixture.error("Email/query", json!({"accountId": "a8"})).await, "accountNotFound");
    assert_eq!(
        fixture.error("Email/queryChanges", json!({"accountId": "a7", "sinceQueryState": "x"})).await,
        "cannotCalculateChanges"
    );
    assert_eq!(
        fixture
            .error("Email/queryChanges", json!({"accountId": "a7", "sinceQueryState": "1", "collapseThreads": true}))
            .await,
        "cannotCalculateChanges"
    );
}

#[tokio::test]
async fn the_cached_snapshot_follows_deliveries_flags_and_removals() {
    let fixture = Fixture::new().await;
    let [a, b, c, ..] = five(&fixture).await;
    let inbox = mailbox(&fixture, Role::Inbox).await;
    let query = json!({"filter": {"inMailbox": &inbox}, "sort": [{"property": "receivedAt", "isAscending": false}]});
    assert_eq!(strs(&ids(&fixture, query.clone()).await), [&b, &c, &a]);
    let seen = json!({"filter": {"inMailbox": &inbox, "hasKeyword": "$seen"}});
    assert_eq!(strs(&ids(&fixture, seen.clone()).await), [&a, &c]);
    // A delivery elsewhere leaves the snapshot as it is; one here adds to it.
    deliver(&fixture, message(6, "a@b.test", "Ailleurs", "", "x"), Role::Archive, vec![], NOW + 50).await;
    let f = deliver(&fixture, message(7, "a@b.test", "Nouveau", "", "x"), Role::Inbox, vec![], NOW + 60).await;
    assert_eq!(strs(&ids(&fixture, query.clone()).await), [&f, &b, &c, &a]);
    // A keyword changed, an email removed.
    let number = |wire: &String| wire[1..].parse::<u64>().unwrap();
    fixture.services.mail.set_keywords(ACCOUNT, number(&b), &[Keyword::Seen]).await.unwrap();
    assert_eq!(strs(&ids(&fixture, seen.clone()).await), [&a, &c, &b]);
    let inbox_id = inbox[1..].parse().unwrap();
    fixture.services.mail.remove(ACCOUNT, number(&c), inbox_id).await.unwrap();
    assert_eq!(strs(&ids(&fixture, query).await), [&f, &b, &a]);
    assert_eq!(strs(&ids(&fixture, seen).await), [&a, &b]);
}

#[tokio::test]
async fn query_changes_bring_old_results_to_the_new_ones() {
    let fixture = Fixture::new().await;
    let [a, b, c, ..] = five(&fixture).await;
    let inbox = mailbox(&fixture, Role::Inbox).await;
    let query = json!({"accountId": "a7", "filter": {"inMailbox": &inbox, "notKeyword": "$flagged"},
        "sort": [{"property": "receivedAt", "isAscending": false}]});
    let old = fixture.one("Email/query", query.clone()).await;
    assert_eq!(old["canCalculateChanges"], true);
    let mut cached: Vec<String> = old["ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().into()).collect();
    // A new email, one flagged (out of the results), one removed, one only read.
    let new = deliver(&fixture, message(8, "a@b.test", "Neuf", "", "x"), Role::Inbox, vec![], NOW + 7).await;
    let number = |wire: &String| wire[1..].parse::<u64>().unwrap();
    fixture.services.mail.set_keywords(ACCOUNT, number(&b), &[Keyword::Flagged]).await.unwrap();
    fixture.services.mail.set_keywords(ACCOUNT, number(&c), &[Keyword::Seen, Keyword::Answered]).await.unwrap();
    fixture.services.mail.remove(ACCOUNT, number(&a), inbox[1..].parse().unwrap()).await.unwrap();
    let mut arguments = query.clone();
    arguments["sinceQueryState"] = old["queryState"].clone();
    arguments["calculateTotal"] = json!(true);
    let changes = fixture.one("Email/queryChanges", arguments.clone()).await;
    // The client's algorithm (RFC 8620 §5.6): remove, then insert by index.
    let removed: Vec<&str> = changes["removed"].as_array().unwrap().iter().map(|id| id.as_str().unwrap()).collect();
    cached.retain(|id| !removed.contains(&id.as_str()));
    for added in changes["added"].as_array().unwrap() {
        cached.insert(added["index"].as_u64().unwrap() as usize, added["id"].as_str().unwrap().into());
    }
    let now = fixture.one("Email/query", query).await;
    assert_eq!(json!(cached), now["ids"], "{changes}");
    assert_eq!(strs(&cached), [&new, &c]);
    assert_eq!(changes["newQueryState"], now["queryState"]);
    assert_eq!(changes["total"], 2);
    arguments["maxChanges"] = json!(1);
    assert_eq!(fixture.error("Email/queryChanges", arguments).await, "tooManyChanges");
}

/// The benchmark query on one mailbox: sorted by date, newest first, 50 results,
/// chained with `Email/get` of those 50 (a list view's properties), timed. The mailbox has
/// `HAMEAU_JMAP_QUERY_MESSAGES` messages (2,000 by default, to keep `cargo test` short;
/// docs/jmap.md gives the figures with 100,000). Prints the times; asserts only results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_mailbox_is_queried_by_date_quickly() {
    let messages: u32 = std::env::var("HAMEAU_JMAP_QUERY_MESSAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    let fixture = std::sync::Arc::new(Fixture::new().await);
    let inbox = fixture.services.mail.mailbox_by_role(ACCOUNT, Role::Inbox).await.unwrap().unwrap().id;
    let seeding = std::time::Instant::now();
    let batch = 200;
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let fixture = fixture.clone();
        tasks.push(tokio::spawn(async move {
            let mut start = task * batch;
            while start < messages {
                let deliveries = (start..(start + batch).min(messages))
                    .map(|n| {
                        let raw = message(
                            n,
                            &format!("Agent {n} <agent{n}@x.test>"),
                            &format!("Sujet {n}"),
                            "",
                            "texte du message",
                        );
                        let keywords = if n % 3 == 0 { vec![Keyword::Seen] } else { vec![] };
                        (
                            ACCOUNT,
                            Ingest {
                                raw: raw.into_bytes().into(),
                                mailboxes: vec![inbox],
                                keywords,
                                received_at: NOW + u64::from(n),
                                quota: Quota::default(),
                            },
                        )
                    })
                    .collect();
                fixture.services.mail.ingest_many(deliveries).await.unwrap();
                start += 8 * batch;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let seeded = seeding.elapsed();
    let request = json!([
        ["Email/query", {"accountId": "a7", "filter": {"inMailbox": format!("m{inbox}")},
            "sort": [{"property": "receivedAt", "isAscending": false}], "limit": 50}, "q"],
        ["Email/get", {"accountId": "a7", "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
            "properties": ["threadId", "mailboxIds", "keywords", "size", "receivedAt", "from", "subject", "preview", "hasAttachment"]}, "g"],
    ]);
    let mut times = Vec::new();
    for _ in 0..21 {
        let start = std::time::Instant::now();
        let responses = fixture.call(request.clone()).await;
        times.push(start.elapsed());
        assert_eq!(responses[1][1]["list"].as_array().unwrap().len(), 50.min(messages as usize), "{}", responses[0]);
        assert_eq!(
            responses[1][1]["list"][0]["receivedAt"],
            super::super::email::utc_date(NOW + u64::from(messages) - 1)
        );
    }
    let first = times[0];
    times.sort();
    // After a delivery: the snapshot brought up to date from the change log.
    let raw = message(messages, "Nouveau <n@x.test>", "Nouveau", "", "texte");
    let ingest = Ingest {
        raw: raw.into_bytes().into(),
        mailboxes: vec![inbox],
        keywords: vec![],
        received_at: NOW + u64::from(messages),
        quota: Quota::default(),
    };
    fixture.services.mail.ingest(ACCOUNT, ingest).await.unwrap();
    let start = std::time::Instant::now();
    let responses = fixture.call(request.clone()).await;
    let after_delivery = start.elapsed();
    assert_eq!(responses[1][1]["list"][0]["subject"], "Nouveau");
    // The same page with Email/get's default properties: each message parsed again.
    let mut full = request.clone();
    full[1][1].as_object_mut().unwrap().remove("properties");
    let start = std::time::Instant::now();
    fixture.call(full).await;
    let default_properties = start.elapsed();
    // Every mailbox (no inMailbox): the account's snapshot, made again after a change.
    let everywhere = json!([["Email/query", {"accountId": "a7", "sort": [{"property": "receivedAt", "isAscending": false}], "limit": 50}, "q"]]);
    let mut account_times = Vec::new();
    for _ in 0..3 {
        let start = std::time::Instant::now();
        fixture.call(everywhere.clone()).await;
        account_times.push(start.elapsed());
    }
    println!("every mailbox, newest 50: first {:.2?}, then {:.2?}", account_times[0], account_times[2]);
    // 20 clients at once, as the benchmark (in process: no HTTP, no TLS).
    let concurrent = std::time::Instant::now();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let (fixture, request) = (fixture.clone(), request.clone());
        clients.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for _ in 0..20 {
                let start = std::time::Instant::now();
                fixture.call(request.clone()).await;
                times.push(start.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    let elapsed = concurrent.elapsed();
    all.sort();
    println!(
        "20 concurrent clients, 400 requests: p50 {:.2?}, p99 {:.2?}, {:.0} requests/s",
        all[all.len() / 2],
        all[all.len() * 99 / 100],
        all.len() as f64 / elapsed.as_secs_f64()
    );
    // With a text filter: the mail model's filter over the texts (the text index is
    // another part of issue 15).
    let text = json!([["Email/query", {"accountId": "a7", "filter": {"inMailbox": format!("m{inbox}"), "text": "sujet 1"},
        "sort": [{"property": "receivedAt", "isAscending": false}], "limit": 50}, "q"]]);
    let start = std::time::Instant::now();
    let responses = fixture.call(text.clone()).await;
    let text_cold = start.elapsed();
    assert!(!responses[0][1]["ids"].as_array().unwrap().is_empty());
    let start = std::time::Instant::now();
    fixture.call(text).await;
    let text_warm = start.elapsed();
    println!(
        "Email/query (inMailbox, receivedAt desc, limit 50) + Email/get of the 50 on {messages} messages \
         (seeded in {seeded:.1?}): first (cold snapshot) {first:.2?}, then p50 {:.2?}, max {:.2?}; \
         after one more delivery {after_delivery:.2?}; with Email/get's default properties (bodies parsed) \
         {default_properties:.2?}; with text \"sujet 1\": {text_cold:.1?} cold, {text_warm:.1?} warm",
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

#[test]
fn base_subjects_drop_reply_prefixes() {
    use super::base_subject;
    assert_eq!(base_subject("Re: RE: Fwd: [Mairie] Tr: Conseil "), "conseil");
    assert_eq!(base_subject("Conseil: ordre"), "conseil: ordre");
    assert_eq!(base_subject("Re:"), "");
}

#[tokio::test]
async fn accents_are_ignored_unless_configured_otherwise() {
    let raw = || message(1, "Agnès <agnes@pref.test>", "Préfecture : arrêté", "", "Le représentant de l'État signe.");
    let folding = Fixture::new().await;
    let id = deliver(&folding, raw(), Role::Inbox, vec![], NOW).await;
    let exact = Fixture::with_limits(crate::Limits { fold_accents: false, ..crate::Limits::default() }).await;
    let exact_id = deliver(&exact, raw(), Role::Inbox, vec![], NOW).await;
    for filter in [
        json!({"subject": "prefecture"}),
        json!({"subject": "ARRETE"}),
        json!({"body": "l'etat"}),
        json!({"text": "representant"}),
        json!({"from": "agnes"}),
        json!({"subject": "préfecture"}),
    ] {
        assert_eq!(ids(&folding, json!({"filter": filter})).await, std::slice::from_ref(&id), "{filter}");
    }
    // Exact but for case: only the words as written.
    for (filter, found) in [
        (json!({"subject": "prefecture"}), false),
        (json!({"body": "l'etat"}), false),
        (json!({"subject": "PRÉFECTURE"}), true),
        (json!({"body": "l'état"}), true),
    ] {
        let expected = if found { vec![exact_id.clone()] } else { vec![] };
        assert_eq!(ids(&exact, json!({"filter": filter})).await, expected, "{filter}");
    }
}
