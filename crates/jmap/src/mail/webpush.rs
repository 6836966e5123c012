//! Encrypted push (RFC 8291, Message Encryption for Web Push, over RFC 8188's `aes128gcm`
//! content coding): what a PushSubscription with `keys` (RFC 8620 §7.2) is sent.
//!
//! The client gives `p256dh`, its P-256 public key (65 bytes, uncompressed), and `auth`, a
//! 16-byte secret, both in base64url. Each push is encrypted to them with a new server key
//! pair: ECDH gives the shared secret, HKDF-SHA-256 mixes in `auth` and both public keys
//! (RFC 8291 §3.3–3.4), then a random salt gives the content key and nonce (RFC 8188 §2.2–2.3)
//! of one AES-128-GCM record. The body is the RFC 8188 header (salt, record size, the
//! server's public key as key id) and that record. Every primitive is ring's.

use base64::Engine as _;
use ring::{aead, agreement, hkdf, rand as ring_rand};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A subscription's keys, as the client wrote them (base64url), checked at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushKeys {
    pub p256dh: String,
    pub auth: String,
}

/// The record size written in the header: a push is one record, so the size is that of the
/// record when it is larger than this usual 4096.
const RECORD_SIZE: usize = 4096;

/// AES-128-GCM's tag, and the delimiter byte of the last record (RFC 8188 §2).
const TAG_BYTES: usize = 16;
const LAST_RECORD: u8 = 2;

fn decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed).ok()
}

impl PushKeys {
    /// The `keys` of a creation: an object with `p256dh`, a P-256 public key (ECDH with it
    /// must succeed), and `auth`, 16 bytes; the reason otherwise.
    pub fn check(value: &Value) -> Result<PushKeys, String> {
        let keys: PushKeys =
            serde_json::from_value(value.clone()).map_err(|_| "keys: an object with p256dh and auth".to_string())?;
        let public = decode(&keys.p256dh).ok_or("keys.p256dh: not base64url")?;
        if public.len() != 65 || public[0] != 4 {
            return Err("keys.p256dh: not an uncompressed P-256 public key (65 bytes)".into());
        }
        let auth = decode(&keys.auth).ok_or("keys.auth: not base64url")?;
        if auth.len() != 16 {
            return Err("keys.auth: not 16 bytes".into());
        }
        // A point not on the curve fails the agreement: found now, not at the first push.
        let rng = ring_rand::SystemRandom::new();
        let trial = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
            .map_err(|_| "keys: no key pair could be made".to_string())?;
        agreement::agree_ephemeral(trial, &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &public), |_| ())
            .map_err(|_| "keys.p256dh: not a point of P-256".to_string())?;
        Ok(keys)
    }

    /// `plaintext` encrypted for this subscription: the body of the push, sent with
    /// `Content-Encoding: aes128gcm`.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let rng = ring_rand::SystemRandom::new();
        let ua_public = decode(&self.p256dh).ok_or("keys.p256dh")?;
        let auth = decode(&self.auth).ok_or("keys.auth")?;
        let server_private =
            agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).map_err(|_| "no server key pair")?;
        let server_public = server_private.compute_public_key().map_err(|_| "no server public key")?;
        let server_public = server_public.as_ref().to_vec();
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut salt).map_err(|_| "no random salt")?;
        let ikm = agreement::agree_ephemeral(
            server_private,
            &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &ua_public),
            |shared| input_keying_material(shared, &auth, &ua_public, &server_public),
        )
        .map_err(|_| "the subscription's key does not agree")??;
        seal(plaintext, &ikm, &salt, &server_public)
    }
}

/// RFC 8291 §3.3: `IKM = HKDF(salt = auth, ikm = ECDH secret, info = "WebPush: info" 0x00
/// ua_public as_public, 32)`.
fn input_keying_material(shared: &[u8], auth: &[u8], ua_public: &[u8], as_public: &[u8]) -> Result<[u8; 32], String> {
    let info = [b"WebPush: info\0".as_slice(), ua_public, as_public].concat();
    let mut ikm = [0u8; 32];
    expand(&hkdf::Salt::new(hkdf::HKDF_SHA256, auth).extract(shared), &info, &mut ikm)?;
    Ok(ikm)
}

