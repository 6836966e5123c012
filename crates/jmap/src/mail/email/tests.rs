//! `Email/get` and `Email/changes` on a real store.

use hameau_mailbox::Role;
use serde_json::{Value, json};

use crate::mail::tests::Fixture;

/// A message with a text and an HTML alternative, an inline image and a PDF attachment.
pub const MULTIPART: &str = concat!(
    "From: \"Maire de Hameau\" <maire@mairie.test>\r\n",
    "To: agent@mairie.test, Secrétariat: a@mairie.test, b@mairie.test;\r\n",
    "Cc: =?UTF-8?Q?Am=C3=A9lie?= <amelie@mairie.test>\r\n",
    "Subject: =?UTF-8?Q?Conseil_municipal_=C3=A0_20h?=\r\n",
    "Date: Mon, 30 Nov 2026 10:00:00 +0100\r\n",
    "Message-ID: <2@mairie.test>\r\n",
    "In-Reply-To: <1@mairie.test>\r\n",
    "References: <0@mairie.test> <1@mairie.test>\r\n",
    "List-Unsubscribe: <mailto:off@mairie.test>, <https://mairie.test/off>\r\n",
    "X-Custom: one\r\n",
    "X-Custom:  two  \r\n",
    "MIME-Version: 1.0\r\n",
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n",
    "\r\n",
    "--outer\r\n",
    "Content-Type: multipart/alternative; boundary=\"inner\"\r\n",
    "\r\n",
    "--inner\r\n",
    "Content-Type: text/plain; charset=utf-8\r\n",
    "Content-Transfer-Encoding: quoted-printable\r\n",
    "\r\n",
    "L'ordre du jour est joint. Caf=C3=A9 offert.\r\n",
    "--inner\r\n",
    "Content-Type: text/html; charset=utf-8\r\n",
    "\r\n",
    "<p>L'ordre du jour est joint.</p>\r\n",
    "--inner--\r\n",
    "--outer\r\n",
    "Content-Type: application/pdf; name=\"ordre.pdf\"\r\n",
    "Content-Disposition: attachment; filename=\"ordre.pdf\"\r\n",
    "Content-Transfer-Encoding: base64\r\n",
    "\r\n",
    "JVBERi0xLjQK\r\n",
    "--outer--\r\n",
);

pub const PLAIN: &str = "From: Maire <maire@mairie.test>\r\nTo: agent@mairie.test\r\nSubject: Conseil\r\nDate: Mon, 30 Nov 2026 10:00:00 +0100\r\nMessage-ID: <1@mairie.test>\r\n\r\nOrdre du jour.\r\n";

async fn get(fixture: &Fixture, arguments: Value) -> Value {
    let mut arguments = arguments;
    arguments["accountId"] = json!("a7");
    fixture.one("Email/get", arguments).await
}

#[tokio::test]
async fn the_cheap_properties_come_from_the_record_and_the_summary() {
    let fixture = Fixture::new().await;
    let first = fixture.deliver(PLAIN, Role::Inbox).await;
    let second = fixture.deliver(MULTIPART, Role::Inbox).await;
    let (e1, e2) = (format!("e{first}"), format!("e{second}"));
    let properties = json!([
        "threadId",
        "mailboxIds",
        "keywords",
        "size",
        "receivedAt",
        "messageId",
        "inReplyTo",
        "references",
        "sender",
        "from",
        "to",
        "cc",
        "subject",
        "sentAt",
        "hasAttachment",
        "preview",
        "blobId"
    ]);
    let got = get(&fixture, json!({"ids": [&e2, &e1, "e999", "x1", "#nope"], "properties": properties})).await;
    assert_eq!(got["notFound"], json!(["x1", "#nope", "e999"]), "{got}");
    let email = &got["list"][0];
    assert_eq!(email["id"], e2.as_str());
    assert_eq!(email["threadId"], format!("t{first}"), "in reply to the first: one thread");
    assert_eq!(email["blobId"], format!("b{second}"));
    assert_eq!(email["mailboxIds"].as_object().unwrap().len(), 1);
    assert_eq!(email["keywords"], json!({}));
    assert_eq!(email["size"], MULTIPART.len());
    assert_eq!(email["receivedAt"], "2026-09-21T14:13:20Z");
    assert_eq!(email["messageId"], json!(["2@mairie.test"]));
    assert_eq!(email["inReplyTo"], json!(["1@mairie.test"]));
    assert_eq!(email["references"], json!(["0@mairie.test", "1@mairie.test"]));
    assert_eq!(email["sender"], Value::Null);
    assert_eq!(email["from"], json!([{"name": "Maire de Hameau", "email": "maire@mairie.test"}]));
    assert_eq!(email["to"].as_array().unwrap().len(), 3, "a group's addresses are listed: {}", email["to"]);
    assert_eq!(email["cc"], json!([{"name": "Amélie", "email": "amelie@mairie.test"}]));
    assert_eq!(email["subject"], "Conseil municipal à 20h");
    assert_eq!(email["sentAt"], "2026-11-30T10:00:00+01:00");
    assert_eq!(email["hasAttachment"], true);
    assert!(email["preview"].as_str().unwrap().starts_with("L'ordre du jour est joint."), "{}", email["preview"]);
    assert!(email.get("textBody").is_none());
    assert_eq!(got["list"][1]["threadId"], format!("t{first}"));
    // Errors of the call.
    assert_eq!(
        fixture.error("Email/get", json!({"accountId": "a7", "properties": ["nope"]})).await,
        "invalidArguments"
    );
    assert_eq!(
        fixture.error("Email/get", json!({"accountId": "a7", "properties": ["header:From:asDate"]})).await,
        "invalidArguments"
    );
    assert_eq!(
        fixture.error("Email/get", json!({"accountId": "a7", "bodyProperties": ["nope"]})).await,
        "invalidArguments"
    );
    assert_eq!(fixture.error("Email/get", json!({"accountId": "a8", "ids": [&e1]})).await, "accountNotFound");
}

