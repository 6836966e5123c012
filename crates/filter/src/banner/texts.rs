//! What the agent reads: one French and one English sentence per symbol, the heading and
//! the advice, and the banner built from them as plain text or as an HTML block.
//!
//! Every French text is in ISO-8859-1's repertoire (no `…`, no typographic apostrophe,
//! no `œ`), so that a Latin-1 or Windows-1252 text part can take the banner in its own
//! charset (see `banner.rs`).

use std::fmt::Write as _;

/// The banner's first line.
pub(super) const HEADING: (&str, &str) = (
    "ATTENTION : ce message est peut-être une tentative de fraude.",
    "WARNING: this message may be an attempt at fraud.",
);

/// The banner's last line, whatever the reasons.
pub(super) const ADVICE: (&str, &str) = (
    "Ne cliquez sur aucun lien, n'ouvrez aucune pièce jointe et ne répondez pas sans avoir vérifié auprès de l'expéditeur par un autre moyen (téléphone).",
    "Do not click any link, open any attachment or reply without first checking with the sender by other means (telephone).",
);

/// The sentence per symbol name of issue 14's list (docs/filter.md); `None` for a symbol the
/// agent is not shown (one that lowers the score) or does not exist.
pub(super) fn explain(symbol: &str) -> Option<(&'static str, &'static str)> {
    let texts = match symbol {
        "IMPERSONATION_NAME" => (
            "Le nom de l'expéditeur ressemble à celui d'une personne de votre commune, mais l'adresse est externe.",
            "The sender's name looks like that of a person of your commune, but the address is external.",
        ),
        "LOOKALIKE_OWN_DOMAIN" => (
            "L'adresse de l'expéditeur imite le nom de domaine de votre commune.",
            "The sender's address imitates your commune's domain name.",
        ),
        "LOOKALIKE_PUBLIC_DOMAIN" => (
            "L'adresse de l'expéditeur imite celle d'un service public (impôts, Ameli, CAF, ANTS, préfecture), mais n'en est pas une.",
            "The sender's address imitates that of a public service (tax office, Ameli, CAF, ANTS, prefecture), but is not one.",
        ),
        "LOOKALIKE_KNOWN_DOMAIN" => (
            "L'adresse de l'expéditeur ressemble à celle d'un de vos correspondants habituels, mais elle est différente.",
            "The sender's address looks like that of one of your usual correspondents, but it is different.",
        ),
        "LINK_LOOKALIKE" => (
            "Un lien mène à un site dont le nom imite celui de votre commune, d'un service public ou d'un correspondant habituel.",
            "A link leads to a site whose name imitates that of your commune, a public service or a usual correspondent.",
        ),
        "LINK_TEXT_MISMATCH" => (
            "Un lien affiche l'adresse d'un site mais mène à un autre.",
            "A link shows the address of one site but leads to another.",
        ),
        "LINK_SHORTENER" => (
            "Un lien passe par un raccourcisseur d'adresse, qui cache sa vraie destination.",
            "A link goes through a URL shortener, which hides its real destination.",
        ),
        "LINK_IP_LITERAL" => (
            "Un lien mène à une adresse numérique (IP) au lieu d'un nom de site.",
            "A link leads to a numeric (IP) address instead of a site name.",
        ),
        "ATTACHMENT_DANGEROUS" => (
            "Une pièce jointe est un programme, un script ou un raccourci qui peut infecter votre ordinateur.",
            "An attachment is a program, a script or a shortcut that can infect your computer.",
        ),
        "ATTACHMENT_MACRO" => (
            "Une pièce jointe est un document Office avec macros, qui peut infecter votre ordinateur.",
            "An attachment is an Office document with macros, which can infect your computer.",
        ),
        "ARCHIVE_DANGEROUS" => (
            "Une archive jointe (zip) contient un programme ou un document avec macros.",
            "An attached (zip) archive contains a program or a document with macros.",
        ),
        "ARCHIVE_ENCRYPTED" => (
            "Une archive jointe est protégée par un mot de passe, ce qui empêche de vérifier son contenu.",
            "An attached archive is protected by a password, which prevents checking its content.",
        ),
        "FILTER_LIMIT" => (
            "Le message est trop complexe pour être entièrement vérifié.",
            "The message is too complex to be fully checked.",
        ),
        "BAYES_SPAM" => (
            "Le message ressemble à des messages indésirables déjà reçus.",
            "The message looks like unwanted messages received before.",
        ),
        "FIRST_CONTACT" => {
            ("Vous n'avez jamais échangé avec cet expéditeur.", "You have never corresponded with this sender.")
        }
        "DNSBL_CLIENT" => (
            "Le serveur qui a envoyé ce message figure sur une liste de sources de spam.",
            "The server that sent this message is on a list of spam sources.",
        ),
        "DNSBL_LINK" => (
            "Un lien mène à un site qui figure sur une liste de sites de spam ou malveillants.",
            "A link leads to a site that is on a list of spam or malicious sites.",
        ),
        "DMARC_QUARANTINE" => (
            "Le domaine de l'expéditeur ne confirme pas que ce message vient de lui.",
            "The sender's domain does not confirm that this message comes from it.",
        ),
        _ => return None,
    };
    Some(texts)
}

