//! `hameau tenant|domain|account|alias|apikey|app-password|queue|quarantine …`: the admin API from the
//! command line. Each command is one API call; it runs either in-process on the local data
//! directory (as the operator, while the server is stopped) or against a running server
//! (`--url` and `--api-key`). Either way the same handlers run, with the same validation
//! and the same errors: the CLI cannot drift from the API.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where the command runs.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The configuration of the local data directory (default: the built-in one).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// A running server's base URL, e.g. https://mail.example.org (then --api-key is needed).
    #[arg(long, global = true, requires = "api_key")]
    pub url: Option<String>,
    /// The API key for --url. Also read from HAMEAU_API_KEY.
    #[arg(long, global = true, env = "HAMEAU_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A PEM certificate to trust for --url, besides the system's (for a self-signed one).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Creates a tenant (a commune).
    Create {
        /// The tenant's id: lower-case letters, digits and hyphens (e.g. saint-martin).
        id: String,
        /// Its name as people read it (e.g. "Mairie de Saint-Martin").
        #[arg(long)]
        name: String,
        /// Its SIREN number (9 digits).
        #[arg(long)]
        siren: Option<String>,
        /// Its INSEE code (5 characters).
        #[arg(long)]
        insee: Option<String>,
        /// Bytes of mail all its accounts may hold together (default: no limit).
        #[arg(long)]
        quota_bytes: Option<u64>,
        /// Accounts it may have at most (default: no limit).
        #[arg(long)]
        accounts_max: Option<u32>,
    },
    /// Lists the tenants, a page at a time.
    List(PageArgs),
    /// Shows a tenant.
    Show {
        /// The tenant's id.
        id: String,
    },
    /// Changes the fields given.
    Update {
        /// The tenant's id.
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new SIREN number.
        #[arg(long)]
        siren: Option<String>,
        /// A new INSEE code.
        #[arg(long)]
        insee: Option<String>,
        /// A new tenant quota, in bytes.
        #[arg(long)]
        quota_bytes: Option<u64>,
        /// A new bound on its accounts.
        #[arg(long)]
        accounts_max: Option<u32>,
    },
    /// Deletes a tenant (with its held mail and filter data); refused while it has domains.
    Delete {
        /// The tenant's id.
        id: String,
    },
    /// The tenant's own filter settings: thresholds and the warning (docs/quarantine.md).
    Filter {
        #[command(subcommand)]
        command: FilterCommand,
    },
}

