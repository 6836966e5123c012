use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use super::domains::{registrable, within_one_edit};
use super::names::fold;
use super::{Analysis, Context, Person, analyse};
use crate::{Action, Limits};

/// The tenant of every rule test: the commune of Saint-Martin.
fn with_tenant<T>(mail_from: &str, run: impl FnOnce(&Context<'_>) -> T) -> T {
    let own_domains = vec!["saint-martin.fr".to_owned()];
    let people = vec![
        Person { name: "Mairie".into(), address: "mairie@saint-martin.fr".into() },
        Person { name: "Jean-Pierre Dupont".into(), address: "maire@saint-martin.fr".into() },
        Person { name: "Élodie Lefèvre".into(), address: "secretariat@saint-martin.fr".into() },
    ];
    let known_domains = vec!["fournisseur-bureau.fr".to_owned(), "cdg35.fr".to_owned()];
    let context = Context { own_domains: &own_domains, people: &people, known_domains: &known_domains, mail_from };
    run(&context)
}

fn names(analysis: &Analysis) -> BTreeSet<&'static str> {
    analysis.symbols.iter().map(|symbol| symbol.name).collect()
}

fn header<'r>(raw: &'r str, name: &str) -> Option<&'r str> {
    raw.lines().take_while(|line| !line.is_empty()).find_map(|line| line.strip_prefix(name)).map(str::trim)
}