/// The reasons shown: each symbol with a text and a positive score, once, in the order
/// found.
pub(super) fn reasons(symbols: &[crate::Symbol]) -> Vec<(&'static str, &'static str)> {
    let mut shown: Vec<&str> = Vec::new();
    let mut reasons = Vec::new();
    for symbol in symbols {
        if symbol.score <= 0.0 || shown.contains(&symbol.name) {
            continue;
        }
        if let Some(texts) = explain(symbol.name) {
            shown.push(symbol.name);
            reasons.push(texts);
        }
    }
    reasons
}

/// One language of a pair: French first, English second.
#[derive(Clone, Copy)]
enum Language {
    French,
    English,
}

impl Language {
    fn pick(self, texts: (&'static str, &'static str)) -> &'static str {
        match self {
            Language::French => texts.0,
            Language::English => texts.1,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Language::French => "fr",
            Language::English => "en",
        }
    }
}

/// The banner as plain text, lines ended by `newline`, closed by a rule and an empty line
/// so that the message's own first line stands apart.
pub(super) fn plain(reasons: &[(&'static str, &'static str)], english: bool, newline: &str) -> String {
    let mut text = String::new();
    plain_language(&mut text, reasons, Language::French, newline);
    if english {
        text.push_str(newline);
        plain_language(&mut text, reasons, Language::English, newline);
    }
    let _ = write!(text, "{}{newline}{newline}", "-".repeat(60));
    text
}

fn plain_language(text: &mut String, reasons: &[(&'static str, &'static str)], language: Language, newline: &str) {
    let _ = write!(text, "{}{newline}", language.pick(HEADING));
    for reason in reasons {
        let _ = write!(text, "- {}{newline}", language.pick(*reason));
    }
    let _ = write!(text, "{}{newline}", language.pick(ADVICE));
}

/// The banner as an HTML block: inline styles only (a mail client loads nothing), every
/// character outside ASCII as a character reference, so that the block is the same bytes
/// in any ASCII-compatible charset and keeps a 7bit part 7bit.
pub(super) fn html(reasons: &[(&'static str, &'static str)], english: bool, newline: &str) -> String {
    let mut block = String::new();
    let _ = write!(
        block,
        "{newline}<div style=\"border:2px solid #b71c1c;background:#fdecea;color:#000000;padding:8px 12px;margin:0 0 12px 0;font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.4;text-align:left\">{newline}"
    );
    html_language(&mut block, reasons, Language::French, newline);
    if english {
        let _ = write!(block, "<hr style=\"border:0;border-top:1px solid #b71c1c;margin:8px 0\">{newline}");
        html_language(&mut block, reasons, Language::English, newline);
    }
    let _ = write!(block, "</div>{newline}");
    block
}

fn html_language(block: &mut String, reasons: &[(&'static str, &'static str)], language: Language, newline: &str) {
    let _ = write!(block, "<div lang=\"{}\">{newline}", language.code());
    let heading = escape(language.pick(HEADING));
    let _ = write!(block, "<p style=\"margin:0 0 6px 0;font-weight:bold;color:#b71c1c\">{heading}</p>{newline}");
    if !reasons.is_empty() {
        let _ = write!(block, "<ul style=\"margin:0 0 6px 0;padding-left:20px\">{newline}");
        for reason in reasons {
            let _ = write!(block, "<li>{}</li>{newline}", escape(language.pick(*reason)));
        }
        let _ = write!(block, "</ul>{newline}");
    }
    let _ = write!(block, "<p style=\"margin:0\">{}</p>{newline}</div>{newline}", escape(language.pick(ADVICE)));
}

/// `text` for an HTML text node: markup characters and everything outside ASCII as
/// references.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            ' '..='~' => escaped.push(character),
            other => {
                let _ = write!(escaped, "&#{};", other as u32);
            }
        }
    }
    escaped
}
