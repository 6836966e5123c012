#!/usr/bin/env python3
"""Writes the rule test messages of this directory (run once; the .eml files are committed).
Each file starts with `X-Expect:` listing the symbols analyse() must give, for the tenant
of crates/filter/src/rules/tests.rs (Saint-Martin, saint-martin.fr)."""
import base64, io, zipfile

def mime(expect, frm, subject, parts, mail_from=None):
    boundary = "b1"
    out = [f"X-Expect: {expect}", f"From: {frm}", "To: mairie@saint-martin.fr", f"Subject: {subject}",
           "MIME-Version: 1.0"]
    if mail_from:
        out.insert(1, f"X-Mail-From: {mail_from}")
    if len(parts) == 1 and parts[0][0].startswith("text/"):
        ctype, body = parts[0][0], parts[0][1]
        out += [f"Content-Type: {ctype}; charset=utf-8", "Content-Transfer-Encoding: 8bit", "", body]
        return "\r\n".join(out) + "\r\n"
    out += [f'Content-Type: multipart/mixed; boundary="{boundary}"', ""]
    for part in parts:
        out.append(f"--{boundary}")
        if part[0].startswith("text/"):
            out += [f"Content-Type: {part[0]}; charset=utf-8", "", part[1]]
        else:
            ctype, name, data = part
            out += [f'Content-Type: {ctype}; name="{name}"', f'Content-Disposition: attachment; filename="{name}"',
                    "Content-Transfer-Encoding: base64", ""]
            out += [base64.b64encode(data).decode()[i:i+76] for i in range(0, len(base64.b64encode(data)), 76)]
    out.append(f"--{boundary}--")
    return "\r\n".join(out) + "\r\n"

def zipped(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            # A fixed date, so that the messages are the same at every run.
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()

def encrypted(data):
    # Sets the "encrypted" flag bit of every entry (local and central headers).
    data = bytearray(data)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig)
        while at >= 0:
            data[at + off] |= 1
            at = data.find(sig, at + 4)
    return bytes(data)

def write(name, text):
    with open(name, "w", newline="") as f:
        f.write(text)

text = "text/plain"
html = "text/html"
write("clean-reply-known.eml", mime("", '"Paul Martin" <paul@fournisseur-bureau.fr>', "Re: commande",
      [(text, "Bonjour,\nVoici le devis demandé : https://www.fournisseur-bureau.fr/devis/42\nCordialement")]))
write("clean-newsletter.eml", mime("", '"La Lettre des communes" <lettre@cdg35.fr>', "Lettre n°12",
      [(html, "<p>Bonjour</p>" + "".join(f'<p><a href="https://www.cdg35.fr/actu/{i}">Lire l\'article {i}</a></p>' for i in range(60))
        + '<p><a href="https://www.cdg35.fr/">www.cdg35.fr</a> <a href="https://www.legifrance.gouv.fr/">legifrance.gouv.fr</a></p>')]))
write("clean-namesake.eml", mime("", '"Pierre Dupont" <p.dupont@entreprise-batiment.fr>', "Devis toiture",
      [(text, "Bonjour, voici notre devis.")]))
write("clean-internal.eml", mime("", '"Le Maire" <maire@saint-martin.fr>', "Conseil",
      [(text, "Réunion lundi.")]))
write("clean-docx.eml", mime("", '"Paul Martin" <paul@fournisseur-bureau.fr>', "Facture",
      [(text, "Ci-joint."), ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "facture.docx",
        zipped([("[Content_Types].xml", "<Types/>"), ("word/document.xml", "<w:document/>")]))]))
write("name-le-maire.eml", mime("IMPERSONATION_NAME", '"Le Maire" <lemaire.saintmartin@gmail.com>', "Urgent",
      [(text, "Pouvez-vous faire un virement aujourd'hui ?")]))
write("name-elodie.eml", mime("IMPERSONATION_NAME", '=?utf-8?q?=C3=89lodie_LEFEVRE?= <elodie.l@outlook.fr>', "Urgent",
      [(text, "Merci de me rappeler.")]))
write("name-dupont-reversed.eml", mime("IMPERSONATION_NAME", '"Dupont Jean-Pierre" <jp.dupont1960@gmail.com>', "Virement",
      [(text, "Bonjour, un virement urgent.")]))
write("name-mairie.eml", mime("IMPERSONATION_NAME", '"Mairie de Saint-Martin" <contact@mairie-info.com>', "Paiement",
      [(text, "Paiement en attente.")]))
write("name-shows-address.eml", mime("IMPERSONATION_NAME", '"mairie@saint-martin.fr" <x@evil.example>', "Document",
      [(text, "Voir le document.")]))
write("name-generic-info.eml", mime("", '"Info" <info@boutique.example>', "Soldes", [(text, "Soldes !")]))
# saint-mаrtin.fr with a Cyrillic а (U+0430).
idn = "saint-m\u0430rtin.fr".encode("idna").decode()
write("lookalike-own-idn.eml", mime("LOOKALIKE_OWN_DOMAIN", f'"Service" <service@{idn}>', "Compte",
      [(text, "Votre compte.")]))
