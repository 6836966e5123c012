//! The accounts of a whole tenant's import (`hameau import imap --csv FILE`): one line
//! per account, `account,from,user,password_file`, with an optional header line and `#`
//! comments. Fields are not quoted: addresses, URLs, logins and paths here have no commas.

use std::path::{Path, PathBuf};

use crate::Error;

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvAccount {
    /// The Hameau account, e.g. `alice@commune.fr`.
    pub account: String,
    /// `imaps://host[:port]` or `imap://host[:port]`.
    pub from: String,
    /// The login on the old server.
    pub user: String,
    /// The file holding the password (first line); relative to the CSV file's directory.
    pub password_file: PathBuf,
}

/// Most lines read: a commune has tens of agents, a large town a few thousand.
pub const ACCOUNTS_MAX: usize = 100_000;

/// Reads the file's text; `base` is the directory relative paths start from. An error
/// names the line.
pub fn parse_accounts(text: &str, base: &Path) -> Result<Vec<CsvAccount>, Error> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if index == 0 && fields.first().is_some_and(|f| f.eq_ignore_ascii_case("account")) {
            continue;
        }
        let [account, from, user, password_file] = fields[..] else {
            return Err(Error::Accounts(format!(
                "line {}: expected 4 fields (account,from,user,password_file), found {}",
                index + 1,
                fields.len()
            )));
        };
        if account.is_empty()
            || !account.contains('@')
            || from.is_empty()
            || user.is_empty()
            || password_file.is_empty()
        {
            return Err(Error::Accounts(format!("line {}: an empty field or an account without @", index + 1)));
        }
        if out.len() == ACCOUNTS_MAX {
            return Err(Error::Accounts(format!("more than {ACCOUNTS_MAX} accounts")));
        }
        out.push(CsvAccount {
            account: account.to_string(),
            from: from.to_string(),
            user: user.to_string(),
            password_file: base.join(password_file),
        });
    }
    Ok(out)
}
