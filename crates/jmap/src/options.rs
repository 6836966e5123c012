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
    /// Mailbox index entries kept in memory, for all accounts, by the `Email/query` cache
    /// (one account's mailbox sorted by arrival, reused while the account does not change):
    /// 1,000,000 entries, about 80 MB, holds ten mailboxes of 100,000 messages, where a
    /// query costs 20 ms without it and well under 1 ms with it. 0 keeps none. 0 to
    /// 100,000,000.
    pub query_cache_entries_max: u64,
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
            body_depth_max: 32,
            body_values_bytes_max: 16_000_000,
            query_cache_entries_max: 1_000_000,
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
        range(SECTION, "body_depth_max", self.body_depth_max, 1, 100)?;
        range(SECTION, "body_values_bytes_max", self.body_values_bytes_max, 64 << 10, 1 << 30)?;
        range(SECTION, "query_cache_entries_max", self.query_cache_entries_max, 0, 100_000_000)?;
        Ok(())
    }
}