write("lookalike-own-tld.eml", mime("LOOKALIKE_OWN_DOMAIN", '"Service" <service@saint-martin.com>', "Compte",
      [(text, "Votre compte.")]))
write("lookalike-impots.eml", mime("LOOKALIKE_PUBLIC_DOMAIN", '"Impots" <remboursement@impots-gouv.fr>', "Remboursement",
      [(text, "Vous avez droit à un remboursement.")]))
write("lookalike-known-typo.eml", mime("LOOKALIKE_KNOWN_DOMAIN", '"Paul Martin" <paul@fournisseur-burreau.fr>', "Nouveau RIB",
      [(text, "Notre banque a changé.")]))
write("lookalike-envelope.eml", mime("LOOKALIKE_KNOWN_DOMAIN", '"Paul" <paul@example.org>', "Facture",
      [(text, "Voir pièce.")], mail_from="bounce@cdg53.fr"))
write("link-mismatch.eml", mime("LINK_TEXT_MISMATCH", '"Banque" <info@banque.example>', "Compte",
      [(html, '<p>Connectez-vous : <a href="https://login.evil.example/x">https://www.labanquepostale.fr</a></p>')]))
write("link-lookalike.eml", mime("LINK_LOOKALIKE", '"Info" <news@example.org>', "Remboursement",
      [(html, '<a href="https://www.impots-gouv.fr/remboursement">cliquez ici</a>')]))
write("link-shortener-ip.eml", mime("LINK_SHORTENER, LINK_IP_LITERAL", '"X" <x@example.org>', "Colis",
      [(text, "Suivi : https://bit.ly/3abc et http://192.0.2.7/colis")]))
write("attach-exe.eml", mime("ATTACHMENT_DANGEROUS", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/octet-stream", "facture.exe", b"MZ\x90\x00rest")]))
write("attach-double-ext.eml", mime("ATTACHMENT_DANGEROUS", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/octet-stream", "facture.pdf.exe", b"MZ\x90\x00rest")]))
write("attach-mz-innocent.eml", mime("ATTACHMENT_DANGEROUS", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/pdf", "facture.pdf", b"MZ\x90\x00This program cannot be run in DOS mode")]))
write("attach-docm.eml", mime("ATTACHMENT_MACRO", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/octet-stream", "facture.docm", zipped([("word/document.xml", "x"), ("word/vbaProject.bin", "VBA")]))]))
write("attach-docx-with-vba.eml", mime("ATTACHMENT_MACRO", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/octet-stream", "facture.docx", zipped([("word/document.xml", "x"), ("word/vbaProject.bin", "VBA")]))]))
write("zip-docm.eml", mime("ARCHIVE_DANGEROUS", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/zip", "factures.zip", zipped([("lisez-moi.txt", "x"), ("facture.docm", zipped([("word/vbaProject.bin", "VBA")]))]))]))
write("zip-nested-vba.eml", mime("ARCHIVE_DANGEROUS", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/zip", "factures.zip", zipped([("facture.docx", zipped([("word/vbaProject.bin", "VBA")]))]))]))
write("zip-encrypted.eml", mime("ARCHIVE_ENCRYPTED", '"X" <x@example.org>', "Facture",
      [(text, "Mot de passe : 1234"), ("application/zip", "facture.zip", encrypted(zipped([("facture.pdf", "%PDF-1.4")])))]))
write("zip-exe.eml", mime("ARCHIVE_DANGEROUS", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/zip", "facture.zip", zipped([("facture.pdf.exe", "MZ")]))]))
# A broken RFC 2231 name: charset with no value, bad percent escapes.
broken = mime("ATTACHMENT_DANGEROUS", '"X" <x@example.org>', "Facture",
      [(text, "Ci-joint."), ("application/octet-stream", "PLACE", b"MZ\x90\x00")])
broken = broken.replace('Content-Type: application/octet-stream; name="PLACE"', "Content-Type: application/octet-stream")
broken = broken.replace('filename="PLACE"', "filename*0*=utf-8''%E9%ZZfacture; filename*1*=%%.exe")
write("attach-broken-rfc2231.eml", broken)
write("lookalike-own-rn.eml", mime("LOOKALIKE_OWN_DOMAIN", '"Service" <service@saint-rnartin.fr>', "Compte",
      [(text, "Votre compte.")]))
write("lookalike-gouv-word.eml", mime("LOOKALIKE_PUBLIC_DOMAIN", '"ANTS" <ne-pas-repondre@ants-gouv.com>', "Carte grise",
      [(text, "Votre dossier.")]))
write("clean-public.eml", mime("", '"DGFiP" <ne-pas-repondre@dgfip.finances.gouv.fr>', "Avis",
      [(html, '<a href="https://www.impots.gouv.fr/">impots.gouv.fr</a>')]))
write("link-userinfo.eml", mime("LINK_LOOKALIKE, LINK_TEXT_MISMATCH", '"X" <x@example.org>', "Avis",
      [(html, '<a href="http://www.impots.gouv.fr@impots-gouv.fr/avis">www.impots.gouv.fr</a>')]))
