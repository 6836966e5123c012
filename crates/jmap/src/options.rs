//! The `[jmap]` limits: what one client may ask of the server in one request. The session
//! object tells clients the first six (RFC 8620 §2, `urn:ietf:params:jmap:core`), and the
//! server refuses what goes past any of them.

use hameau_limits::{Problem, range};
use serde::Deserialize;

const SECTION: &str = "jmap";

/// What one request may cost.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest request body (`maxSizeRequest`): 10 MB, as the RFC's example and common
    /// servers; a request of `Email/set` creations carries no message bodies (those are
    /// uploaded), so this is far above what a real client sends. 1 KiB to 100 MiB.
    pub request_bytes_max: u64,
    /// Method calls in one request (`maxCallsInRequest`): 16, as the RFC's example; a mail
    /// client's largest batch (query, get, changes of a few types) fits. 1 to 256.
    pub calls_in_request_max: u64,
    /// Ids in one `/get` (`maxObjectsInGet`): 500, the RFC's example; a client pages
    /// beyond. 1 to 100,000.
    pub objects_in_get_max: u64,
    /// Creations, updates and destructions in one `/set` (`maxObjectsInSet`): 500, the
    /// RFC's example. 1 to 100,000.
    pub objects_in_set_max: u64,
    /// Requests one account runs at once (`maxConcurrentRequests`): 4, the RFC's example;
    /// more wait their turn. 1 to 64.
    pub concurrent_requests_max: u64,
    /// The largest upload (`maxSizeUpload`): 50 MB, above the largest message the MX takes
    /// (`smtp.message_bytes_max`) with room for an attachment's encoding. 1 KiB to 1 GiB.
    pub upload_bytes_max: u64,
    /// Capabilities named in one request's `using`: 16, far above the few this server has
    /// (core, mail, submission, vacation, quota); the list is not worth reading past it.
    /// 1 to 256.
    pub capabilities_in_request_max: u64,
    /// Reference tokens in one result reference's path (`/list/*/id` is 3): 16, deeper than
    /// any response the methods give; the path is not evaluated past it. 1 to 256.
    pub reference_path_tokens_max: u64,
    /// Values one result reference may give (after `*` expansions): 5,000, ten times
    /// `objects_in_get_max`, as a `Thread/get` of many threads gives every email id. 1 to
    /// 1,000,000.
    pub reference_values_max: u64,
    /// Entries in one object's `PatchObject` of a `/set` update: 256, far above the
    /// properties of any JMAP object (keywords and mailboxes patched one by one included
    /// for a mail client's bulk change of one message). 1 to 100,000.
    pub patch_entries_max: u64,
    /// Objects in one `/changes` answer: 5,000, ten times `objects_in_get_max`; a client's
    /// `maxChanges` is capped to it, and a client behind by more pages through. 1 to 1,000,000.
    pub changes_max: u64,
    /// Operators and conditions in one `/query` filter: 64, far above what a mail client's
    /// search builds (a few conditions under one or two operators); evaluating a filter
    /// costs this per message. 1 to 10,000.
    pub filter_nodes_max: u64,
    /// Ids in one `/query` answer: 5,000, as `changes_max`; a client's `limit` is capped to
    /// it (the answer says so in `limit`) and a client pages with `position` or `anchor`.
    /// 1 to 1,000,000.
    pub query_results_max: u64,
    /// How long an upload is kept unused (RFC 8620 §6.1: at least an hour): 24 h, so that
    /// a message drafted over a day keeps its attachments; the expiry sweep removes it
    /// then (and gives back its quota). 1 h to 30 days.
    pub upload_ttl_s: u64,
    /// Bytes one account may hold in uploads not yet used: 200 MB, four uploads of
    /// `upload_bytes_max` (a message with several large attachments), so that a client
    /// cannot fill the disk with uploads it never uses. At least `upload_bytes_max`, at
    /// most 16 GiB.
    pub upload_pending_bytes_max: u64,
    /// How long a client may cache a download (`Cache-Control: max-age`): 7 days; a blob
    /// id always names the same bytes, so only privacy bounds it. 0 to 1 year.
    pub download_max_age_s: u64,
    /// EventSource connections one account holds at once (RFC 8620 §7.3): 8, a few
    /// browser tabs and a phone; past it the RFC's `limit` problem (429). 1 to 256.
    pub event_sources_per_account_max: u64,
    /// The shortest `ping` interval granted to an EventSource client: 30 s, the highest
    /// minimum the RFC allows a server (§7.3); a lower request is raised to it. 1 to 30.
    pub push_ping_min_s: u64,
    /// The longest `ping` interval granted: 600 s; the RFC forbids a maximum under 300 s
    /// (§7.3), and proxies close connections silent for much longer. 300 to 86,400.
    pub push_ping_max_s: u64,
    /// How long a state change waits for others before it is pushed: 10 ms, so that a
    /// delivery to several mailboxes or a burst of flag changes is one event, well within
    /// the 100 ms the push target allows (issue 15). 0 to 1,000.
    pub push_debounce_ms: u64,
    /// PushSubscriptions one account may have (RFC 8620 §7.2): 16, a few devices and
    /// browsers; `/set` refuses past it (`forbidden`). 1 to 1,000.
    pub push_subscriptions_per_account_max: u64,
    /// PushSubscriptions the server loads at start and keeps in memory: 100,000, far above
    /// a commune's devices; the others are not pushed to (logged). 1 to 10,000,000.
    pub push_subscriptions_max: u64,
    /// The longest a PushSubscription lives (`expires`): 7 days, as Fastmail; a client
    /// renews it, and a forgotten one stops being pushed to. 1 h to 1 year.
    pub push_expires_max_s: u64,
    /// The longest URL a PushSubscription may give: 2,048 bytes, as browsers' push service
    /// URLs are a few hundred. 16 to 8,192.
    pub push_url_bytes_max: u64,
    /// Time for one push POST (connection, TLS, answer): 10 s, so that a slow push service
    /// does not hold up the others of the account. 1 to 60.
    pub push_timeout_s: u64,
    /// Allow push URLs on loopback addresses and over plain `http` (tests only): false.
    /// Otherwise a push URL must be `https` and resolve to public addresses only, so that
    /// a client cannot aim the server at a service of its own network (SSRF).
    pub push_loopback_allowed: bool,
    /// Nesting of `bodyStructure` written in an `Email/get` answer: 32. A real message
    /// nests a few multiparts (a forwarded thread, ten); a hostile one can nest thousands,
    /// and the answer's JSON is written and dropped by recursion. A multipart deeper than
    /// this is shown without its `subParts` (its text and attachments are still listed in
    /// `textBody`, `htmlBody` and `attachments`). 1 to 100.
    pub body_depth_max: u64,
    /// Bytes of body values (decoded text) in one `Email/get` answer, all emails together:
    /// 16 MB, far more than a client shows at once (a long letter is 100 KB). Past it,
    /// values are cut (`isTruncated`) as a client's `maxBodyValueBytes` cuts them, and the
    /// client downloads the part's blob for the rest: 500 ids of 25 MB messages would
    /// otherwise hold gigabytes. 64 KiB to 1 GiB.
    pub body_values_bytes_max: u64,
    /// Bytes of stored messages and blobs that one request parses (`Email/get` of
    /// `bodyStructure`, body values or headers, `Email/parse`), its method calls all
    /// together: 256 MB, fifty messages of 5 MB. A list view parses nothing (it reads
    /// summaries); a client opening messages asks for a few. The call whose next parse
    /// would pass it is refused (`requestTooLarge`; `Email/get` sums its emails first and
    /// parses none), so that 500 ids of 25 MB messages (or one 25 MB blob named 500 times
    /// in `Email/parse`) do not hold the workers for minutes. 1 MiB to 16 GiB.
    pub parsed_bytes_max: u64,
    /// Mailbox index entries kept in memory, for all accounts, by the `Email/query` cache
    /// (one account's mailbox sorted by arrival, reused while the account does not change):
    /// 1,000,000 entries, about 80 MB, holds ten mailboxes of 100,000 messages, where a
    /// query costs 20 ms without it and well under 1 ms with it. 0 keeps none. 0 to
    /// 100,000,000.
    pub query_cache_entries_max: u64,
    /// `Email/query`'s `text`, `from`, `to`, `cc`, `bcc`, `subject` and `body` (and the
    /// words `SearchSnippet/get` marks) ignore accents as they ignore case: `etat` finds
    /// `État`, as an agent typing without accents expects (RFC 8621 §4.4.1 leaves matching
    /// to the server). `false`: substrings exact but for case, as IMAP SEARCH always is.
    pub fold_accents: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_bytes_max: 10_000_000,
            calls_in_request_max: 16,
            objects_in_get_max: 500,
            objects_in_set_max: 500,
            concurrent_requests_max: 4,
            upload_bytes_max: 50_000_000,
            capabilities_in_request_max: 16,
            reference_path_tokens_max: 16,
            reference_values_max: 5_000,
            patch_entries_max: 256,
            changes_max: 5_000,
            filter_nodes_max: 64,
            query_results_max: 5_000,
            upload_ttl_s: 86_400,
            upload_pending_bytes_max: 200_000_000,
            download_max_age_s: 604_800,
            event_sources_per_account_max: 8,
            push_ping_min_s: 30,
            push_ping_max_s: 600,
            push_debounce_ms: 10,
            push_subscriptions_per_account_max: 16,
            push_subscriptions_max: 100_000,
            push_expires_max_s: 604_800,
            push_url_bytes_max: 2_048,
            push_timeout_s: 10,
            push_loopback_allowed: false,
            body_depth_max: 32,
            body_values_bytes_max: 16_000_000,
            parsed_bytes_max: 256_000_000,
            query_cache_entries_max: 1_000_000,
            fold_accents: true,
        }
    }
}