#[tokio::test]
async fn the_body_is_parsed_into_structure_lists_and_values() {
    let fixture = Fixture::new().await;
    let id = fixture.deliver(MULTIPART, Role::Inbox).await;
    let got = get(
        &fixture,
        json!({"ids": [format!("e{id}")], "properties": ["bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues"],
            "fetchTextBodyValues": true, "fetchHTMLBodyValues": true, "maxBodyValueBytes": 20}),
    )
    .await;
    let email = &got["list"][0];
    let structure = &email["bodyStructure"];
    assert_eq!(structure["type"], "multipart/mixed");
    assert_eq!(structure["partId"], Value::Null);
    let sub_parts = structure["subParts"].as_array().unwrap();
    assert_eq!(sub_parts.len(), 2, "{structure}");
    assert_eq!(sub_parts[0]["subParts"].as_array().unwrap().len(), 2);
    let text = &email["textBody"];
    assert_eq!(text.as_array().unwrap().len(), 1, "{text}");
    assert_eq!(text[0]["type"], "text/plain");
    assert_eq!(text[0]["charset"], "utf-8");
    let text_part = text[0]["partId"].as_str().unwrap().to_string();
    assert_eq!(text[0]["blobId"], format!("b{id}.{text_part}"));
    assert_eq!(email["htmlBody"][0]["type"], "text/html");
    let attachments = &email["attachments"];
    assert_eq!(attachments.as_array().unwrap().len(), 1);
    assert_eq!(attachments[0]["name"], "ordre.pdf");
    assert_eq!(attachments[0]["disposition"], "attachment");
    assert_eq!(attachments[0]["size"], 9, "decoded: {}", attachments[0]);
    let value = &email["bodyValues"][&text_part];
    assert_eq!(value["value"], "L'ordre du jour est ");
    assert_eq!(value["isTruncated"], true);
    assert_eq!(value["isEncodingProblem"], false);
    assert_eq!(email["bodyValues"].as_object().unwrap().len(), 2);
    // Without a fetch flag, no values; a body property list.
    let got = get(
        &fixture,
        json!({"ids": [format!("e{id}")], "properties": ["bodyValues", "textBody"], "bodyProperties": ["partId", "header:Content-Type:asRaw", "headers"]}),
    )
    .await;
    assert_eq!(got["list"][0]["bodyValues"], json!({}));
    let part = &got["list"][0]["textBody"][0];
    assert_eq!(part["header:Content-Type:asRaw"], " text/plain; charset=utf-8");
    assert_eq!(part["headers"].as_array().unwrap().len(), 2);
    assert!(part.get("type").is_none());
    // All text values, whole.
    let got =
        get(&fixture, json!({"ids": [format!("e{id}")], "properties": ["bodyValues"], "fetchAllBodyValues": true}))
            .await;
    let values = got["list"][0]["bodyValues"].as_object().unwrap();
    assert_eq!(values.len(), 2);
    assert!(values.values().any(|value| value["value"] == "L'ordre du jour est joint. Café offert."), "{values:?}");
}