/// Each `tests/rules/*.eml` gives exactly the symbols of its `X-Expect:` line.
#[test]
fn rule_messages() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .expect("tests/rules")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "eml"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "{} messages", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let raw = std::fs::read_to_string(path).expect("message");
        let expect: BTreeSet<&str> = header(&raw, "X-Expect:")
            .expect("an X-Expect line")
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect();
        let mail_from = header(&raw, "X-Mail-From:").unwrap_or("");
        let analysis = with_tenant(mail_from, |context| analyse(raw.as_bytes(), context, &Limits::default()));
        if names(&analysis) != expect {
            failures.push(format!("{}: expected {expect:?}, got {:?}", path.display(), analysis.symbols));
        }
        let dangerous = ["ATTACHMENT_DANGEROUS", "ATTACHMENT_MACRO", "ARCHIVE_DANGEROUS"];
        let held = expect.iter().any(|name| dangerous.contains(name));
        assert_eq!(analysis.at_least == Action::Quarantine, held, "{}", path.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn what_the_mx_reads() {
    let raw = b"From: =?utf-8?q?=C3=89lodie?= <Elodie@Example.ORG>\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n<a href=\"https://WWW.Example.org/a\">x</a> <a href='https://b.example.net'>y</a> <a href=https://www.example.org/b>z</a>\r\n";
    let analysis = with_tenant("", |context| analyse(raw, context, &Limits::default()));
    assert_eq!(analysis.from_address.as_deref(), Some("elodie@example.org"));
    assert_eq!(analysis.from_name.as_deref(), Some("Élodie"));
    assert_eq!(analysis.link_hosts, ["www.example.org", "b.example.net"]);
    let raw = "From: x@example.org\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhttps://bücher.example/ ok\r\n";
    let analysis = with_tenant("", |context| analyse(raw.as_bytes(), context, &Limits::default()));
    assert_eq!(analysis.link_hosts, ["xn--bcher-kva.example"]);
}

#[test]
fn folding() {
    let check = |name: &str, expect: &[&str]| {
        assert_eq!(fold(name), expect.iter().map(|word| word.to_string()).collect::<BTreeSet<_>>(), "{name}");
    };
    check("Le Maire", &["maire"]);
    check("Élodie LEFÈVRE", &["elodie", "lefevre"]);
    check("Dupont, Jean-Pierre (M.)", &["dupont", "jean", "pierre"]);
    check("Mme Françoise d'Orléans", &["francoise", "orleans"]);
    check("", &[]);
}

#[test]
fn domain_helpers() {
    assert_eq!(registrable("www.impots.gouv.fr"), "impots.gouv.fr");
    assert_eq!(registrable("login.impots-gouv.fr"), "impots-gouv.fr");
    assert_eq!(registrable("fr"), "fr");
    for (a, b, expect) in [
        ("fournisseur", "fourniseur", true),
        ("fournisseur", "fournissuer", true),
        ("fournisseur", "fournisseux", true),
        ("fournisseur", "fournisseurs", true),
        ("fournisseur", "fournisseur", true),
        ("fournisseur", "furniseur", false),
        ("cdg35", "cdg53", true),
        ("ab", "ba", true),
    ] {
        assert_eq!(within_one_edit(a, b), expect, "{a} {b}");
    }
}

/// A zip in the stored or deflated form, written here so that bombs need no fixture.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut directory = Vec::new();
    for (name, data) in entries {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).expect("deflate");
        let compressed = encoder.finish().expect("deflate");
        let offset = out.len() as u32;
        let fields = |out: &mut Vec<u8>| {
            out.extend_from_slice(&20u16.to_le_bytes()); // version needed
            out.extend_from_slice(&0u16.to_le_bytes()); // flags
            out.extend_from_slice(&8u16.to_le_bytes()); // deflate
            out.extend_from_slice(&[0; 4]); // time, date
            out.extend_from_slice(&0u32.to_le_bytes()); // crc (not checked)
            out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
        };
        out.extend_from_slice(b"PK\x03\x04");
        fields(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&compressed);
        directory.extend_from_slice(b"PK\x01\x02");
        directory.extend_from_slice(&20u16.to_le_bytes());
        fields(&mut directory);
        directory.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        directory.extend_from_slice(&[0; 4]); // external attributes
        directory.extend_from_slice(&offset.to_le_bytes());
        directory.extend_from_slice(name.as_bytes());
    }
    let directory_offset = out.len() as u32;
    out.extend_from_slice(&directory);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(directory.len() as u32).to_le_bytes());
    out.extend_from_slice(&directory_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn with_attachment(name: &str, data: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "From: x@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    );
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    for line in encoded.as_bytes().chunks(76) {
        raw.push_str(std::str::from_utf8(line).expect("base64"));
        raw.push_str("\r\n");
    }
    raw.push_str("--b--\r\n");
    raw.into_bytes()
}

fn timed(what: &str, raw: &[u8], limits: &Limits) -> Analysis {
    let start = Instant::now();
    let analysis = with_tenant("", |context| analyse(raw, context, limits));
    println!("{what}: {} bytes analysed in {:?}: {:?}", raw.len(), start.elapsed(), names(&analysis));
    analysis
}

fn limit_detail(analysis: &Analysis) -> &str {
    analysis.symbols.iter().find(|symbol| symbol.name == "FILTER_LIMIT").map_or("", |symbol| symbol.detail.as_str())
}

#[test]
fn zip_bomb_stops_at_the_inflate_budget() {
    let zeros = vec![0u8; 10 << 20];
    let inner = zip(&[("zeros.zip", &zip(&[("a.bin", &zeros), ("b.bin", &zeros)]))]);
    // Ten nested archives of 20 MiB each: 200 MiB inflated without the budget.
    let many: Vec<(String, Vec<u8>)> = (0..10).map(|i| (format!("part{i}.zip"), zip(&[("z.docx", &zeros)]))).collect();
    let entries: Vec<(&str, &[u8])> = many.iter().map(|(name, data)| (name.as_str(), data.as_slice())).collect();
    let bomb = zip(&entries);
    let limits = Limits { zip_inflated_bytes_max: 16 << 20, ..Limits::default() };
    let analysis = timed("zip bomb", &with_attachment("bomb.zip", &bomb), &limits);
    assert!(limit_detail(&analysis).contains("zip_inflated_bytes_max"), "{:?}", analysis.symbols);
    let analysis = timed("nested zip", &with_attachment("nested.zip", &inner), &Limits { zip_depth_max: 0, ..limits });
    assert!(limit_detail(&analysis).contains("zip_depth_max"), "{:?}", analysis.symbols);
}

#[test]
fn zip_entries_are_bounded() {
    let names: Vec<String> = (0..50).map(|i| format!("f{i}.txt")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|name| (name.as_str(), &b"x"[..])).collect();
    let limits = Limits { zip_entries_max: 10, ..Limits::default() };
    let analysis = timed("zip of 50 entries", &with_attachment("many.zip", &zip(&entries)), &limits);
    assert!(limit_detail(&analysis).contains("zip_entries_max"));
}

#[test]
fn deeply_nested_mime() {
    let depth = 5000;
    let mut raw = String::from("From: x@example.org\r\nSubject: deep\r\n");
    for level in 0..depth {
        raw.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"));
    }
    raw.push_str(
        "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=x.exe\r\n\r\nMZ\r\n",
    );
    for level in (0..depth).rev() {
        raw.push_str(&format!("--b{level}--\r\n"));
    }
    let analysis = timed("5,000 nested multiparts", raw.as_bytes(), &Limits::default());
    assert!(limit_detail(&analysis).contains("parts_max"), "{:?}", analysis.symbols);
}

#[test]
fn ten_thousand_links() {
    let mut raw = String::from("From: x@example.org\r\nContent-Type: text/html\r\n\r\n");
    for i in 0..10_000 {
        raw.push_str(&format!("<a href=\"https://host{i}.example.com/\">lien {i}</a>\n"));
    }
    let analysis = timed("10,000 links", raw.as_bytes(), &Limits::default());
    assert!(limit_detail(&analysis).contains("links_max"));
    assert_eq!(analysis.link_hosts.len(), Limits::default().links_max);
    let analysis =
        timed("10,000 links, small part bound", raw.as_bytes(), &Limits { text_bytes_max: 4096, ..Limits::default() });
    assert!(limit_detail(&analysis).contains("text_bytes_max"));
}

#[test]
fn broken_input_never_panics() {
    let cases: [&[u8]; 8] = [
        b"",
        b"\xff\xfe\x00",
        b"From: \"=?utf-8?b?////?=\" <@>\r\n\r\n",
        b"From: x@\r\nContent-Type: application/zip; name*0*=''%\r\n\r\nPK\x05\x06",
        b"Content-Type: text/html\r\n\r\n<a href=\"http://[::1\">x</a><a href=http://@:/><a",
        b"Content-Type: text/html\r\n\r\n<!-- <a href=\"http://x.example\">",
        b"Content-Type: text/plain\r\n\r\nhttp://",
        b"Content-Type: application/octet-stream\r\n\r\nPK\x03\x04PK\x01\x02PK\x05\x06\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ];
    for raw in cases {
        with_tenant("<>", |context| analyse(raw, context, &Limits::default()));
    }
}
