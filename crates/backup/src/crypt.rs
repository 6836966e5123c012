//! Encryption with age (age-encryption.org/v1): what a backup writes through and a restore
//! reads through. The Debian `age` tool reads the same files (docs/backup.md).

use std::io::{BufRead, Read, Write};
use std::path::Path;

use age::secrecy::{ExposeSecret, SecretString};
use hameau_store::BlobHash;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::format::AGE_SUFFIX;
use crate::write::Keys;
use crate::{Decryption, Encryption, EncryptionInfo, Error};

/// Encrypts a backup's files to one recipient and names its message files.
pub(crate) struct Sealer {
    recipient: age::x25519::Recipient,
    /// The server's own key (`backup/writer-key`), so it reads its last index back.
    writer: age::x25519::Recipient,
    /// The HMAC key of message file names: a random key the store keeps
    /// (`backup/names-key`), so names are stable along a chain and mean nothing without it.
    names_key: [u8; 32],
    /// A passphrase backup's `key.age`: the data key, encrypted with the passphrase.
    pub key_file: Option<Vec<u8>>,
    pub info: EncryptionInfo,
}

impl Sealer {
    /// For a new backup. A passphrase backup reuses the data key of its base (`base_key_file`,
    /// opened with the passphrase) or makes one for a new chain.
    pub fn new(encryption: &Encryption, keys: &Keys, base_key_file: Option<&Path>) -> Result<Sealer, Error> {
        let names_key = keys.names;
        let writer: age::x25519::Identity = keys
            .writer
            .trim()
            .parse()
            .map_err(|_| Error::Damaged("backup/writer-key is not an age identity".into()))?;
        let writer = writer.to_public();
        match encryption {
            Encryption::Recipient(text) => {
                let recipient: age::x25519::Recipient = text
                    .trim()
                    .parse()
                    .map_err(|e| Error::InvalidOptions(format!("{text:?} is not an age X25519 recipient: {e}")))?;
                let info = info("x25519");
                Ok(Sealer { recipient, writer, names_key, key_file: None, info })
            }
            Encryption::Passphrase(passphrase) => {
                let (identity, key_file) = match base_key_file {
                    Some(path) => {
                        let bytes = read_key_file(path)?;
                        (open_key_file(&bytes, passphrase)?, bytes)
                    }
                    None => {
                        let identity = age::x25519::Identity::generate();
                        let secret = identity.to_string();
                        let encryptor = age::Encryptor::with_user_passphrase(SecretString::from(passphrase.clone()));
                        let mut bytes = Vec::new();
                        let mut writer = encryptor.wrap_output(&mut bytes).map_err(crypt)?;
                        writer.write_all(secret.expose_secret().as_bytes()).map_err(crypt)?;
                        writer.write_all(b"\n").map_err(crypt)?;
                        writer.finish().map_err(crypt)?;
                        (identity, bytes)
                    }
                };
                let info = info("passphrase");
                Ok(Sealer { recipient: identity.to_public(), writer, names_key, key_file: Some(key_file), info })
            }
        }
    }

    /// The file name of a message: HMAC-SHA256 of its hash, in hex, `.age`.
    pub fn blob_name(&self, hash: &BlobHash) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.names_key).expect("any key length");
        mac.update(&hash.0);
        format!("{}{AGE_SUFFIX}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Wraps `output`: what is written is encrypted to the recipient.
    pub fn wrap<W: Write>(&self, output: W) -> Result<age::stream::StreamWriter<W>, Error> {
        let recipients: [&dyn age::Recipient; 2] = [&self.recipient, &self.writer];
        let encryptor = age::Encryptor::with_recipients(recipients.into_iter()).map_err(crypt)?;
        encryptor.wrap_output(output).map_err(crypt)
    }
}

fn info(to: &str) -> EncryptionInfo {
    EncryptionInfo { scheme: "age".into(), to: to.into(), blob_names: "hmac-sha256".into() }
}

/// Decrypts a backup's files.
pub(crate) struct Opener {
    identities: Vec<Box<dyn age::Identity>>,
}

impl Opener {
    /// `key_file` is the chain's `key.age` (passphrase backups).
    pub fn new(decryption: &Decryption, key_file: Option<&Path>) -> Result<Opener, Error> {
        let identities = match (decryption, key_file) {
            (Decryption::Identity(text), _) => age::IdentityFile::from_buffer(text.as_bytes())
                .and_then(|file| file.into_identities().map_err(std::io::Error::other))
                .map_err(|e| Error::Crypt(format!("the key file: {e}")))?,
            (Decryption::Passphrase(passphrase), Some(path)) => {
                let bytes = read_key_file(path)?;
                let identity: Box<dyn age::Identity> = Box::new(open_key_file(&bytes, passphrase)?);
                vec![identity]
            }
            (Decryption::Passphrase(_), None) => {
                return Err(Error::Crypt("the backup is not encrypted with a passphrase: give its key file".into()));
            }
        };
        if identities.is_empty() {
            return Err(Error::Crypt("the key file holds no identity".into()));
        }
        Ok(Opener { identities })
    }

    /// A reader of the plaintext of `input`.
    pub fn open<'a, R: Read + 'a>(&'a self, input: R) -> Result<Box<dyn Read + 'a>, Error> {
        let decryptor = age::Decryptor::new(input).map_err(crypt)?;
        let reader = decryptor.decrypt(self.identities.iter().map(|identity| identity.as_ref())).map_err(crypt)?;
        Ok(Box::new(reader))
    }
}

/// Opens a passphrase backup's `key.age`: the data identity.
/// Largest `key.age` read, and largest identity read out of it: one age X25519 identity
/// (74 characters) under a passphrase is well under 1 KiB; a larger file is not ours.
const KEY_FILE_BYTES_MAX: u64 = 4096;

/// A backup set's `key.age`, read only up to [`KEY_FILE_BYTES_MAX`].
fn read_key_file(path: &Path) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(Error::io(path))?;
    file.take(KEY_FILE_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(Error::io(path))?;
    if bytes.len() as u64 > KEY_FILE_BYTES_MAX {
        return Err(Error::format(path, format!("over {KEY_FILE_BYTES_MAX} bytes: not a key file")));
    }
    Ok(bytes)
}

fn open_key_file(bytes: &[u8], passphrase: &str) -> Result<age::x25519::Identity, Error> {
    let decryptor = age::Decryptor::new_buffered(bytes).map_err(crypt)?;
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_string()));
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| Error::Crypt(format!("key.age: {e} (wrong passphrase?)")))?;
    let mut text = String::new();
    (&mut reader as &mut dyn Read).take(KEY_FILE_BYTES_MAX).read_to_string(&mut text).map_err(crypt)?;
    let line = std::io::Cursor::new(text.as_bytes()).lines().next().transpose().map_err(crypt)?.unwrap_or_default();
    line.trim().parse().map_err(|_| Error::Crypt("key.age does not hold an age identity".into()))
}

fn crypt(error: impl std::fmt::Display) -> Error {
    Error::Crypt(error.to_string())
}