#[tokio::test]
async fn header_properties_take_every_form() {
    let fixture = Fixture::new().await;
    let id = fixture.deliver(MULTIPART, Role::Inbox).await;
    let got = get(
        &fixture,
        json!({"ids": [format!("e{id}")], "properties": [
            "header:Subject", "header:subject:asText", "header:From:asAddresses", "header:To:asGroupedAddresses",
            "header:Message-ID:asMessageIds", "header:References:asMessageIds", "header:Date:asDate",
            "header:List-Unsubscribe:asURLs", "header:X-Custom:all", "header:X-Custom:asText:all", "header:X-Missing",
            "header:X-Missing:all", "headers"]}),
    )
    .await;
    let email = &got["list"][0];
    assert_eq!(email["header:Subject"], " =?UTF-8?Q?Conseil_municipal_=C3=A0_20h?=");
    assert_eq!(email["header:subject:asText"], "Conseil municipal à 20h");
    assert_eq!(email["header:From:asAddresses"], json!([{"name": "Maire de Hameau", "email": "maire@mairie.test"}]));
    let groups = email["header:To:asGroupedAddresses"].as_array().unwrap();
    assert!(groups.iter().any(|group| group["name"] == "Secrétariat"), "{groups:?}");
    assert_eq!(email["header:Message-ID:asMessageIds"], json!(["2@mairie.test"]));
    assert_eq!(email["header:References:asMessageIds"], json!(["0@mairie.test", "1@mairie.test"]));
    assert_eq!(email["header:Date:asDate"], "2026-11-30T10:00:00+01:00");
    assert_eq!(email["header:List-Unsubscribe:asURLs"], json!(["mailto:off@mairie.test", "https://mairie.test/off"]));
    assert_eq!(email["header:X-Custom:all"], json!([" one", "  two  "]));
    assert_eq!(email["header:X-Custom:asText:all"], json!(["one", "two"]));
    assert_eq!(email["header:X-Missing"], Value::Null);
    assert_eq!(email["header:X-Missing:all"], json!([]));
    let headers = email["headers"].as_array().unwrap();
    assert_eq!(headers[0], json!({"name": "From", "value": " \"Maire de Hameau\" <maire@mairie.test>"}));
    assert_eq!(headers.len(), 13);
}

#[tokio::test]
async fn keywords_are_jmaps_and_changes_follow_the_log() {
    let fixture = Fixture::new().await;
    let state = get(&fixture, json!({"ids": []})).await["state"].clone();
    let id = fixture.deliver(PLAIN, Role::Inbox).await;
    let other = fixture.deliver(MULTIPART, Role::Inbox).await;
    let changes = fixture.one("Email/changes", json!({"accountId": "a7", "sinceState": state})).await;
    assert_eq!(changes["created"], json!([format!("e{id}"), format!("e{other}")]));
    let state = changes["newState"].clone();
    use hameau_mailbox::Keyword;
    fixture
        .services
        .mail
        .set_keywords(7, id, &[Keyword::Seen, Keyword::Deleted, Keyword::Flagged, Keyword::from_stored("$label1")])
        .await
        .unwrap();
    let got = get(&fixture, json!({"ids": [format!("e{id}")], "properties": ["keywords"]})).await;
    assert_eq!(got["list"][0]["keywords"], json!({"$seen": true, "$flagged": true, "$label1": true}));
    let changes = fixture.one("Email/changes", json!({"accountId": "a7", "sinceState": state, "maxChanges": 5})).await;
    assert_eq!(changes["updated"], json!([format!("e{id}")]));
    assert_eq!(changes["created"], json!([]));
    // ids: null lists every email of the account.
    let all = get(&fixture, json!({"ids": null, "properties": ["id"]})).await;
    assert_eq!(all["list"].as_array().unwrap().len(), 2);
    assert_eq!(
        fixture.error("Email/changes", json!({"accountId": "a7", "sinceState": "x"})).await,
        "cannotCalculateChanges"
    );
}