impl Limits {
    /// Ranges, each naming its `[jmap]` key.
    pub fn check(&self) -> Result<(), Problem> {
        range(SECTION, "request_bytes_max", self.request_bytes_max, 1 << 10, 100 << 20)?;
        range(SECTION, "calls_in_request_max", self.calls_in_request_max, 1, 256)?;
        range(SECTION, "objects_in_get_max", self.objects_in_get_max, 1, 100_000)?;
        range(SECTION, "objects_in_set_max", self.objects_in_set_max, 1, 100_000)?;
        range(SECTION, "concurrent_requests_max", self.concurrent_requests_max, 1, 64)?;
        range(SECTION, "upload_bytes_max", self.upload_bytes_max, 1 << 10, 1 << 30)?;
        range(SECTION, "capabilities_in_request_max", self.capabilities_in_request_max, 1, 256)?;
        range(SECTION, "reference_path_tokens_max", self.reference_path_tokens_max, 1, 256)?;
        range(SECTION, "reference_values_max", self.reference_values_max, 1, 1_000_000)?;
        range(SECTION, "patch_entries_max", self.patch_entries_max, 1, 100_000)?;
        range(SECTION, "changes_max", self.changes_max, 1, 1_000_000)?;
        range(SECTION, "filter_nodes_max", self.filter_nodes_max, 1, 10_000)?;
        range(SECTION, "query_results_max", self.query_results_max, 1, 1_000_000)?;
        range(SECTION, "upload_ttl_s", self.upload_ttl_s, 3_600, 30 * 86_400)?;
        range(SECTION, "upload_pending_bytes_max", self.upload_pending_bytes_max, self.upload_bytes_max, 16 << 30)?;
        range(SECTION, "download_max_age_s", self.download_max_age_s, 0, 365 * 86_400)?;
        range(SECTION, "event_sources_per_account_max", self.event_sources_per_account_max, 1, 256)?;
        range(SECTION, "push_ping_min_s", self.push_ping_min_s, 1, 30)?;
        range(SECTION, "push_ping_max_s", self.push_ping_max_s, 300, 86_400)?;
        range(SECTION, "push_debounce_ms", self.push_debounce_ms, 0, 1_000)?;
        range(SECTION, "push_subscriptions_per_account_max", self.push_subscriptions_per_account_max, 1, 1_000)?;
        range(SECTION, "push_subscriptions_max", self.push_subscriptions_max, 1, 10_000_000)?;
        range(SECTION, "push_expires_max_s", self.push_expires_max_s, 3_600, 365 * 86_400)?;
        range(SECTION, "push_url_bytes_max", self.push_url_bytes_max, 16, 8_192)?;
        range(SECTION, "push_timeout_s", self.push_timeout_s, 1, 60)?;
        range(SECTION, "body_depth_max", self.body_depth_max, 1, 100)?;
        range(SECTION, "body_values_bytes_max", self.body_values_bytes_max, 64 << 10, 1 << 30)?;
        range(SECTION, "parsed_bytes_max", self.parsed_bytes_max, 1 << 20, 16 << 30)?;
        range(SECTION, "query_cache_entries_max", self.query_cache_entries_max, 0, 100_000_000)?;
        Ok(())
    }
}
