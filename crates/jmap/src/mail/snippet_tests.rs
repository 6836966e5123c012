//! `SearchSnippet/get`: words, marks, escapes.

use hameau_mailbox::Role;
use serde_json::{Value, json};

use super::{find, mark, words};
use crate::filter::flatten;
use crate::mail::tests::Fixture;

#[test]
fn the_words_are_those_a_result_contains() {
    let nodes = flatten(
        Some(json!({"operator": "AND", "conditions": [
            {"text": "Conseil  Municipal", "inMailbox": "m1"},
            {"operator": "NOT", "conditions": [{"body": "spam"}]},
            {"subject": "Ordre"},
            {"body": "jour"},
        ]})),
        64,
    )
    .unwrap();
    let words = words(&nodes, false).unwrap();
    assert_eq!(words.subject, ["conseil municipal", "ordre"]);
    assert_eq!(words.body, ["conseil municipal", "jour"]);
    assert_eq!(words_of(json!({"color": 1})), Err("unsupportedFilter".into()));
}

fn words_of(filter: Value) -> Result<super::Words, String> {
    words(&flatten(Some(filter), 64).unwrap(), false).map_err(|e| e.kind.to_string())
}

#[test]
fn matches_are_marked_and_the_rest_escaped() {
    let check = |text: &str, words: &[&str], expected: &str| {
        let words: Vec<String> = words.iter().map(|word| word.to_string()).collect();
        assert_eq!(mark(text, &find(text, &words, false)), expected, "{text}");
    };
    check("Conseil <municipal> & co", &["municipal"], "Conseil &lt;<mark>municipal</mark>&gt; &amp; co");
    check("ÉTÉ été", &["été"], "<mark>ÉTÉ</mark> <mark>été</mark>");
    check("ordre  du\tjour", &["du jour"], "ordre  <mark>du\tjour</mark>");
    check("abcabc", &["bca", "abc"], "<mark>abcabc</mark>");
    check("rien", &["x"], "rien");
    // Accents ignored: the words come without them, the text keeps its own.
    let accents = words(&flatten(Some(json!({"text": "Été préfecture"})), 64).unwrap(), true).unwrap();
    assert_eq!(accents.body, ["ete prefecture"]);
    let text = "L'été, préfecture & ÉTÉ PRÉFECTURE";
    let marked = mark(text, &find(text, &accents.body, true));
    assert_eq!(marked, "L&#39;été, préfecture &amp; <mark>ÉTÉ PRÉFECTURE</mark>");
    let text = "Préfecture de l'État";
    assert_eq!(mark(text, &find(text, &["etat".to_string()], true)), "Préfecture de l&#39;<mark>État</mark>");
    // Not ignored: only the word as written.
    assert_eq!(mark(text, &find(text, &["etat".to_string()], false)), "Préfecture de l&#39;État");
}

#[tokio::test]
async fn snippets_of_emails_by_the_filter() {
    let fixture = Fixture::new().await;
    let raw = "From: a@b.test\r\nSubject: Conseil <municipal>\r\n\r\nL'ordre du jour du conseil est joint.\r\n";
    let id = fixture.deliver(raw, Role::Inbox).await;
    let long_body = format!("From: a@b.test\r\nSubject: Long\r\n\r\n{} le mot cache ici\r\n", "bla ".repeat(200));
    let long = fixture.deliver(&long_body, Role::Inbox).await;
    let got = fixture
        .one(
            "SearchSnippet/get",
            json!({"accountId": "a7", "filter": {"text": "conseil"}, "emailIds": [format!("e{id}"), format!("e{long}"), "e999", "z"]}),
        )
        .await;
    assert_eq!(got["list"][0]["subject"], "<mark>Conseil</mark> &lt;municipal&gt;");
    assert_eq!(got["list"][0]["preview"], "L&#39;ordre du jour du <mark>conseil</mark> est joint.");
    assert_eq!(got["list"][1], json!({"emailId": format!("e{long}"), "subject": null, "preview": null}));
    assert_eq!(got["notFound"], json!(["z", "e999"]));
    let got = fixture
        .one(
            "SearchSnippet/get",
            json!({"accountId": "a7", "filter": {"body": "mot cache"}, "emailIds": [format!("e{long}")]}),
        )
        .await;
    let preview = got["list"][0]["preview"].as_str().unwrap();
    assert!(preview.starts_with('…') && preview.contains("<mark>mot cache</mark> ici"), "{preview}");
    assert_eq!(
        fixture.error("SearchSnippet/get", json!({"accountId": "a7", "filter": {"nope": 1}, "emailIds": []})).await,
        "unsupportedFilter"
    );
    assert_eq!(fixture.error("SearchSnippet/get", json!({"accountId": "a7"})).await, "invalidArguments");
}