#[tokio::test]
async fn a_deeply_nested_message_is_written_to_a_bounded_depth() {
    let fixture = Fixture::new().await;
    let mut raw = String::from("From: a@b.test\r\nSubject: deep\r\n");
    let depth = 300;
    for level in 0..depth {
        raw.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\nfond\r\n");
    for level in (0..depth).rev() {
        raw.push_str(&format!("--b{level}--\r\n"));
    }
    let id = fixture.deliver(&raw, Role::Inbox).await;
    let got = get(&fixture, json!({"ids": [format!("e{id}")], "properties": ["bodyStructure", "textBody"]})).await;
    let mut level = 0;
    let mut node = &got["list"][0]["bodyStructure"];
    while let Some(first) = node["subParts"].get(0) {
        node = first;
        level += 1;
    }
    assert_eq!(level, 32, "jmap.body_depth_max");
    assert_eq!(got["list"][0]["textBody"].as_array().unwrap().len(), 1, "the text is still listed");
}

#[test]
fn the_rfcs_part_lists_follow_its_algorithm() {
    use super::body::lists;
    let parse = |raw: &str| mail_parser::MessageParser::default().parse(raw.as_bytes()).unwrap().into_owned();
    let message = parse(MULTIPART);
    let found = lists(&message);
    assert_eq!((found.text.len(), found.html.len(), found.attachments.len()), (1, 1, 1), "{found:?}");
    // A plain message: its one part in both text and HTML bodies.
    let message = parse(PLAIN);
    let found = lists(&message);
    assert_eq!((found.text, found.html, found.attachments), (vec![0], vec![0], vec![]));
    // An alternative with HTML only: the HTML part serves as text too.
    let html_only = "Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n--x--\r\n";
    let found = lists(&parse(html_only));
    assert_eq!((found.text, found.html), (vec![1], vec![1]));
}

#[tokio::test]
async fn body_values_of_one_answer_are_bounded_together() {
    let limits = crate::Limits { body_values_bytes_max: 64 << 10, ..crate::Limits::default() };
    let fixture = Fixture::with_limits(limits).await;
    let body = "mot ".repeat(10_000);
    let raw = format!("From: a@b.test\r\nSubject: long\r\n\r\n{body}\r\n");
    let first = fixture.deliver(&raw, Role::Inbox).await;
    let second = fixture.deliver(&raw.replace("long", "long 2"), Role::Inbox).await;
    let got = get(
        &fixture,
        json!({"ids": [format!("e{first}"), format!("e{second}")], "properties": ["bodyValues"], "fetchTextBodyValues": true}),
    )
    .await;
    let value = |at: usize| got["list"][at]["bodyValues"]["0"].clone();
    assert_eq!(value(0)["isTruncated"], false);
    assert_eq!(value(0)["value"].as_str().unwrap().len(), 40_002, "the body with its line end");
    assert_eq!(value(1)["isTruncated"], true);
    assert_eq!(value(1)["value"].as_str().unwrap().len(), (64 << 10) - 40_002);
}

/// A message forwarding `PLAIN` as an attachment (`message/rfc822`).
fn forwarding() -> String {
    format!(
        "From: agent@mairie.test\r\nTo: maire@mairie.test\r\nSubject: Fwd: Conseil\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"f\"\r\n\r\n--f\r\nContent-Type: text/plain\r\n\r\nVoir le message joint.\r\n\
         --f\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n{PLAIN}\r\n--f--\r\n"
    )
}

#[tokio::test]
async fn an_attached_message_is_parsed_and_its_parts_download() {
    let fixture = Fixture::new().await;
    let email = fixture.deliver(&forwarding(), Role::Inbox).await;
    let got = get(&fixture, json!({"ids": [format!("e{email}")], "properties": ["attachments"]})).await;
    let attached = got["list"][0]["attachments"][0]["blobId"].as_str().unwrap().to_string();
    assert!(attached.starts_with(&format!("b{email}.")), "{attached}");
    let parsed = fixture
        .one(
            "Email/parse",
            json!({"accountId": "a7", "blobIds": [attached, "b999999", "b1.2.3.4.5.6", format!("b{email}.0.1")],
                   "fetchTextBodyValues": true}),
        )
        .await;
    let email_json = &parsed["parsed"][&attached];
    assert_eq!(email_json["subject"], "Conseil", "{parsed}");
    assert_eq!(email_json["from"][0]["email"], "maire@mairie.test");
    assert_eq!(email_json["messageId"], json!(["1@mairie.test"]));
    assert_eq!(email_json["sentAt"], "2026-11-30T10:00:00+01:00");
    assert!(email_json.get("id").is_none(), "not asked for: {email_json}");
    let text_part = email_json["textBody"][0]["blobId"].as_str().unwrap().to_string();
    assert_eq!(text_part, format!("{attached}.0"), "the parts extend the parsed blob's id");
    let part = email_json["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(email_json["bodyValues"][part]["value"], "Ordre du jour.\r\n");
    // Not found: another account's or no email, an id past four levels, a part of a
    // text part (no such part).
    let mut not_found: Vec<String> = serde_json::from_value(parsed["notFound"].clone()).unwrap();
    not_found.sort();
    let mut wanted = vec!["b1.2.3.4.5.6".to_string(), "b999999".into(), format!("b{email}.0.1")];
    wanted.sort();
    assert_eq!(not_found, wanted);
    assert_eq!(parsed["notParsable"], Value::Null);
    // The nested part downloads: the attached message's text.
    let bytes = crate::mail::blob::read(&fixture.services, 7, &text_part, 0, crate::mail::blob::uncounted)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bytes, b"Ordre du jour.\r\n");
    // The metadata of a parsed email is null when asked; its blobId and size are the blob's.
    let parsed = fixture
        .one(
            "Email/parse",
            json!({"accountId": "a7", "blobIds": [attached], "properties": ["id", "blobId", "size", "keywords", "threadId"]}),
        )
        .await;
    let email_json = &parsed["parsed"][&attached];
    assert_eq!(email_json["id"], Value::Null);
    assert_eq!(email_json["keywords"], Value::Null);
    assert_eq!(email_json["blobId"], json!(attached));
    assert_eq!(email_json["size"], json!(PLAIN.len()));
    // Unknown properties and another account are the RFC's errors.
    assert_eq!(
        fixture.error("Email/parse", json!({"accountId": "a7", "blobIds": [], "properties": ["nope"]})).await,
        "invalidArguments"
    );
    assert_eq!(fixture.error("Email/parse", json!({"accountId": "a8", "blobIds": []})).await, "accountNotFound");
}

#[tokio::test]
async fn one_request_parses_at_most_parsed_bytes_max() {
    // 1 MiB: a message of 600 KB parses once, not twice in one request.
    let limits = crate::Limits { parsed_bytes_max: 1 << 20, ..crate::Limits::default() };
    let fixture = Fixture::with_limits(limits).await;
    let body = "ligne de texte\r\n".repeat(600_000 / 16);
    let big = fixture.deliver(&format!("From: a@b.test\r\nSubject: gros\r\n\r\n{body}"), Role::Inbox).await;
    let small = fixture.deliver(&forwarding(), Role::Inbox).await;
    // The list view parses nothing: any number of ids.
    let listed = get(
        &fixture,
        json!({"ids": [format!("e{big}"), format!("e{big}"), format!("e{small}")],
                                     "properties": ["subject", "preview"]}),
    )
    .await;
    assert_eq!(listed["list"].as_array().unwrap().len(), 2, "{listed}");
    let structure = json!({"accountId": "a7", "ids": [format!("e{big}")], "properties": ["bodyStructure"]});
    assert!(fixture.one("Email/get", structure.clone()).await["list"][0]["bodyStructure"].is_object());
    // Twice in one request: the second call is refused before it parses.
    let responses = fixture.call(json!([["Email/get", structure, "1"], ["Email/get", structure, "2"]])).await;
    assert_eq!(responses[0][0], "Email/get", "{}", responses[0]);
    assert_eq!((responses[1][0].as_str(), responses[1][1]["type"].as_str()), (Some("error"), Some("requestTooLarge")));
    // Email/parse: one blob named twice counts twice.
    let blob = format!("b{big}");
    assert_eq!(
        fixture.error("Email/parse", json!({"accountId": "a7", "blobIds": [blob, blob]})).await,
        "requestTooLarge"
    );
    // A part is parsed out of its message: naming a small part of the big message many
    // times costs the big message each time.
    let part = format!("b{big}.0");
    let parts: Vec<String> = (0..3).map(|_| part.clone()).collect();
    assert_eq!(fixture.error("Email/parse", json!({"accountId": "a7", "blobIds": parts})).await, "requestTooLarge");
    // The next request starts from nothing.
    let whole = format!("b{small}");
    let parsed = fixture.one("Email/parse", json!({"accountId": "a7", "blobIds": [whole.clone()]})).await;
    assert_eq!(parsed["parsed"][&whole]["subject"], "Fwd: Conseil", "{parsed}");
}