/// RFC 8188: the content key and nonce from `ikm` and `salt`, one last record holding
/// `plaintext` and its delimiter, after the header (salt, record size, key id).
fn seal(plaintext: &[u8], ikm: &[u8], salt: &[u8; 16], key_id: &[u8]) -> Result<Vec<u8>, String> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let mut cek = [0u8; 16];
    expand(&prk, b"Content-Encoding: aes128gcm\0", &mut cek)?;
    let mut nonce = [0u8; 12];
    expand(&prk, b"Content-Encoding: nonce\0", &mut nonce)?;
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| "content key")?);
    let mut record = Vec::with_capacity(plaintext.len() + 1 + TAG_BYTES);
    record.extend_from_slice(plaintext);
    record.push(LAST_RECORD);
    // The sequence number of the first record is 0: the nonce as derived (RFC 8188 §2.3).
    key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut record)
        .map_err(|_| "sealing the record")?;
    let record_size = u32::try_from(RECORD_SIZE.max(record.len())).map_err(|_| "a push too large")?;
    let key_id_len = u8::try_from(key_id.len()).map_err(|_| "key id")?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + key_id.len() + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&record_size.to_be_bytes());
    body.push(key_id_len);
    body.extend_from_slice(key_id);
    body.extend_from_slice(&record);
    Ok(body)
}

/// HKDF-Expand of `prk` with `info` into `out`.
fn expand(prk: &hkdf::Prk, info: &[u8], out: &mut [u8]) -> Result<(), String> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let infos = [info];
    prk.expand(&infos, Len(out.len())).and_then(|okm| okm.fill(out)).map_err(|_| "HKDF".to_string())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use ring::{aead, agreement, hkdf, rand as ring_rand};
    use serde_json::json;

    use super::{PushKeys, expand, input_keying_material};

    /// The user agent's side (RFC 8291 §3.4, RFC 8188 §2): decrypts what `encrypt` wrote
    /// with the key pair's private half.
    fn decrypt(body: &[u8], ua_private: agreement::EphemeralPrivateKey, ua_public: &[u8], auth: &[u8]) -> Vec<u8> {
        let salt: [u8; 16] = body[..16].try_into().unwrap();
        let record_size = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
        let key_id_len = body[20] as usize;
        let as_public = &body[21..21 + key_id_len];
        let record = &body[21 + key_id_len..];
        assert!(record.len() <= record_size, "one record within the record size");
        let ikm = agreement::agree_ephemeral(
            ua_private,
            &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, as_public),
            |shared| input_keying_material(shared, auth, ua_public, as_public),
        )
        .unwrap()
        .unwrap();
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        expand(&prk, b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
        expand(&prk, b"Content-Encoding: nonce\0", &mut nonce).unwrap();
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).unwrap());
        let mut record = record.to_vec();
        let plain = key
            .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut record)
            .expect("the record opens")
            .to_vec();
        assert_eq!(plain.last(), Some(&2), "the last record's delimiter");
        plain[..plain.len() - 1].to_vec()
    }

    #[test]
    fn a_push_opens_with_the_subscriptions_private_key_only() {
        let rng = ring_rand::SystemRandom::new();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let ua_private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let ua_public = ua_private.compute_public_key().unwrap().as_ref().to_vec();
        let auth = [7u8; 16];
        let keys = PushKeys::check(&json!({"p256dh": b64(&ua_public), "auth": b64(&auth)})).unwrap();
        let message = br#"{"@type":"StateChange","changed":{"a7":{"Email":"12"}}}"#;
        let body = keys.encrypt(message).unwrap();
        assert!(!body.windows(message.len()).any(|w| w == message), "not in clear");
        assert_eq!(decrypt(&body, ua_private, &ua_public, &auth), message);
        // Another subscription's private key, or another auth secret, opens nothing.
        let other = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
        let opened = std::panic::catch_unwind(|| decrypt(&body, other, &ua_public, &auth));
        assert!(opened.is_err());
        // Two pushes of the same state differ (a new key pair and salt each).
        assert_ne!(keys.encrypt(message).unwrap(), body);
    }

    #[test]
    fn keys_that_are_not_a_p256_point_and_16_bytes_are_refused() {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut not_on_curve = vec![4u8];
        not_on_curve.extend([1u8; 64]);
        for (keys, why) in [
            (json!({"p256dh": b64(&not_on_curve), "auth": b64(&[0; 16])}), "not a point"),
            (json!({"p256dh": b64(&[4; 33]), "auth": b64(&[0; 16])}), "65 bytes"),
            (json!({"p256dh": "!!", "auth": b64(&[0; 16])}), "not base64url"),
            (json!({"p256dh": b64(&not_on_curve), "auth": b64(&[0; 8])}), "16 bytes"),
            (json!({"p256dh": 1}), "an object"),
            (json!("keys"), "an object"),
        ] {
            let refused = PushKeys::check(&keys).unwrap_err();
            assert!(refused.contains(why), "{keys}: {refused}");
        }
    }
}