/// A tenant's filter settings; without its own, the configuration's `[filter]` applies.
#[derive(Subcommand, Debug)]
pub enum FilterCommand {
    /// Shows the tenant's own settings and those that apply.
    Get {
        /// The tenant's id.
        tenant: String,
    },
    /// Sets the tenant's own settings. The thresholds are one part and the warning another,
    /// each given whole: a key of a part left out takes the built-in default.
    Set {
        /// The tenant's id.
        tenant: String,
        /// From this score, delivered with a warning.
        #[arg(long)]
        warn_score: Option<f64>,
        /// From this score, into Junk.
        #[arg(long)]
        junk_score: Option<f64>,
        /// From this score, held in quarantine.
        #[arg(long)]
        quarantine_score: Option<f64>,
        /// From this score, refused.
        #[arg(long)]
        reject_score: Option<f64>,
        /// A banner at the top of a suspect message (true or false).
        #[arg(long)]
        banner: Option<bool>,
        /// The banner's English version under the French one (true or false).
        #[arg(long)]
        english: Option<bool>,
        /// Put in front of a suspect message's subject; empty for none.
        #[arg(long)]
        subject_tag: Option<String>,
    },
    /// Removes the tenant's own settings: the configuration's apply again.
    Reset {
        /// The tenant's id.
        tenant: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// Lists held messages, newest first (a tenant admin: its tenant's).
    List {
        /// Only this tenant's (the operator; a tenant admin sees its own only).
        #[arg(long)]
        tenant: Option<String>,
        /// Only those held for this address.
        #[arg(long)]
        recipient: Option<String>,
        /// The cursor of the next page: the `next` of the previous answer.
        #[arg(long)]
        after: Option<String>,
        /// Messages in one page (1 to directory.page_items_max, 100 by default).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Shows a held message: its envelope, the filter's verdict, its header and the start
    /// of its text; with --raw, the message itself (to save as an .eml file).
    Show {
        /// The held message's id (from `quarantine list`).
        id: String,
        /// Write the message itself (RFC 5322) to standard output.
        #[arg(long)]
        raw: bool,
    },
    /// Delivers a held message to its recipients' Inboxes, as it came.
    Release {
        /// The held message's id.
        id: String,
    },
    /// Deletes a held message undelivered; the sender is not told.
    Delete {
        /// The held message's id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainCommand {
    /// Adds a domain to a tenant, with new DKIM keys.
    Create {
        /// The domain (e.g. saint-martin.fr).
        name: String,
        /// The tenant it belongs to.
        #[arg(long)]
        tenant: String,
    },
    /// Lists the domains, a page at a time.
    List(TenantPageArgs),
    /// Shows a domain with its DKIM selectors.
    Show {
        /// The domain.
        name: String,
    },
    /// Removes a domain; refused while accounts or aliases use it.
    Delete {
        /// The domain.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Creates an account (a mailbox) in a domain of a tenant.
    Create {
        /// Its address (e.g. secretariat@saint-martin.fr).
        address: String,
        /// The name shown with its address (e.g. "Secrétariat de mairie").
        #[arg(long, default_value = "")]
        display_name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Bytes of mail it may hold (default: only its tenant's limit applies).
        #[arg(long)]
        quota_bytes: Option<u64>,
        /// Created disabled: it cannot log in (its mail is still received).
        #[arg(long)]
        disabled: bool,
        /// user or tenant_admin.
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Lists the accounts, a page at a time.
    List(TenantPageArgs),
    /// Shows an account.
    Show {
        /// The account's address.
        address: String,
    },
    /// Changes the fields given.
    Update {
        /// The account's address.
        address: String,
        /// A new display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Read a new password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// A new quota, in bytes.
        #[arg(long)]
        quota_bytes: Option<u64>,
        /// false disables it (no login; its mail is still received), true enables it again.
        #[arg(long)]
        enabled: Option<bool>,
        /// user or tenant_admin.
        #[arg(long)]
        role: Option<String>,
        /// An alias it may send as; repeat for several (replaces the list).
        #[arg(long)]
        may_send_as: Vec<String>,
    },
    /// Deletes an account; one that holds mail only with --delete-mail.
    Delete {
        /// The account's address.
        address: String,
        /// Delete its mail too (save it first if it must be kept: `hameau export`).
        #[arg(long)]
        delete_mail: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// Creates an alias: mail to its address goes to the accounts given.
    Create {
        /// The alias's address (e.g. mairie@saint-martin.fr).
        address: String,
        /// An account it delivers to; repeat for several.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
    },
    /// Lists the aliases, a page at a time.
    List(TenantPageArgs),
    /// Shows an alias and its targets.
    Show {
        /// The alias's address.
        address: String,
    },
    /// Replaces an alias's targets.
    Update {
        /// The alias's address.
        address: String,
        /// An account it delivers to; repeat for several.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
    },
    /// Deletes an alias.
    Delete {
        /// The alias's address.
        address: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Makes a key; its token is printed once.
    Create {
        /// What the key is for (e.g. "mairie", "backup").
        #[arg(long)]
        name: String,
        /// An operator key (everything).
        #[arg(long, conflicts_with_all = ["tenant", "user"])]
        operator: bool,
        /// A tenant admin key for this tenant.
        #[arg(long, conflicts_with = "user")]
        tenant: Option<String>,
        /// A user key for this account.
        #[arg(long)]
        user: Option<String>,
        /// Seconds since the Unix epoch after which it is refused.
        #[arg(long)]
        expires_at: Option<u64>,
    },
    /// Lists the keys (never their tokens), a page at a time.
    List(PageArgs),
    /// Shows a key (never its token).
    Show {
        /// The key's id.
        id: String,
    },
    /// Revokes a key.
    Delete {
        /// The key's id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppPasswordCommand {
    /// Makes an application password for a mail client; it is printed once.
    Create {
        /// The account's address.
        address: String,
        /// Which client or device it is for (e.g. "Thunderbird bureau").
        #[arg(long)]
        name: String,
    },
    /// Lists an account's application passwords (never the passwords).
    List {
        /// The account's address.
        address: String,
    },
    /// Revokes an application password.
    Delete {
        /// The account's address.
        address: String,
        /// The application password's id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Lists queued messages, oldest first (the operator: all, or one tenant's).
    List(TenantPageArgs),
    /// Shows a message's envelope and each recipient's state (never its content).
    Show {
        /// The queued message's id (from `queue list`).
        id: u64,
    },
    /// Makes a message due now, with every recipient still pending.
    Retry {
        /// The queued message's id.
        id: u64,
    },
    /// Holds a message: it is not tried until released.
    Hold {
        /// The queued message's id.
        id: u64,
        /// Why, shown with the message.
        #[arg(long)]
        reason: String,
    },
    /// Releases a held message: due now.
    Release {
        /// The queued message's id.
        id: u64,
    },
    /// Removes a message undelivered; the sender is not told.
    Delete {
        /// The queued message's id.
        id: u64,
    },
    /// Lists the sending brakes on: accounts (or tenants) whose mail is held for sending
    /// too much, perhaps with a phished password.
    Brakes {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Lifts a sending brake (the operator): the held mail is released.
    LiftBrake {
        /// The braked tenant.
        #[arg(long)]
        tenant: String,
        /// The braked account; without it, the tenant's own brake.
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct PageArgs {
    /// The cursor of the next page: the `next` of the previous answer.
    #[arg(long)]
    after: Option<String>,
    /// Items in one page (1 to directory.page_items_max, 100 by default).
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Args, Debug)]
pub struct TenantPageArgs {
    /// Only this tenant's (the operator; a tenant admin sees its own only).
    #[arg(long)]
    tenant: Option<String>,
    /// The cursor of the next page: the `next` of the previous answer.
    #[arg(long)]
    after: Option<String>,
    /// Items in one page (1 to directory.page_items_max, 100 by default).
    #[arg(long)]
    limit: Option<usize>,
}

/// One call of the admin API.
#[derive(Debug)]
pub struct ApiCall {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
}

impl ApiCall {
    fn get(path: String) -> ApiCall {
        ApiCall { method: "GET", path, body: None }
    }
    fn delete(path: String) -> ApiCall {
        ApiCall { method: "DELETE", path, body: None }
    }
    fn post(path: String, body: Value) -> ApiCall {
        ApiCall { method: "POST", path, body: Some(body) }
    }
    fn patch(path: String, body: Value) -> ApiCall {
        ApiCall { method: "PATCH", path, body: Some(body) }
    }
}

/// A path segment, percent-encoded (addresses may hold characters a path cannot).
fn segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|value| format!("{key}={}", segment(value))))
        .collect();
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// Drops the null fields of a JSON object (absent means "unchanged" in updates).
fn present(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(_, value)| !value.is_null()).collect()),
        other => other,
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn tenant_call(command: TenantCommand) -> anyhow::Result<ApiCall> {
    Ok(match command {
        TenantCommand::Create { id, name, siren, insee, quota_bytes, accounts_max } => ApiCall::post(
            "/api/v1/tenants".into(),
            present(
                json!({"id": id, "name": name, "siren": siren, "insee": insee, "quota_bytes": quota_bytes, "accounts_max": accounts_max}),
            ),
        ),
        TenantCommand::List(page) => ApiCall::get(format!(
            "/api/v1/tenants{}",
            query(&[("after", page.after), ("limit", page.limit.map(|l| l.to_string()))])
        )),
        TenantCommand::Show { id } => ApiCall::get(format!("/api/v1/tenants/{}", segment(&id))),
        TenantCommand::Update { id, name, siren, insee, quota_bytes, accounts_max } => ApiCall::patch(
            format!("/api/v1/tenants/{}", segment(&id)),
            present(
                json!({"name": name, "siren": siren, "insee": insee, "quota_bytes": quota_bytes, "accounts_max": accounts_max}),
            ),
        ),
        TenantCommand::Delete { id } => ApiCall::delete(format!("/api/v1/tenants/{}", segment(&id))),
        TenantCommand::Filter { command } => filter_call(command),
    })
}

fn filter_call(command: FilterCommand) -> ApiCall {
    let path = |tenant: &str| format!("/api/v1/tenants/{}/filter", segment(tenant));
    match command {
        FilterCommand::Get { tenant } => ApiCall::get(path(&tenant)),
        FilterCommand::Reset { tenant } => ApiCall::delete(path(&tenant)),
        FilterCommand::Set {
            tenant,
            warn_score,
            junk_score,
            quarantine_score,
            reject_score,
            banner,
            english,
            subject_tag,
        } => {
            let thresholds = present(json!({"warn_score": warn_score, "junk_score": junk_score,
                "quarantine_score": quarantine_score, "reject_score": reject_score}));
            let warning = present(json!({"banner": banner, "english": english, "subject_tag": subject_tag}));
            let part = |part: Value| (part != json!({})).then_some(part);
            let body = present(json!({"thresholds": part(thresholds), "warning": part(warning)}));
            ApiCall { method: "PUT", path: path(&tenant), body: Some(body) }
        }
    }
}

/// The quarantine's calls; `show --raw` answers the message itself, not JSON.
pub fn quarantine_call(command: QuarantineCommand) -> ApiCall {
    match command {
        QuarantineCommand::List { tenant, recipient, after, limit } => ApiCall::get(format!(
            "/api/v1/quarantine{}",
            query(&[
                ("tenant", tenant),
                ("recipient", recipient),
                ("after", after),
                ("limit", limit.map(|l| l.to_string()))
            ])
        )),
        QuarantineCommand::Show { id, raw: false } => ApiCall::get(format!("/api/v1/quarantine/{}", segment(&id))),
        QuarantineCommand::Show { id, raw: true } => ApiCall::get(format!("/api/v1/quarantine/{}/raw", segment(&id))),
        QuarantineCommand::Release { id } => {
            ApiCall::post(format!("/api/v1/quarantine/{}/release", segment(&id)), json!({}))
        }
        QuarantineCommand::Delete { id } => ApiCall::delete(format!("/api/v1/quarantine/{}", segment(&id))),
    }
}

fn tenant_page(page: TenantPageArgs) -> String {
    query(&[("tenant", page.tenant), ("after", page.after), ("limit", page.limit.map(|l| l.to_string()))])
}

pub fn domain_call(command: DomainCommand) -> anyhow::Result<ApiCall> {
    Ok(match command {
        DomainCommand::Create { name, tenant } => {
            ApiCall::post("/api/v1/domains".into(), json!({"name": name, "tenant": tenant}))
        }
        DomainCommand::List(page) => ApiCall::get(format!("/api/v1/domains{}", tenant_page(page))),
        DomainCommand::Show { name } => ApiCall::get(format!("/api/v1/domains/{}", segment(&name))),
        DomainCommand::Delete { name } => ApiCall::delete(format!("/api/v1/domains/{}", segment(&name))),
    })
}

pub fn dns_records_call(domain: &str) -> ApiCall {
    ApiCall::get(format!("/api/v1/domains/{}/dns", segment(domain)))
}

pub fn account_call(command: AccountCommand) -> anyhow::Result<ApiCall> {
    Ok(match command {
        AccountCommand::Create { address, display_name, password_stdin, quota_bytes, disabled, role } => {
            let password = if password_stdin { Some(read_password()?) } else { None };
            ApiCall::post(
                "/api/v1/accounts".into(),
                present(json!({"address": address, "display_name": display_name, "password": password,
                    "quota_bytes": quota_bytes, "enabled": !disabled, "role": role})),
            )
        }
        AccountCommand::List(page) => ApiCall::get(format!("/api/v1/accounts{}", tenant_page(page))),
        AccountCommand::Show { address } => ApiCall::get(format!("/api/v1/accounts/{}", segment(&address))),
        AccountCommand::Update { address, display_name, password_stdin, quota_bytes, enabled, role, may_send_as } => {
            let password = if password_stdin { Some(read_password()?) } else { None };
            let may_send_as = if may_send_as.is_empty() { None } else { Some(may_send_as) };
            ApiCall::patch(
                format!("/api/v1/accounts/{}", segment(&address)),
                present(json!({"display_name": display_name, "password": password, "quota_bytes": quota_bytes,
                    "enabled": enabled, "role": role, "may_send_as": may_send_as})),
            )
        }
        AccountCommand::Delete { address, delete_mail } => {
            let query = if delete_mail { "?delete_mail=true" } else { "" };
            ApiCall::delete(format!("/api/v1/accounts/{}{query}", segment(&address)))
        }
    })
}

pub fn alias_call(command: AliasCommand) -> anyhow::Result<ApiCall> {
    Ok(match command {
        AliasCommand::Create { address, targets } => {
            ApiCall::post("/api/v1/aliases".into(), json!({"address": address, "targets": targets}))
        }
        AliasCommand::List(page) => ApiCall::get(format!("/api/v1/aliases{}", tenant_page(page))),
        AliasCommand::Show { address } => ApiCall::get(format!("/api/v1/aliases/{}", segment(&address))),
        AliasCommand::Update { address, targets } => {
            ApiCall::patch(format!("/api/v1/aliases/{}", segment(&address)), json!({"targets": targets}))
        }
        AliasCommand::Delete { address } => ApiCall::delete(format!("/api/v1/aliases/{}", segment(&address))),
    })
}

pub fn api_key_call(command: ApiKeyCommand) -> anyhow::Result<ApiCall> {
    Ok(match command {
        ApiKeyCommand::Create { name, operator, tenant, user, expires_at } => {
            let scope = match (operator, tenant, user) {
                (true, _, _) => json!({"role": "operator"}),
                (false, Some(tenant), _) => json!({"role": "tenant_admin", "tenant": tenant}),
                (false, None, Some(account)) => json!({"role": "user", "account": account}),
                (false, None, None) => anyhow::bail!("give the key's scope: --operator, --tenant ID or --user ADDRESS"),
            };
            ApiCall::post(
                "/api/v1/api-keys".into(),
                present(json!({"name": name, "scope": scope, "expires_at": expires_at})),
            )
        }
        ApiKeyCommand::List(page) => ApiCall::get(format!(
            "/api/v1/api-keys{}",
            query(&[("after", page.after), ("limit", page.limit.map(|l| l.to_string()))])
        )),
        ApiKeyCommand::Show { id } => ApiCall::get(format!("/api/v1/api-keys/{}", segment(&id))),
        ApiKeyCommand::Delete { id } => ApiCall::delete(format!("/api/v1/api-keys/{}", segment(&id))),
    })
}

pub fn app_password_call(command: AppPasswordCommand) -> anyhow::Result<ApiCall> {
    Ok(match command {
        AppPasswordCommand::Create { address, name } => {
            ApiCall::post(format!("/api/v1/accounts/{}/app-passwords", segment(&address)), json!({"name": name}))
        }
        AppPasswordCommand::List { address } => {
            ApiCall::get(format!("/api/v1/accounts/{}/app-passwords", segment(&address)))
        }
        AppPasswordCommand::Delete { address, id } => {
            ApiCall::delete(format!("/api/v1/accounts/{}/app-passwords/{}", segment(&address), segment(&id)))
        }
    })
}

pub fn queue_call(command: QueueCommand) -> anyhow::Result<ApiCall> {
    Ok(match command {
        QueueCommand::List(page) => ApiCall::get(format!("/api/v1/queue{}", tenant_page(page))),
        QueueCommand::Show { id } => ApiCall::get(format!("/api/v1/queue/{id}")),
        QueueCommand::Retry { id } => ApiCall::post(format!("/api/v1/queue/{id}/retry"), json!({})),
        QueueCommand::Hold { id, reason } => {
            ApiCall::post(format!("/api/v1/queue/{id}/hold"), json!({"reason": reason}))
        }
        QueueCommand::Release { id } => ApiCall::post(format!("/api/v1/queue/{id}/release"), json!({})),
        QueueCommand::Delete { id } => ApiCall::delete(format!("/api/v1/queue/{id}")),
        QueueCommand::Brakes { tenant } => ApiCall::get(format!("/api/v1/brakes{}", query(&[("tenant", tenant)]))),
        QueueCommand::LiftBrake { tenant, account } => {
            ApiCall::post("/api/v1/brakes/lift".to_string(), json!({"tenant": tenant, "account": account}))
        }
    })
}
